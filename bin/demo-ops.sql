-- Data for the dashboard, run by `bin/toygun demo` after the worked example:
-- a few types with runs that keep ticking (the throughput chart), runs that
-- keep failing (failing, the failures chart), panicked runs and open alarms,
-- and the role `demo` the dashboard signs in as (its password is set by
-- bin/toygun, not here). Runs are started once: a second demo adds none.

\set QUIET on
\o /dev/null
SET client_min_messages = warning;
\set VERBOSITY terse

-- server.deploy: build, push, verify. A server whose attrs say `flaky` fails
-- at push until its attempts run out (it panics); one says `full` and panics
-- at once, as a handler that finds the disk full would.
CREATE OR REPLACE FUNCTION public.demo_deploy(t toygun.task) RETURNS toygun.next
LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'build' THEN
        RETURN toygun.go('push', jsonb_build_object('built_at', clock_timestamp()));
    WHEN 'push' THEN
        IF (SELECT attrs->>'kind' FROM toygun.resource WHERE id = t.resource_id) = 'flaky' THEN
            RAISE EXCEPTION 'push to registry.internal:5000 refused: connection reset by peer';
        END IF;
        IF (SELECT attrs->>'kind' FROM toygun.resource WHERE id = t.resource_id) = 'full' THEN
            RETURN toygun.panic('disk full on /var/lib/builds (0 bytes free)');
        END IF;
        RETURN toygun.go('verify');
    WHEN 'verify' THEN
        RETURN toygun.stop();
    END CASE;
END $$;

-- server.backup: ticks every few seconds for ever (the throughput chart)
CREATE OR REPLACE FUNCTION public.demo_backup(t toygun.task) RETURNS toygun.next
LANGUAGE sql AS $$ SELECT toygun.stay(jsonb_build_object('last', clock_timestamp()), wait => '3 seconds') $$;

-- mailbox.sync: fails every tick, with a long retry budget (runs stay failing)
CREATE OR REPLACE FUNCTION public.demo_sync(t toygun.task) RETURNS toygun.next
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'IMAP login to mail.example.com failed: authentication timeout';
END $$;

SELECT toygun.define_resource('server', fields => '{kind}');
SELECT toygun.define_task('server', 'deploy', '{build,push,verify}', 'public.demo_deploy(toygun.task)',
                          fields => '{built_at}', max_attempts => 3, retry_backoff => '1 second');
SELECT toygun.define_task('server', 'backup', '{run}', 'public.demo_backup(toygun.task)', fields => '{last}');
SELECT toygun.define_resource('mailbox');
SELECT toygun.define_task('mailbox', 'sync', '{login}', 'public.demo_sync(toygun.task)',
                          max_attempts => 100000, retry_backoff => '20 seconds');

DO $$
DECLARE
    s uuid;
    n int;
BEGIN
    IF EXISTS (SELECT FROM toygun.task WHERE resource_type = 'server') THEN
        RETURN;
    END IF;
    FOR n IN 1..12 LOOP
        s := toygun.create_resource('server', jsonb_build_object('kind',
                 CASE WHEN n IN (3, 7) THEN 'flaky' WHEN n = 5 THEN 'full' ELSE 'plain' END));
        PERFORM toygun.start_task(s, 'deploy');
        PERFORM toygun.start_task(s, 'backup');
        IF n = 9 THEN
            PERFORM toygun.raise_alarm(s, 'latency', 'backup of server 9 took 41 s (limit 30 s)');
        END IF;
    END LOOP;
    FOR n IN 1..4 LOOP
        PERFORM toygun.start_task(toygun.create_resource('mailbox'), 'sync');
    END LOOP;
END $$;

-- the dashboard's role: every right on the demo's types
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo') THEN
        CREATE ROLE demo LOGIN;
    END IF;
END $$;
SELECT toygun.grant_type(t, 'demo', '{read,start,operate,read_secrets}')
  FROM unnest(ARRAY['example', 'server', 'mailbox']) AS t;
