-- Privileges: an ordinary role can use the documented API and nothing more.
-- It cannot act for another role's types, make a handler run as someone
-- else, read another role's encrypted fields, stop a rotation, take over
-- another role's periodic start, change the worker's settings, write or
-- alter toygun's objects behind the API, create objects in schema toygun,
-- or hijack toygun's internal statements through search_path.
-- (security.sql has the basic cases of acting for another role.)
BEGIN;
\ir ../fixtures.sql
SELECT plan(28);

GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_of(text), pg_temp.mismatches(text[]) TO PUBLIC;
SELECT string_agg(n || '=' || current_setting(n), ',' ORDER BY n) AS settings_before
  FROM (SELECT name FROM pg_settings WHERE name LIKE 'toygun.%') s(n) \gset

CREATE ROLE tg_p_alice;
CREATE ROLE tg_p_carol IN ROLE tg_p_alice;
CREATE ROLE tg_p_bob IN ROLE tg_p_alice;
CREATE ROLE tg_p_mallory;
CREATE SCHEMA p_alice AUTHORIZATION tg_p_alice;
CREATE SCHEMA p_carol AUTHORIZATION tg_p_carol;
CREATE SCHEMA p_mallory AUTHORIZATION tg_p_mallory;
GRANT USAGE ON SCHEMA p_alice, p_carol, p_mallory TO PUBLIC;
CREATE TABLE public.p_seen (who text, what text);
GRANT INSERT, SELECT ON public.p_seen TO PUBLIC;

-- ---------------------------------------------------------------------------
-- What an ordinary role is granted: the documented API, reading, nothing else
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc p
            WHERE p.pronamespace = 'toygun'::regnamespace
              AND NOT has_function_privilege('tg_p_mallory', p.oid, 'EXECUTE')),
          ARRAY['toygun._flow_key(text,text,uuid,jsonb)', 'toygun.decrypt(toygun.secret,text)',
                'toygun.distribute()', 'toygun.guard_drop()', 'toygun.keyring()', 'toygun.maintain()', 'toygun.rotate_secrets()'],
          'every function but _flow_key (internal), decrypt, distribute, keyring, maintain, rotate_secrets and the drop guard''s event trigger function may be executed by an ordinary role');
SELECT is_empty($$
    SELECT c.relname, p.priv FROM pg_class c,
           unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
     WHERE c.relnamespace = 'toygun'::regnamespace AND c.relkind IN ('r', 'v', 'p')
       AND has_table_privilege('tg_p_mallory', c.oid, p.priv)
    UNION ALL
    SELECT c.relname, p.priv FROM pg_class c, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p(priv)
     WHERE c.relnamespace = 'toygun'::regnamespace AND c.relkind = 'S'
       AND has_sequence_privilege('tg_p_mallory', c.oid, p.priv) $$,
    'an ordinary role may not write toygun''s tables or use its sequences');
SELECT is((SELECT array_agg(c.relname || '.' || a.attname ORDER BY c.relname, a.attname)
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relnamespace = 'toygun'::regnamespace AND c.relkind IN ('r', 'v', 'p')
              AND NOT has_column_privilege('tg_p_mallory', c.oid, a.attnum, 'SELECT')
              AND c.relname NOT IN ('channel', 'route', 'outbox') AND NOT c.relispartition),
          ARRAY['resource.last_error', 'task.last_error'],
          'and may read every column of every table and view but last_error (toygun.last_error() checks); '
          'channel, route and outbox are the owner''s (test/sql/outbox.sql); the history''s partitions '
          'only through toygun.transition (test/sql/retention.sql)');
SELECT ok(has_schema_privilege('tg_p_mallory', 'toygun', 'USAGE') AND NOT has_schema_privilege('tg_p_mallory', 'toygun', 'CREATE'),
          'it may use schema toygun, not create objects in it');

