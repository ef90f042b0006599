-- toygun.distribute() (issue 19) where Citus is not installed: a clear
-- error, nothing changed; not callable by PUBLIC. On a Citus cluster it is
-- proven by test/citus/cluster.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(5);

SELECT throws_ok('SELECT toygun.distribute()', '0A000',
                 'toygun.distribute() needs Citus in this database',
                 'without Citus: 0A000, naming what is missing');
SELECT is((SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'task_pkey'
            AND conrelid = 'toygun.task'::regclass),
          'PRIMARY KEY (id)', 'the runs'' key is unchanged');
SELECT is((SELECT count(*)::int FROM pg_policies WHERE schemaname = 'toygun' AND tablename IN ('resource', 'task')
            AND qual LIKE '%SELECT toygun.readable_types()%'),
          2, 'the policies are unchanged (readable_types() once per query)');
SELECT ok(NOT has_function_privilege('public', 'toygun.distribute()', 'EXECUTE'), 'PUBLIC may not call it');
CREATE ROLE tg_dist_nobody;
SET LOCAL ROLE tg_dist_nobody;
SELECT throws_ok('SELECT toygun.distribute()', '42501', NULL, 'another role: permission denied');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
