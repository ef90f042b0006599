-- Attacks on rights per type, private rows and the audit trail (issue 13), by
-- a hostile tenant: tg_k_atk owns a type of its own and holds no right on
-- tg_k_owner's type 'kvault'; tg_k_reader holds read, tg_k_ops operate only.
-- Each check is an attack that must fail, or a finding that failed before it
-- was fixed.
BEGIN;
\ir ../fixtures.sql
SELECT plan(23);

CREATE ROLE tg_k_owner;
CREATE ROLE tg_k_atk;
CREATE ROLE tg_k_reader;
CREATE ROLE tg_k_ops;
CREATE ROLE tg_k_starter;
CREATE ROLE "Public";

-- What q does as role: 'ok', or the SQLSTATE and the message.
-- The first column of the first row of q as role, as text.
CREATE FUNCTION pg_temp.value_as_role(role text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    EXECUTE format('SET ROLE %I', role);
    EXECUTE q INTO v;
    RESET ROLE;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.as_role(text, text), pg_temp.value_as_role(text, text) TO PUBLIC;

-- The victim's type: a resource type with an encrypted field and a task type.
CREATE SCHEMA k_owner AUTHORIZATION tg_k_owner;
CREATE SCHEMA k_atk AUTHORIZATION tg_k_atk;
SET ROLE tg_k_owner;
CREATE FUNCTION k_owner.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state WHEN 'one' THEN RETURN toygun.go('two'); ELSE RETURN toygun.stay(); END CASE;
END $$;
SELECT toygun.define_resource('kvault', encrypted_fields => '{token}');
SELECT toygun.define_task('kvault', 'job', '{one,two}', 'k_owner.h(toygun.task)',
                          encrypted_fields => '{ttoken}');
SELECT toygun.create_resource('kvault', '{"token": "s3cret", "label": "private-label"}') AS kr \gset
SELECT toygun.start_task(:'kr', 'job', '{"ttoken": "t0ken", "arg": "private-arg"}') AS kt \gset
SELECT count(*) FROM toygun.tick_task(:'kt');
SELECT count(*) FROM toygun.tick_task(:'kt');
SELECT toygun.grant_type('kvault', 'tg_k_reader', '{read}');
SELECT toygun.grant_type('kvault', 'tg_k_ops', '{operate}');
SELECT toygun.grant_type('kvault', 'tg_k_starter', '{start}');
RESET ROLE;

-- The attacker's own type.
SET ROLE tg_k_atk;
CREATE FUNCTION k_atk.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('katk', encrypted_fields => '{token}');
SELECT toygun.define_task('katk', 'job', '{one}', 'k_atk.h(toygun.task)');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Periodic starts: their args are the attrs each run starts with, and the
-- resources a bucket started are the type's resources. Both were readable by
-- every role (no row-level security on toygun.schedule, schedule_start).
SET ROLE tg_k_owner;
SELECT toygun.start_every('kvault', 'job', '0 3 * * *', '{"arg": "private-schedule-arg"}');
RESET ROLE;
SELECT toygun.create_resource('kvault') AS kr2 \gset
SELECT toygun.run_schedule('kvault', 'job');
SELECT is(pg_temp.value_as_role('tg_k_atk', $$SELECT count(*) FROM toygun.schedule WHERE resource_type = 'kvault'$$),
          '0', 'a role without read does not see the periodic starts (and their args) of the type');
SELECT is(pg_temp.value_as_role('tg_k_atk', $$SELECT count(*) FROM toygun.schedule_start$$),
          '0', 'nor the resources a firing started runs on');
SELECT is(pg_temp.value_as_role('tg_k_reader',
                                $$SELECT args->>'arg' || ' ' || (SELECT count(*) FROM toygun.schedule_start)
                                    FROM toygun.schedule WHERE resource_type = 'kvault'$$),
          'private-schedule-arg 1', 'a role with read sees both');

-- ---------------------------------------------------------------------------
-- Reading around the policies.
-- A function that records every row it is shown, as cheap as can be, in the
-- WHERE clause against the policy: it must see no row of the type.
CREATE TABLE k_atk.seen (id uuid, attrs jsonb);
ALTER TABLE k_atk.seen OWNER TO tg_k_atk;
SET ROLE tg_k_atk;
CREATE FUNCTION k_atk.peek(id uuid, attrs jsonb) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
    INSERT INTO k_atk.seen VALUES (id, attrs);
    RETURN true;
END $$;
CREATE FUNCTION k_atk.x() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
SELECT count(*) FROM toygun.task t WHERE k_atk.peek(t.id, t.attrs);
SELECT count(*) FROM toygun.resource r WHERE k_atk.peek(r.id, r.attrs);
SELECT count(*) FROM toygun.transition h WHERE k_atk.peek(h.object_id, NULL);
-- a view of its own over the tables, as its owner
CREATE VIEW k_atk.tasks AS SELECT t.id, t.attrs FROM toygun.task t;
RESET ROLE;
SELECT is((SELECT count(*) FROM k_atk.seen), 0::bigint,
          'a leaky function in WHERE is shown no row of a type the role may not read');
SELECT is(pg_temp.value_as_role('tg_k_atk', $$SELECT count(*) FROM k_atk.tasks$$), '0',
          'a view of the attacker''s over toygun.task shows it nothing more');

-- Statistics: ANALYZE gathers the values of every row, pg_stats must not show them.
ANALYZE toygun.task;
ANALYZE toygun.resource;
SELECT is(pg_temp.value_as_role('tg_k_atk', $$SELECT count(*) FROM pg_stats WHERE schemaname = 'toygun'
                                                 AND tablename IN ('task', 'resource', 'transition')$$),
          '0', 'pg_stats shows nothing of the private tables');

-- toygun.field() with a row made up by the attacker: the id of the victim's
-- run and its real sealed value. The stored run's type decides.
CREATE TEMP TABLE krow AS SELECT t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                                 t.run_at, t.attempts, NULL::text AS last_error, t.created_at,
                                 t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id,
                                 t.flow_key
                            FROM toygun.task t WHERE id = :'kt';
GRANT SELECT ON krow TO PUBLIC;
SELECT alike(pg_temp.as_role('tg_k_atk', $$SELECT toygun.field(ROW(k.*)::toygun.task, 'ttoken') FROM krow k$$),
             '42501 %read_secrets%', 'field() of a made-up row of another type''s run is refused');
SELECT alike(pg_temp.as_role('tg_k_atk',
                             $$SELECT toygun.field(ROW(k.id, k.resource_id, 'katk', 'job', k.state, k.attrs, k.step,
                                                       k.run_at, k.attempts, NULL, k.created_at, k.updated_at,
                                                       k.seq, k.parent_run, k.version, k.priority, k.queue_id, k.flow_key)::toygun.task, 'ttoken') FROM krow k$$),
             '42501 %read_secrets%', 'also when the row claims the attacker''s own type');

-- Creating objects on the tables: triggers, rules, child tables, row locks.
SELECT is_empty($$SELECT q, pg_temp.as_role('tg_k_atk', q) FROM unnest(ARRAY[
        'CREATE TRIGGER x AFTER INSERT ON toygun.transition FOR EACH ROW EXECUTE FUNCTION k_atk.x()',
        'CREATE RULE x AS ON INSERT TO toygun.transition DO ALSO NOTHING',
        'CREATE TABLE k_atk.child () INHERITS (toygun.task)',
        'CREATE TABLE k_atk.fk (r uuid REFERENCES toygun.resource (id))',
        'SELECT 1 FROM toygun.task FOR KEY SHARE',
        'SELECT 1 FROM toygun.type_grant FOR UPDATE',
        'INSERT INTO toygun.type_grant (resource_type, grantee, right_name, granted_by) VALUES (''kvault'', ''tg_k_atk'', ''read'', ''tg_k_owner'')',
        'INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, made_by) VALUES (gen_random_uuid(), 0, ''a'', ''b'', ''katk'', ''tg_k_owner'')',
        'ALTER TABLE toygun.task DISABLE ROW LEVEL SECURITY',
        'CREATE POLICY mine ON toygun.task FOR SELECT USING (true)']) q
       WHERE pg_temp.as_role('tg_k_atk', q) NOT LIKE '42501 %'$$,
       'the attacker cannot add triggers, rules, children, keys, locks, rows or policies to toygun''s tables');

-- ---------------------------------------------------------------------------
-- Acting on the victim's runs, and the audit trail.
SELECT is_empty(format($$SELECT q, pg_temp.as_role('tg_k_atk', q) FROM unnest(ARRAY[
        'SELECT toygun.tick_task(''%1$s'')', 'SELECT toygun.tick_resource(''%2$s'')',
        'SELECT toygun.transition_task(''%1$s'', ''one'', reason => ''by the worker'')',
        'SELECT toygun.rewind_task(''%1$s'')', 'SELECT toygun.stop_task(''%1$s'')',
        'SELECT toygun.panic_task(''%1$s'', ''x'')', 'SELECT toygun.stop_resource(''%2$s'')',
        'SELECT toygun.start_task(''%2$s'', ''job'')', 'SELECT toygun.create_resource(''kvault'')',
        'SELECT toygun.create_resource(''katk'', ''{}'', ''%2$s'')',
        'SELECT toygun.last_error(''%1$s'')', 'SELECT toygun.run_schedule(''kvault'', ''job'')',
        'SELECT toygun.stop_every(''kvault'', ''job'')',
        'SELECT toygun.start_every(''kvault'', ''job'', ''@hourly'')']) q
       WHERE pg_temp.as_role('tg_k_atk', q) NOT LIKE '42501 %%'$$, :'kt', :'kr'),
       'every call on the victim''s objects by the attacker is refused with 42501');
SELECT is(pg_temp.as_role('tg_k_ops', format($$SELECT toygun.transition_task(%L, 'one', reason => %L)$$,
                                              :'kt', 'made by tg_k_owner in worker 1')), 'ok',
          'the operator moves the run, with a reason that claims another maker');
SELECT results_eq(format($$SELECT made_by::text, worker_pid, reason FROM toygun.transition
                            WHERE object_id = %L ORDER BY step DESC LIMIT 1$$, :'kt'),
                  $$VALUES ('tg_k_ops', NULL::integer, 'made by tg_k_owner in worker 1')$$,
                  'the history names the operator as its maker and no worker, whatever the reason says');

-- A schedule whose maker lost its right starts nothing.
SET ROLE tg_k_starter;
SELECT toygun.start_every('kvault', 'job', '0 4 * * *', '{"arg": "starter"}');
RESET ROLE;
SELECT toygun.revoke_type('kvault', 'tg_k_starter');
SELECT toygun.create_resource('kvault') AS kr3 \gset
SELECT alike(pg_temp.as_role('tg_k_owner', $$SELECT toygun.run_schedule('kvault', 'job', now() + interval '-1 day')$$),
             '42501 permission denied for task type "kvault.job"%',
             'a firing made by a role whose right was revoked is refused, even when its owner fires it');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'kr3'), 0::bigint, 'and starts no run');