SET ROLE tg_p_mallory;
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$INSERT INTO toygun.resource (id, type) VALUES (gen_random_uuid(), 'dummy')$q$, '42501'],
    [$q$UPDATE toygun.resource_type SET owner = 'tg_p_mallory'$q$, '42501'],
    [$q$UPDATE toygun.schedule SET args = '{}'$q$, '42501'],
    [$q$DELETE FROM toygun.schedule_start$q$, '42501'],
    [$q$TRUNCATE toygun.transition$q$, '42501'],
    [$q$SELECT * FROM toygun.task FOR KEY SHARE$q$, '42501'],
    [$q$SELECT * FROM toygun.resource FOR UPDATE SKIP LOCKED$q$, '42501'],
    [$q$LOCK TABLE toygun.task IN ROW EXCLUSIVE MODE$q$, '42501'],
    [$q$LOCK TABLE toygun.resource IN ACCESS EXCLUSIVE MODE$q$, '42501'],
    [$q$ALTER TABLE toygun.task ADD COLUMN x int$q$, '42501'],
    [$q$ALTER TABLE toygun.task DISABLE TRIGGER ALL$q$, '42501'],
    [$q$CREATE INDEX ON toygun.task (name)$q$, '42501'],
    [$q$CREATE TRIGGER x BEFORE UPDATE ON toygun.task FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$q$, '42501'],
    [$q$CREATE POLICY p ON toygun.task USING (true)$q$, '42501'],
    [$q$CREATE RULE r AS ON UPDATE TO toygun.task DO INSTEAD NOTHING$q$, '42501'],
    [$q$DROP TABLE toygun.transition$q$, '42501'],
    [$q$ALTER VIEW toygun.stats RENAME TO s$q$, '42501'],
    [$q$SELECT nextval('toygun.task_seq')$q$, '42501'],
    [$q$SELECT setval('toygun.schedule_seq', 1)$q$, '42501'],
    [$q$ALTER TYPE toygun.next ADD ATTRIBUTE x int$q$, '42501'],
    [$q$DROP TYPE toygun.secret CASCADE$q$, '42501'],
    [$q$CREATE OR REPLACE FUNCTION toygun.go(state text, attrs jsonb DEFAULT NULL) RETURNS toygun.next LANGUAGE sql AS 'SELECT NULL::toygun.next'$q$, '42501'],
    [$q$ALTER FUNCTION toygun.start_task(uuid, text, jsonb, text, integer) SECURITY DEFINER$q$, '42501'],
    [$q$ALTER FUNCTION toygun.tick_task(uuid) SET search_path = p_mallory$q$, '42501'],
    [$q$DROP FUNCTION toygun.field(toygun.task, text)$q$, '42501'],
    [$q$GRANT EXECUTE ON FUNCTION toygun.decrypt(toygun.secret, text) TO tg_p_mallory$q$, '42501'],
    [$q$ALTER EXTENSION toygun UPDATE$q$, '42501'],
    [$q$DROP EXTENSION toygun CASCADE$q$, '42501'],
    [$q$CREATE TABLE toygun.task2 (id uuid)$q$, '42501'],
    [$q$CREATE FUNCTION toygun.start_task(resource uuid, name text, args json) RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'$q$, '42501'],
    [$q$CREATE OPERATOR toygun.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = uuid_eq)$q$, '42501'],
    [$q$CREATE TYPE toygun.evil AS (a int)$q$, '42501'],
    [$q$CREATE VIEW toygun.v AS SELECT 1$q$, '42501'],
    [$q$CREATE SEQUENCE toygun.s$q$, '42501'],
    [$q$UPDATE cron.job SET command = 'SELECT 1'$q$, '42501']]) $$,
    'an ordinary role cannot write, lock, alter, drop or replace toygun''s objects, nor create objects in its schema');

