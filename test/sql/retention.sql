-- Retention (issue 16): keep, when history rows expire (both write paths),
-- the history's partitions made ahead (aligned, clipped to the gaps) and
-- dropped once expired, the default partition's rows moved or deleted, and
-- maintain() removing stopped runs and resources past their keep with what
-- only they use, never a live object nor a type kept forever; failures and
-- schedule claims pruned; who may call it, and who may read the partitions.
BEGIN;
\ir ../fixtures.sql
SELECT plan(41);

CREATE FUNCTION public.ret_job(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'one' THEN toygun.go('two') ELSE toygun.stop() END
$$;
CREATE FUNCTION pg_temp.bounds(p regclass) RETURNS text LANGUAGE sql AS $$
    SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = p
$$;
CREATE FUNCTION pg_temp.partitions() RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'toygun.transition'::regclass
$$;
SET TIME ZONE 'UTC';

-- ---------------------------------------------------------------------------
-- keep
SELECT is(current_setting('toygun.keep'), 'forever', 'toygun.keep is forever by default');
SELECT is(toygun.default_keep(), NULL, 'default_keep() is NULL for forever');
SELECT toygun.define_resource('ret', keep => '1 hour');
SELECT toygun.define_task('ret', 'job', '{one,two}', 'ret_job(toygun.task)', keep => '1 hour');
SELECT toygun.define_task('ret', 'forever', '{one,two}', 'ret_job(toygun.task)');
SELECT is((SELECT keep FROM toygun.resource_type WHERE name = 'ret'), '1 hour'::interval,
          'define_resource stores keep');
SELECT is((SELECT keep FROM toygun.task_type WHERE resource_type = 'ret' AND name = 'job'), '1 hour'::interval,
          'define_task stores keep');
SELECT is((SELECT keep FROM toygun.task_type WHERE resource_type = 'ret' AND name = 'forever'), NULL,
          'keep left out is the setting''s: forever');
SELECT throws_ok($$SELECT toygun.define_task('ret', 'bad', '{one}', 'ret_job(toygun.task)', keep => '0 s')$$,
                 '22023', 'keep of task type "ret.bad" must be a positive interval of at most 1000 years, not 00:00:00',
                 'a keep of zero is refused, naming the type');
SELECT throws_ok($$SELECT toygun.define_resource('retbad', keep => '-1 day')$$,
                 '22023', NULL, 'a negative keep is refused');
SELECT throws_ok($$SELECT toygun.define_resource('retbad', keep => '1001 years')$$,
                 '22023', NULL, 'a keep past 1000 years is refused');
SELECT lives_ok($$SELECT toygun.define_resource('retnull', keep => NULL)$$, 'keep => NULL is forever');

-- ---------------------------------------------------------------------------
-- expires_at, on both write paths
SELECT toygun.create_resource('ret') AS r \gset
SELECT toygun.start_task(:'r', 'job') AS job \gset
SELECT toygun.start_task(:'r', 'forever') AS fv \gset
SELECT toygun.tick_task(:'job');
SELECT toygun.tick_task(:'fv');
SELECT is((SELECT array_agg(DISTINCT expires_at - at) FROM toygun.transition WHERE object_id = :'job'),
          ARRAY['1 hour'::interval], 'a tick (the direct path) writes rows that expire keep after they were written');
SELECT is((SELECT array_agg(DISTINCT tableoid::regclass::text) FROM toygun.transition WHERE object_id = :'fv'),
          ARRAY['toygun.transition_forever'], 'rows of a type kept forever go to transition_forever');
SET LOCAL toygun.direct_writes = off;
SELECT toygun.transition_task(:'job', 'one', reason => 'by hand');
SELECT toygun.transition_task(:'fv', 'one', reason => 'by hand');
RESET toygun.direct_writes;
SELECT is((SELECT expires_at - at FROM toygun.transition WHERE object_id = :'job' AND reason = 'by hand'),
          '1 hour'::interval, 'a move by hand through SQL writes the same expiry');
SELECT is((SELECT expires_at FROM toygun.transition WHERE object_id = :'fv' AND reason = 'by hand'),
          'infinity'::timestamptz, 'and infinity for a type kept forever');
SELECT is((SELECT count(*) FROM toygun.transition WHERE tableoid = 'toygun.transition_default'::regclass
             AND object_id = :'job'), 3::bigint, 'with no time partition yet, rows go to the default partition');

-- ---------------------------------------------------------------------------
-- partitions made ahead, aligned to toygun.history_partition (1 day) from the epoch
SET LOCAL toygun.test_now = '2030-01-01 00:30:00+00';
-- a partition of another width, made before: new ones fill the gaps around it
CREATE TABLE toygun.transition_manual (LIKE toygun.transition);
ALTER TABLE toygun.transition ATTACH PARTITION toygun.transition_manual
    FOR VALUES FROM ('2030-01-02 06:00:00+00') TO ('2030-01-02 18:00:00+00');
-- a row of a range to come, and one long expired, in the default partition
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, expires_at)
VALUES (gen_random_uuid(), 0, '__new__', 'one', 'ret', '2030-01-01 12:00:00+00'),
       (gen_random_uuid(), 0, '__new__', 'one', 'ret', '2029-06-01 00:00:00+00');
