-- Rights per type: grant_type, revoke_type, toygun.type_grants, and the
-- start and operate rights (and read, for last_error) checked by every API
-- function that acts on a type's objects: each function against each role,
-- refused with 42501 naming the right, the hint naming grant_type.
BEGIN;
\ir ../fixtures.sql
SELECT plan(62);

CREATE ROLE tg_r_none;
CREATE ROLE tg_r_app;
CREATE ROLE tg_r_ops;
CREATE ROLE tg_r_secrets;
CREATE ROLE tg_r_owner;
CREATE ROLE tg_r_member IN ROLE tg_r_owner;

-- What q does as role: 'ok', or the SQLSTATE and the message.
-- The hint of the error q raises as role.
CREATE FUNCTION pg_temp.hint_as_role(role text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE format('SET ROLE %I', role);
    EXECUTE q;
    RESET ROLE;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
-- EXPLAIN of q as tg_r_app
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    l text;
BEGIN
    SET LOCAL ROLE tg_r_app;
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP RETURN NEXT l; END LOOP;
    RESET ROLE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.hint_as_role(text, text) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- grant_type, revoke_type, type_grants
SELECT lives_ok($$SELECT toygun.grant_type('dummy', 'tg_r_app', '{read,start}')$$,
                'the owner grants rights on its type');
SELECT lives_ok($$SELECT toygun.grant_type('dummy', 'tg_r_app', '{start}')$$, 'granting again is a no-op');
SELECT toygun.grant_type('dummy', 'tg_r_ops', '{read,operate}');
SELECT toygun.grant_type('dummy', 'tg_r_secrets', '{read_secrets}');
SELECT results_eq($$SELECT grantee, right_name, granted_by::text FROM toygun.type_grants
                     WHERE resource_type = 'dummy' ORDER BY 1, 2$$,
                  $$VALUES ('tg_r_app', 'read', 'postgres'), ('tg_r_app', 'start', 'postgres'),
                           ('tg_r_ops', 'operate', 'postgres'), ('tg_r_ops', 'read', 'postgres'),
                           ('tg_r_secrets', 'read_secrets', 'postgres')$$,
                  'type_grants lists each grant once, with who granted it');
SELECT throws_ok($$SELECT toygun.grant_type('dummy', 'tg_r_app', '{read,repair}')$$, '22023',
                 'unknown right "repair"', 'an unknown right is refused');
SELECT throws_ok($$SELECT toygun.grant_type('dummy', 'tg_r_nobody', '{read}')$$, '42704', NULL,
                 'an unknown role is refused');
SELECT throws_ok($$SELECT toygun.grant_type('nosuch', 'tg_r_app', '{read}')$$, NULL, NULL,
                 'an unknown type is refused');
SELECT throws_ok($$SELECT toygun.grant_type('dummy', 'tg_r_app', NULL)$$, '22004', NULL,
                 'grant_type needs rights');
SELECT alike(pg_temp.as_role('tg_r_app', $$SELECT toygun.grant_type('dummy', 'tg_r_none', '{start}')$$),
            '42501 permission denied for resource type "dummy"%',
            'a grantee cannot grant: only the owner can');
SELECT alike(pg_temp.as_role('tg_r_ops', $$SELECT toygun.revoke_type('dummy', 'tg_r_app')$$),
            '42501 permission denied for resource type "dummy"%', 'nor revoke');

-- ---------------------------------------------------------------------------
-- Every function against every role: start and operate (and read for
-- last_error), on objects of their own so that no case changes another.
CREATE TEMP TABLE fn (q text, needs text);
INSERT INTO fn VALUES
    ($$SELECT toygun.create_resource('dummy')$$, 'start'),
    ($$SELECT toygun.create_resource('dummy', '{}', %2$L)$$, 'start'),
    ($$SELECT toygun.start_task(%2$L, 'another')$$, 'start'),
    ($$SELECT toygun.tick_task(%1$L)$$, 'operate'),
    ($$SELECT toygun.tick_resource(%2$L)$$, 'operate'),
    ($$SELECT toygun.transition_task(%1$L, 'beginning')$$, 'operate'),
    ($$SELECT toygun.transition_task(%1$L, 'middle', '{"x": 1}')$$, 'operate'),
    ($$SELECT toygun.transition_resource(%2$L, 'running')$$, 'operate'),
    ($$SELECT toygun.stop_task(%1$L)$$, 'operate'),
    ($$SELECT toygun.stop_resource(%2$L)$$, 'operate'),
    ($$SELECT toygun.panic_task(%1$L, 'by hand')$$, 'operate'),
    ($$SELECT toygun.rewind_task(%1$L)$$, 'operate'),
    ($$SELECT toygun.last_error(%1$L)$$, 'read'),
    ($$SELECT toygun.last_error(%2$L)$$, 'read'),
    ($$SELECT toygun.stop_task(%1$L, 'with a reason')$$, 'operate'),
    ($$SELECT toygun.start_every('dummy', 'another', '0 3 * * *')$$, 'start'),
    ($$SELECT toygun.stop_every('dummy', 'another')$$, 'start');
CREATE TEMP TABLE who (role text, rights text[]);
INSERT INTO who VALUES ('tg_r_none', '{}'), ('tg_r_app', '{read,start}'), ('tg_r_ops', '{read,operate}'),
                       ('tg_r_secrets', '{read_secrets}');
CREATE TEMP TABLE cases AS
    SELECT fn.q, fn.needs, who.role, who.rights, NULL::uuid AS t, toygun.create_resource('dummy') AS r
      FROM fn, who;
UPDATE cases SET t = toygun.start_task(r, 'test');
DO $$ BEGIN PERFORM toygun.tick_task(t) FROM cases; END $$;    -- each run in state middle, at step 2

CREATE TEMP TABLE outcome AS
    SELECT c.q, c.needs, c.role, c.needs = ANY (c.rights) AS allowed,
           pg_temp.as_role(c.role, format(c.q, c.t, c.r)) AS got,
           pg_temp.hint_as_role(c.role, format(c.q, c.t, c.r)) AS hint
      FROM cases c;
SELECT is((SELECT count(*) FROM outcome), 68::bigint, '17 calls by 4 roles');
SELECT is_empty($$SELECT role, q, got FROM outcome WHERE allowed AND got <> 'ok'$$,
                'every role with the right a function needs may call it');
SELECT is_empty($$SELECT role, q, got FROM outcome WHERE NOT allowed AND got NOT LIKE '42501 %'$$,
                'every role without it is refused with 42501');
SELECT is_empty($$SELECT role, q, got FROM outcome
                   WHERE NOT allowed AND got NOT LIKE format('%%it needs right "%s"%%', needs)$$,
                'and the refusal names the right');
SELECT is_empty($$SELECT role, q, got FROM outcome
                   WHERE NOT allowed AND got NOT LIKE '%type "dummy%'$$,
                'and the type');
SELECT is_empty($$SELECT role, q, hint FROM outcome
                   WHERE NOT allowed AND hint NOT LIKE '%toygun.grant_type()%'$$,
                'and its hint names grant_type');
SELECT is((SELECT got FROM outcome WHERE role = 'tg_r_app' AND q = 'SELECT toygun.stop_task(%1$L)'),
          '42501 permission denied for task type "dummy.test": it needs right "operate" on resource type "dummy"',
          'the message of a refused task operation');
SELECT is((SELECT got FROM outcome WHERE role = 'tg_r_ops' AND q LIKE '%create_resource(''dummy'')%'),
          '42501 permission denied for resource type "dummy": it needs right "start"',
          'the message of a refused resource start');

-- Every way to read rows against every role: a role sees a run, its
-- resource and its history only with read (each query divides by zero when
-- it sees nothing).
CREATE TEMP TABLE reads (q text);
INSERT INTO reads VALUES
    ($$SELECT 1 / count(*)::int FROM toygun.task WHERE id = %1$L$$),
    ($$SELECT 1 / count(*)::int FROM toygun.resource WHERE id = %2$L$$),
    ($$SELECT 1 / count(*)::int FROM toygun.transition WHERE object_id = %1$L$$),
    ($$SELECT 1 / count(*)::int FROM toygun.transition WHERE object_id = %2$L$$),
    ($$SELECT 1 / count(*)::int FROM toygun.history(%1$L)$$),
    ($$SELECT 1 / count(*)::int FROM toygun.stats WHERE resource_type = 'dummy'$$),
    ($$SELECT 1 / ((toygun.task_for(%2$L, 'test')).id IS NOT NULL)::int$$),
    ($$SELECT 1 / toygun.is_running(%2$L, 'test')::int$$);
SELECT toygun.create_resource('dummy') AS read_r \gset
SELECT toygun.start_task(:'read_r', 'test') AS read_t \gset
SELECT count(*) AS ticked FROM toygun.tick_resource(:'read_r') \gset
CREATE TEMP TABLE read_outcome AS
    SELECT reads.q, who.role, 'read' = ANY (who.rights) AS allowed,
           pg_temp.as_role(who.role, format(reads.q, :'read_t', :'read_r')) AS got
      FROM reads, who;
SELECT is((SELECT count(*) FROM read_outcome), 32::bigint, '8 reads by 4 roles');
SELECT is_empty($$SELECT role, q, got FROM read_outcome WHERE allowed AND got <> 'ok'$$,
                'every role with read sees the run, its resource and their histories');
SELECT is_empty($$SELECT role, q, got FROM read_outcome WHERE NOT allowed AND got NOT LIKE '22012 %'$$,
                'every role without it sees none of them');

-- ---------------------------------------------------------------------------
-- The owner and its members have every right without a grant; a grant on a
-- resource type covers its task types, whoever owns them.
CREATE SCHEMA r_owner AUTHORIZATION tg_r_owner;
SET ROLE tg_r_owner;
CREATE FUNCTION r_owner.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('owned');
SELECT toygun.define_task('owned', 'job', '{one}', 'r_owner.h(toygun.task)');
SET ROLE tg_r_member;
SELECT toygun.define_task('owned', 'members', '{one}', 'r_owner.h(toygun.task)');
RESET ROLE;
SELECT toygun.create_resource('owned') AS o \gset
SELECT is(pg_temp.as_role('tg_r_member', format($$SELECT toygun.tick_task(toygun.start_task(%L, 'job'))$$, :'o')),
          'ok', 'a member of the owner starts and operates without a grant');
SELECT alike(pg_temp.as_role('tg_r_app', format($$SELECT toygun.start_task(%L, 'members')$$, :'o')),
            '42501 %right "start"%', 'a role without a grant on the resource type cannot start its task types');
SELECT lives_ok($$SELECT toygun.grant_type('owned', 'tg_r_app', '{start}')$$,
                'a superuser may grant on any type');
SELECT is(pg_temp.as_role('tg_r_app', format($$SELECT toygun.start_task(%L, 'members')$$, :'o')),
          'ok', 'a grant on the resource type covers a task type another role owns');

-- ---------------------------------------------------------------------------
-- read_secrets: encrypted fields through toygun.field()
SELECT toygun.define_resource('vaulted', encrypted_fields => '{token}');
SELECT toygun.create_resource('vaulted', '{"token": "s3cret", "label": "x"}') AS v \gset
SELECT toygun.grant_type('vaulted', 'tg_r_app', '{read,start,operate}');
SELECT toygun.grant_type('vaulted', 'tg_r_ops', '{read_secrets}');
CREATE TEMP TABLE vrow AS SELECT r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts,
                                 NULL::text AS last_error, r.created_at, r.updated_at, r.version, r.queue_id
                            FROM toygun.resource r WHERE id = :'v';
GRANT SELECT ON vrow TO PUBLIC;
SELECT is(pg_temp.as_role('tg_r_app', $$SELECT toygun.field(ROW(v.*)::toygun.resource, 'token') FROM vrow v$$),
          '42501 permission denied to read encrypted field "token" of resource type "vaulted": it needs right "read_secrets"',
          'every other right does not give read_secrets');
SELECT is(pg_temp.as_role('tg_r_app', $$SELECT toygun.field(ROW(v.*)::toygun.resource, 'label') FROM vrow v$$),
          'ok', 'a field that is not encrypted needs no right');
SELECT is(pg_temp.as_role('tg_r_ops', $$SELECT toygun.field(ROW(v.*)::toygun.resource, 'token') FROM vrow v$$),
          'ok', 'read_secrets reads encrypted fields');
SELECT alike(pg_temp.hint_as_role('tg_r_none', $$SELECT toygun.field(ROW(v.*)::toygun.resource, 'token') FROM vrow v$$),
             '%toygun.grant_type()%', 'the refusal hints at grant_type');

-- ---------------------------------------------------------------------------
-- readable_types(): what row filters will use; task_for's last_error
SET ROLE tg_r_app;
SELECT is(toygun.readable_types(), '{dummy,vaulted}', 'readable_types lists the types granted read');
RESET ROLE;
SET ROLE tg_r_member;
SELECT is(toygun.readable_types(), '{owned}', 'and those whose owner''s privileges the role has');
RESET ROLE;
SELECT toygun.start_task(toygun.create_resource('dummy'), 'test') AS failing \gset
UPDATE toygun.task SET last_error = 'it broke' WHERE id = :'failing';
SELECT is(pg_temp.as_role('tg_r_app', format($q$DO $do$ BEGIN
              IF (SELECT (toygun.task_for(resource_id, 'test')).last_error FROM toygun.task WHERE id = %L)
                 IS DISTINCT FROM 'it broke' THEN RAISE 'no last_error'; END IF; END $do$ $q$, :'failing')),
          'ok', 'task_for shows last_error to a role granted read');

-- ---------------------------------------------------------------------------
-- Private rows: resources and runs show to the roles that may read their type
SELECT is(pg_temp.as_role('tg_r_none', $q$DO $do$ BEGIN
              IF EXISTS (SELECT FROM toygun.task) OR EXISTS (SELECT FROM toygun.resource)
                 OR EXISTS (SELECT FROM toygun.stats) THEN RAISE 'saw rows'; END IF; END $do$ $q$),
          'ok', 'a role without read sees no resources, runs or stats');
SELECT is(pg_temp.as_role('tg_r_app', $q$DO $do$ BEGIN
              IF (SELECT array_agg(DISTINCT resource_type ORDER BY resource_type) FROM toygun.task)
                 IS DISTINCT FROM '{dummy}' THEN RAISE 'wrong runs'; END IF; END $do$ $q$),
          'ok', 'a role with read on dummy sees its runs, and no others');
SELECT ok((SELECT count(*) FROM toygun.task WHERE resource_type <> 'dummy') > 0,
          'the superuser sees the others too');
SELECT ok((SELECT string_agg(l, E'\n') FROM (SELECT * FROM pg_temp.plan_of('SELECT count(*) FROM toygun.task')) p(l))
          ~ 'InitPlan', 'the row filter is computed once per query (an InitPlan)');
SELECT toygun.grant_type('owned', 'public', '{read}');
SELECT is(pg_temp.as_role('tg_r_none', $q$DO $do$ BEGIN
              IF NOT EXISTS (SELECT FROM toygun.task WHERE resource_type = 'owned') THEN RAISE 'none'; END IF; END $do$ $q$),
          'ok', 'read granted to public opens a type to every role');
-- but not its error texts, which 0.3 showed only to the owner
UPDATE toygun.task SET last_error = 'password=hunter2 rejected' WHERE resource_type = 'owned';
SELECT (SELECT id FROM toygun.task WHERE resource_type = 'owned' LIMIT 1) AS failed,
       (SELECT resource_id FROM toygun.task WHERE resource_type = 'owned' LIMIT 1) AS failed_r,
       (SELECT name FROM toygun.task WHERE resource_type = 'owned' LIMIT 1) AS failed_name \gset
SELECT alike(pg_temp.as_role('tg_r_none', format($$SELECT toygun.last_error(%L)$$, :'failed')),
             '42501 %right "read"%', 'read granted to public does not reach last_error()');
SELECT alike(pg_temp.hint_as_role('tg_r_none', format($$SELECT toygun.last_error(%L)$$, :'failed')),
             '%a grant to public does not show error texts%', 'and the hint says so');
SELECT is(pg_temp.as_role('tg_r_none', format($q$DO $do$ BEGIN
              IF (toygun.task_for(%L, %L)).last_error IS NOT NULL THEN RAISE 'saw it'; END IF; END $do$ $q$,
              :'failed_r', :'failed_name')),
          'ok', 'nor the last_error of task_for()');
SELECT toygun.grant_type('owned', 'tg_r_none', '{read}');
SELECT is(pg_temp.as_role('tg_r_none', format($q$DO $do$ BEGIN
              IF toygun.last_error(%L) IS DISTINCT FROM 'password=hunter2 rejected'
                 OR (toygun.task_for(%L, %L)).last_error IS NULL THEN RAISE 'did not see it'; END IF; END $do$ $q$,
              :'failed', :'failed_r', :'failed_name')),
          'ok', 'read granted to the role itself shows them');
SELECT toygun.revoke_type('owned', 'tg_r_none', '{read}');
SELECT toygun.revoke_type('owned', 'public', '{read}');

-- ---------------------------------------------------------------------------
-- PUBLIC, revoking, dropped roles
SELECT alike(pg_temp.as_role('tg_r_none', $$SELECT toygun.create_resource('owned')$$), '42501 %',
            'tg_r_none cannot start on owned');
SET ROLE tg_r_member;
SELECT lives_ok($$SELECT toygun.grant_type('owned', 'public', '{start}')$$,
                'a member of the owner grants a right to public');
RESET ROLE;
SELECT is((SELECT grantee FROM toygun.type_grants WHERE resource_type = 'owned' AND grantee <> 'tg_r_app'),
          'public', 'type_grants names the grantee public');
SELECT is(pg_temp.as_role('tg_r_none', $$SELECT toygun.create_resource('owned')$$), 'ok',
          'a right granted to public reaches every role');
SELECT toygun.revoke_type('owned', 'PUBLIC', '{start}');
SELECT alike(pg_temp.as_role('tg_r_none', $$SELECT toygun.create_resource('owned')$$), '42501 %',
            'revoking it from public takes it back');

SELECT toygun.revoke_type('dummy', 'tg_r_ops', '{operate}');
SELECT is((SELECT array_agg(right_name) FROM toygun.type_grants WHERE grantee = 'tg_r_ops' AND resource_type = 'dummy'),
          '{read}',
          'revoke_type with rights takes back those rights');
SELECT toygun.revoke_type('dummy', 'tg_r_app');
SELECT is((SELECT array_agg(resource_type || ':' || right_name ORDER BY resource_type, right_name) FROM toygun.type_grants
            WHERE grantee = 'tg_r_app'), '{owned:start,vaulted:operate,vaulted:read,vaulted:start}',
          'without rights it takes back every right on that type only');

SELECT toygun.grant_type('dummy', 'tg_r_secrets'::regrole, '{read,start}');
SELECT is((SELECT array_agg(right_name ORDER BY right_name) FROM toygun.type_grants
            WHERE grantee = 'tg_r_secrets' AND resource_type = 'dummy'),
          '{read,read_secrets,start}', 'grant_type takes the role as a regrole too');
SELECT toygun.revoke_type('dummy', 'tg_r_secrets'::regrole, '{start}');
SELECT is((SELECT array_agg(right_name ORDER BY right_name) FROM toygun.type_grants
            WHERE grantee = 'tg_r_secrets' AND resource_type = 'dummy'),
          '{read,read_secrets}', 'and so does revoke_type');
SELECT toygun.grant_type('dummy', 'tg_r_secrets', '{read,start}');
DROP ROLE tg_r_secrets;
SELECT is((SELECT count(*) FROM toygun.type_grants WHERE resource_type = 'dummy' AND grantee NOT IN ('tg_r_ops')),
          0::bigint, 'the grants of a dropped role go with it');
SELECT toygun.grant_type('dummy', 'tg_r_ops', '{read}');
SELECT is((SELECT count(*) FROM toygun.type_grant WHERE resource_type = 'dummy'), 1::bigint,
          'and the next grant on the type deletes them');

-- ---------------------------------------------------------------------------
-- The issue's roles: app starts and reads its runs but cannot read secrets or
-- repair; ops repairs but cannot read secrets; an unrelated role sees nothing
CREATE ROLE tg_r_issue_app;
CREATE ROLE tg_r_issue_ops;
CREATE ROLE tg_r_issue_else;
SELECT toygun.define_task('vaulted', 'deploy', '{one,two}', 'dummy_another(toygun.task)',
                          encrypted_fields => '{key}');
SELECT toygun.grant_type('vaulted', 'tg_r_issue_app', '{read,start}');
SELECT toygun.grant_type('vaulted', 'tg_r_issue_ops', '{read,operate}');
SET ROLE tg_r_issue_app;
SELECT toygun.start_task(toygun.create_resource('vaulted'), 'deploy', '{"key": "k-1"}') AS run \gset
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'run'), 1::bigint, 'app starts a run and reads it');
RESET ROLE;
SELECT alike(pg_temp.as_role('tg_r_issue_app', format($$SELECT toygun.field(ROW(t.id, t.resource_id, t.resource_type, t.name,
                  t.state, t.attrs, t.step, t.run_at, t.attempts, NULL, t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id, t.flow_key)::toygun.task, 'key')
                  FROM toygun.task t WHERE id = %L$$, :'run')), '42501 %right "read_secrets"%', 'app cannot read its secrets');