-- ---------------------------------------------------------------------------
-- The worker's settings
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SET toygun.workers = 0$q$, '55P02'],
    [$q$SET LOCAL toygun.paused = on$q$, '55P02'],
    [$q$SET toygun.batch_size = 1$q$, '55P02'],
    [$q$SELECT set_config('toygun.poll_interval', '1', false)$q$, '55P02'],
    [$q$SELECT set_config('toygun.tick_timeout', '0', true)$q$, '55P02'],
    [$q$SET toygun.max_attempts = 1000000$q$, '55P02'],
    [$q$SET toygun.retry_backoff = 1$q$, '55P02'],
    [$q$SET toygun.keyring_file = '/tmp/mallory.keys'$q$, '55P02'],
    [$q$SET toygun.database_name = 'elsewhere'$q$, '55P02'],
    [$q$RESET toygun.paused$q$, '55P02'],
    [$q$SET toygun.paused TO DEFAULT$q$, '55P02'],
    [$q$SET toygun.made_up = 1$q$, '42602'],
    [$q$ALTER ROLE CURRENT_USER SET toygun.paused = on$q$, '55P02'],
    [$q$ALTER ROLE CURRENT_USER SET toygun.keyring_file = '/tmp/mallory.keys'$q$, '55P02'],
    [format('ALTER DATABASE %I SET toygun.workers = 0', current_database()), '42501'],
    [$q$SELECT pg_reload_conf()$q$, '42501']]) $$,
    'an ordinary role cannot change, reset, make up or reload the worker''s settings (ALTER SYSTEM: scenario privileges.sh)');
RESET ROLE;
SELECT pid AS launcher FROM pg_stat_activity WHERE backend_type = 'toygun launcher' \gset
SET ROLE tg_p_mallory;
SELECT is_empty(format($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    ['SELECT pg_terminate_backend(%1$s)', '42501'],
    ['SELECT pg_cancel_backend(%1$s)', '42501']]) $$, :launcher),
    'nor stop or interrupt the launcher');
RESET ROLE;
SELECT is((SELECT string_agg(n || '=' || current_setting(n), ',' ORDER BY n)
             FROM (SELECT name FROM pg_settings WHERE name LIKE 'toygun.%') s(n)), :'settings_before',
          'the settings are as they were');

-- ---------------------------------------------------------------------------
-- Handlers run as their definer, and only the type's owner can change that
SET ROLE tg_p_alice;
CREATE FUNCTION p_alice.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.p_seen VALUES (current_user, 'alice.h');
    RETURN toygun.stop();
END $$;
-- a SECURITY DEFINER function alice left executable by everybody
CREATE FUNCTION p_alice.definer(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.p_seen VALUES (current_user, 'alice.definer');
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('p_alices', encrypted_fields => '{token}');
SELECT toygun.define_task('p_alices', 'job', '{one}', 'p_alice.h(toygun.task)', encrypted_fields => '{password}');
SELECT toygun.create_resource('p_alices', '{"token": "alice-token-marker"}') AS ar \gset
SELECT toygun.start_task(:'ar', 'job', '{"password": "alice-pw-marker"}') AS at \gset
RESET ROLE;
SET ROLE tg_p_carol;
CREATE FUNCTION p_carol.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_task('p_alices', 'carols', '{one}', 'p_carol.h(toygun.task)');
RESET ROLE;

SET ROLE tg_p_bob;
SELECT throws_ok($$SELECT toygun.define_task('p_alices', 'carols', '{one}', 'p_carol.h(toygun.task)')$$, '42501',
                 'permission denied for task type "p_alices.carols"',
                 'acting for a resource type''s owner is not enough to redefine another role''s task type on it');
RESET ROLE;

SET ROLE tg_p_mallory;
CREATE FUNCTION p_mallory.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.p_seen VALUES (current_user, 'mallory.h');
    IF t.attrs ? 'start' THEN PERFORM toygun.start_task((t.attrs->>'start')::uuid, 'job'); END IF;
    IF t.attrs ? 'read' THEN
        PERFORM toygun.field(x, 'password') FROM toygun.task x WHERE x.id = (t.attrs->>'read')::uuid;
    END IF;
    IF t.attrs ? 'tick' THEN PERFORM toygun.tick_task((t.attrs->>'tick')::uuid); END IF;
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('p_mallorys', fields => NULL);
SELECT toygun.define_task('p_mallorys', 'job', '{one}', 'p_mallory.h(toygun.task)');
SELECT toygun.define_task('p_mallorys', 'borrowed', '{one}', 'p_alice.definer(toygun.task)');
SELECT toygun.create_resource('p_mallorys') AS mr \gset
RESET ROLE;

-- the worker's ticks are the superuser's: tick mallory's runs as one
CREATE FUNCTION pg_temp.run(what jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM toygun.tick_task(toygun.start_task(current_setting('p.mr')::uuid, 'job', what));
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT set_config('p.mr', :'mr', true) AS mr_set \gset
SELECT is(pg_temp.run(jsonb_build_object('start', :'ar')), '42501', 'a handler cannot act for another role''s type');
SELECT is(pg_temp.run(jsonb_build_object('read', :'at')), '42501', 'nor read its encrypted fields');
SELECT is(pg_temp.run(jsonb_build_object('tick', :'at')), '42501', 'nor tick its runs');
SELECT is(pg_temp.run('{}'), 'ok', 'on its own objects, the handler runs');
SELECT is((SELECT string_agg(DISTINCT who, ',') FROM public.p_seen WHERE what = 'mallory.h'), 'tg_p_mallory',
          'as its definer, though a superuser ticked it');
SELECT toygun.start_task(:'mr', 'borrowed') AS borrowed \gset
SELECT toygun.tick_task(:'borrowed') IS NOT NULL AS ticked \gset
SET ROLE tg_p_mallory;
SELECT p_alice.definer(NULL) IS NOT NULL AS called \gset
RESET ROLE;
SELECT results_eq($$ SELECT who FROM public.p_seen WHERE what = 'alice.definer' $$, ARRAY['tg_p_alice', 'tg_p_alice'],
                  'another role''s SECURITY DEFINER handler runs as its owner, exactly as calling it directly does');
SET ROLE tg_p_alice;
REVOKE EXECUTE ON FUNCTION p_alice.definer(toygun.task) FROM PUBLIC;
RESET ROLE;
SELECT toygun.start_task(:'mr', 'borrowed') AS borrowed \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'borrowed'), '42501',
                 'role "tg_p_mallory" may not execute handler p_alice.definer(toygun.task) of task type "p_mallorys.borrowed"',
                 'once its owner revokes EXECUTE, the handler is not run for anyone');

