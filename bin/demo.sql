-- The worked example, run by `bin/toygun demo`: the original framework's
-- `example` resource with its `echo` and `another` tasks.

\set QUIET on
\o /dev/null
SET client_min_messages = warning;
\set VERBOSITY terse

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

-- another: stores a time, waits a second (so the demo can watch it), then
-- starts echo on the same resource and keeps its id, then reports on it.
CREATE OR REPLACE FUNCTION public.example_another(t toygun.task) RETURNS toygun.next
LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'one' THEN
        RETURN toygun.go('two', jsonb_build_object('time', clock_timestamp()));
    WHEN 'two' THEN
        IF clock_timestamp() < (t.attrs->>'time')::timestamptz + interval '1 second' THEN
            RETURN toygun.stay(wait => '200 milliseconds');
        END IF;
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

-- The worker ticks them as soon as this commits. Watch them move: one line
-- every 250 ms until every run has stopped (at most 30 seconds).
\o
\echo Runs of the demo as the worker ticks them (resource: task:state ...):
SET client_min_messages = notice;
DO $$
DECLARE
    started timestamptz := clock_timestamp();
    line text;
    last text := '';
BEGIN
    LOOP
        SELECT string_agg(format('%s: %s', n, runs), '   ' ORDER BY n) INTO line
          FROM (SELECT r.n, string_agg(t.name || ':' || t.state, ' ' ORDER BY t.seq) AS runs
                  FROM demo_resource r JOIN toygun.task t ON t.resource_id = r.id
                 GROUP BY r.n) x;
        IF line IS DISTINCT FROM last THEN
            RAISE NOTICE '% s   %', to_char(extract(epoch FROM clock_timestamp() - started), 'FM90.00'), line;
            last := line;
        END IF;
        EXIT WHEN NOT EXISTS (SELECT FROM toygun.task t JOIN demo_resource r ON r.id = t.resource_id
                               WHERE t.state <> '__stop__');
        IF clock_timestamp() > started + interval '30 seconds' THEN
            RAISE WARNING 'the runs have not finished after 30 seconds'
                USING HINT = 'Is toygun in shared_preload_libraries, with toygun.database_name set to this database?';
            EXIT;
        END IF;
        PERFORM pg_sleep(0.25);
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
