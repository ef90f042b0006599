-- Task runs: the rules of README.md's Concepts section, carried over from the
-- original framework's specs.
BEGIN;
\ir ../fixtures.sql
SELECT plan(48);

SELECT toygun.create_resource('dummy') AS r \gset

-- a new owner has no runs
SELECT is(toygun.is_running(:'r', 'test'), false, 'a new resource is not running test');
SELECT ok(toygun.task_for(:'r', 'test') IS NULL, 'a new resource has no run of test');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r'), 0::bigint,
          'a new resource has no task rows');

-- start
SELECT toygun.start_task(:'r', 'test', '{"a": "1"}') AS t1 \gset
SELECT is((SELECT state FROM toygun.task WHERE id = :'t1'), '__new__', 'a started run is in __new__');
SELECT is((SELECT attrs FROM toygun.task WHERE id = :'t1'), '{"a": "1"}'::jsonb,
          'a started run has attrs equal to its args');
SELECT is((SELECT step FROM toygun.task WHERE id = :'t1'), 0::bigint, 'a started run is at step 0');
SELECT is(pg_temp.steps(:'t1'), 0::bigint, 'starting writes no history');
SELECT is(toygun.is_running(:'r', 'test'), true, 'a started run is running');
SELECT is((toygun.task_for(:'r', 'test')).id, :'t1'::uuid, 'task_for returns the started run');
SELECT is((toygun.task_for(:'r', 'test')).resource_id, :'r'::uuid, 'a run knows its resource');

-- a second start while live returns the same run and ignores new args
SELECT is(toygun.start_task(:'r', 'test', '{"b": "2"}'), :'t1'::uuid,
          'a second start while live returns the same run');
SELECT is((SELECT attrs FROM toygun.task WHERE id = :'t1'), '{"a": "1"}'::jsonb,
          'a second start ignores its args');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r'), 1::bigint,
          'a second start creates no row');

-- three ticks of a three-state task
SELECT is((toygun.tick_task(:'t1')).state, 'middle',
          'the first tick enters the first state and runs it');
SELECT is((toygun.tick_task(:'t1')).state, 'end', 'the second tick moves to end');
SELECT is((toygun.tick_task(:'t1')).state, '__stop__', 'the third tick stops');
SELECT results_eq(
    $$ SELECT step, from_state, to_state FROM toygun.history('$$ || :'t1' || $$') $$,
    $$ VALUES (0::bigint, '__new__', 'beginning'), (1, 'beginning', 'middle'),
              (2, 'middle', 'end'), (3, 'end', '__stop__') $$,
    'history records each transition with gapless steps from 0');
SELECT is((SELECT step FROM toygun.task WHERE id = :'t1'), 4::bigint, 'step counts transitions made');
-- the test helper (README's "Testing your handlers") ticks the same way
SELECT toygun.start_task(toygun.create_resource('dummy'), 'test') AS tt \gset
SELECT is((toygun.test_tick_until(:'tt')).state, '__stop__', 'test_tick_until ticks a run to __stop__');
SELECT results_eq(
    format('SELECT step, from_state, to_state, note FROM toygun.history(%L)', :'tt'),
    format('SELECT step, from_state, to_state, note FROM toygun.history(%L)', :'t1'),
    'through the same transitions as three tick_task calls');
SELECT is(toygun.is_running(:'r', 'test'), false, 'a stopped run is not running');

-- ticking a stopped run changes nothing
SELECT (SELECT updated_at FROM toygun.task WHERE id = :'t1') AS stopped_at \gset
SELECT is((toygun.tick_task(:'t1')).state, '__stop__', 'ticking a stopped run leaves it stopped');
SELECT is(pg_temp.steps(:'t1'), 4::bigint, 'ticking a stopped run writes no history');
SELECT is((SELECT updated_at FROM toygun.task WHERE id = :'t1'), :'stopped_at'::timestamptz,
          'ticking a stopped run does not touch the row');

-- a start after stop creates a new run with fresh attrs
SELECT toygun.start_task(:'r', 'test', '{"b": "1"}') AS t2 \gset
SELECT isnt(:'t2'::uuid, :'t1'::uuid, 'a start after stop creates a new run');
SELECT is((SELECT attrs FROM toygun.task WHERE id = :'t2'), '{"b": "1"}'::jsonb,
          'the new run has fresh attrs, nothing carried over');
SELECT is((toygun.task_for(:'r', 'test')).id, :'t2'::uuid,
          'task_for returns the latest run, even within one transaction');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r' AND name = 'test'), 2::bigint,
          'each start of a stopped task is a new row');

-- stop is idempotent
SELECT is((toygun.stop_task(:'t2')).state, '__stop__', 'stop_task stops a run');
SELECT is(pg_temp.steps(:'t2'), 1::bigint, 'stopping records one transition');
SELECT is((toygun.stop_task(:'t2')).state, '__stop__', 'stopping again is allowed');
SELECT is(pg_temp.steps(:'t2'), 1::bigint, 'stopping again records nothing');

-- panic
SELECT toygun.start_task(:'r', 'test') AS t3 \gset
SELECT is((toygun.panic_task(:'t3', 'disk on fire')).state, '__panic__', 'panic_task panics a new run');
SELECT is((SELECT attrs->>'panic_message' FROM toygun.task WHERE id = :'t3'), 'disk on fire',
          'panic records panic_message');
SELECT is((SELECT note FROM toygun.transition WHERE object_id = :'t3' AND step = 0), 'disk on fire',
          'the panic transition notes the message');
SELECT is(toygun.is_running(:'r', 'test'), true, 'a panicked run counts as running');
SELECT is(toygun.start_task(:'r', 'test'), :'t3'::uuid, 'a panicked run blocks a new start');
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t3'), '55000',
                 format('task %s is panicked', :'t3'), 'ticking a panicked run is refused');
SELECT ok((SELECT run_at IS NULL FROM toygun.task WHERE id = :'t3'), 'a panicked run is not due');
SELECT is((toygun.transition_task(:'t3', 'middle')).state, 'middle', 'a person can move a panicked run');
SELECT ok((SELECT run_at IS NOT NULL FROM toygun.task WHERE id = :'t3'), 'a moved run is due again');
SELECT is((toygun.panic_task(:'t3', 'again')).state, '__panic__', 'panic is allowed from any state');
SELECT is((toygun.stop_task(:'t3')).state, '__stop__', 'a panicked run can be stopped');

-- a panicked run never blocks the other runs of its resource
SELECT toygun.start_task(:'r', 'test') AS t4 \gset
SELECT toygun.start_task(:'r', 'another') AS a4 \gset
SELECT toygun.panic_task(:'t4', 'stuck');
SELECT is((toygun.tick_resource(:'r')).state, 'starting', 'tick_resource ticks past a panicked run');
SELECT is((SELECT state FROM toygun.task WHERE id = :'a4'), 'b',
          'the other run of a resource with a panicked run is ticked');

-- attrs are merged by transitions
SELECT is((toygun.transition_task(:'a4', 'a', '{"x": 1}')).attrs, '{"x": 1}'::jsonb,
          'transition_task merges attrs');
SELECT is((toygun.transition_task(:'a4', 'b', '{"y": 2}')).attrs, '{"x": 1, "y": 2}'::jsonb,
          'attrs accumulate across transitions');
SELECT is((toygun.transition_task(:'a4', 'a', '{"x": 3}')).attrs, '{"x": 3, "y": 2}'::jsonb,
          'a transition overwrites keys it names');

SELECT * FROM finish();
ROLLBACK;