-- ---------------------------------------------------------------------------
-- Encrypted fields: no way around field()'s check, and no way to stop a rotation
-- alice's row, as a role that could read it would see it (mallory cannot: its rows are private)
CREATE TEMP TABLE p_alice_row AS
    SELECT r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, r.created_at, r.updated_at, r.version, r.queue_id
      FROM toygun.resource r WHERE id = :'ar';
GRANT SELECT ON p_alice_row TO PUBLIC;
SET ROLE tg_p_mallory;
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'ar'), 0::bigint, 'mallory does not see alice''s resource');
-- alice's sealed value, copied into a plain field of mallory's own, then that field declared encrypted
SELECT toygun.create_resource('p_mallorys', jsonb_build_object('token', (SELECT attrs->'token' FROM p_alice_row),
                                                               'junk', '{"$secret": "tg1:not-a-secret"}'::jsonb)) AS mr2 \gset
SELECT toygun.define_resource('p_mallorys', encrypted_fields => '{token,junk}');
-- (an ordinary role may not read last_error, so it names the columns of the row it passes)
SELECT throws_ok(format($$SELECT toygun.field(ROW(r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, NULL, r.created_at, r.updated_at, r.version, r.queue_id)::toygun.resource, 'token') FROM toygun.resource r WHERE id = %L$$, :'mr2'), 'XX001',
                 'secret could not be decrypted',
                 'another role''s sealed value copied into one''s own encrypted field does not decrypt there');
SELECT throws_ok($$SELECT toygun.field(ROW(r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, NULL, r.created_at, r.updated_at, r.version, r.queue_id)::toygun.resource, 'token') FROM p_alice_row r$$, '42501', NULL,
                 'and the original stays out of reach');
RESET ROLE;
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT toygun.rotate_secrets()$$, 'values planted by an ordinary role do not stop rotate_secrets()');
RESET client_min_messages;
SELECT is((SELECT toygun.field(r, 'token') FROM toygun.resource r WHERE id = :'ar'), '"alice-token-marker"',
          'the owner''s own fields still read');
