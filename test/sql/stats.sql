-- toygun.stats: live, due, panicked and failing objects per type and state.
BEGIN;
\ir ../fixtures.sql
SELECT plan(6);

SELECT toygun.create_resource('dummy') AS r1 \gset
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.start_task(:'r1', 'test') AS t1 \gset
SELECT toygun.start_task(:'r2', 'test') AS t2 \gset
SELECT toygun.start_task(:'r1', 'another') AS a1 \gset
SELECT toygun.panic_task(:'t2', 'broken');
SELECT toygun.stop_task(:'a1');

SELECT results_eq(
    $$ SELECT kind, resource_type, task, state, live, due, panicked FROM toygun.stats
        WHERE resource_type = 'dummy' ORDER BY kind, task, state $$,
    $$ VALUES ('resource', 'dummy', NULL, '__new__', 2::bigint, 2::bigint, 0::bigint),
              ('task', 'dummy', 'test', '__new__', 1, 1, 0),
              ('task', 'dummy', 'test', '__panic__', 1, 0, 1) $$,
    'stats counts live objects per type and state, leaving out stopped ones');
SELECT ok((SELECT oldest_due_age >= interval '0' FROM toygun.stats WHERE kind = 'task' AND state = '__new__'),
          'stats gives the age of the oldest due run');
SELECT ok((SELECT oldest_due_age IS NULL FROM toygun.stats WHERE state = '__panic__'),
          'nothing panicked is due');

-- a failing run: attempts recorded by the worker, simulated here
UPDATE toygun.task SET attempts = 2, last_error = 'boom' WHERE id = :'t1';
SELECT is((SELECT failing FROM toygun.stats WHERE kind = 'task' AND state = '__new__'), 1::bigint,
          'stats counts failing runs');
SELECT is((SELECT count(*) FROM toygun.stats WHERE resource_type = 'dummy' AND task = 'another'), 0::bigint,
          'a stopped run is not in stats');

SET ROLE pg_monitor;
SELECT lives_ok('SELECT * FROM toygun.stats', 'any role can read stats');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