SELECT toygun.maintain() AS round \gset
SELECT is((:'round'::jsonb ->> 'partitions_created')::int, 4,
          'maintain() makes the partitions from now + the smallest keep to now + the largest + 2 widths, around the others');
SELECT is(pg_temp.partitions(),
          ARRAY['transition_20300101_000000', 'transition_20300102_000000', 'transition_20300102_180000',
                'transition_20300103_000000', 'transition_default', 'transition_forever', 'transition_manual'],
          'each named by its UTC lower bound');
SELECT is(pg_temp.bounds('toygun.transition_20300101_000000'),
          $$FOR VALUES FROM ('2030-01-01 00:00:00+00') TO ('2030-01-02 00:00:00+00')$$, 'a whole width');
SELECT is(pg_temp.bounds('toygun.transition_20300102_000000'),
          $$FOR VALUES FROM ('2030-01-02 00:00:00+00') TO ('2030-01-02 06:00:00+00')$$,
          'clipped to the gap before an existing partition');
SELECT is(pg_temp.bounds('toygun.transition_20300102_180000'),
          $$FOR VALUES FROM ('2030-01-02 18:00:00+00') TO ('2030-01-03 00:00:00+00')$$,
          'and to the gap after it');
SELECT is((SELECT tableoid::regclass::text FROM toygun.transition WHERE expires_at = '2030-01-01 12:00:00+00'),
          'toygun.transition_20300101_000000', 'a row of the new range moved out of the default partition');
SELECT is((SELECT count(*) FROM toygun.transition WHERE expires_at = '2029-06-01 00:00:00+00'), 0::bigint,
          'an expired row of the default partition is deleted');
SELECT is(:'round'::jsonb ->> 'history_rows_deleted', '4',
          'and counted, with the three rows of the run above, expired by the test clock');
SELECT is((SELECT toygun.maintain() ->> 'partitions_created'), '0', 'a second round makes none');

-- ---------------------------------------------------------------------------
-- removing what expired: partitions, stopped runs and resources, failures, claims
SELECT toygun.stop_task(:'job');
SELECT toygun.stop_task(:'fv');
SELECT toygun.start_task(:'r', 'job') AS live \gset
SELECT toygun.create_resource('ret') AS r2 \gset
SELECT toygun.stop_resource(:'r2');
SELECT toygun.create_resource('dummy') AS d \gset
SELECT toygun.start_task(:'d', 'another') AS dstop \gset
SELECT toygun.stop_task(:'dstop');
INSERT INTO toygun.failure (object_id, failure_no, resource_type, attempt, at, error)
VALUES (:'job', 1, 'ret', 1, now(), 'of a run to be removed'),
       (:'live', 1, 'ret', 1, now() - interval '3 hours', 'older than keep'),
       (:'dstop', 1, 'dummy', 1, now() - interval '3 hours', 'kept forever');