SELECT is((SELECT attrs->'junk' FROM toygun.resource WHERE id = :'mr2'), '{"$secret": "tg1:not-a-secret"}'::jsonb,
          'and what did not decrypt is left as it was');

-- ---------------------------------------------------------------------------
-- Periodic starts: one role's start_every or stop_every never touches another's job
SET ROLE tg_p_alice;
SELECT toygun.define_resource('p.a');
SELECT toygun.define_task('p.a', 'b', '{one}', 'p_alice.h(toygun.task)');
SELECT toygun.start_every('p.a', 'b', '1 hour') AS alice_job \gset
RESET ROLE;
SET ROLE tg_p_mallory;
SELECT toygun.define_resource('p');
SELECT toygun.define_task('p', 'a.b', '{one}', 'p_mallory.h(toygun.task)');
SELECT toygun.start_every('p', 'a.b', '5 minutes') AS mallory_job \gset
SELECT toygun.stop_every('p', 'a.b') AS stopped \gset
SELECT throws_ok($$SELECT toygun.stop_every('p.a', 'b')$$, '42501', NULL, 'nor stop another role''s periodic start');
RESET ROLE;
SELECT results_eq(format('SELECT schedule, command FROM cron.job WHERE jobid = %s', :alice_job),
                  $$ VALUES ('0 * * * *'::text, $c$SELECT toygun.run_schedule('p.a', 'b')$c$::text) $$,
                  'another role''s start_every and stop_every of a look-alike name leave a job alone');
SELECT isnt(:alice_job::bigint, :mallory_job::bigint, 'the two periodic starts had jobs of their own');

-- ---------------------------------------------------------------------------
-- search_path: objects that shadow what toygun's statements use, in a schema
-- ahead of pg_catalog on the caller's path and in the caller's pg_temp, are
-- never used, whoever calls
SET ROLE tg_p_mallory;
CREATE SEQUENCE p_mallory.hits;
GRANT USAGE, UPDATE ON SEQUENCE p_mallory.hits TO PUBLIC;
CREATE FUNCTION p_mallory.hit() RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_catalog.nextval('p_mallory.hits');
    INSERT INTO public.p_seen VALUES (current_user, 'shadow');
    RETURN true;
