-- The worked example, run by `bin/toygun demo`: the original framework's
-- `example` resource with its `echo` and `another` tasks.

\set QUIET on
SET client_min_messages = warning;

-- echo: two states; `one` stores a field, `two` reads it back and stops. Its
-- `secret` is an encrypted field: stored sealed, read with toygun.field().
CREATE OR REPLACE FUNCTION public.example_echo(t toygun.task) RETURNS toygun.next
LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'one' THEN
        RETURN toygun.go('two', '{"something": [1, 2, 3]}');
    WHEN 'two' THEN
        RAISE NOTICE 'two %', t.attrs->'something';
        RETURN toygun.stop();
    END CASE;
END $$;

-- another: stores a time, then starts echo on the same resource and keeps
-- its id, then reports on it.
CREATE OR REPLACE FUNCTION public.example_another(t toygun.task) RETURNS toygun.next
LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'one' THEN
        RETURN toygun.go('two', jsonb_build_object('time', clock_timestamp()));
    WHEN 'two' THEN
        RAISE NOTICE 'was %', t.attrs->>'time';
        RETURN toygun.go('three', jsonb_build_object('echo', toygun.start_task(t.resource_id, 'echo')));
    WHEN 'three' THEN
        RAISE NOTICE 'other task %', (t.attrs->>'echo');
        RETURN toygun.stop();
    END CASE;
END $$;

SELECT toygun.define_resource('example', fields => '{nice}');
SELECT toygun.define_task('example', 'echo', '{one,two}', 'public.example_echo(toygun.task)',
                          fields => '{something}', encrypted_fields => '{secret}');
SELECT toygun.define_task('example', 'another', '{one,two,three}', 'public.example_another(toygun.task)',
                          fields => '{time,echo}');

-- Three resources, each running `another`; the first also runs `echo` itself.
CREATE TEMP TABLE demo_resource AS
    SELECT toygun.create_resource('example', jsonb_build_object('nice', n)) AS id, n
      FROM generate_series(1, 3) AS n;
SELECT toygun.start_task(id, 'another') FROM demo_resource;
SELECT toygun.start_task(id, 'echo', '{"secret": "swordfish"}') FROM demo_resource WHERE n = 1;

-- Drive them by hand, one tick of each resource at a time, until every run
-- has stopped (at most 10 rounds).
DO $$
BEGIN
    FOR round IN 1..10 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM toygun.task t JOIN demo_resource r ON r.id = t.resource_id
                               WHERE t.state <> '__stop__');
        PERFORM toygun.tick_resource(id) FROM demo_resource ORDER BY n;
    END LOOP;
END $$;

\set QUIET off
\echo
\echo Runs of the demo:
SELECT r.n AS resource, t.name AS task, t.state, t.step, t.attrs
  FROM toygun.task t JOIN demo_resource r ON r.id = t.resource_id
 ORDER BY r.n, t.seq;

\echo History of each run:
SELECT r.n AS resource, t.name AS task, h.step, h.from_state, h.to_state, h.note
  FROM toygun.task t JOIN demo_resource r ON r.id = t.resource_id,
       LATERAL toygun.history(t.id) h
 ORDER BY r.n, t.seq, h.step;

\echo The encrypted field, as stored and as toygun.field() reads it:
SELECT r.n AS resource, t.name AS task, t.attrs->'secret' AS stored, toygun.field(t, 'secret') AS read
  FROM toygun.task t JOIN demo_resource r ON r.id = t.resource_id
 WHERE t.attrs ? 'secret'
 ORDER BY r.n, t.seq;