SELECT alike(pg_temp.as_role('tg_r_issue_app', format($$SELECT toygun.transition_task(%L, 'two')$$, :'run')),
             '42501 %right "operate"%', 'app cannot repair');
SELECT is(pg_temp.as_role('tg_r_issue_ops', format($$SELECT toygun.transition_task(%L, 'two', reason => 'stuck after the outage')$$, :'run')),
          'ok', 'ops repairs, with a reason');
SET ROLE tg_r_issue_app;
SELECT is((SELECT ARRAY[to_state, made_by::text, reason, coalesce(worker_pid::text, 'no pid')]
             FROM toygun.history(:'run') ORDER BY step DESC LIMIT 1),
          '{two,tg_r_issue_ops,"stuck after the outage","no pid"}',
          'the history says who repaired it and why, to a role that may read it');
RESET ROLE;
SELECT is(pg_temp.as_role('tg_r_issue_ops', format($$SELECT toygun.stop_task(%L, 'customer left')$$, :'run')),
          'ok', 'ops stops it, with a reason');
SELECT is((SELECT array_agg(coalesce(made_by::text, '-') || ':' || coalesce(reason, '-') ORDER BY step)
             FROM toygun.history(:'run')),
          '{tg_r_issue_ops:stuck after the outage,tg_r_issue_ops:customer left}',
          'each move by hand keeps its maker and its reason');
