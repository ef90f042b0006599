-- Fixtures for the pgTAP tests, after the original framework's specs: a
-- resource type `dummy` with a three-state task `test` and a two-state task
-- `another`. Included by each test file, inside its rolled-back transaction.
\set ECHO none
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_STOP true

CREATE FUNCTION public.dummy_test(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'beginning' THEN RETURN toygun.go('middle');
    WHEN 'middle' THEN RETURN toygun.go('end');
    WHEN 'end' THEN RETURN toygun.stop();
    END CASE;
END $$;

CREATE FUNCTION public.dummy_another(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'a' THEN RETURN toygun.go('b');
    WHEN 'b' THEN RETURN toygun.stop();
    END CASE;
END $$;

SELECT toygun.define_resource('dummy');
SELECT toygun.define_task('dummy', 'test', '{beginning,middle,end}', 'dummy_test(toygun.task)');
SELECT toygun.define_task('dummy', 'another', '{a,b}', 'dummy_another(toygun.task)');

-- The SQLSTATE a statement fails with, or 'ok'.
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- The cases (query, SQLSTATE or 'ok') of a table-driven check that end otherwise.
CREATE FUNCTION pg_temp.mismatches(cases text[]) RETURNS TABLE (q text, want text, got text)
    LANGUAGE sql AS $$
    WITH c AS MATERIALIZED (
        SELECT cases[i][1] AS q, cases[i][2] AS want, pg_temp.sqlstate_of(cases[i][1]) AS got
          FROM generate_subscripts(cases, 1) i)
    SELECT left(c.q, 120), c.want, c.got FROM c WHERE c.got IS DISTINCT FROM c.want
$$;
-- the detail of the error a statement fails with, or NULL
CREATE FUNCTION pg_temp.detail_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;
-- the number of history rows of an object
CREATE FUNCTION pg_temp.steps(id uuid) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM toygun.transition WHERE object_id = id $$;
-- a statement run as a role: ok, or its SQLSTATE and message
CREATE FUNCTION pg_temp.as_role(role text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET ROLE %I', role);
    EXECUTE q;
    RESET ROLE;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.as_role(text, text) TO PUBLIC;
-- the hint of the error a statement raises, or NULL
CREATE FUNCTION pg_temp.hint_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
