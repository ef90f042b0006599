-- Circuit breakers (issue 15): define_task's breaker, validated and stored;
-- the table toygun.breaker (private, not dumped); a tick by hand of a run
-- whose breaker is open is refused, one past its time is the trial, whose
-- success closes the breaker, closes its alarm and releases the held runs;
-- toygun.stats shows the state. The breaker opens on failed ticks that the
-- workers record, and holds runs in a worker: test/scenario/breakers.sh
-- checks those under the real workers. Here the breaker's row is set by
-- hand, as a failure would leave it.
BEGIN;
\ir ../fixtures.sql
SELECT plan(39);

CREATE ROLE tg_b_none;
-- the number of breaker rows role sees
CREATE FUNCTION pg_temp.seen_by(role text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    SELECT count(*) INTO n FROM toygun.breaker;
    RESET ROLE;
    RETURN n;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.seen_by(text) TO PUBLIC;
-- one moves on to two, which stays
CREATE FUNCTION public.brk_handler(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'one' THEN toygun.go('two') ELSE toygun.stay() END
$$;
CREATE ROLE tg_b_reader;

-- ---------------------------------------------------------------------------
-- the table
SELECT columns_are('toygun', 'breaker',
                   ARRAY['resource_type', 'task', 'state', 'recent_failures', 'opened_at', 'open_until',
                         'trial_run', 'failures_at_open', 'alarm_run', 'opens', 'closed_at'],
                   'toygun.breaker has its columns');
SELECT col_is_pk('toygun', 'breaker', ARRAY['resource_type', 'task'], 'one breaker per task type');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'toygun.breaker'::regclass),
          (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'toygun.task'::regclass),
          'its policy is the runs'' (read on the type)');
SELECT ok(NOT 'toygun.breaker'::regclass = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'toygun')::oid[]),
          'pg_dump does not keep it: a breaker''s state is runtime');
SELECT table_privs_are('toygun', 'breaker', 'public', ARRAY['SELECT'], 'PUBLIC may select, and no more');
SELECT col_type_is('toygun', 'task_type', 'breaker', 'jsonb', 'task_type.breaker is jsonb');

-- ---------------------------------------------------------------------------
-- define_task's breaker
SELECT toygun.define_task('dummy', 'brk', '{one,two}', 'brk_handler(toygun.task)',
                          breaker => '{"failures": 3, "within": "1 minute", "cooldown": "300 s"}');
SELECT is((SELECT breaker FROM toygun.task_type WHERE name = 'brk'),
          '{"failures": 3, "within": "00:01:00", "cooldown": "00:05:00"}'::jsonb,
          'define_task stores the breaker, its intervals normalized');
SELECT is((SELECT breaker FROM toygun.task_type WHERE name = 'test'), NULL, 'a type defined without one has none');
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '[]')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '3')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "1 min", "cooldown": "1 min", "x": 1}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 0, "within": "1 min", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": -2, "within": "1 min", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 1.5, "within": "1 min", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": "3", "within": "1 min", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 1001, "within": "1 min", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "0", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "-1 s", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "soon", "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": 60, "cooldown": "1 min"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 3, "within": "1 min", "cooldown": "13 months"}')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', breaker => '{"failures": 1000, "within": "PT1M", "cooldown": "1 year"}')$$, 'ok']
]) $q$, 'a breaker is exactly failures (1 to 1000), within and cooldown (intervals above zero, at most a year)');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)',
                                             breaker => '{"failures": 3, "within": "1 min", "cooldown": "1 min", "retries": 2}')$$,
                 '22023', 'breaker of task type "dummy.bad": unknown key "retries"',
                 'an unknown key is named');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)',
                                             breaker => '{"failures": 3, "within": "1 min"}')$$,
                 '22023', 'breaker of task type "dummy.bad": key "cooldown" is missing',
                 'a missing key is named');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)',
                                             breaker => '{"failures": 3, "within": "whenever", "cooldown": "1 min"}')$$,
                 '22023', 'breaker of task type "dummy.bad": within must be an interval, as text',
                 'a bad interval is named');
SELECT isnt(pg_temp.hint_of($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)',
                                                        breaker => '{"failures": 0, "within": "1 min", "cooldown": "1 min"}')$$),
            NULL, 'with a hint showing a good one');

-- ---------------------------------------------------------------------------
-- a run of a type with a breaker, closed (no row yet): ticked as any other
SELECT toygun.create_resource('dummy') AS r1 \gset
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.create_resource('dummy') AS r3 \gset
SELECT toygun.start_task(:'r1', 'brk') AS t1 \gset
SELECT is((SELECT state FROM toygun.tick_task(:'t1')), 'two', 'with no breaker row (closed), a run is ticked');
SELECT is((SELECT breaker FROM toygun.stats WHERE task = 'brk'), 'closed',
          'toygun.stats shows the breaker closed');
SELECT is((SELECT breaker FROM toygun.stats WHERE task = 'test' LIMIT 1), NULL, 'and NULL for a type without one');

-- open, as the failure that opened it left it (an hour to go), with its alarm
INSERT INTO toygun.breaker (resource_type, task, state, opened_at, open_until, failures_at_open, alarm_run, opens)
VALUES ('dummy', 'brk', 'open', clock_timestamp(), clock_timestamp() + interval '1 hour', 3, :'t1', 1);
INSERT INTO toygun.alarm (id, object_id, object_kind, resource_type, task, kind, message)
VALUES (gen_random_uuid(), :'t1', 'task', 'dummy', 'brk', 'breaker', 'the circuit breaker opened');
SELECT throws_ok($$SELECT toygun.tick_task('$$ || :'t1' || $$')$$, '55000',
                 'the circuit breaker of task type "dummy.brk" is open',
                 'a tick by hand of a run whose breaker is open is refused');