SELECT alike(pg_temp.as_role('tg_r_issue_ops', format($$SELECT toygun.field(ROW(t.id, t.resource_id, t.resource_type, t.name,
                  t.state, t.attrs, t.step, t.run_at, t.attempts, NULL, t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id, t.flow_key)::toygun.task, 'key')
                  FROM toygun.task t WHERE id = %L$$, :'run')), '42501 %right "read_secrets"%', 'ops cannot read secrets');
SELECT is(pg_temp.as_role('tg_r_issue_else', $q$DO $do$ BEGIN
              IF EXISTS (SELECT FROM toygun.task WHERE resource_type = 'vaulted') THEN RAISE 'saw'; END IF; END $do$ $q$),
          'ok', 'an unrelated role sees none of its rows');
SELECT is(pg_temp.as_role('tg_r_issue_else', format($q$DO $do$ BEGIN
              IF EXISTS (SELECT FROM toygun.transition WHERE object_id = %L) THEN RAISE 'saw'; END IF;
              IF EXISTS (SELECT FROM toygun.history(%L)) THEN RAISE 'saw history'; END IF; END $do$ $q$, :'run', :'run')),
          'ok', 'nor any of their histories');
SELECT is(pg_temp.as_role('tg_r_issue_else', format($q$DO $do$ BEGIN
              IF (SELECT count(*) FROM toygun.transition) <> 0 THEN RAISE 'saw'; END IF; END $do$ $q$)),
          'ok', 'a role that may read no type reads no history row');

SELECT * FROM finish();
ROLLBACK;
