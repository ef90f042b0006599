-- Hostile input: the exact text of the errors and warnings it meets.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS toygun;
RESET client_min_messages;
-- error context lines would name random ids
\set SHOW_CONTEXT never
CREATE FUNCTION walk(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.go('two') $$;
CREATE FUNCTION from_setting(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT current_setting('hostile.next')::toygun.next $$;
SELECT toygun.define_resource('db', fields => '{token}');
SELECT toygun.define_task('db', 'walk', '{one,two}', 'walk(toygun.task)');
SELECT toygun.define_task('db', 'next', '{one,two}', 'from_setting(toygun.task)');
SELECT toygun.create_resource('db') AS r \gset
SELECT toygun.start_task(:'r', 'walk') AS t \gset

-- names
SELECT toygun.define_resource(E'bell\u0085');
SELECT toygun.define_resource('x', (SELECT array_agg('s' || i) FROM generate_series(1, 1001) i));
SELECT toygun.define_task('db', 'x', '{one}', 'walk(toygun.task)',
                          fields => (SELECT array_agg('f' || i) FROM generate_series(1, 5000) i));
SELECT toygun.transition_task(:'t', repeat('s', 100));
SELECT toygun.transition_task(:'t', E'one\x1b[2J');
SELECT toygun.transition_task(:'t', 'one', expected_state => '');

-- waits
SELECT toygun.stay(wait => '1000000 years');
SELECT toygun.stay(wait => '9223372036854775807 microseconds');
SELECT (toygun.stay(wait => '1000 years')).wait AS accepted;
SELECT toygun.start_task(:'r', 'next') AS n \gset
SELECT set_config('hostile.next', '(stay,,,"1000000 years",)', false) IS NOT NULL AS set;
SELECT toygun.tick_task(:'n');
SELECT set_config('hostile.next', format('(%s,,,,)', repeat('k', 200)), false) IS NOT NULL AS set;
SELECT toygun.tick_task(:'n');
SELECT state, step FROM toygun.task WHERE id = :'n';

-- a handler dropped and created again as something else
-- (toygun_guard_drop refuses the drops; a superuser's replica session skips it)
SET session_replication_role = replica;
DROP FUNCTION walk(toygun.task);
CREATE FUNCTION walk(t toygun.task) RETURNS bigint LANGUAGE sql AS $$ SELECT 42::bigint $$;
SELECT toygun.tick_task(:'t');
DROP FUNCTION walk(toygun.task);
CREATE PROCEDURE walk(t toygun.task) LANGUAGE sql AS $$ SELECT 1 $$;
SELECT toygun.tick_task(:'t');
DROP PROCEDURE walk(toygun.task);
CREATE FUNCTION walk(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.go('two') $$;
RESET session_replication_role;
SELECT (toygun.tick_task(:'t')).state;

-- a temporary function as a handler (its schema's name varies: show the rest)
CREATE FUNCTION pg_temp.fleeting(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
DO $$
DECLARE
    c text;
    d text;
BEGIN
    PERFORM toygun.define_task('db', 'fleeting', '{one}', 'pg_temp.fleeting(toygun.task)');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
    RAISE NOTICE '% | %', c, d;
END $$;

-- a deep value decrypted with less stack than it needs
SELECT toygun.encrypt((repeat('[', 10000) || repeat(']', 10000))::jsonb) AS deep \gset
SET max_stack_depth = '1MB';
SELECT toygun.decrypt(:'deep') IS NOT NULL;
RESET max_stack_depth;
SELECT toygun.decrypt(:'deep') IS NOT NULL AS decrypts;

-- rotation past values that do not decrypt: ten warnings, then a count
SELECT count(toygun.create_resource('db', jsonb_build_object('token', jsonb_build_object('$secret', 'tg1:bogus' || i))))
  FROM generate_series(1, 12) i;
SELECT toygun.define_resource('db', encrypted_fields => '{token}');
SELECT toygun.rotate_secrets();

SET client_min_messages = warning;
DROP EXTENSION toygun CASCADE;