-- ---------------------------------------------------------------------------
-- Escalation through grant_type and revoke_type.
SELECT is_empty($$SELECT q, pg_temp.as_role('tg_k_atk', q) FROM unnest(ARRAY[
        'SELECT toygun.grant_type(''kvault'', ''tg_k_atk'', ''{read}'')',
        'SELECT toygun.grant_type(''kvault'', ''public'', ''{read}'')',
        'SELECT toygun.grant_type(''kvault'', ''tg_k_atk''::regrole, ''{read_secrets}'')',
        'SELECT toygun.revoke_type(''kvault'', ''tg_k_reader'')',
        'SELECT toygun.revoke_type(''kvault'', ''public'')']) q
       WHERE pg_temp.as_role('tg_k_atk', q) NOT LIKE '42501 %'$$,
       'the attacker can neither grant on the victim''s type, to itself or to public, nor revoke');
SELECT is(pg_temp.as_role('tg_k_owner', $$SELECT toygun.revoke_type('kvault', 'tg_k_owner')$$), 'ok',
          'the owner revokes rights it was never granted');
SELECT is(pg_temp.value_as_role('tg_k_owner', $$SELECT count(*) FROM toygun.task WHERE resource_type = 'kvault'$$),
          (SELECT count(*)::text FROM toygun.task WHERE resource_type = 'kvault'),
          'and still reads every run of its type');
