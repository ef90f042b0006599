-- Failed attempts kept (issue 13): toygun.failure, its shape, and its rows
-- private like the runs' (a SELECT policy on readable_types(), computed once
-- per query). The rows themselves are written by the workers, which
-- test/scenario/failures.sh checks; here they are made by hand. And the
-- retry policy per task type as define_task stores and checks it (the
-- scenario checks that the workers follow it).
BEGIN;
\ir ../fixtures.sql
SELECT plan(27);

CREATE ROLE tg_f_none;
CREATE ROLE tg_f_reader;
CREATE ROLE tg_f_owner;
-- the number of failure rows role sees
CREATE FUNCTION pg_temp.seen_by(role text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    SELECT count(*) INTO n FROM toygun.failure;
    RESET ROLE;
    RETURN n;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.seen_by(text) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- the table
SELECT columns_are('toygun', 'failure',
                   ARRAY['object_id', 'failure_no', 'resource_type', 'attempt', 'at', 'duration', 'error',
                         'worker_pid'],
                   'toygun.failure has its columns');
SELECT col_is_pk('toygun', 'failure', ARRAY['object_id', 'failure_no'],
                 'a row is an object''s failure, numbered (attempt restarts, the number does not)');
SELECT ok((SELECT relrowsecurity AND NOT relforcerowsecurity FROM pg_class WHERE oid = 'toygun.failure'::regclass),
          'row-level security is enabled, not forced (the workers write it directly)');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'toygun.failure'::regclass),
          (SELECT replace(pg_get_expr(polqual, polrelid), 'readable_types', 'error_readable_types')
             FROM pg_policy WHERE polrelid = 'toygun.task'::regclass),
          'its policy is the runs'' policy, without grants to public (error_readable_types)');
SELECT ok('toygun.failure'::regclass = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'toygun')::oid[]),
          'pg_dump keeps its rows');
SELECT table_privs_are('toygun', 'failure', 'public', ARRAY['SELECT'], 'PUBLIC may select, and no more');

-- ---------------------------------------------------------------------------
-- rows of two types, one owned by another role
SET ROLE tg_f_owner;
SELECT toygun.define_resource('f_other');
RESET ROLE;
INSERT INTO toygun.failure (object_id, failure_no, resource_type, attempt, at, duration, error, worker_pid)
VALUES (gen_random_uuid(), 1, 'dummy', 1, now(), '1 s', 'dummy failed', 4242),
       (gen_random_uuid(), 1, 'f_other', 1, now(), NULL, 'other failed', 4243);

SELECT is(pg_temp.seen_by('tg_f_none'), 0::bigint, 'a role without right read sees no failure rows');
SELECT is(pg_temp.seen_by('tg_f_owner'), 1::bigint, 'a type''s owner sees its type''s rows, and only those');
SELECT toygun.grant_type('dummy', 'tg_f_reader', '{read}');
SELECT is(pg_temp.seen_by('tg_f_reader'), 1::bigint, 'a role granted read sees the rows of that type');
SET LOCAL ROLE tg_f_reader;
SELECT is((SELECT error FROM toygun.failure), 'dummy failed', 'with their error text');
RESET ROLE;
SELECT is(pg_temp.seen_by('tg_f_none'), 0::bigint, 'the unrelated role still sees none');
SET ROLE tg_f_owner;
SELECT toygun.grant_type('f_other', 'public', '{read}');
RESET ROLE;
SELECT is(pg_temp.seen_by('tg_f_none'), 0::bigint,
          'read granted to public does not open a type''s failures (error texts) to all');
SELECT toygun.revoke_type('dummy', 'tg_f_reader');
SELECT is(pg_temp.seen_by('tg_f_reader'), 0::bigint, 'revoking read closes them again');

-- the filter is an InitPlan: readable_types() once per query, not per row
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    l text;
BEGIN
    SET LOCAL ROLE tg_f_reader;
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP RETURN NEXT l; END LOOP;
    RESET ROLE;
END $$;
SELECT ok((SELECT string_agg(l, E'\n') FROM pg_temp.plan_of('SELECT count(*) FROM toygun.failure') p(l))
          ~ 'InitPlan', 'the row filter is computed once per query (an InitPlan)');

-- ---------------------------------------------------------------------------
-- the retry policy per task type
SELECT toygun.define_task('dummy', 'policy', '{a}', 'dummy_another(toygun.task)',
                          max_attempts => 3, retry_backoff => '30 s', tick_timeout => '2 min');
SELECT is((SELECT ROW(max_attempts, retry_backoff, tick_timeout)::text FROM toygun.task_type WHERE name = 'policy'),
          '(3,00:00:30,00:02:00)', 'define_task stores a task type''s max_attempts, retry_backoff and tick_timeout');
SELECT is((SELECT ROW(max_attempts, retry_backoff, tick_timeout)::text FROM toygun.task_type WHERE name = 'test'),
          '(,,)', 'a type defined without them has NULLs: the settings apply');
SELECT toygun.define_task('dummy', 'policy', '{a}', 'dummy_another(toygun.task)', max_attempts => 5);
SELECT is((SELECT ROW(max_attempts, retry_backoff, tick_timeout)::text FROM toygun.task_type WHERE name = 'policy'),
          '(5,,)', 'a redefinition replaces the policy: what it leaves out is NULL again, as fields are');
SELECT lives_ok($$SELECT toygun.define_task('dummy', 'edges', '{a}', 'dummy_another(toygun.task)',
                                            max_attempts => 1, retry_backoff => '0', tick_timeout => '1 ms')$$,
                'the smallest values are taken: 1 attempt, no backoff, 1 ms');
SELECT lives_ok($$SELECT toygun.define_task('dummy', 'edges', '{a}', 'dummy_another(toygun.task)',
                                            max_attempts => 1000000, retry_backoff => '1 hour',
                                            tick_timeout => '2147483647 ms')$$,
                'and the largest: those of the settings');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', max_attempts => 0)$$,
                 '22023', 'max_attempts of task type "dummy.bad" must be between 1 and 1000000',
                 'max_attempts below 1 is refused, naming the parameter and the type');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', max_attempts => 1000001)$$,
                 '22023', 'max_attempts of task type "dummy.bad" must be between 1 and 1000000',
                 'and above the setting''s bound');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', retry_backoff => '-1 s')$$,
                 '22023', 'retry_backoff of task type "dummy.bad" must be between 0 and 1 hour',
                 'a negative retry_backoff is refused');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', retry_backoff => '1 day')$$,
                 '22023', 'retry_backoff of task type "dummy.bad" must be between 0 and 1 hour',
                 'and one over an hour');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', tick_timeout => '0')$$,
                 '22023', 'tick_timeout of task type "dummy.bad" must be between 1 ms and 2147483647 ms (about 24 days)',
                 'a tick_timeout of 0 is refused (NULL is the setting, and no type goes without a limit)');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)', tick_timeout => '1 month')$$,
                 '22023', 'tick_timeout of task type "dummy.bad" must be between 1 ms and 2147483647 ms (about 24 days)',
                 'and one over about 24 days');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_task('dummy', 'bad', '{a}', 'dummy_another(toygun.task)',
                                                      retry_backoff => '2 hours')$$),
          'Give a value in that range, or leave retry_backoff out (NULL) to use toygun.retry_backoff.',
          'the hint says what to give, and names the setting NULL stands for');
SELECT is((SELECT count(*) FROM toygun.task_type WHERE name = 'bad'), 0::bigint, 'a refused definition writes nothing');

SELECT * FROM finish();
ROLLBACK;