SELECT matches(pg_temp.hint_of($$SELECT toygun.tick_task('$$ || :'t1' || $$')$$), '^Tick task .* after ',
               'its hint says when it may be ticked');
SELECT is((SELECT ROW(state, step)::text FROM toygun.task WHERE id = :'t1'), '(two,2)', 'the run is as it was');
SELECT is(pg_temp.steps(:'t1'), 2::bigint, 'with no history row');
SELECT is((SELECT breaker FROM toygun.stats WHERE task = 'brk'), 'open', 'toygun.stats shows the breaker open');
SELECT is((SELECT state FROM toygun.tick_task(toygun.start_task(:'r3', 'test'))), 'middle',
          'runs of other types go on');

-- runs held by it wait until its open_until; another run waits for something else
SELECT toygun.start_task(:'r2', 'brk') AS t2 \gset
UPDATE toygun.task SET run_at = (SELECT open_until FROM toygun.breaker WHERE task = 'brk') WHERE id = :'t2';
SELECT toygun.start_task(:'r3', 'brk') AS t3 \gset
UPDATE toygun.task SET run_at = clock_timestamp() + interval '2 hours' WHERE id = :'t3';

-- past its open_until: the first run ticked is the trial, the others wait for it
UPDATE toygun.breaker SET open_until = clock_timestamp() - interval '1 s' WHERE task = 'brk';
UPDATE toygun.task SET run_at = (SELECT open_until FROM toygun.breaker WHERE task = 'brk') WHERE id = :'t2';
SAVEPOINT trial;
-- a trial under way is the breaker half-open: the others are refused
UPDATE toygun.breaker SET state = 'half_open', trial_run = :'t2', open_until = clock_timestamp() + interval '1 hour'
 WHERE task = 'brk';
SELECT throws_ok($$SELECT toygun.tick_task('$$ || :'t1' || $$')$$, '55000',
                 'the circuit breaker of task type "dummy.brk" is half_open',
                 'while another run is the trial, a tick by hand is refused');
-- a trial that did not end by its open_until (stopped, say): the next run takes over
UPDATE toygun.breaker SET open_until = clock_timestamp() - interval '1 s' WHERE task = 'brk';
SELECT is((SELECT state FROM toygun.tick_task(:'t1')), 'two', 'past the trial''s time, another run is the trial');
SELECT is((SELECT state FROM toygun.breaker WHERE task = 'brk'), 'closed', 'and its success closes the breaker');
ROLLBACK TO SAVEPOINT trial;

-- a route for the breaker's alarms (notifications): its close is written to the outbox
SELECT toygun.define_channel('b_hook', 'webhook', '{"url": "https://hooks.example.com/b"}');
SELECT toygun.define_route('kind:breaker', 'b_hook');
SELECT is((SELECT state FROM toygun.tick_task(:'t1')), 'two', 'past open_until, a run is ticked: the trial');
SELECT is((SELECT ROW(state, trial_run, open_until)::text FROM toygun.breaker WHERE task = 'brk'),
          '(closed,,)', 'its success closes the breaker');
SELECT ok((SELECT closed_at IS NOT NULL AND opens = 1 FROM toygun.breaker WHERE task = 'brk'),
          'with the time it closed, and how often it opened');
SELECT is((SELECT state || ': ' || closed_reason FROM toygun.alarm WHERE object_id = :'t1' AND kind = 'breaker'),
          'closed: the circuit breaker closed: trial run ' || :'t1' || ' succeeded',
          'and closes its alarm, saying why');
SELECT is((SELECT o.event FROM toygun.outbox o JOIN toygun.alarm a ON a.id = o.alarm_id
            WHERE a.object_id = :'t1' AND a.kind = 'breaker'), 'close',
          'the alarm''s close is routed to the outbox');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t2'),
          'the runs it held are due now');
SELECT ok((SELECT run_at > clock_timestamp() + interval '1 hour' FROM toygun.task WHERE id = :'t3'),
          'a run waiting for something else still waits');
SELECT is((SELECT state FROM toygun.tick_task(:'t2')), 'two', 'closed, runs are ticked');

-- ---------------------------------------------------------------------------
-- private: the rows of the types the role may read
SELECT is(pg_temp.seen_by('tg_b_none'), 0::bigint, 'a role without read sees no breaker');
SELECT toygun.grant_type('dummy', 'tg_b_reader', '{read}');
SELECT is(pg_temp.seen_by('tg_b_reader'), 1::bigint, 'a reader of the type sees its breaker');

-- ---------------------------------------------------------------------------
-- defined again without a breaker: its row goes, and the runs it held are due
UPDATE toygun.breaker SET state = 'open', open_until = clock_timestamp() + interval '1 hour' WHERE task = 'brk';
UPDATE toygun.task SET run_at = (SELECT open_until FROM toygun.breaker WHERE task = 'brk') WHERE id = :'t3';
SELECT toygun.define_task('dummy', 'brk', '{one,two}', 'brk_handler(toygun.task)');
SELECT is((SELECT count(*) FROM toygun.breaker WHERE task = 'brk'), 0::bigint,
          'a type defined again without a breaker loses its row');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t3'), 'and its held runs are due');
SELECT is((SELECT state FROM toygun.tick_task(:'t3')), 'two', 'and ticked');

-- the kind is toygun's own
SELECT throws_ok($$SELECT toygun.raise_alarm('$$ || :'t3' || $$', 'breaker', 'x')$$, '42939', NULL,
                 'raise_alarm refuses kind breaker');

SELECT * FROM finish();
ROLLBACK;