END $$;
CREATE FUNCTION p_mallory.eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql AS 'SELECT p_mallory.hit()';
CREATE FUNCTION p_mallory.eq(a text, b text) RETURNS boolean LANGUAGE sql AS 'SELECT p_mallory.hit()';
CREATE FUNCTION p_mallory.eq(a bigint, b bigint) RETURNS boolean LANGUAGE sql AS 'SELECT p_mallory.hit()';
CREATE FUNCTION p_mallory.eq(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS 'SELECT p_mallory.hit()';
CREATE FUNCTION p_mallory.eq(a jsonb, b text[]) RETURNS boolean LANGUAGE sql AS 'SELECT p_mallory.hit()';
CREATE FUNCTION p_mallory.cat(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN a END';
CREATE FUNCTION p_mallory.plus(a bigint, b bigint) RETURNS bigint LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN a END';
CREATE OPERATOR p_mallory.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.= (LEFTARG = text, RIGHTARG = text, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.<> (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.?| (LEFTARG = jsonb, RIGHTARG = text[], FUNCTION = p_mallory.eq);
CREATE OPERATOR p_mallory.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = p_mallory.cat);
CREATE OPERATOR p_mallory.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = p_mallory.plus);
CREATE OPERATOR p_mallory.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = p_mallory.plus);
CREATE FUNCTION p_mallory.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN pg_catalog.now() END';
CREATE FUNCTION p_mallory.clock_timestamp() RETURNS timestamptz LANGUAGE sql
    AS 'SELECT CASE WHEN p_mallory.hit() THEN pg_catalog.now() END';
CREATE FUNCTION p_mallory.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN 1::bigint END';
CREATE FUNCTION p_mallory.gen_random_uuid() RETURNS uuid LANGUAGE sql
    AS 'SELECT CASE WHEN p_mallory.hit() THEN pg_catalog.gen_random_uuid() END';
CREATE FUNCTION p_mallory.unnest(text[], text[], text[]) RETURNS SETOF record LANGUAGE sql
    AS 'SELECT NULL::text, NULL::text, NULL::text WHERE p_mallory.hit()';
CREATE FUNCTION p_mallory.count(anyelement) RETURNS bigint LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN 0::bigint END';
CREATE FUNCTION p_mallory.quote_literal(text) RETURNS text LANGUAGE sql AS 'SELECT CASE WHEN p_mallory.hit() THEN $1 END';
CREATE VIEW p_mallory.task AS SELECT * FROM toygun.task WHERE p_mallory.hit();
CREATE VIEW p_mallory.resource AS SELECT * FROM toygun.resource WHERE p_mallory.hit();
CREATE VIEW p_mallory.transition AS SELECT * FROM toygun.transition WHERE p_mallory.hit();
CREATE VIEW p_mallory.task_type AS SELECT * FROM toygun.task_type WHERE p_mallory.hit();
CREATE VIEW p_mallory.resource_type AS SELECT * FROM toygun.resource_type WHERE p_mallory.hit();
CREATE VIEW p_mallory.schedule AS SELECT * FROM toygun.schedule WHERE p_mallory.hit();
GRANT SELECT ON ALL TABLES IN SCHEMA p_mallory TO PUBLIC;
RESET ROLE;

CREATE ROLE tg_p_victim;
CREATE SCHEMA p_victim AUTHORIZATION tg_p_victim;
GRANT EXECUTE ON FUNCTION toygun.decrypt(toygun.secret, text) TO tg_p_victim;
CREATE TEMP TABLE p_results (step int, what text, value text);
GRANT ALL ON p_results TO PUBLIC;
-- Everything the documented API offers, called under the shadowing path;
-- what it returns goes into p_results, compared below under a clean path
-- (no operator of ours runs under the shadowing one).
CREATE FUNCTION pg_temp.victim() RETURNS void LANGUAGE plpgsql
    SET search_path = p_mallory, pg_temp, pg_catalog, public AS $$
DECLARE
    r uuid;
    t uuid;
    rr toygun.resource;
    s toygun.secret;
BEGIN
    PERFORM toygun.define_resource('p_victims', '{up,down}', encrypted_fields => '{token}');
    PERFORM toygun.define_task('p_victims', 'job', '{one,two,three}', 'p_victim.walk(toygun.task)',
                               fields => '{n}', encrypted_fields => '{password}');
    r := toygun.create_resource('p_victims', '{"token": "victim-token"}');
    t := toygun.start_task(r, 'job', '{"password": "victim-pw"}');
    INSERT INTO p_results VALUES (0, 'run', t);
    INSERT INTO p_results VALUES (1, 'start again', toygun.start_task(r, 'job'));
    INSERT INTO p_results VALUES (2, 'tick', (toygun.tick_task(t)).state);
    INSERT INTO p_results VALUES (3, 'tick', (toygun.tick_task(t)).state);
    INSERT INTO p_results VALUES (4, 'field', toygun.field(toygun.task_for(r, 'job'), 'password'));
    INSERT INTO p_results VALUES (5, 'transition', (toygun.transition_task(t, 'one', '{"n": 7}', 'three')).state);
    INSERT INTO p_results VALUES (6, 'rewind', (toygun.rewind_task(t, 1)).state);
    INSERT INTO p_results VALUES (7, 'panic', (toygun.panic_task(t, 'stuck')).state);
    INSERT INTO p_results VALUES (8, 'stop', (toygun.stop_task(t)).state);
    INSERT INTO p_results VALUES (9, 'history', (SELECT array_agg(h.to_state) FROM toygun.history(t) h));
    INSERT INTO p_results VALUES (10, 'task_for', (toygun.task_for(r, 'job')).id);
    INSERT INTO p_results VALUES (11, 'is_running', toygun.is_running(r, 'job'));
    rr := toygun.tick_resource(r);
    INSERT INTO p_results VALUES (12, 'tick_resource', rr.state);
    INSERT INTO p_results VALUES (13, 'field', toygun.field(rr, 'token'));
    INSERT INTO p_results VALUES (14, 'transition_resource', (toygun.transition_resource(r, 'down', '{"token": "t2"}')).state);
    INSERT INTO p_results VALUES (15, 'start_every', toygun.start_every('p_victims', 'job', '1 day'));
    INSERT INTO p_results VALUES (16, 'run_schedule', toygun.run_schedule('p_victims', 'job', '2024-05-01 00:00:00+00'));
    INSERT INTO p_results VALUES (17, 'stop_every', toygun.stop_every('p_victims', 'job'));
    INSERT INTO p_results VALUES (18, 'schedule_bucket', toygun.schedule_bucket('0 3 * * *', '2024-05-01 12:00:00+00'));
    INSERT INTO p_results VALUES (19, 'stop_resource', (toygun.stop_resource(r)).state);
    s := toygun.encrypt('{"k": 1}', 'ctx');
    INSERT INTO p_results VALUES (20, 'decrypt', toygun.decrypt(s, 'ctx'));
    INSERT INTO p_results VALUES (21, 'key_number', toygun.key_number(s));
    INSERT INTO p_results VALUES (22, 'stats', (SELECT pg_catalog.count(*) FROM toygun.stats));
    INSERT INTO p_results VALUES (23, 'worker_status', (SELECT pg_catalog.count(*) FROM toygun.worker_status()));
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.victim() TO tg_p_victim;
SET ROLE tg_p_victim;
CREATE FUNCTION p_victim.walk(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RETURN CASE t.state WHEN 'one' THEN toygun.go('two') WHEN 'two' THEN toygun.go('three') ELSE toygun.stop() END;
END $$;
-- the victim's own temporary objects named like toygun's
CREATE TEMP VIEW task AS SELECT * FROM toygun.task WHERE p_mallory.hit();
CREATE TEMP VIEW resource AS SELECT * FROM toygun.resource WHERE p_mallory.hit();
CREATE TEMP VIEW transition AS SELECT * FROM toygun.transition WHERE p_mallory.hit();
SELECT lives_ok('SELECT pg_temp.victim()', 'the whole API works for a role whose search_path puts shadowing objects first');
RESET ROLE;
SELECT results_eq($$ SELECT what, value FROM p_results WHERE step > 0 ORDER BY step $$,
                  $$ VALUES ('start again', (SELECT value FROM p_results WHERE step = 0)), ('tick', 'two'), ('tick', 'three'),
                            ('field', '"victim-pw"'), ('transition', 'one'), ('rewind', 'three'), ('panic', '__panic__'),
                            ('stop', '__stop__'), ('history', '{one,two,three,one,three,__panic__,__stop__}'),
                            ('task_for', (SELECT value FROM p_results WHERE step = 0)), ('is_running', 'false'),
                            ('tick_resource', 'up'), ('field', '"victim-token"'), ('transition_resource', 'down'),
                            ('start_every', (SELECT value FROM p_results WHERE step = 15 AND value::bigint > 0)),
                            ('run_schedule', '1'), ('stop_every', 'true'), ('schedule_bucket', '2024-05-01 03:00:00+00'),
                            ('stop_resource', '__stop__'), ('decrypt', '{"k": 1}'),
                            ('key_number', (SELECT key_number::text FROM toygun.keyring() WHERE encrypts)),
                            ('stats', (SELECT count(*) FROM toygun.stats s JOIN toygun.resource_type d ON d.name = s.resource_type
                                        WHERE d.owner = 'tg_p_victim'::regrole)::text),
                            ('worker_status', (SELECT count(*) FROM toygun.worker_status())::text) $$,
                  'and every call returns what it returns under a clean path');
SET LOCAL search_path = p_mallory, pg_temp, pg_catalog, public;
SET LOCAL client_min_messages = error;
SELECT toygun.rotate_secrets() AS rotated \gset
RESET client_min_messages;
RESET search_path;
SELECT ok((SELECT NOT is_called FROM p_mallory.hits) AND NOT EXISTS (SELECT FROM public.p_seen WHERE what = 'shadow'),
          'no shadowing operator, function, table or view was ever used, by the victim''s calls or a superuser''s rotation');

SELECT * FROM finish();
ROLLBACK;