SELECT toygun.grant_type('katk', '"Public"', '{read}');
SELECT results_eq($$SELECT grantee FROM toygun.type_grants WHERE resource_type = 'katk'$$,
                  $$VALUES ('"Public"')$$,
                  'a quoted "Public" names the role of that name, not PUBLIC');
-- grant_type takes a role's name: a number or '-' is not a role name.
SELECT throws_ok($$SELECT toygun.grant_type('katk', '4000000000', '{read}')$$, '42704', NULL,
                 'a number is read as a role name, so a grant cannot wait for a future role''s OID');
SELECT throws_ok($$SELECT toygun.grant_type('katk', '-', '{read}')$$, '42704', NULL,
                 'and ''-'' does not stand for PUBLIC');

-- ---------------------------------------------------------------------------
-- The upgrade from 0.3 gives nobody more than 0.3 did. In 0.3 the error of
-- a run was for roles with its owner's privileges; the update's read grant to
-- PUBLIC must not open it to everybody. (Drops toygun: keep this last.)
DROP EXTENSION toygun CASCADE;
CREATE EXTENSION toygun VERSION '0.3';
SET ROLE tg_k_owner;
CREATE FUNCTION k_owner.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('kold');
SELECT toygun.define_task('kold', 'job', '{one}', 'k_owner.h(toygun.task)');
SELECT toygun.create_resource('kold') AS okr \gset
SELECT toygun.start_task(:'okr', 'job') AS okt \gset
RESET ROLE;
UPDATE toygun.task SET last_error = 'connect failed: password=hunter2' WHERE id = :'okt';
ALTER EXTENSION toygun UPDATE TO '0.4';
SELECT is(pg_temp.value_as_role('tg_k_atk', format('SELECT count(*) FROM toygun.task WHERE id = %L', :'okt')),
          '1', 'after the update, every role still reads the runs of a type made in 0.3');
SELECT isnt(pg_temp.value_as_role('tg_k_atk', format('SELECT toygun.last_error(%L)', :'okt')),
            'connect failed: password=hunter2', 'but not their errors through last_error()');
SELECT is(pg_temp.value_as_role('tg_k_atk', format($$SELECT (toygun.task_for(%L, 'job')).last_error$$, :'okr')),
          NULL, 'nor through task_for()');

SELECT * FROM finish();
ROLLBACK;
