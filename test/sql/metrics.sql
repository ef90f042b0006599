-- toygun.metrics() (issue 18): Prometheus's text format (HELP and TYPE
-- lines, one sample per line, labels escaped), and rights: a role sees the
-- series of the types it may read, and nothing of another owner's types.
-- toygun.metrics_series() (the dashboard's charts): its signature, its
-- windows, and a stranger's view. The tick counters and the series under a
-- real worker: test/scenario/metrics.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(24);

CREATE ROLE tg_m_owner;
CREATE ROLE tg_m_stranger;
CREATE ROLE tg_m_reader;
GRANT USAGE ON SCHEMA public TO tg_m_owner;
-- a type whose names need escaping in a label value
SET ROLE tg_m_owner;
SELECT toygun.define_resource(E'm"q\\x');
RESET ROLE;
SELECT toygun.grant_type('dummy', 'tg_m_reader', '{read}');
SELECT toygun.create_resource('dummy') AS r1 \gset
SELECT toygun.start_task(:'r1', 'test') AS t1 \gset
SELECT toygun.panic_task(toygun.start_task(toygun.create_resource('dummy'), 'test'), 'broken') IS NOT NULL AS panicked \gset
SET ROLE tg_m_owner;
SELECT toygun.create_resource(E'm"q\\x') AS mq \gset
RESET ROLE;
-- the resource due now: its series in the gauges (which count due, panicked and failing objects)
UPDATE toygun.resource SET run_at = now() - interval '1 second' WHERE id = :'mq';

CREATE TEMP TABLE m AS SELECT toygun.metrics() AS text;
CREATE TEMP VIEW lines AS SELECT l FROM m, regexp_split_to_table(m.text, E'\n') AS l WHERE l <> '';
GRANT SELECT ON m, lines TO PUBLIC;

SELECT ok((SELECT right(text, 1) = E'\n' FROM m), 'the exposition ends with a newline');
SELECT is((SELECT count(*) FROM lines
            WHERE l !~ '^# (HELP|TYPE) toygun_[a-z_]+ '
              AND l !~ '^toygun_[a-z_]+(\{[a-z_]+="([^"\\]|\\.)*"(,[a-z_]+="([^"\\]|\\.)*")*\})? -?[0-9.e+-]+$'),
          0::bigint, 'every line is a HELP or TYPE line or a sample with quoted labels and a number');
SELECT set_eq($$ SELECT substring(l from '^# TYPE (\S+ \S+)$') FROM lines WHERE l LIKE '# TYPE %' $$,
              $$ VALUES ('toygun_ticks_total counter'), ('toygun_tick_failures_total counter'),
                        ('toygun_panics_total counter'), ('toygun_tick_duration_seconds histogram'),
                        ('toygun_metrics_overflow_ticks_total counter'), ('toygun_due_capped gauge'),
                        ('toygun_due gauge'), ('toygun_panicked gauge'), ('toygun_failing gauge'),
                        ('toygun_oldest_due_seconds gauge'), ('toygun_workers gauge'),
                        ('toygun_worker_up gauge'), ('toygun_queue_paused gauge'),
                        ('toygun_breaker_open gauge'), ('toygun_rate_limit_tokens gauge'),
                        ('toygun_limit_running gauge'),
                        ('toygun_outbox_pending gauge'), ('toygun_outbox_failed gauge') $$,
              'every family has its TYPE line');
SELECT is((SELECT count(*) FROM lines WHERE l LIKE '# HELP %'), 18::bigint, 'and its HELP line');
SELECT ok((SELECT bool_and(position(E'# HELP ' || f || ' ' IN text) < position(E'# TYPE ' || f || ' ' IN text)
                           AND position(E'# TYPE ' || f || ' ' IN text)
                               < COALESCE(NULLIF(position(E'\n' || f || '{' IN text), 0), 2147483647))
             FROM m, (VALUES ('toygun_panicked'), ('toygun_due'), ('toygun_workers')) AS v(f)),
          'HELP, then TYPE, then the samples of a family');
SELECT is((SELECT l FROM lines WHERE l LIKE 'toygun_due_capped %'), 'toygun_due_capped 0',
          'due counts not capped (fewer than 5,000 due)');
SELECT is((SELECT l FROM lines WHERE l LIKE 'toygun_panicked{resource_type="dummy",task="test"} %'),
          'toygun_panicked{resource_type="dummy",task="test"} 1', 'panicked objects per type');
SELECT is((SELECT l FROM lines WHERE l LIKE 'toygun_due{resource_type="dummy",task="test"} %'),
          'toygun_due{resource_type="dummy",task="test"} 1', 'due objects per type');
SELECT ok((SELECT substring(l from ' (\S+)$')::float8 >= 0 FROM lines
            WHERE l LIKE 'toygun_oldest_due_seconds{resource_type="dummy",task="test"} %'),
          'the age of the oldest due object, in seconds');
SELECT is((SELECT count(*) FROM lines WHERE l LIKE 'toygun_due{resource_type="m%",task=""} %'),
          1::bigint, 'a resource type''s series have an empty task label');
SELECT is((SELECT l FROM lines WHERE l LIKE 'toygun_due{resource_type="m%'),
          E'toygun_due{resource_type="m\\"q\\\\x",task=""} 1',
          'a label value''s quote and backslash are escaped');
SELECT is(toygun._prometheus_label(E'a\nb'), E'a\\nb', 'and a newline');

-- rights: as the caller
SELECT is(pg_temp.as_role('tg_m_stranger', 'CREATE TEMP TABLE ms AS SELECT toygun.metrics() AS text'), 'ok',
          'any role may call metrics()');
SELECT is((SELECT count(*) FROM ms, regexp_split_to_table(ms.text, E'\n') AS l
            WHERE l ~ 'resource_type="(dummy|m)'), 0::bigint,
          'a stranger sees no series of another owner''s types');
SELECT is((SELECT count(*) FROM ms, regexp_split_to_table(ms.text, E'\n') AS l WHERE l LIKE '# TYPE %'),
          16::bigint, 'but every family (the outbox''s two are the owner''s only)');
SELECT is(pg_temp.as_role('tg_m_reader',
                          $$ DO $d$ BEGIN
                               IF toygun.metrics() !~ 'toygun_panicked\{resource_type="dummy",task="test"\} 1'
                                  OR toygun.metrics() ~ 'resource_type="m' THEN
                                 RAISE EXCEPTION 'wrong';
                               END IF;
                             END $d$ $$), 'ok',
          'a role granted read on a type sees its series, and no other owner''s');

-- metrics_series(): the signature the dashboard's server calls
SELECT is(pg_get_function_arguments('toygun.metrics_series(text)'::regprocedure),
          '"window" text DEFAULT ''1h''::text', 'metrics_series takes a window, ''1h'' by default');
SELECT is(pg_get_function_result('toygun.metrics_series(text)'::regprocedure),
          'TABLE(at timestamp with time zone, resource_type text, task text, ticks bigint, failures bigint)',
          'and returns bucket start, type, ticks and failures');
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
              ['SELECT * FROM toygun.metrics_series()', 'ok'],
              ['SELECT * FROM toygun.metrics_series(''1h'')', 'ok'],
              ['SELECT * FROM toygun.metrics_series("window" => ''24h'')', 'ok'],
              ['SELECT * FROM toygun.metrics_series(''2h'')', '22023'],
              ['SELECT * FROM toygun.metrics_series(''1H'')', '22023'],
              ['SELECT * FROM toygun.metrics_series('''')', '22023'],
              ['SELECT * FROM toygun.metrics_series(NULL)', '22023']]) $q$,
          'windows ''1h'' and ''24h''; any other is 22023');
SELECT throws_ok('SELECT * FROM toygun.metrics_series(''7d'')', '22023',
                 'toygun.metrics_series() has no window ''7d''', 'the error names the window');
SELECT is(pg_temp.hint_of('SELECT * FROM toygun.metrics_series(''7d'')'),
          'Use ''1h'' for the one-minute buckets of the last hour, or ''24h'' for the thirty-minute buckets of the last 24 hours.',
          'and the hint names both windows');
-- no worker ticks inside this transaction: the only counts are other tests' (none of ours)
SELECT is(pg_temp.as_role('tg_m_stranger', 'CREATE TEMP TABLE ss AS SELECT * FROM toygun.metrics_series(''1h'')
                                            UNION ALL SELECT * FROM toygun.metrics_series(''24h'')'), 'ok',
          'any role may call metrics_series()');
SELECT is((SELECT count(*) FROM ss), 0::bigint, 'a stranger sees no rows: no type of its own, no overflow');
SELECT is((SELECT count(*) FROM toygun.metrics_series('24h') WHERE at > now() OR at < now() - interval '24 hours 30 minutes'),
          0::bigint, 'no bucket outside its window');

SELECT * FROM finish();
ROLLBACK;
