-- Priorities (issue 17, flow control, first slice): define_task's default
-- priority and start_task's, their range, what a run stores, and the claim
-- indexes each run is in (the claims' order itself is the workers': a
-- scenario).
BEGIN;
\ir ../fixtures.sql
SELECT plan(21);

-- the range: define_task and start_task
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'prio', '{a}', 'dummy_another(toygun.task)', priority => 101)$$,
                 '22023', 'priority of task type "dummy.prio" must be between -100 and 100, not 101',
                 'define_task refuses a priority above 100 (22023)');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_task('dummy', 'prio', '{a}', 'dummy_another(toygun.task)', priority => -101)$$),
          'Higher priorities are claimed first; leave priority out (NULL) for 0.',
          'and below -100, with a hint');
SELECT is((SELECT count(*) FROM toygun.task_type WHERE name = 'prio'), 0::bigint, 'and defines nothing');

SELECT toygun.create_resource('dummy') AS r \gset
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'test', priority => 101)$$, :'r'),
                 '22023', 'priority must be between -100 and 100, not 101',
                 'start_task refuses a priority above 100 (22023)');
SELECT is(pg_temp.hint_of(format($$SELECT toygun.start_task(%L, 'test', priority => -101)$$, :'r')),
          'Higher priorities are claimed first; leave priority out (NULL) for the task type''s default.',
          'and below -100, with a hint');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r'), 0::bigint, 'and starts nothing');

-- what a run stores: the start's priority, or its type's default
SELECT is((SELECT priority FROM toygun.task_type WHERE resource_type = 'dummy' AND name = 'test'), 0::smallint,
          'a type defined without priority has 0');
SELECT toygun.start_task(:'r', 'test') AS t0 \gset
SELECT is((SELECT priority FROM toygun.task WHERE id = :'t0'), 0::smallint, 'and its runs 0');
SELECT toygun.stop_task(:'t0') IS NOT NULL AS stopped \gset
SELECT toygun.start_task(:'r', 'test', priority => 7) AS t7 \gset
SELECT is((SELECT priority FROM toygun.task WHERE id = :'t7'), 7::smallint, 'a start''s priority is the run''s');
SELECT is((toygun.task_for(:'r', 'test')).priority, 7::smallint, 'task_for returns it');
SELECT is(toygun.start_task(:'r', 'test', priority => -5), :'t7'::uuid, 'a start that finds the live run returns it');
SELECT is((SELECT priority FROM toygun.task WHERE id = :'t7'), 7::smallint,
          'a start that returns the live run ignores its priority');

SELECT lives_ok($$SELECT toygun.define_task('dummy', 'another', '{a,b}', 'dummy_another(toygun.task)', priority => 3)$$,
                'define_task takes a default priority');
SELECT is((SELECT priority FROM toygun.task_type WHERE resource_type = 'dummy' AND name = 'another'), 3::smallint,
          'stored in task_type.priority');
SELECT toygun.start_task(:'r', 'another') AS a3 \gset
SELECT is((SELECT priority FROM toygun.task WHERE id = :'a3'), 3::smallint, 'a start without priority takes the type''s');
SELECT toygun.stop_task(:'a3') IS NOT NULL AS stopped \gset
SELECT toygun.start_task(:'r', 'another', priority => -2) AS a2 \gset
SELECT is((SELECT priority FROM toygun.task WHERE id = :'a2'), -2::smallint, 'a start''s own priority wins over the type''s, below 0 too');
SELECT toygun.define_task('dummy', 'another', '{a,b}', 'dummy_another(toygun.task)', priority => 9) IS NULL AS redefined \gset
SELECT is((SELECT priority FROM toygun.task WHERE resource_id = :'r' AND name = 'another' AND state <> '__stop__'),
          -2::smallint, 'a new default leaves the live runs theirs');
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.start_task(:'r2', 'another') AS a9 \gset
SELECT is((SELECT priority FROM toygun.task WHERE id = :'a9'), 9::smallint,
          'and applies to later starts');
SELECT toygun.define_task('dummy', 'another', '{a,b}', 'dummy_another(toygun.task)') IS NULL AS redefined \gset
SELECT is((SELECT priority FROM toygun.task_type WHERE resource_type = 'dummy' AND name = 'another'), 0::smallint,
          'a redefinition that leaves priority out sets 0 again');

-- starts by a schedule take the type's default
SELECT toygun.define_task('dummy', 'test', '{beginning,middle,end}', 'dummy_test(toygun.task)', priority => 4) IS NULL AS redefined \gset
SELECT toygun.start_every('dummy', 'test', '0 3 * * *') IS NOT NULL AS scheduled \gset
SELECT toygun.create_resource('dummy') AS r3 \gset
SELECT cmp_ok(toygun.run_schedule('dummy', 'test', '2024-05-01 03:00:30+00'), '>=', 1::bigint, 'a firing starts runs');
SELECT is((SELECT array_agg(priority) FROM toygun.task WHERE resource_id = :'r3' AND name = 'test'), '{4}'::smallint[],
          'at the type''s default priority');

-- the claims' plans, on task_due_idx and task_lane_idx: claim_plans.sql

SELECT * FROM finish();
ROLLBACK;