INSERT INTO toygun.message (run_id, resource_type, message, sent_by) VALUES (:'job', 'ret', '{}', 'postgres');
INSERT INTO toygun.schedule_start VALUES (999999, now(), :'r');
RESET toygun.test_now;
SELECT toygun.maintain() AS early \gset
SELECT toygun.tick_task(:'live');
SELECT is((SELECT tableoid::regclass::text ~ '^toygun\.transition_[0-9]{8}_[0-9]{6}$' FROM toygun.transition
            WHERE object_id = :'live' ORDER BY step DESC LIMIT 1), true,
          'once its partition is made, a tick writes its row straight into it');
SELECT is((:'early'::jsonb ->> 'runs_removed')::int + (:'early'::jsonb ->> 'resources_removed')::int, 0,
          'nothing stopped within its keep is removed');
SET LOCAL toygun.test_now = '2030-01-05 00:00:00+00';
SELECT toygun.maintain() AS late \gset
SELECT cmp_ok((:'late'::jsonb ->> 'partitions_dropped')::int, '>=', 5,
              'partitions whose upper bound has passed are dropped');
SELECT ok(NOT pg_temp.partitions() && ARRAY['transition_20300101_000000', 'transition_manual'],
          'the expired partitions are gone, whoever made them');
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'job'), 0::bigint, 'a stopped run past its keep is removed');
SELECT is((SELECT count(*) FROM toygun.task WHERE id IN (:'live', :'fv', :'dstop')), 3::bigint,
          'a live run and stopped runs of types kept forever stay');
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r2'), 0::bigint,
          'a stopped resource past its keep, with no runs, is removed');
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r'), 1::bigint, 'a live resource stays');
SELECT is((SELECT array_agg(error ORDER BY error) FROM toygun.failure WHERE object_id IN (:'job', :'live', :'dstop')),
          ARRAY['kept forever'], 'failures of removed runs and older than their type''s keep are pruned');
SELECT is((SELECT count(*) FROM toygun.message WHERE run_id = :'job'), 0::bigint,
          'messages to a removed run go with it');
SELECT is((SELECT count(*) FROM toygun.schedule_start WHERE schedule_id = 999999), 0::bigint,
          'claims of a schedule that is gone are pruned');
SELECT is((SELECT count(*) FROM toygun.history(:'job')), 0::bigint,
          'the removed run''s history, in an expired partition, is gone');
SELECT ok((SELECT count(*) FROM toygun.history(:'fv')) > 0, 'the history of a type kept forever stays');

-- a stopped resource with a run left (of a type kept forever) stays
SELECT toygun.stop_resource(:'r');
SELECT toygun.stop_task(:'live');
SET LOCAL toygun.test_now = '2030-01-10 00:00:00+00';
SELECT toygun.maintain();
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r'), 1::bigint,
          'a stopped resource with runs left is not removed');

-- ---------------------------------------------------------------------------
-- who may call maintain(), and who reads the partitions
CREATE ROLE tg_ret_reader;
SELECT toygun.grant_type('ret', 'tg_ret_reader', '{read}');
SET LOCAL ROLE tg_ret_reader;
SELECT throws_ok($$SELECT toygun.maintain()$$, '42501', NULL, 'an ordinary role may not call maintain()');
SELECT throws_ok($$SELECT count(*) FROM toygun.transition_forever$$, '42501', NULL,
                 'nor read a partition of the history directly');
SELECT is((SELECT array_agg(DISTINCT resource_type) FROM toygun.transition), ARRAY['ret'],
          'through toygun.transition it reads the rows of the types it may read');
RESET ROLE;
SELECT is((SELECT count(*) FROM pg_class c WHERE c.relispartition AND c.relnamespace = 'toygun'::regnamespace
             AND c.relacl IS NOT NULL), 0::bigint, 'no partition has a grant');

SELECT * FROM finish();
ROLLBACK;
