-- The exact text of toygun's errors: message, detail and hint.
CREATE EXTENSION toygun;
CREATE FUNCTION h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
CREATE FUNCTION bad(t toygun.task) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION boom(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'boom in %', t.state; END $$;
CREATE FUNCTION lost(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.go('nowhere') $$;
SELECT toygun.define_resource('db', fields => '{size}');
SELECT toygun.define_task('db', 'backup', '{dump,upload}', 'h(toygun.task)');
SELECT toygun.define_task('db', 'explode', '{one}', 'boom(toygun.task)');
SELECT toygun.define_task('db', 'lost', '{one}', 'lost(toygun.task)');

-- definitions
SELECT toygun.define_resource(NULL);
SELECT toygun.define_resource('');
SELECT toygun.define_resource(repeat('n', 70));
SELECT toygun.define_resource('x', '{}');
SELECT toygun.define_resource('x', '{up,down,up}');
SELECT toygun.define_resource('x', '{up,__panic__}');
SELECT toygun.define_task('nope', 'backup', '{a}', 'h(toygun.task)');
SELECT toygun.define_task('db', 'backup', '{a}', 'bad(toygun.task)');

-- objects
SELECT toygun.create_resource('nope');
SELECT toygun.create_resource('db', '[]');
SELECT toygun.create_resource('db', '{"colour": "red"}');
SELECT toygun.create_resource('db', parent => '00000000-0000-0000-0000-00000000000a');
SELECT toygun.start_task('00000000-0000-0000-0000-00000000000b', 'backup');
SELECT toygun.create_resource('db') AS r \gset
SELECT toygun.start_task(:'r', 'restore');
SELECT toygun.start_task(:'r', 'backup', '7');

-- transitions and outcomes
SELECT toygun.start_task(:'r', 'backup') AS t \gset
SELECT toygun.transition_task(:'t', 'upload_later') IS NULL;
SELECT toygun.transition_task(:'t', '__new__') IS NULL;
SELECT toygun.go(NULL);
SELECT toygun.stay(wait => '-5 minutes');
SELECT toygun.panic(NULL);

-- ticks that fail
DO $$
DECLARE r uuid := toygun.create_resource('db');
BEGIN
  PERFORM toygun.tick_task(toygun.start_task(r, 'explode'));
EXCEPTION WHEN raise_exception THEN
  RAISE NOTICE 'caught: %', SQLERRM;
END $$;
DO $$
DECLARE r uuid := toygun.create_resource('db');
BEGIN
  PERFORM toygun.tick_task(toygun.start_task(r, 'lost'));
EXCEPTION WHEN invalid_parameter_value THEN
  RAISE NOTICE 'caught: %', SQLERRM;
END $$;

SET client_min_messages = warning;
DROP EXTENSION toygun CASCADE;
