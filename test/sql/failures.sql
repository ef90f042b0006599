-- Failed attempts kept (issue 13): toygun.failure, its shape, and its rows
-- private like the runs' (a SELECT policy on readable_types(), computed once
-- per query). The rows themselves are written by the workers, which
-- test/scenario/failures.sh checks; here they are made by hand.
BEGIN;
\ir ../fixtures.sql
SELECT plan(14);

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
          (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'toygun.task'::regclass),
          'its policy is the runs'' policy');
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
SELECT is(pg_temp.seen_by('tg_f_none'), 1::bigint, 'read granted to public opens a type''s rows to all');
SELECT toygun.revoke_type('dummy', 'tg_f_reader');
SELECT is(pg_temp.seen_by('tg_f_reader'), 1::bigint, 'revoking read closes them again');

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

SELECT * FROM finish();
ROLLBACK;
