-- Transitions by hand: targets, desynchronisation, rewind, history.
BEGIN;
\ir ../fixtures.sql
SELECT plan(27);

SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test') AS t \gset

-- a transition to an undeclared state fails with nothing written
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, 'missing')$$, :'t'), '22023',
                 'state "missing" is not declared by task type "dummy.test"',
                 'a transition to an undeclared state is refused');
SELECT is((SELECT state || '/' || step FROM toygun.task WHERE id = :'t'), '__new__/0',
          'a refused transition leaves state and step alone');
SELECT is(pg_temp.steps(:'t'), 0::bigint, 'a refused transition writes no history');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, '__new__')$$, :'t'), '42939',
                 'state "__new__" cannot be entered by a transition',
                 '__new__ cannot be entered');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, '__other__')$$, :'t'), '42939',
                 'state "__other__" cannot be entered by a transition',
                 'reserved names cannot be entered');

-- desynchronized
SELECT is((toygun.transition_task(:'t', 'beginning')).state, 'beginning', 'transition_task moves a run');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, '__stop__', expected_state => 'other')$$, :'t'),
                 '40001', format('task %s is desynchronized', :'t'),
                 'a transition expecting another state is refused as desynchronized');
SELECT is((SELECT state FROM toygun.task WHERE id = :'t'), 'beginning', 'a desynchronized transition changes nothing');
SELECT is((toygun.transition_task(:'t', 'middle', expected_state => 'beginning')).state, 'middle',
          'a transition expecting the current state goes through');

-- rewind
SELECT is((toygun.rewind_task(:'t', 1)).state, 'beginning', 'rewind 1 after beginning -> middle returns to beginning');
SELECT results_eq(format('SELECT from_state, to_state, note FROM toygun.history(%L) WHERE step = 2', :'t'),
                  $$ VALUES ('middle', 'beginning', 'rewind_task(1)') $$,
                  'a rewind is a new history row');
SELECT toygun.start_task(:'r', 'another') AS a \gset
SELECT toygun.transition_task(:'a', 'a');
SELECT toygun.transition_task(:'a', 'b');
SELECT toygun.stop_task(:'t');
SELECT toygun.start_task(:'r', 'test') AS t2 \gset
SELECT toygun.transition_task(:'t2', 'beginning');
SELECT toygun.transition_task(:'t2', 'middle');
SELECT toygun.transition_task(:'t2', 'end');
SELECT is((toygun.rewind_task(:'t2', 2)).state, 'beginning',
          'rewind 2 after beginning -> middle -> end returns to beginning');
SELECT is((SELECT step FROM toygun.task WHERE id = :'t2'), 4::bigint, 'rewinding appends, never deletes');
SELECT is((toygun.rewind_task(:'t2', 1000000)).state, 'beginning', 'rewind is clamped to the first state');
SELECT results_eq(format('SELECT array_agg(step ORDER BY step) FROM toygun.history(%L)', :'t2'),
                  $$ VALUES ('{0,1,2,3,4}'::bigint[]) $$, 'history steps are gapless');
SELECT throws_ok(format('SELECT toygun.rewind_task(%L, 0)', :'t2'), '22023', 'n must be at least 1',
                 'rewind by less than 1 is refused');
SELECT toygun.stop_task(:'a');
SELECT toygun.start_task(:'r', 'another') AS a2 \gset
SELECT toygun.transition_task(:'a2', 'a');
SELECT is((SELECT state FROM toygun.rewind_task(:'a2')), '__new__',
          'a run with one transition rewinds to __new__, to be ticked from the start');

-- a stopped run comes back only if no other run is live
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, 'a')$$, :'a'), '23505',
                 format('task "another" on resource %s already has a live run', :'r'),
                 'a stopped run cannot come back while another run is live');
SELECT toygun.stop_task(:'a2');
SELECT is((toygun.transition_task(:'a', 'a')).state, 'a', 'a stopped run can come back when no other run is live');

-- transitions of resources
SELECT is((toygun.transition_resource(:'r', 'running')).state, 'running', 'transition_resource moves a resource');
SELECT throws_ok(format($$SELECT toygun.transition_resource(%L, 'flying')$$, :'r'), '22023',
                 'state "flying" is not declared by resource type "dummy"',
                 'a resource cannot enter an undeclared state');
SELECT throws_ok(format($$SELECT toygun.transition_resource(%L, 'stopping', expected_state => 'starting')$$, :'r'),
                 '40001', format('resource %s is desynchronized', :'r'),
                 'a resource transition expecting another state is refused');
SELECT is((toygun.stop_resource(:'r')).state, '__stop__', 'stop_resource stops a resource');
SELECT is((toygun.stop_resource(:'r')).step, 2::bigint, 'stop_resource is idempotent');
SELECT ok((SELECT run_at IS NULL FROM toygun.task WHERE id = :'a'), 'a stopped resource parks its live runs');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'test')$$, :'r'), '55000',
                 format('resource %s is stopped', :'r'), 'nothing starts on a stopped resource');
SELECT toygun.transition_resource(:'r', 'running');
SELECT ok((SELECT run_at IS NOT NULL FROM toygun.task WHERE id = :'a'), 'a resource coming back re-arms its runs');

SELECT * FROM finish();
ROLLBACK;
