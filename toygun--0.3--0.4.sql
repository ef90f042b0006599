-- toygun 0.3 to 0.4. Frozen once released, like every upgrade script.
\echo Use "ALTER EXTENSION toygun UPDATE TO '0.4'" to load this file. \quit

-- sql/upgrade.sql proves that a database updated from 0.1 through 0.3 has
-- exactly the objects of a fresh 0.4 install; a change to src/sql/ without
-- its upgrade step here fails that test.

-- Rights per type (issue 13): the grants, the functions that make them, and
-- readable_types(), which task_for() below calls.
-- Rights on a resource type and its task types, granted by its owner: read
-- (its rows and histories), start (resources, runs, periodic starts),
-- operate (ticks and moves by hand) and read_secrets (encrypted fields).
-- The owner, and every role with its privileges, has them all. A grant to
-- PUBLIC names role 0, which pg_dump writes as '-'.
CREATE TABLE toygun.type_grant (
    resource_type text NOT NULL,
    grantee       regrole NOT NULL,
    right_name    text NOT NULL
                  CHECK (right_name IN ('read', 'start', 'operate', 'read_secrets')),
    granted_by    regrole NOT NULL,
    granted_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (resource_type, grantee, right_name)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.type_grant', '');

-- role is a role name as GRANT reads it, or public.
CREATE FUNCTION toygun.grant_type(resource_type text, role text, rights text[]) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_grant_type' LANGUAGE C VOLATILE;
-- rights NULL: every right.
CREATE FUNCTION toygun.revoke_type(resource_type text, role text, rights text[] DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_revoke_type' LANGUAGE C VOLATILE;

-- The resource types whose rows the current user may read (as owner, or by
-- a grant of read to it or to PUBLIC), sorted. Row filters call it once per
-- query, as = ANY (((SELECT toygun.readable_types()))::text[]), never once
-- per row.
CREATE FUNCTION toygun.readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
-- The same, for error texts (last_error, failures): without grants to PUBLIC.
CREATE FUNCTION toygun.error_readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_error_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;

-- The grants of existing roles: a dropped role's grants reach nobody.
CREATE VIEW toygun.type_grants AS
    SELECT g.resource_type,
           CASE WHEN g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0 THEN 'public'
                ELSE g.grantee::pg_catalog.text END AS grantee,
           g.right_name, g.granted_by, g.granted_at
      FROM ONLY toygun.type_grant g
     WHERE g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0
        OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid OPERATOR(pg_catalog.=) g.grantee::pg_catalog.oid);
GRANT SELECT ON toygun.type_grant, toygun.type_grants TO PUBLIC;

-- Every query on toygun's tables reads ONLY toygun's own rows: a table a DBA
-- makes that INHERITS from one of them is never read through the API.
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                             OR t.resource_type OPERATOR(pg_catalog.=) ANY (toygun.error_readable_types())
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq)::toygun.task
          FROM ONLY toygun.task t
          LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;

CREATE OR REPLACE FUNCTION toygun.is_running(resource uuid, name text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT COALESCE((SELECT t.state <> '__stop__' FROM ONLY toygun.task t
                          WHERE t.resource_id = is_running.resource AND t.name = is_running.name
                          ORDER BY t.seq DESC LIMIT 1), false);
    END;

CREATE OR REPLACE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note FROM ONLY toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;

CREATE OR REPLACE VIEW toygun.stats AS
    SELECT 'task'::text AS kind, r.type AS resource_type, t.name AS task, t.state,
           count(*) AS live,
           count(*) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS due,
           count(*) FILTER (WHERE t.state = '__panic__') AS panicked,
           count(*) FILTER (WHERE t.attempts > 0) AS failing,
           pg_catalog.clock_timestamp() - min(t.run_at) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS oldest_due_age
      FROM ONLY toygun.task t JOIN ONLY toygun.resource r ON r.id = t.resource_id
     WHERE t.state <> '__stop__'
     GROUP BY r.type, t.name, t.state
    UNION ALL
    SELECT 'resource', r.type, NULL, r.state,
           count(*),
           count(*) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp()),
           count(*) FILTER (WHERE r.state = '__panic__'),
           count(*) FILTER (WHERE r.attempts > 0),
           pg_catalog.clock_timestamp() - min(r.run_at) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp())
      FROM ONLY toygun.resource r
     WHERE r.state <> '__stop__'
     GROUP BY r.type, r.state;

-- Private rows (issue 13): resources and runs show only to roles that may
-- read their type, and toygun.stats counts only those.
ALTER TABLE toygun.resource ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.task ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.resource FOR SELECT
    USING (type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
CREATE POLICY readable ON toygun.task FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
ALTER VIEW toygun.stats SET (security_invoker = true);
-- In 0.3 every role read every row: every type that exists keeps being
-- readable by everybody, until its owner revokes it
-- (toygun.revoke_type(type, 'public', '{read}')). Types defined from now on
-- are private.
INSERT INTO toygun.type_grant (resource_type, grantee, right_name, granted_by)
    SELECT d.name, 0::pg_catalog.oid::pg_catalog.regrole, 'read', d.owner FROM ONLY toygun.resource_type d
    ON CONFLICT DO NOTHING;

-- The audit trail (issue 13): every history row names its resource type
-- (what row-level security filters on), the role that made the move, the
-- worker's pid for moves made in a worker, and the reason given to a move by
-- hand. Rows made before 0.4 have no maker, pid or reason. A history row
-- whose object is gone gets the type '', which only the tables' owner and
-- superusers read.
ALTER TABLE toygun.transition ADD COLUMN resource_type text, ADD COLUMN made_by regrole,
    ADD COLUMN worker_pid integer, ADD COLUMN reason text;
UPDATE ONLY toygun.transition h
   SET resource_type = COALESCE((SELECT r.type FROM ONLY toygun.resource r WHERE r.id = h.object_id),
                                (SELECT t.resource_type FROM ONLY toygun.task t WHERE t.id = h.object_id),
                                '');
ALTER TABLE toygun.transition ALTER COLUMN resource_type SET NOT NULL;
ALTER TABLE toygun.transition ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.transition FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));

DROP FUNCTION toygun.history(uuid);
CREATE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text,
                   made_by regrole, worker_pid integer, reason text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note, h.made_by, h.worker_pid, h.reason
          FROM ONLY toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;

-- Moves by hand take a reason, kept in the history.
DROP FUNCTION toygun.transition_task(uuid, text, jsonb, text);
CREATE FUNCTION toygun.transition_task(id uuid, state text, attrs jsonb DEFAULT NULL,
                                       expected_state text DEFAULT NULL,
                                       reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_transition_task' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.stop_task(uuid);
CREATE FUNCTION toygun.stop_task(id uuid, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_stop_task' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.panic_task(uuid, text);
CREATE FUNCTION toygun.panic_task(id uuid, message text, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_panic_task' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.rewind_task(uuid, integer);
CREATE FUNCTION toygun.rewind_task(id uuid, n integer DEFAULT 1, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_rewind_task' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.transition_resource(uuid, text, jsonb, text);
CREATE FUNCTION toygun.transition_resource(id uuid, state text, attrs jsonb DEFAULT NULL,
                                           expected_state text DEFAULT NULL,
                                           reason text DEFAULT NULL) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_transition_resource' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.stop_resource(uuid);
CREATE FUNCTION toygun.stop_resource(id uuid, reason text DEFAULT NULL) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_stop_resource' LANGUAGE C VOLATILE;

-- The same with a regrole: grant_type('t', 'app'::regrole, ...) or a role's OID.
CREATE FUNCTION toygun.grant_type(resource_type text, role regrole, rights text[]) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT toygun.grant_type(grant_type.resource_type, grant_type.role::pg_catalog.text, grant_type.rights);
    END;
CREATE FUNCTION toygun.revoke_type(resource_type text, role regrole, rights text[] DEFAULT NULL)
    RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT toygun.revoke_type(revoke_type.resource_type, revoke_type.role::pg_catalog.text, revoke_type.rights);
    END;

-- Private like the runs: a periodic start (its args are the attrs its runs
-- start with) and the resources its firings claimed show only to roles that
-- may read its resource type. The firings run as the tables' owner, which
-- the policies do not filter.
ALTER TABLE toygun.schedule ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.schedule_start ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.schedule FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
-- the schedules the caller reads, through the policy above, once per query
CREATE POLICY readable ON toygun.schedule_start FOR SELECT
    USING (schedule_id OPERATOR(pg_catalog.=) ANY (((SELECT pg_catalog.array_agg(s.id) FROM ONLY toygun.schedule s))::pg_catalog.int8[]));

-- Failed ticks kept (issue 13): one row per failed attempt, private like the
-- runs. Runs that failed before 0.4 have only their last_error.
CREATE TABLE toygun.failure (
    object_id     uuid NOT NULL,
    failure_no    integer NOT NULL,
    resource_type text NOT NULL,
    attempt       integer NOT NULL,
    at            timestamptz NOT NULL,
    duration      interval,
    error         text NOT NULL,
    worker_pid    integer,
    PRIMARY KEY (object_id, failure_no)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.failure', '');
ALTER TABLE toygun.failure ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.failure FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.error_readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.failure TO PUBLIC;

-- Retry policy per task type (issue 13): max_attempts, retry_backoff and
-- tick_timeout, NULL (the settings) for every task type that exists. The new
-- arguments change define_task's signature: it is made again once, with the
-- arguments issue 15 adds too (below, with the breaker).
ALTER TABLE toygun.task_type ADD COLUMN max_attempts integer, ADD COLUMN retry_backoff interval,
    ADD COLUMN tick_timeout interval;

-- Attrs merged by hand, with no transition (issue 14); null removes a field.
CREATE FUNCTION toygun.update_task(id uuid, attrs jsonb, expected_step bigint DEFAULT NULL)
    RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_update_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.update_resource(id uuid, attrs jsonb, expected_step bigint DEFAULT NULL)
    RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_update_resource' LANGUAGE C VOLATILE;

-- A start that finds a live run returns it, or with if_live => 'error' raises
-- 23505 (issue 14).
DROP FUNCTION toygun.start_task(uuid, text, jsonb);
CREATE FUNCTION toygun.start_task(resource uuid, name text, args jsonb DEFAULT '{}',
                                   if_live text DEFAULT 'return') RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_start_task' LANGUAGE C VOLATILE;

-- A failing, waiting or panicked run due now (issue 14).
CREATE FUNCTION toygun.retry_task(id uuid, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_retry_task' LANGUAGE C VOLATILE;

-- Messages to runs (issue 14): send() stores one and makes the run due;
-- its handler takes them with receive(), in order, in its tick's
-- transaction. seq orders them. Private like the runs.
CREATE SEQUENCE toygun.message_seq;
CREATE TABLE toygun.message (
    run_id        uuid NOT NULL,
    seq           bigint NOT NULL DEFAULT pg_catalog.nextval('toygun.message_seq'),
    resource_type text NOT NULL,
    message       jsonb NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    sent_by       regrole NOT NULL,
    -- false: the run may not have been made due for it yet (a child's end,
    -- written while the parent was locked); the workers see to it
    swept         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX message_unswept_idx ON toygun.message (run_id) WHERE NOT swept;
SELECT pg_catalog.pg_extension_config_dump('toygun.message', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.message_seq', '');
ALTER TABLE toygun.message ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.message FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.message TO PUBLIC;

CREATE FUNCTION toygun.send(run uuid, message jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_send' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.receive(t toygun.task) RETURNS SETOF jsonb
    AS 'MODULE_PATHNAME', 'toygun_receive' LANGUAGE C VOLATILE;

-- Waiting for children (issue 14): a run started by a handler records the
-- run that started it; task_for() returns the new column too.
ALTER TABLE toygun.task ADD COLUMN parent_run uuid;
GRANT SELECT (parent_run) ON toygun.task TO PUBLIC;
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                             OR t.resource_type OPERATOR(pg_catalog.=) ANY (toygun.error_readable_types())
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq, t.parent_run)::toygun.task
          FROM ONLY toygun.task t
          LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;
-- Testing users' handlers (issue 14): ticks by hand until a state, or until
-- the run waits by this session's test clock (toygun.test_now), which
-- test_advance() moves on. Workers ignore the clock.
CREATE FUNCTION toygun.test_tick_until(id uuid, state text DEFAULT '__stop__',
                                       max_ticks integer DEFAULT 100) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_test_tick_until' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.test_advance(by interval) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'toygun_test_advance' LANGUAGE C VOLATILE;
-- Parents that mean something (issue 14): a resource type may name the type
-- of its resources' parents; stop_resource stops the live children first
-- (cascade), or refuses while there are any. Both signatures change
-- (define_resource is made again once, with issue 15's arguments, below).
ALTER TABLE toygun.resource_type ADD COLUMN parent_type text;
DROP FUNCTION toygun.stop_resource(uuid, text);
-- cascade: stop the live children first (false: refuse while there are any)
CREATE FUNCTION toygun.stop_resource(id uuid, reason text DEFAULT NULL, cascade boolean DEFAULT true)
    RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_stop_resource' LANGUAGE C VOLATILE;

-- Periodic starts that choose (issue 14): the resource states a periodic
-- start starts in, why its last firing failed and when it fires next. The
-- schedules show to the roles that may start on the type too, the claims
-- only to readers. start_every's signature changes.
ALTER TABLE toygun.schedule ADD COLUMN states text[], ADD COLUMN last_error text,
    ADD COLUMN next_fire_at timestamptz;
DROP FUNCTION toygun.start_every(text, text, text, jsonb);
CREATE FUNCTION toygun.start_every(resource_type text, task text, schedule text,
                                   args jsonb DEFAULT '{}', states text[] DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_start_every' LANGUAGE C VOLATILE;
-- The resource types on which the current user may start runs (as owner, or
-- by a grant of start to it or to PUBLIC), sorted; once per query, as
-- readable_types(). toygun.schedule shows a periodic start to them too.
CREATE FUNCTION toygun.startable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_startable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
DROP POLICY readable ON toygun.schedule;
CREATE POLICY readable ON toygun.schedule FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[])
        OR resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.startable_types()))::pg_catalog.text[]));
DROP POLICY readable ON toygun.schedule_start;
CREATE POLICY readable ON toygun.schedule_start FOR SELECT
    USING (schedule_id OPERATOR(pg_catalog.=) ANY (((SELECT pg_catalog.array_agg(s.id) FROM ONLY toygun.schedule s
                                                      WHERE s.resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[])))::pg_catalog.int8[]));
-- The run once its committed state is one of states, or at the timeout as
-- it is then (issue 14): it sleeps until a commit that changed the run
-- wakes it. Right read; READ COMMITTED only.
CREATE FUNCTION toygun.wait(id uuid, timeout interval DEFAULT '30 s',
                            states text[] DEFAULT '{__stop__,__panic__}') RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_wait' LANGUAGE C VOLATILE;
-- Start and stop hooks, stop states (issue 15): a task type's should_start
-- and should_stop (qualified signatures, like handler) and stop_state, a
-- resource type's stop_state; the resources a periodic start's should_start
-- declined. The new arguments change both signatures.
ALTER TABLE toygun.resource_type ADD COLUMN stop_state text;
ALTER TABLE toygun.task_type ADD COLUMN should_start text, ADD COLUMN should_stop text,
    ADD COLUMN stop_state text;
ALTER TABLE toygun.schedule ADD COLUMN last_declined bigint NOT NULL DEFAULT 0;
-- Alarms and escalation (issue 15): resource types gain an alarm_handler (the
-- alarm table and its functions come below). define_resource gains
-- stop_state and alarm_handler, and issue 16's move_states.
ALTER TABLE toygun.resource_type ADD COLUMN alarm_handler text;
DROP FUNCTION toygun.define_resource(text, text[], regprocedure, text[], text[], regrole);
CREATE FUNCTION toygun.define_resource(
    type text,
    states text[] DEFAULT '{starting,running,stopping,restarting}',
    handler regprocedure DEFAULT NULL,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    parent_type text DEFAULT NULL,
    stop_state text DEFAULT NULL,
    alarm_handler regprocedure DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_resource' LANGUAGE C VOLATILE;

-- Triggers (issue 15): when a resource of resource_type enters on_state (a move into it
-- from another state, by a tick or by hand), task is started on it with
-- args, in the same transaction, acting for owner (the role that defined
-- the trigger), as start_task starts it: a live run means nothing starts.
CREATE TABLE toygun.trigger (
    resource_type text NOT NULL,
    on_state      text NOT NULL,          -- a declared state of the type, or __panic__
    task          text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}',   -- the attrs each run starts with
    owner         regrole NOT NULL,       -- the role that defined it; starts act for it
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (resource_type, on_state, task)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.trigger', '');

CREATE FUNCTION toygun.define_trigger(resource_type text, on_state text, task text,
                                      args jsonb DEFAULT '{}') RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_trigger' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_trigger(resource_type text, on_state text, task text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_trigger' LANGUAGE C VOLATILE;

-- Private like the runs: a trigger (its args are the attrs its runs start
-- with) shows only to roles that may read its resource type.
GRANT SELECT ON toygun.trigger TO PUBLIC;
ALTER TABLE toygun.trigger ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.trigger FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));

-- Alarms (issue 15): something about a resource or a run that needs a person
-- or a program. One open alarm per object and kind (the partial unique index):
-- raising it again counts it. A panic raises kind 'panic' on the run or
-- resource; repairing it closes it. When an alarm opens or re-opens, it is
-- offered to the alarm_handler of its resource's type, then of the parent
-- resource's type, and so on up, until one returns 'handled' (escalation:
-- one {type, resource, result, at} per offer). state is what was stored:
-- a snoozed alarm whose snoozed_until has passed reads as active in
-- toygun.alarms, and is stored active again by its next raise. Private as
-- the runs are (read on the type).
CREATE TABLE toygun.alarm (
    id              uuid PRIMARY KEY,
    object_id       uuid NOT NULL,
    object_kind     text NOT NULL CHECK (object_kind IN ('resource', 'task')),
    resource_type   text NOT NULL,   -- the object's resource type (a run's resource's)
    task            text,            -- a run's task name; NULL for a resource
    kind            text NOT NULL,
    state           text NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'snoozed', 'closed')),
    message         text NOT NULL,
    first_raised_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    last_raised_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    count           integer NOT NULL DEFAULT 1,
    snoozed_until   timestamptz,
    closed_at       timestamptz,
    closed_reason   text,
    closed_by       regrole,
    escalation      jsonb NOT NULL DEFAULT '[]',
    handled_by      text             -- the resource type whose alarm_handler took it
);
CREATE UNIQUE INDEX alarm_open_idx ON toygun.alarm (object_id, kind) WHERE state <> 'closed';
CREATE INDEX alarm_object_idx ON toygun.alarm (object_id);
SELECT pg_catalog.pg_extension_config_dump('toygun.alarm', '');
ALTER TABLE toygun.alarm ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.alarm FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.alarm TO PUBLIC;

-- The alarms with their state as it is now: a snooze that has run out reads active.
CREATE VIEW toygun.alarms WITH (security_invoker = true) AS
    SELECT a.id, a.object_id, a.object_kind, a.resource_type, a.task, a.kind,
           CASE WHEN a.state OPERATOR(pg_catalog.=) 'snoozed'
                 AND a.snoozed_until OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                THEN 'active' ELSE a.state END AS state,
           a.message, a.first_raised_at, a.last_raised_at, a.count, a.snoozed_until,
           a.closed_at, a.closed_reason, a.closed_by, a.escalation, a.handled_by
      FROM ONLY toygun.alarm a;
GRANT SELECT ON toygun.alarms TO PUBLIC;

-- Right operate on the object's type; kinds 'panic' and 'breaker' are toygun's own.
CREATE FUNCTION toygun.raise_alarm(object uuid, kind text, message text) RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_raise_alarm' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.snooze_alarm(id uuid, until timestamptz) RETURNS toygun.alarm
    AS 'MODULE_PATHNAME', 'toygun_snooze_alarm' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.close_alarm(id uuid, reason text DEFAULT NULL) RETURNS toygun.alarm
    AS 'MODULE_PATHNAME', 'toygun_close_alarm' LANGUAGE C VOLATILE;

-- Notifications (issue 15): alarms that open, re-open and close are written
-- to toygun.outbox, one row per channel that a route matches, in the
-- transaction that opened, re-opened or closed the alarm, with the payload
-- already in the channel kind's shape; NOTIFY toygun_outbox (payload: the
-- row's id) wakes a deliverer at commit. Nothing is sent from PostgreSQL.
-- Channels hold secrets (webhook URLs, routing keys, addresses): these three
-- tables are the extension owner's only, not granted to PUBLIC at all, and
-- only the owner (and superusers) define channels and routes.
CREATE TABLE toygun.channel (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('webhook', 'slack', 'pagerduty', 'email')),
    config     jsonb NOT NULL,       -- checked per kind by define_channel()
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
SELECT pg_catalog.pg_extension_config_dump('toygun.channel', '');

-- pattern: 'kind:<alarm kind>' or 'type:<resource type>', '*' for every one.
CREATE TABLE toygun.route (
    pattern    text NOT NULL,
    channel    text NOT NULL REFERENCES toygun.channel (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (pattern, channel)
);
CREATE INDEX route_channel_idx ON toygun.route (channel);
SELECT pg_catalog.pg_extension_config_dump('toygun.route', '');

-- What a deliverer sends: it takes rows FOR UPDATE SKIP LOCKED, sends each
-- payload to its channel, and sets delivered_at (or counts attempts and
-- sets last_error). Rows are kept: deleting delivered ones is the
-- deliverer's (or the operator's) choice.
CREATE SEQUENCE toygun.outbox_seq;
CREATE TABLE toygun.outbox (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.outbox_seq'),
    channel      text NOT NULL,      -- its name when written (not a key: a dropped channel's rows stay)
    alarm_id     uuid NOT NULL,
    event        text NOT NULL CHECK (event IN ('open', 'reopen', 'close')),
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts     integer NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    last_error   text
);
ALTER SEQUENCE toygun.outbox_seq OWNED BY toygun.outbox.id;
CREATE INDEX outbox_pending_idx ON toygun.outbox (id) WHERE delivered_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('toygun.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.outbox_seq', '');
REVOKE ALL ON toygun.channel, toygun.route, toygun.outbox FROM PUBLIC;

-- The extension's owner (or a superuser) only. Defining a channel again
-- replaces its kind and config; dropping it drops its routes.
CREATE FUNCTION toygun.define_channel(name text, kind text, config jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_channel' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_channel(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_channel' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.define_route(pattern text, channel text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_route' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_route(pattern text, channel text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_route' LANGUAGE C VOLATILE;
-- Circuit breakers (issue 15): a task type's breaker (task_type.breaker),
-- the breaker table, and toygun.stats with a breaker column. define_task is
-- made again, with 0.4's arguments: the retry policy (issue 13), the hooks
-- and stop_state, the breaker, and issue 16's move_states.
ALTER TABLE toygun.task_type ADD COLUMN breaker jsonb;
DROP FUNCTION toygun.define_task(text, text, text[], regprocedure, text[], text[], regrole);
CREATE FUNCTION toygun.define_task(
    resource_type text,
    name text,
    states text[],
    handler regprocedure,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_backoff interval DEFAULT NULL,
    tick_timeout interval DEFAULT NULL,
    should_start regprocedure DEFAULT NULL,
    should_stop regprocedure DEFAULT NULL,
    stop_state text DEFAULT NULL,
    breaker jsonb DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_task' LANGUAGE C VOLATILE;
CREATE TABLE toygun.breaker (
    resource_type    text NOT NULL,
    task             text NOT NULL,
    state            text NOT NULL DEFAULT 'closed'
                     CHECK (state IN ('closed', 'open', 'half_open')),
    recent_failures  timestamptz[] NOT NULL DEFAULT '{}',
    opened_at        timestamptz,
    open_until       timestamptz,
    trial_run        uuid,
    failures_at_open integer,
    alarm_run        uuid,
    opens            integer NOT NULL DEFAULT 0,
    closed_at        timestamptz,
    PRIMARY KEY (resource_type, task)
);
ALTER TABLE toygun.breaker ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.breaker FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.breaker TO PUBLIC;
CREATE OR REPLACE VIEW toygun.stats WITH (security_invoker = true) AS
    SELECT 'task'::text AS kind, r.type AS resource_type, t.name AS task, t.state,
           count(*) AS live,
           count(*) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS due,
           count(*) FILTER (WHERE t.state = '__panic__') AS panicked,
           count(*) FILTER (WHERE t.attempts > 0) AS failing,
           pg_catalog.clock_timestamp() - min(t.run_at) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS oldest_due_age,
           (SELECT COALESCE(b.state, 'closed') FROM ONLY toygun.task_type d
              LEFT JOIN ONLY toygun.breaker b ON b.resource_type = d.resource_type AND b.task = d.name
             WHERE d.resource_type = r.type AND d.name = t.name AND d.breaker IS NOT NULL) AS breaker
      FROM ONLY toygun.task t JOIN ONLY toygun.resource r ON r.id = t.resource_id
     WHERE t.state <> '__stop__'
     GROUP BY r.type, t.name, t.state
    UNION ALL
    SELECT 'resource', r.type, NULL, r.state,
           count(*),
           count(*) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp()),
           count(*) FILTER (WHERE r.state = '__panic__'),
           count(*) FILTER (WHERE r.attempts > 0),
           pg_catalog.clock_timestamp() - min(r.run_at) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp()),
           NULL
      FROM ONLY toygun.resource r
     WHERE r.state <> '__stop__'
     GROUP BY r.type, r.state;
-- Field types (issue 16): resource and task types' field_types, the types of
-- their fields, checked at every attrs write (define_resource and define_task
-- above take the argument field_types).
ALTER TABLE toygun.resource_type ADD COLUMN field_types jsonb;
ALTER TABLE toygun.task_type ADD COLUMN field_types jsonb;

-- Safe redefinition (issue 16): define_task and define_resource take
-- move_states (above, in their one DROP/CREATE each). A function a defined
-- type uses (handler, alarm_handler, should_start, should_stop) cannot be
-- dropped: PostgreSQL records no dependency on a table row, so an event
-- trigger refuses the DROP (DROP FUNCTION, DROP SCHEMA ... CASCADE, DROP
-- OWNED), naming the functions and the types. DROP EXTENSION toygun is let
-- through.
CREATE FUNCTION toygun.guard_drop() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'toygun_guard_drop' LANGUAGE C;
REVOKE ALL ON FUNCTION toygun.guard_drop() FROM PUBLIC;
CREATE EVENT TRIGGER toygun_guard_drop ON sql_drop EXECUTE FUNCTION toygun.guard_drop();

-- issue 16: renames (src/install/renames.sql)
-- Renames (issue 16): rename_state(), rename_task() and rename_resource_type()
-- change a name wherever a row uses it as a key, in one transaction (see
-- README, "Renames"); the history's from_state, to_state and note keep the
-- names of their time. Each rename is recorded here: kind, the names before
-- and after, who and when, and how many live objects were renamed (for a
-- state: moved to the new name). resource_type is the type's name now, and
-- task, for a state of a task type, the task's name now: a later rename
-- updates them, as it updates every key (row-level security filters on
-- resource_type, as on the runs).
CREATE SEQUENCE toygun.rename_seq;
CREATE TABLE toygun.rename (
    id            bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.rename_seq'),
    kind          text NOT NULL CHECK (kind IN ('resource_type', 'task', 'state')),
    resource_type text NOT NULL,
    task          text,
    old_name      text NOT NULL,
    new_name      text NOT NULL,
    renamed_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    renamed_by    regrole NOT NULL,
    live_objects  bigint NOT NULL
);
ALTER SEQUENCE toygun.rename_seq OWNED BY toygun.rename.id;
CREATE INDEX rename_type_idx ON toygun.rename (resource_type);
SELECT pg_catalog.pg_extension_config_dump('toygun.rename', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.rename_seq', '');
ALTER TABLE toygun.rename ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.rename FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.rename TO PUBLIC;

-- For roles that may act for the type's owner (as define_* are). task NULL:
-- a state of the resource type.
CREATE FUNCTION toygun.rename_state(resource_type text, task text, old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_state' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rename_task(resource_type text, old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rename_resource_type(old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_resource_type' LANGUAGE C VOLATILE;

-- issue 16: schema versions (src/install/versions.sql; the columns in src/install/schema.sql)
-- Schema versions (issue 16): types have a version and an upgrade function
-- (define_resource and define_task above take the arguments version and
-- upgrade), objects the version their attrs are in. A constant default:
-- no table is rewritten. task_for() returns the new column too.
ALTER TABLE toygun.resource_type ADD COLUMN version integer NOT NULL DEFAULT 1,
    ADD COLUMN upgrade text;
ALTER TABLE toygun.task_type ADD COLUMN version integer NOT NULL DEFAULT 1,
    ADD COLUMN upgrade text;
ALTER TABLE toygun.resource ADD COLUMN version integer NOT NULL DEFAULT 1;
-- task_for()'s body casts to the row type of toygun.task, which keeps a
-- column with a default from being added: a body of text meanwhile, the
-- body made again below.
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED AS 'SELECT NULL::toygun.task';
ALTER TABLE toygun.task ADD COLUMN version integer NOT NULL DEFAULT 1;
GRANT SELECT (version) ON toygun.resource, toygun.task TO PUBLIC;
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                             OR t.resource_type OPERATOR(pg_catalog.=) ANY (toygun.error_readable_types())
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq, t.parent_run, t.version)::toygun.task
          FROM ONLY toygun.task t
          LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;
-- Schema versions (issue 16): a type's version (resource_type.version,
-- task_type.version) is the shape its objects' attrs are in; each object
-- records the version its attrs were last written in (resource.version,
-- task.version). An object below its type's version is upgraded by the
-- type's upgrade function before its next tick or move by hand, or by
-- backfill(): at most batch live objects of the type (task NULL: its
-- resources; else the runs of that task), each locked and upgraded in a
-- subtransaction of its own. Objects locked by a tick are skipped (the
-- tick upgrades them); a failing upgrade counts as a failed tick of the
-- object (retried after its backoff, a panic after max_attempts). Returns
-- how many live objects of the type remain below the version for a later
-- call (not counting those waiting out a failure's backoff or panicked).
-- Right operate on the resource type.
CREATE FUNCTION toygun.backfill(resource_type text, task text DEFAULT NULL,
                                batch integer DEFAULT 1000) RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_backfill' LANGUAGE C VOLATILE;
-- Retention (issue 16): types keep their stopped objects and history for
-- keep (NULL: forever; the types there are keep theirs forever, so the update
-- removes nothing), the history is partitioned by when its rows expire, and
-- maintain() (and the workers) make and drop the partitions and remove what
-- has expired.
ALTER TABLE toygun.resource_type ADD COLUMN keep interval;
ALTER TABLE toygun.task_type ADD COLUMN keep interval;
CREATE INDEX resource_stopped_idx ON toygun.resource (type, created_at)
    WHERE state = '__stop__';
-- history()'s body reads the table replaced below: a text body meanwhile
CREATE OR REPLACE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text,
                   made_by regrole, worker_pid integer, reason text)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS 'SELECT NULL::bigint, NULL::text, NULL::text, NULL::timestamptz, NULL::text, NULL::regrole, NULL::integer, NULL::text WHERE false';
-- Every row of the history moves to the partitioned table, into
-- transition_forever: written before keep, each is kept forever.
ALTER TABLE toygun.transition RENAME TO transition_0_3;
ALTER INDEX toygun.transition_pkey RENAME TO transition_0_3_pkey;
CREATE TABLE toygun.transition (
    object_id   uuid NOT NULL,
    step        bigint NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    note        text,
    -- the audit trail (0.4): the resource type (what row-level security filters on),
    -- the role that made the move, the worker's pid for moves made in a worker, and
    -- the reason given to a move by hand
    resource_type text NOT NULL,
    made_by     regrole,
    worker_pid  integer,
    reason      text,
    -- retention (0.4): when the row goes, its write time plus its type's keep;
    -- infinity: kept forever. Whole partitions expire (toygun.maintain()).
    expires_at  timestamptz NOT NULL DEFAULT 'infinity'
) PARTITION BY RANGE (expires_at);
-- each partition has its own key (object_id, step): see schema.sql
CREATE TABLE toygun.transition_forever PARTITION OF toygun.transition (PRIMARY KEY (object_id, step))
    FOR VALUES FROM ('infinity') TO (MAXVALUE);
CREATE TABLE toygun.transition_default PARTITION OF toygun.transition (PRIMARY KEY (object_id, step))
    DEFAULT;
-- the default partition's rows by expiry: a round deletes the expired ones
-- and moves out those a new time partition takes without reading them all
CREATE INDEX transition_default_expires_idx ON toygun.transition_default (expires_at);
INSERT INTO toygun.transition (object_id, step, from_state, to_state, at, note, resource_type,
                               made_by, worker_pid, reason, expires_at)
    SELECT object_id, step, from_state, to_state, at, note, resource_type,
           made_by, worker_pid, reason, 'infinity'
      FROM ONLY toygun.transition_0_3;
-- out of the extension first, which takes it off the list of tables pg_dump dumps
ALTER EXTENSION toygun DROP TABLE toygun.transition_0_3;
DROP TABLE toygun.transition_0_3;
SELECT pg_catalog.pg_extension_config_dump('toygun.transition_forever', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.transition_default', '');
ALTER TABLE toygun.transition ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.transition FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.transition TO PUBLIC;
CREATE OR REPLACE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text,
                   made_by regrole, worker_pid integer, reason text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note, h.made_by, h.worker_pid, h.reason
          FROM toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;
-- keep (retention, issue 16): how long a stopped object of the type, and each
-- history row of its objects, is kept; NULL: forever. Left out, the setting
-- toygun.keep at definition time: default_keep() reads it (NULL for forever).
CREATE FUNCTION toygun.default_keep() RETURNS interval
    AS 'MODULE_PATHNAME', 'toygun_default_keep' LANGUAGE C STABLE PARALLEL SAFE;
DROP FUNCTION toygun.define_resource(text, text[], regprocedure, text[], text[], regrole, text, text,
                                     regprocedure, jsonb, jsonb, integer, regprocedure);
CREATE FUNCTION toygun.define_resource(
    type text,
    states text[] DEFAULT '{starting,running,stopping,restarting}',
    handler regprocedure DEFAULT NULL,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    parent_type text DEFAULT NULL,
    stop_state text DEFAULT NULL,
    alarm_handler regprocedure DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL,
    keep interval DEFAULT toygun.default_keep()) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_resource' LANGUAGE C VOLATILE;
DROP FUNCTION toygun.define_task(text, text, text[], regprocedure, text[], text[], regrole, integer,
                                 interval, interval, regprocedure, regprocedure, text, jsonb, jsonb,
                                 jsonb, integer, regprocedure);
CREATE FUNCTION toygun.define_task(
    resource_type text,
    name text,
    states text[],
    handler regprocedure,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_backoff interval DEFAULT NULL,
    tick_timeout interval DEFAULT NULL,
    should_start regprocedure DEFAULT NULL,
    should_stop regprocedure DEFAULT NULL,
    stop_state text DEFAULT NULL,
    breaker jsonb DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL,
    keep interval DEFAULT toygun.default_keep()) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_task' LANGUAGE C VOLATILE;
-- Retention (issue 16): one round of maintenance, as the workers do it when
-- nothing is due and at least every toygun.maintain_interval: create the
-- history's time partitions rows will need, drop those whose rows have all
-- expired (given up until the next round while another transaction holds the
-- history), delete expired rows of the default partition, remove stopped runs
-- and resources past their type's keep (at most toygun.prune_batch of each)
-- with what only they use, and prune failures and schedule claims. For
-- installations without the workers (pg_cron) and for tests; in one
-- transaction, the caller's. The extension's owner (or a role with its
-- privileges, a superuser) only: it acts on every owner's types. Returns
-- what it did, as {"partitions_created": n, ...}.
CREATE FUNCTION toygun.maintain() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_maintain' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION toygun.maintain() FROM PUBLIC;

-- Retention, hostile review (lc-attack2): the history's partitions have no
-- policy, so read by their own names they show nothing to anyone but the
-- owner, whatever a default ACL granted (the workers' time partitions too).
ALTER TABLE toygun.transition_forever ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.transition_default ENABLE ROW LEVEL SECURITY;

-- issue 17, flow control: priorities, queues and rate limits
-- (src/install/schema.sql, define.sql, objects.sql, grants.sql, worker.sql,
-- queues.sql, rate.sql). Constant defaults: no table rewrite. Rebuilding
-- task_due_idx and resource_due_idx with their new predicates scans
-- toygun.task and toygun.resource under a lock that blocks writes (an update
-- script cannot build an index concurrently).
ALTER TABLE toygun.task_type ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD COLUMN queue_id smallint NOT NULL DEFAULT 0, ADD COLUMN rate_limit text,
    ADD COLUMN max_running integer, ADD COLUMN concurrency_key text, ADD COLUMN max_per_key integer,
    ADD COLUMN limit_id smallint UNIQUE;
ALTER TABLE toygun.resource_type ADD COLUMN queue_id smallint NOT NULL DEFAULT 0;
CREATE TABLE toygun.queue (
    id         smallint PRIMARY KEY CHECK (id >= 0 AND id < 256),
    name       text NOT NULL UNIQUE,
    paused     boolean NOT NULL DEFAULT false
);
INSERT INTO toygun.queue (id, name) VALUES (0, 'default');
SELECT pg_catalog.pg_extension_config_dump('toygun.queue', 'WHERE id <> 0');
GRANT SELECT ON toygun.queue TO PUBLIC;
ALTER TABLE toygun.resource ADD COLUMN queue_id smallint NOT NULL DEFAULT 0;
GRANT SELECT (queue_id) ON toygun.resource TO PUBLIC;
-- task_for()'s body casts to the row type of toygun.task (see version above):
-- a body of text meanwhile, made again below with the new columns.
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED AS 'SELECT NULL::toygun.task';
ALTER TABLE toygun.task ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD COLUMN queue_id smallint NOT NULL DEFAULT 0, ADD COLUMN flow_key bigint;
GRANT SELECT (priority, queue_id, flow_key) ON toygun.task TO PUBLIC;
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                             OR t.resource_type OPERATOR(pg_catalog.=) ANY (toygun.error_readable_types())
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority,
                   t.queue_id, t.flow_key)::toygun.task
          FROM ONLY toygun.task t
          LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;
-- Each scheduled object is in exactly one claim index: tasks of the default
-- queue at priority 0 in task_due_idx, as before flow control; the others in
-- task_lane_idx, where a claim reads one (queue, priority) at a time in
-- run_at order; runs of types with a concurrency limit in task_flow_idx, by
-- key. Resources of the default queue in resource_due_idx, the others in
-- resource_queue_idx. The claims repeat each predicate literally, so that a
-- generic plan matches the partial index.
DROP INDEX toygun.task_due_idx;
CREATE INDEX task_due_idx ON toygun.task (run_at)
    WHERE run_at IS NOT NULL AND queue_id = 0 AND priority = 0 AND flow_key IS NULL;
CREATE INDEX task_lane_idx ON toygun.task (queue_id, priority, run_at)
    WHERE run_at IS NOT NULL AND (queue_id <> 0 OR priority <> 0) AND flow_key IS NULL;
CREATE INDEX task_flow_idx ON toygun.task (flow_key, run_at)
    WHERE run_at IS NOT NULL AND flow_key IS NOT NULL;
DROP INDEX toygun.resource_due_idx;
CREATE INDEX resource_due_idx ON toygun.resource (run_at) WHERE run_at IS NOT NULL AND queue_id = 0;
CREATE INDEX resource_queue_idx ON toygun.resource (queue_id, run_at) WHERE run_at IS NOT NULL AND queue_id <> 0;
-- priority (issue 17): -100..100, the run's; NULL: its task type's
-- (define_task's priority). Ignored when a live run is returned.
DROP FUNCTION toygun.start_task(uuid, text, jsonb, text);
CREATE FUNCTION toygun.start_task(resource uuid, name text, args jsonb DEFAULT '{}',
                                   if_live text DEFAULT 'return', priority integer DEFAULT NULL) RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_start_task' LANGUAGE C VOLATILE;
-- queue (issue 17): define_resource's and define_task's last argument
DROP FUNCTION toygun.define_resource(text, text[], regprocedure, text[], text[], regrole, text, text,
                                     regprocedure, jsonb, jsonb, integer, regprocedure, interval);
CREATE FUNCTION toygun.define_resource(
    type text,
    states text[] DEFAULT '{starting,running,stopping,restarting}',
    handler regprocedure DEFAULT NULL,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    parent_type text DEFAULT NULL,
    stop_state text DEFAULT NULL,
    alarm_handler regprocedure DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL,
    keep interval DEFAULT toygun.default_keep(),
    queue text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_resource' LANGUAGE C VOLATILE;
-- priority, queue, rate_limit, max_running, concurrency_key and max_per_key
-- (issue 17): define_task's last arguments
DROP FUNCTION toygun.define_task(text, text, text[], regprocedure, text[], text[], regrole, integer,
                                 interval, interval, regprocedure, regprocedure, text, jsonb, jsonb,
                                 jsonb, integer, regprocedure, interval);
CREATE FUNCTION toygun.define_task(
    resource_type text,
    name text,
    states text[],
    handler regprocedure,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_backoff interval DEFAULT NULL,
    tick_timeout interval DEFAULT NULL,
    should_start regprocedure DEFAULT NULL,
    should_stop regprocedure DEFAULT NULL,
    stop_state text DEFAULT NULL,
    breaker jsonb DEFAULT NULL,
    field_types jsonb DEFAULT NULL,
    move_states jsonb DEFAULT NULL,
    version integer DEFAULT NULL,
    upgrade regprocedure DEFAULT NULL,
    keep interval DEFAULT toygun.default_keep(),
    priority integer DEFAULT NULL,
    queue text DEFAULT NULL,
    rate_limit text DEFAULT NULL,
    max_running integer DEFAULT NULL,
    concurrency_key text DEFAULT NULL,
    max_per_key integer DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_task' LANGUAGE C VOLATILE;
-- worker_status() gains queue
DROP FUNCTION toygun.worker_status();
CREATE FUNCTION toygun.worker_status()
    RETURNS TABLE (pid integer, slot integer, idle boolean, started_at timestamptz,
                   ticks bigint, failures bigint, last_tick_at timestamptz,
                   transactions bigint, deaths bigint, queue text)
    AS 'MODULE_PATHNAME', 'toygun_worker_status' LANGUAGE C VOLATILE;
-- Queues (issue 17, flow control). pause_queue stops the workers of a queue
-- from claiming its objects from the commit on (ticks by hand go on, as
-- with toygun.paused); resume_queue lets them claim again and wakes them.
-- Both are idempotent, and only for the extension's owner: a queue spans
-- the types of every owner.
CREATE FUNCTION toygun.pause_queue(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_pause_queue' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.resume_queue(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_resume_queue' LANGUAGE C VOLATILE;

-- Each queue of toygun.queue, and each toygun.queues names: its id (NULL
-- until a type names it), the workers the setting gives it, the running
-- workers serving it and how many of them are busy ticking, and whether it
-- is paused.
CREATE FUNCTION toygun.queue_status()
    RETURNS TABLE (queue text, id smallint, workers integer, running integer, busy integer,
                   paused boolean)
    AS 'MODULE_PATHNAME', 'toygun_queue_status' LANGUAGE C VOLATILE;

-- Rate limits (issue 17, flow control): token buckets by name. A limit lets
-- rate tokens through per interval per, up to burst at once (NULL: rate);
-- a task type naming one (define_task's rate_limit) takes a token for each
-- tick, and any SQL may take tokens with take_token(). The buckets live in
-- shared memory (a GCRA on one word per limit, src/rate.c): after a restart
-- they start full, and a token taken is spent even if its transaction rolls
-- back. The definer owns a limit: only roles with its privileges redefine or
-- drop it, take its tokens, name it in a task type or see it.
CREATE TABLE toygun.rate_limit (
    name       text PRIMARY KEY,
    rate       integer NOT NULL,
    per        interval NOT NULL,
    burst      integer NOT NULL,
    owner      regrole NOT NULL,
    defined_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('toygun.rate_limit', '');
ALTER TABLE toygun.rate_limit ENABLE ROW LEVEL SECURITY;
CREATE POLICY owned ON toygun.rate_limit FOR SELECT
    USING (pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));
GRANT SELECT ON toygun.rate_limit TO PUBLIC;

CREATE FUNCTION toygun.define_rate_limit(name text, rate integer, per interval,
                                         burst integer DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_rate_limit' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_rate_limit(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_drop_rate_limit' LANGUAGE C VOLATILE;
-- true: weight tokens were taken; false: not that many now (nothing taken).
CREATE FUNCTION toygun.take_token(name text, weight integer DEFAULT 1) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_take_token' LANGUAGE C VOLATILE;
-- The limits the caller has the owner's privileges of: tokens is what a
-- take could have now, horizon the time until which runs are held (NULL:
-- none). Both NULL without toygun in shared_preload_libraries.
CREATE FUNCTION toygun.rate_limit_status()
    RETURNS TABLE (name text, rate integer, per interval, burst integer, tokens integer,
                   horizon timestamptz)
    AS 'MODULE_PATHNAME', 'toygun_rate_limit_status' LANGUAGE C VOLATILE;

-- Flow control at a glance (issue 17): a row per queue and per task type
-- with a rate limit or a concurrency limit. Read as the caller, like toygun.stats: due and
-- waiting_for_token count only the objects the caller may read.
--   queue rows: workers (what toygun.queues gives it), running (worker
--     processes serving it), busy (those ticking a batch), paused, due
--     (its tasks and resources due now).
--   task rows: the task type's queue and rate limit, paused (its queue's),
--     due (its runs due now), waiting_for_token (its runs a worker held for
--     a token: due after now, at the latest at the limit's horizon; a run
--     staying until before the horizon counts too), tokens (what a take
--     could have now).
--   task rows of a type with a concurrency limit (max_running,
--     max_per_key): running (the slots its runs hold now: of max_running if
--     it has one, else of every key), waiting_for_slot (its due runs whose
--     key, or the type, is at its limit, less the slots held there: a run
--     being ticked is due until its tick commits). NULL for a type the
--     caller may not read.
-- Concurrency limits (issue 17): the slots held now, as the lock manager
-- has them (a slot is a lock of locktype userlock in pg_locks): per limited
-- type (flow_key NULL) those of its max_running, and per key those of its
-- max_per_key. toygun.flow reads it.
CREATE FUNCTION toygun.limit_status()
    RETURNS TABLE (limit_id smallint, flow_key bigint, running integer)
    AS 'MODULE_PATHNAME', 'toygun_limit_status' LANGUAGE C VOLATILE;
-- The flow_key of a run of a task type with these attrs on that resource;
-- NULL without a limit. For the statements that start runs in bulk.
CREATE FUNCTION toygun._flow_key(resource_type text, name text, resource uuid, attrs jsonb)
    RETURNS bigint AS 'MODULE_PATHNAME', 'toygun_flow_key_sql' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION toygun._flow_key(text, text, uuid, jsonb) FROM PUBLIC;

CREATE VIEW toygun.flow WITH (security_invoker = true) AS
    SELECT 'queue'::text AS kind, s.queue, NULL::text AS resource_type, NULL::text AS task,
           NULL::text AS rate_limit, s.workers, s.running, s.busy, s.paused,
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.queue_id = s.id AND t.run_at <= pg_catalog.clock_timestamp())
           + (SELECT count(*) FROM ONLY toygun.resource r
               WHERE r.queue_id = s.id AND r.run_at <= pg_catalog.clock_timestamp()) AS due,
           NULL::bigint AS waiting_for_token, NULL::integer AS tokens,
           NULL::bigint AS waiting_for_slot
      FROM toygun.queue_status() s
    UNION ALL
    SELECT 'task', q.name, d.resource_type, d.name, d.rate_limit, NULL, c.running, NULL, q.paused,
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.resource_type = d.resource_type AND t.name = d.name
               AND t.run_at <= pg_catalog.clock_timestamp()),
           CASE WHEN d.rate_limit IS NOT NULL THEN
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.resource_type = d.resource_type AND t.name = d.name
               AND t.run_at > pg_catalog.clock_timestamp() AND t.run_at <= l.horizon) END,
           l.tokens, c.waiting_for_slot
      FROM ONLY toygun.task_type d
      JOIN ONLY toygun.queue q ON q.id = d.queue_id
      LEFT JOIN toygun.rate_limit_status() l ON l.name = d.rate_limit
      LEFT JOIN LATERAL (
        WITH held AS (SELECT h.flow_key, h.running FROM toygun.limit_status() h
                       WHERE h.limit_id = d.limit_id),
             at_limit AS (SELECT h.flow_key, h.running FROM held h
                           WHERE (h.flow_key IS NULL AND h.running >= d.max_running)
                              OR (h.flow_key IS NOT NULL AND h.running >= d.max_per_key))
        SELECT (SELECT COALESCE(sum(h.running), 0)::integer FROM held h
                 WHERE (h.flow_key IS NULL) = (d.max_running IS NOT NULL)) AS running,
               CASE WHEN EXISTS (SELECT FROM at_limit a WHERE a.flow_key IS NULL)
                    THEN GREATEST((SELECT count(*) FROM ONLY toygun.task t
                                    WHERE t.resource_type = d.resource_type AND t.name = d.name
                                      AND t.run_at <= pg_catalog.clock_timestamp())
                                  - (SELECT a.running FROM at_limit a WHERE a.flow_key IS NULL), 0)
                    ELSE (SELECT COALESCE(sum(GREATEST(
                                   (SELECT count(*) FROM ONLY toygun.task t
                                     WHERE t.flow_key = a.flow_key AND t.run_at IS NOT NULL
                                       AND t.run_at <= pg_catalog.clock_timestamp()) - a.running, 0)), 0)
                            FROM at_limit a WHERE a.flow_key IS NOT NULL)
               END AS waiting_for_slot) c
        ON d.limit_id IS NOT NULL AND d.resource_type = ANY (toygun.readable_types())
     WHERE d.rate_limit IS NOT NULL OR d.limit_id IS NOT NULL;
GRANT SELECT ON toygun.flow TO PUBLIC;

-- The operator's tools (issue 18): the SQL under the CLI and the dashboard.
-- Every function reads as its caller, under the tables' row-level security:
-- a role sees only the types it may read, and nothing here has powers of its own.

-- A run id for SQL that starts many runs in one statement (periodic starts):
-- UUIDv7, as the ids of runs started by hand, so ids sort by start.
CREATE FUNCTION toygun._new_id() RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_new_id' LANGUAGE C VOLATILE;

-- The resource types on which the current user has operate, read_secrets
-- (as owner, or by a grant to it or to PUBLIC), sorted, as readable_types().
CREATE FUNCTION toygun.operable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_operable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
CREATE FUNCTION toygun.secret_readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_secret_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;

-- The runs lists' filters on panicked and failing runs: partial indexes that a
-- run enters only when it panics or its tick fails, never on a successful
-- tick or a stop (a tick is never HOT: every index a ticking run meets costs
-- each tick an insert).
CREATE INDEX task_panic_idx ON toygun.task (resource_type, name, id) WHERE state = '__panic__';
CREATE INDEX task_failing_idx ON toygun.task (id) WHERE attempts > 0 AND state <> '__stop__';
-- The same for resources (their own handlers' ticks): what the gauges count.
CREATE INDEX resource_panic_idx ON toygun.resource (type) WHERE state = '__panic__';
CREATE INDEX resource_failing_idx ON toygun.resource (type) WHERE attempts > 0 AND state <> '__stop__';

-- Whether the runs of these resource types (of this task, if given) that the
-- caller may read are few: fewer than 5,000 resources with fewer than 5,000
-- runs in all, counted through resource_type_idx and task_runs_idx (at most
-- 5,000 entries each). Then the runs lists and the gauges read those runs
-- through their resources instead of walking an index of all runs, where a
-- rare type's rows (or a role that reads few types) would make them walk
-- the whole table. As the caller, under row-level security.
CREATE FUNCTION toygun._few_runs(types text[], task text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    few boolean;
BEGIN
    -- EXECUTE: planned for these types (a generic plan would hash-join every run)
    EXECUTE 'SELECT (SELECT count(*) FROM (SELECT FROM ONLY toygun.resource x'
            '                               WHERE x.type OPERATOR(pg_catalog.=) ANY ($1) LIMIT 5000) y) < 5000'
            '   AND (SELECT count(*)'
            '          FROM (SELECT FROM (SELECT x.id FROM ONLY toygun.resource x'
            '                              WHERE x.type OPERATOR(pg_catalog.=) ANY ($1) LIMIT 5000) y,'
            '                        LATERAL (SELECT FROM ONLY toygun.task t'
            '                                  WHERE t.resource_id = y.id AND ($2 IS NULL OR t.name = $2)'
            '                                 OFFSET 0) t'
            '                 LIMIT 5000) z) < 5000'
       INTO few USING types, task;
    RETURN few;
END $$;

-- The gauges of toygun.metrics() and toygun.ops_status(), per resource type
-- and task (NULL: the resources' own), as the caller reads them (row-level
-- security: its readable types only), from indexes only, never a scan of the
-- runs: panicked and failing from the partial indexes above (small by
-- nature); due and the oldest due age from the due heads of the claim
-- indexes, at most cap due objects of each (run_at order where the index
-- has it). due_capped: a head held cap rows, so due counts (and, for types
-- not in the head, the oldest due age) are lower bounds; a caller's count
-- stops at cap of its own rows, never of another's. Unlike toygun.stats, no
-- live count per state: that needs every live row.
CREATE FUNCTION toygun.ops_gauges(cap integer DEFAULT 5000)
    RETURNS TABLE (kind text, resource_type text, task text, due bigint, due_capped boolean,
                   panicked bigint, failing bigint, oldest_due_age interval)
    LANGUAGE sql STABLE
    -- a head is read in run_at order and stops at cap: never a bitmap of every due row, sorted;
    -- no JIT: its cost estimates (of branches not taken) would compile for most of a second
    SET enable_bitmapscan = off SET jit = off
    -- it reads through indexes only: with the caller's types unknown when it is planned, the
    -- planner would otherwise read every resource to find theirs
    SET enable_seqscan = off
    BEGIN ATOMIC
    WITH f AS MATERIALIZED (
        SELECT r.types, CASE WHEN pg_catalog.cardinality(r.types) < (SELECT pg_catalog.count(*) FROM toygun.resource_type)
                             THEN toygun._few_runs(r.types) ELSE false END AS few
          FROM (SELECT toygun.readable_types() AS types) r
    ),
    heads AS (
        -- the caller's types are few: all their live runs, through their resources
        SELECT 0 AS head, 'task'::text AS kind, t.resource_type, t.name, t.run_at
          FROM (SELECT x.id FROM ONLY toygun.resource x
                 WHERE (SELECT f.few FROM f) AND x.type = ANY ((SELECT f.types FROM f)::text[])) y,
               LATERAL (SELECT t0.resource_type, t0.name, t0.run_at FROM ONLY toygun.task t0
                         WHERE t0.resource_id = y.id AND t0.state <> '__stop__'
                           AND t0.run_at <= pg_catalog.statement_timestamp() OFFSET 0) t
        UNION ALL
        SELECT 0, 'resource', x.type, NULL, x.run_at FROM ONLY toygun.resource x
         WHERE (SELECT f.few FROM f) AND x.type = ANY ((SELECT f.types FROM f)::text[])
           AND x.run_at <= pg_catalog.statement_timestamp()
        UNION ALL
        -- else the heads of the claim indexes, their predicates written literally, so that
        -- each reads its partial index; due by the statement's start (an index condition,
        -- unlike the clock), ages by the clock
        SELECT 1 AS head, 'task'::text AS kind, h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND t.queue_id = 0 AND t.priority = 0 AND t.flow_key IS NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 ORDER BY t.run_at LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 2, 'task', h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND (t.queue_id <> 0 OR t.priority <> 0) AND t.flow_key IS NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 3, 'task', h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND t.flow_key IS NOT NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 4, 'resource', h.type, NULL, h.run_at
          FROM (SELECT r.type, r.run_at FROM ONLY toygun.resource r
                 WHERE r.run_at IS NOT NULL AND r.queue_id = 0 AND r.run_at <= pg_catalog.statement_timestamp()
                   AND NOT (SELECT f.few FROM f)
                 ORDER BY r.run_at LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 5, 'resource', h.type, NULL, h.run_at
          FROM (SELECT r.type, r.run_at FROM ONLY toygun.resource r
                 WHERE r.run_at IS NOT NULL AND r.queue_id <> 0 AND r.run_at <= pg_catalog.statement_timestamp()
                   AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
    ),
    capped AS (SELECT EXISTS (SELECT FROM heads h WHERE h.head > 0 GROUP BY h.head
                                HAVING pg_catalog.count(*) >= ops_gauges.cap)
                          AS capped),
    counts AS (
        SELECT h.kind, h.resource_type, h.name, pg_catalog.count(*) AS due,
               pg_catalog.clock_timestamp() - pg_catalog.min(h.run_at) AS oldest_due_age,
               0::bigint AS panicked, 0::bigint AS failing
          FROM heads h GROUP BY h.kind, h.resource_type, h.name
        UNION ALL
        SELECT 'task', t.resource_type, t.name, 0, NULL, pg_catalog.count(*), 0
          FROM ONLY toygun.task t WHERE t.state = '__panic__' GROUP BY t.resource_type, t.name
        UNION ALL
        SELECT 'task', t.resource_type, t.name, 0, NULL, 0, pg_catalog.count(*)
          FROM ONLY toygun.task t WHERE t.attempts > 0 AND t.state <> '__stop__' GROUP BY t.resource_type, t.name
        UNION ALL
        SELECT 'resource', r.type, NULL, 0, NULL, pg_catalog.count(*), 0
          FROM ONLY toygun.resource r WHERE r.state = '__panic__' GROUP BY r.type
        UNION ALL
        SELECT 'resource', r.type, NULL, 0, NULL, 0, pg_catalog.count(*)
          FROM ONLY toygun.resource r WHERE r.attempts > 0 AND r.state <> '__stop__' GROUP BY r.type
    )
    SELECT c.kind, c.resource_type, c.name, pg_catalog.sum(c.due)::bigint, (SELECT capped FROM capped),
           pg_catalog.sum(c.panicked)::bigint, pg_catalog.sum(c.failing)::bigint, pg_catalog.max(c.oldest_due_age)
      FROM counts c GROUP BY c.kind, c.resource_type, c.name
     ORDER BY c.kind DESC, c.resource_type, c.name;
    END;
GRANT EXECUTE ON FUNCTION toygun.ops_gauges(integer) TO PUBLIC;

-- Who the caller is to toygun: its role, and per resource type it may read or
-- act on, its rights. What the tools may offer; every call still checks.
CREATE FUNCTION toygun.ops_whoami() RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    r text[] := toygun.readable_types();
    s text[] := toygun.startable_types();
    o text[] := toygun.operable_types();
    x text[] := toygun.secret_readable_types();
BEGIN
    RETURN jsonb_build_object(
        'role', current_user::text,
        'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
        'types', COALESCE((
            SELECT jsonb_object_agg(t, to_jsonb(array_remove(ARRAY[
                       CASE WHEN t = ANY (r) THEN 'read' END, CASE WHEN t = ANY (s) THEN 'start' END,
                       CASE WHEN t = ANY (o) THEN 'operate' END, CASE WHEN t = ANY (x) THEN 'read_secrets' END],
                       NULL)) ORDER BY t)
              FROM (SELECT DISTINCT unnest(r || s || o || x) AS t) u), '{}'));
END $$;

-- The state of the system as the caller may see it: workers and queues, and
-- over the runs of its readable types the live, due, failing and panicked
-- counts, the oldest due run's age (seconds), and its open alarms. Bounded
-- reads: due, failing, panicked and the oldest due from toygun.ops_gauges()
-- (due stops at 5,000 per claim index: due_capped), live stops at 5,000
-- (live_capped) unless the caller's runs are few (_few_runs()); toygun.stats
-- counts them all, reading every live run.
CREATE FUNCTION toygun.ops_status() RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    result jsonb;
    types text[] := toygun.readable_types();
    live bigint;
BEGIN
    IF cardinality(types) < (SELECT count(*) FROM toygun.resource_type) AND toygun._few_runs(types) THEN
        -- few: all of them, through their resources (task_live_idx)
        live := (SELECT count(*)
                   FROM (SELECT x.id FROM ONLY toygun.resource x WHERE x.type = ANY (types)) y,
                        LATERAL (SELECT FROM ONLY toygun.task t
                                  WHERE t.resource_id = y.id AND t.state <> '__stop__' OFFSET 0) t);
    ELSE
        live := (SELECT count(*) FROM (SELECT FROM ONLY toygun.task t WHERE t.state <> '__stop__' LIMIT 5000) x);
    END IF;
    SELECT jsonb_build_object(
               'live', live, 'live_capped', live >= 5000,
               'due', COALESCE(sum(g.due), 0), 'due_capped', COALESCE(bool_or(g.due_capped), false),
               'failing', COALESCE(sum(g.failing), 0), 'panicked', COALESCE(sum(g.panicked), 0),
               'oldest_due_age', extract(epoch FROM max(g.oldest_due_age)))
      INTO result
      FROM toygun.ops_gauges() g WHERE g.kind = 'task';
    RETURN result || jsonb_build_object(
        'workers', (SELECT jsonb_build_object('running', count(*), 'busy', count(*) FILTER (WHERE NOT w.idle))
                      FROM toygun.worker_status() w),
        'queues', (SELECT COALESCE(jsonb_agg(jsonb_build_object('queue', q.queue, 'workers', q.workers,
                                                                'running', q.running, 'busy', q.busy,
                                                                'paused', q.paused) ORDER BY q.id), '[]')
                     FROM toygun.queue_status() q),
        'open_alarms', (SELECT count(*) FROM toygun.alarms a WHERE a.state <> 'closed'),
        'at', clock_timestamp());
END $$;

-- One page of runs, newest first (run ids are UUIDv7: start order). Filters:
-- resource type, task name, state, resource; panicked, failing (a failed tick
-- not yet followed by a successful one), due (live and run_at passed). after:
-- the next of the previous page's last row, which is NULL at the end.
-- toygun.list_runs's body (PL/pgSQL takes no parameter and result column of one name)
CREATE FUNCTION toygun._list_runs(p_type text, p_task text, p_state text, p_resource uuid, p_panicked boolean,
                                  p_failing boolean, p_due boolean, p_limit integer, p_after text)
    RETURNS TABLE (o_id uuid, o_resource_id uuid, o_resource_type text, o_task text, o_state text, o_step bigint,
                   o_run_at timestamptz, o_attempts integer, o_priority smallint, o_created_at timestamptz,
                   o_updated_at timestamptz, o_last_error text, o_next text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    lim integer := p_limit;
    after_id uuid;
    errors text[] := toygun.error_readable_types();
    types text[];
    few boolean := false;
    q text;
    n integer := 0;
    r record;
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_runs', COALESCE(lim::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 runs a page.';
    END IF;
    IF p_after IS NOT NULL THEN
        IF p_after !~ '^r1:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RAISE EXCEPTION 'cursor "%" is not a cursor of toygun.list_runs', p_after
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the next column of a previous page''s last row, or NULL for the first page.';
        END IF;
        after_id := substr(p_after, 4)::uuid;
    END IF;
    IF p_type IS NOT NULL
       AND NOT EXISTS (SELECT FROM toygun.resource_type d WHERE d.name = p_type) THEN
        RAISE EXCEPTION 'resource type "%" does not exist', p_type
            USING ERRCODE = 'undefined_object', HINT = 'toygun.resource_type lists the resource types.';
    END IF;
    IF p_task IS NOT NULL
       AND NOT EXISTS (SELECT FROM toygun.task_type d
                        WHERE d.name = p_task
                          AND (p_type IS NULL OR d.resource_type = p_type)) THEN
        RAISE EXCEPTION 'task type "%" does not exist', COALESCE(p_type || '.', '') || p_task
            USING ERRCODE = 'undefined_object', HINT = 'toygun.task_type lists the task types.';
    END IF;
    -- Which index the page is read from. The newest-first walk of task_pkey
    -- (below) is quick while the runs the caller may see are a good share of
    -- all; when they are few (a rare type or task, a role that reads few
    -- types) it would walk the whole table. So when the types the page can
    -- show are few (_few_runs(): fewer than 5,000 resources and runs), the
    -- page is read from those runs through their resources, sorted,
    -- instead: at most about 5,000 rows either way. Both
    -- reads are the caller's, under row-level security: a page and its
    -- cursor show only rows the caller may read. resource, panicked and
    -- failing have indexes of their own.
    IF p_resource IS NULL AND NOT COALESCE(p_panicked, false) AND NOT COALESCE(p_failing, false) THEN
        types := ARRAY(SELECT d.name FROM toygun.resource_type d
                        WHERE d.name = ANY (toygun.readable_types())
                          AND (p_type IS NULL OR d.name = p_type)
                          AND (p_task IS NULL OR EXISTS (SELECT FROM toygun.task_type x
                                                          WHERE x.resource_type = d.name AND x.name = p_task)));
        IF cardinality(types) = 0 THEN
            RETURN;
        END IF;
        IF cardinality(types) < (SELECT count(*) FROM toygun.resource_type) OR p_task IS NOT NULL THEN
            few := toygun._few_runs(types, p_task);
        END IF;
    END IF;
    -- the predicates of the partial indexes written literally, so that the plan can use them
    -- the page's rows first, then their error texts and types (for their page only: not for every
    -- row a sort reads)
    q := 'SELECT t.id, t.resource_id, t.resource_type, t.name, t.state, t.step, t.run_at, t.attempts,'
         '       t.priority, t.created_at, t.updated_at,'
         '       CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, ''USAGE'')'
         '                 OR t.resource_type OPERATOR(pg_catalog.=) ANY ($6)'
         '            THEN toygun.last_error(t.id) END AS last_error'
         '  FROM (SELECT t.id, t.resource_id, t.resource_type, t.name, t.state, t.step, t.run_at, t.attempts,'
         '               t.priority, t.created_at, t.updated_at'
         '          FROM ' || CASE WHEN few THEN '(SELECT x.id FROM ONLY toygun.resource x'
                                                 '   WHERE x.type OPERATOR(pg_catalog.=) ANY ($8)) y,'
                                                 ' LATERAL (SELECT t0.id, t0.resource_id, t0.resource_type, t0.name,'
                                                 '                 t0.state, t0.step, t0.run_at, t0.attempts,'
                                                 '                 t0.priority, t0.created_at, t0.updated_at'
                                                 '            FROM ONLY toygun.task t0'
                                                 '           WHERE t0.resource_id = y.id OFFSET 0) t'
                                  ELSE 'ONLY toygun.task t' END ||
         '         WHERE true';
    IF after_id IS NOT NULL THEN q := q || ' AND t.id < $1'; END IF;
    IF p_type IS NOT NULL THEN q := q || ' AND t.resource_type = $2'; END IF;
    IF p_task IS NOT NULL THEN q := q || ' AND t.name = $3'; END IF;
    IF p_state IS NOT NULL THEN q := q || ' AND t.state = $4'; END IF;
    IF p_resource IS NOT NULL THEN q := q || ' AND t.resource_id = $5'; END IF;
    IF p_panicked THEN q := q || ' AND t.state = ''__panic__'''; END IF;
    IF p_failing THEN q := q || ' AND t.attempts > 0 AND t.state <> ''__stop__'''; END IF;
    IF p_due THEN
        q := q || ' AND t.state <> ''__stop__'' AND t.run_at <= pg_catalog.clock_timestamp()';
    END IF;
    q := q || ' ORDER BY t.id DESC LIMIT $7) t'
              '  LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name'
              ' ORDER BY t.id DESC';
    -- one row more than asked: whether there is a next page; the page's last row is held back
    -- until then, and carries the cursor if one followed
    FOR r IN EXECUTE q USING after_id, p_type, p_task, p_state, p_resource,
                             errors, lim + 1, types LOOP
        n := n + 1;
        EXIT WHEN n > lim;
        o_id := r.id; o_resource_id := r.resource_id; o_resource_type := r.resource_type; o_task := r.name;
        o_state := r.state; o_step := r.step; o_run_at := r.run_at; o_attempts := r.attempts;
        o_priority := r.priority; o_created_at := r.created_at; o_updated_at := r.updated_at;
        o_last_error := r.last_error; o_next := NULL;
        IF n < lim THEN RETURN NEXT; END IF;
    END LOOP;
    IF n >= lim THEN
        o_next := CASE WHEN n > lim THEN 'r1:' || o_id::text END;
        RETURN NEXT;
    END IF;
END $$;

-- The runs list itself, over its body above.
CREATE FUNCTION toygun.list_runs(type text DEFAULT NULL, task text DEFAULT NULL, state text DEFAULT NULL,
                                 resource uuid DEFAULT NULL, panicked boolean DEFAULT false,
                                 failing boolean DEFAULT false, due boolean DEFAULT false,
                                 "limit" integer DEFAULT 50, after text DEFAULT NULL)
    RETURNS TABLE (id uuid, resource_id uuid, resource_type text, task text, state text, step bigint,
                   run_at timestamptz, attempts integer, priority smallint, created_at timestamptz,
                   updated_at timestamptz, last_error text, next text)
    LANGUAGE sql STABLE
    BEGIN ATOMIC
        SELECT * FROM toygun._list_runs(list_runs.type, list_runs.task, list_runs.state, list_runs.resource,
                                        list_runs.panicked, list_runs.failing, list_runs.due,
                                        list_runs."limit", list_runs.after);
    END;

-- One run as the tools show it: its row, its attrs with encrypted fields sealed
-- ({"$sealed": true}) unless the caller has read_secrets, its history, failures
-- and alarms, its type's states, and what the caller may do to it.
CREATE FUNCTION toygun.run_detail(id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t toygun.task;
    d record;
    attrs jsonb;
    f text;
    may_secrets boolean;
    may_operate boolean;
BEGIN
    SELECT x.id, x.resource_id, x.resource_type, x.name, x.state, x.attrs, x.step, x.run_at, x.attempts,
           NULL::text, x.created_at, x.updated_at, x.seq, x.parent_run, x.version, x.priority,
           x.queue_id, x.flow_key
      INTO t FROM ONLY toygun.task x WHERE x.id = run_detail.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', run_detail.id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Runs of types you may not read are not shown: toygun.readable_types() lists those you may.';
    END IF;
    SELECT tt.states, tt.encrypted_fields, tt.owner INTO d
      FROM toygun.task_type tt WHERE tt.resource_type = t.resource_type AND tt.name = t.name;
    may_secrets := t.resource_type = ANY (toygun.secret_readable_types())
                   OR pg_has_role(d.owner::oid, 'USAGE');
    may_operate := t.resource_type = ANY (toygun.operable_types()) OR pg_has_role(d.owner::oid, 'USAGE');
    -- the error text as task_for() shows it: not through a grant of read to PUBLIC
    IF pg_has_role(d.owner::oid, 'USAGE') OR t.resource_type = ANY (toygun.error_readable_types()) THEN
        t.last_error := toygun.last_error(t.id);
    END IF;
    attrs := t.attrs;
    -- a declared encrypted field, or any value stored as a secret (ciphertext either way)
    FOR f IN SELECT k FROM jsonb_each(t.attrs) e(k, v)
              WHERE k = ANY (COALESCE(d.encrypted_fields, '{}'))
                 OR (jsonb_typeof(v) = 'object' AND v ? '$secret') LOOP
        IF may_secrets AND f = ANY (COALESCE(d.encrypted_fields, '{}')) THEN
            BEGIN
                attrs := jsonb_set(attrs, ARRAY[f], COALESCE(toygun.field(t, f), 'null'));
            EXCEPTION WHEN insufficient_privilege THEN
                attrs := jsonb_set(attrs, ARRAY[f], '{"$sealed": true}');
            END;
        ELSE
            attrs := jsonb_set(attrs, ARRAY[f], '{"$sealed": true}');
        END IF;
    END LOOP;
    RETURN jsonb_build_object(
        'run', to_jsonb(t) - 'attrs' - 'seq',
        'attrs', attrs,
        'history', (SELECT COALESCE(jsonb_agg(to_jsonb(h) ORDER BY h.step), '[]')
                      FROM toygun.history(t.id) h),
        'failures', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                'failure_no', x.failure_no, 'attempt', x.attempt, 'at', x.at,
                                'duration', extract(epoch FROM x.duration), 'error', x.error,
                                'worker_pid', x.worker_pid) ORDER BY x.failure_no), '[]')
                       FROM toygun.failure x WHERE x.object_id = t.id),
        'alarms', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.first_raised_at, a.id), '[]')
                     FROM toygun.alarms a WHERE a.object_id = t.id),
        'type', jsonb_build_object('states', to_jsonb(d.states), 'encrypted_fields', to_jsonb(d.encrypted_fields)),
        'may', jsonb_build_object('operate', may_operate, 'read_secrets', may_secrets));
END $$;

-- Alarms, newest first (alarm ids are UUIDv7), by state: open (active or
-- snoozed), active, snoozed, closed or all; by kind and resource type. after:
-- the id of the previous page's last alarm.
CREATE FUNCTION toygun.list_alarms(state text DEFAULT 'open', kind text DEFAULT NULL, type text DEFAULT NULL,
                                   "limit" integer DEFAULT 50, after uuid DEFAULT NULL)
    RETURNS SETOF toygun.alarms
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF list_alarms.state IS NULL OR list_alarms.state NOT IN ('open', 'active', 'snoozed', 'closed', 'all') THEN
        RAISE EXCEPTION 'alarm state "%" is not one toygun.list_alarms knows', COALESCE(list_alarms.state, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for open, active, snoozed, closed or all.';
    END IF;
    IF list_alarms."limit" IS NULL OR list_alarms."limit" < 1 OR list_alarms."limit" > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_alarms', COALESCE(list_alarms."limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 alarms a page.';
    END IF;
    RETURN QUERY
        SELECT a.* FROM toygun.alarms a
         WHERE (list_alarms.after IS NULL OR a.id < list_alarms.after)
           AND (list_alarms.kind IS NULL OR a.kind = list_alarms.kind)
           AND (list_alarms.type IS NULL OR a.resource_type = list_alarms.type)
           AND CASE list_alarms.state WHEN 'all' THEN true
                                      WHEN 'open' THEN a.state <> 'closed'
                                      ELSE a.state = list_alarms.state END
         ORDER BY a.id DESC LIMIT list_alarms."limit";
END $$;

-- The outbox to the operator (issue 18): what is pending, failed and
-- delivered, and sending a row again. The extension's owner only (and
-- superusers), as the outbox itself: a row's channel, payload and error may
-- name what only the owner sees. Failed, as the deliverer marks it: not
-- delivered, an error, and no retry to come (attempts reached its maximum,
-- a permanent error, or a dropped channel); pending: the other undelivered
-- rows (new, or waiting for a retry at next_attempt_at).

-- An alarm's deliveries (the dashboard's alarms page), delivered ones too.
CREATE INDEX outbox_alarm_idx ON toygun.outbox (alarm_id, id);

CREATE FUNCTION toygun._outbox_owner() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'toygun'),
                                  'USAGE');

-- toygun.list_outbox's body (PL/pgSQL takes no parameter and result column of one name)
CREATE FUNCTION toygun._list_outbox(p_state text, p_limit integer, p_after bigint)
    RETURNS TABLE (o_id bigint, o_channel text, o_alarm_id uuid, o_event text, o_state text, o_attempts integer,
                   o_created_at timestamptz, o_next_attempt_at timestamptz, o_delivered_at timestamptz,
                   o_delivered_by text, o_last_error text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT toygun._outbox_owner() THEN
        RAISE EXCEPTION 'permission denied to read the toygun outbox'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) reads toygun.outbox.';
    END IF;
    IF p_state IS NULL OR p_state NOT IN ('pending', 'failed', 'delivered', 'all') THEN
        RAISE EXCEPTION 'outbox state "%" is not one toygun.list_outbox knows', COALESCE(p_state, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for pending, failed, delivered or all.';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_outbox', COALESCE(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 outbox rows a page.';
    END IF;
    -- newest first; the undelivered ones through outbox_pending_idx
    RETURN QUERY
        SELECT o.id, o.channel, o.alarm_id, o.event,
               CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered'
                    WHEN o.next_attempt_at IS NULL AND o.last_error IS NOT NULL THEN 'failed'
                    ELSE 'pending' END,
               o.attempts, o.created_at, o.next_attempt_at, o.delivered_at, o.delivered_by, o.last_error
          FROM toygun.outbox o
         WHERE (p_after IS NULL OR o.id < p_after)
           AND CASE p_state
                   WHEN 'all' THEN true
                   WHEN 'delivered' THEN o.delivered_at IS NOT NULL
                   WHEN 'failed' THEN o.delivered_at IS NULL AND o.next_attempt_at IS NULL AND o.last_error IS NOT NULL
                   ELSE o.delivered_at IS NULL AND NOT (o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)
               END
         ORDER BY o.id DESC LIMIT p_limit;
END $$;

-- Outbox rows newest first, by state: pending, failed, delivered or all.
-- after: the id of the previous page's last row.
CREATE FUNCTION toygun.list_outbox(state text DEFAULT 'pending', "limit" integer DEFAULT 50, after bigint DEFAULT NULL)
    RETURNS TABLE (id bigint, channel text, alarm_id uuid, event text, state text, attempts integer,
                   created_at timestamptz, next_attempt_at timestamptz, delivered_at timestamptz,
                   delivered_by text, last_error text)
    LANGUAGE sql STABLE
    BEGIN ATOMIC
        SELECT * FROM toygun._list_outbox(list_outbox.state, list_outbox."limit", list_outbox.after);
    END;

-- Send an undelivered row again: attempts, last_error and next_attempt_at
-- are reset, so a deliverer claims it at once (NOTIFY toygun_outbox at
-- commit). False: no such row. A delivered row is refused (55000).
CREATE FUNCTION toygun.redeliver(outbox_id bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done timestamptz;
BEGIN
    IF NOT toygun._outbox_owner() THEN
        RAISE EXCEPTION 'permission denied to redeliver toygun outbox row %', redeliver.outbox_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) sends outbox rows again.';
    END IF;
    SELECT o.delivered_at INTO done FROM toygun.outbox o WHERE o.id = redeliver.outbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF done IS NOT NULL THEN
        RAISE EXCEPTION 'toygun outbox row % was delivered at %', redeliver.outbox_id, done
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A delivered row is not sent twice; raise the alarm again if it must reach its channel anew.';
    END IF;
    UPDATE toygun.outbox o SET attempts = 0, last_error = NULL, next_attempt_at = NULL
     WHERE o.id = redeliver.outbox_id;
    PERFORM pg_catalog.pg_notify('toygun_outbox', redeliver.outbox_id::text);
    RETURN true;
END $$;

-- toygun.metrics()'s outbox gauges: the owner's only (no row for others).
CREATE FUNCTION toygun._outbox_gauges() RETURNS TABLE (pending bigint, failed bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF toygun._outbox_owner() THEN
        RETURN QUERY
            SELECT pg_catalog.count(*) FILTER (WHERE NOT (o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)),
                   pg_catalog.count(*) FILTER (WHERE o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)
              FROM toygun.outbox o WHERE o.delivered_at IS NULL;
    END IF;
END $$;
GRANT EXECUTE ON FUNCTION toygun._outbox_gauges() TO PUBLIC;

-- Metrics (issue 18). The workers count their ticks per task type and
-- resource type in shared memory (src/metrics.c): ticks (successful and
-- failed), failures, panics (objects a tick or a last failed attempt moved
-- to __panic__) and a histogram of tick durations. _tick_metrics() returns
-- a row per type the caller may read (its resource type is in
-- readable_types()) that a worker ticked since the server started, and a
-- row with resource_type NULL for the ticks of types past
-- toygun.metrics_types. Every counter starts from zero when the server
-- starts.
CREATE FUNCTION toygun._tick_metrics()
    RETURNS TABLE (resource_type text, task text, ticks bigint, failures bigint, panics bigint,
                   duration_sum double precision, le text[], buckets bigint[])
    AS 'MODULE_PATHNAME', 'toygun_tick_metrics' LANGUAGE C VOLATILE;

-- A label value as Prometheus's text format writes it: \, " and newline escaped.
CREATE FUNCTION toygun._prometheus_label(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               COALESCE(value, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n');

-- Everything toygun can tell a monitoring system, in Prometheus's text
-- exposition format (version 0.0.4), read as the caller: the counters of
-- _tick_metrics(), the gauges of toygun.ops_gauges(), the workers and queues, the
-- breakers, rate limits and concurrency limits, each for what the caller
-- may read. A family is written with its HELP and TYPE lines even when it
-- has no sample.
CREATE FUNCTION toygun.metrics() RETURNS text
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH c AS (
        SELECT m.*,
               pg_catalog.format('resource_type="%s",task="%s"',
                                 toygun._prometheus_label(m.resource_type),
                                 toygun._prometheus_label(m.task)) AS labels
          FROM toygun._tick_metrics() m
    ),
    g AS (SELECT * FROM toygun.ops_gauges()),
    per_type AS (
        SELECT pg_catalog.format('resource_type="%s",task="%s"',
                                 toygun._prometheus_label(g.resource_type),
                                 toygun._prometheus_label(g.task)) AS labels,
               g.due, g.panicked, g.failing, COALESCE(EXTRACT(epoch FROM g.oldest_due_age), 0) AS oldest_due
          FROM g
    ),
    q AS (SELECT * FROM toygun.queue_status()),
    ob AS (SELECT * FROM toygun._outbox_gauges()),
    families (n, name, type, help) AS (VALUES
        (1, 'toygun_ticks_total', 'counter', 'Ticks by the workers (successful and failed) since the server started.'),
        (2, 'toygun_tick_failures_total', 'counter', 'Failed ticks by the workers since the server started.'),
        (3, 'toygun_panics_total', 'counter', 'Objects a worker''s tick, or its last failed attempt, moved to __panic__ since the server started.'),
        (4, 'toygun_tick_duration_seconds', 'histogram', 'How long the workers'' ticks took, failed ones included.'),
        (5, 'toygun_metrics_overflow_ticks_total', 'counter', 'Ticks of the types past toygun.metrics_types, counted together.'),
        (6, 'toygun_due_capped', 'gauge', 'Whether a due count stopped at 5,000 due objects of one claim index: due counts and oldest due ages are then lower bounds.'),
        (7, 'toygun_due', 'gauge', 'Objects due for a tick now.'),
        (8, 'toygun_panicked', 'gauge', 'Objects in __panic__.'),
        (9, 'toygun_failing', 'gauge', 'Objects whose last tick failed.'),
        (10, 'toygun_oldest_due_seconds', 'gauge', 'How long the longest-waiting due object has waited; 0: none due.'),
        (11, 'toygun_workers', 'gauge', 'Worker processes per queue: configured (toygun.queues), running, busy ticking.'),
        (12, 'toygun_worker_up', 'gauge', 'Whether the worker of each configured slot is running.'),
        (13, 'toygun_queue_paused', 'gauge', 'Whether a queue is paused (toygun.pause_queue).'),
        (14, 'toygun_breaker_open', 'gauge', 'Whether a task type''s circuit breaker is open (1), half open (0.5) or closed (0).'),
        (15, 'toygun_rate_limit_tokens', 'gauge', 'Tokens a take could have now, per rate limit.'),
        (16, 'toygun_limit_running', 'gauge', 'Slots of a task type''s concurrency limit its runs hold now.')
        UNION ALL
        -- the outbox's: the extension owner's only (no row, so no lines, for others)
        SELECT 17, 'toygun_outbox_pending', 'gauge', 'Outbox rows not yet delivered and not failed (new, or waiting for a retry).'
          FROM ob
        UNION ALL
        SELECT 18, 'toygun_outbox_failed', 'gauge', 'Outbox rows the deliverer gave up on (toygun.redeliver sends one again).'
          FROM ob
    ),
    samples (n, sort, line) AS (
        SELECT 1, c.labels, pg_catalog.format('toygun_ticks_total{%s} %s', c.labels, c.ticks)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 2, c.labels, pg_catalog.format('toygun_tick_failures_total{%s} %s', c.labels, c.failures)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 3, c.labels, pg_catalog.format('toygun_panics_total{%s} %s', c.labels, c.panics)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, pg_catalog.format('%s %s', c.labels, pg_catalog.to_char(b.i, 'FM00')),
               pg_catalog.format('toygun_tick_duration_seconds_bucket{%s,le="%s"} %s', c.labels, b.le, b.count)
          FROM c, unnest(c.le, c.buckets) WITH ORDINALITY AS b(le, count, i)
         WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, c.labels || ' 98', pg_catalog.format('toygun_tick_duration_seconds_sum{%s} %s', c.labels, c.duration_sum)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, c.labels || ' 99', pg_catalog.format('toygun_tick_duration_seconds_count{%s} %s', c.labels, c.ticks)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 5, '', pg_catalog.format('toygun_metrics_overflow_ticks_total %s',
                                        COALESCE((SELECT c.ticks FROM c WHERE c.resource_type IS NULL), 0))
        UNION ALL
        SELECT 6, '', pg_catalog.format('toygun_due_capped %s',
                                        CASE WHEN (SELECT pg_catalog.bool_or(g.due_capped) FROM g) THEN 1 ELSE 0 END)
        UNION ALL
        SELECT 7, p.labels, pg_catalog.format('toygun_due{%s} %s', p.labels, p.due) FROM per_type p
        UNION ALL
        SELECT 8, p.labels, pg_catalog.format('toygun_panicked{%s} %s', p.labels, p.panicked) FROM per_type p
        UNION ALL
        SELECT 9, p.labels, pg_catalog.format('toygun_failing{%s} %s', p.labels, p.failing) FROM per_type p
        UNION ALL
        SELECT 10, p.labels, pg_catalog.format('toygun_oldest_due_seconds{%s} %s', p.labels, p.oldest_due)
          FROM per_type p
        UNION ALL
        SELECT 11, q.queue || w.o::text, pg_catalog.format('toygun_workers{queue="%s",state="%s"} %s',
                                                          toygun._prometheus_label(q.queue), w.state, w.count)
          FROM q, LATERAL (VALUES (1, 'configured', q.workers), (2, 'running', q.running),
                                  (3, 'busy', q.busy)) AS w(o, state, count)
        UNION ALL
        SELECT 12, pg_catalog.to_char(g.slot, 'FM0000000'),
               pg_catalog.format('toygun_worker_up{slot="%s"} %s', g.slot,
                                 CASE WHEN EXISTS (SELECT FROM toygun.worker_status() w WHERE w.slot = g.slot)
                                      THEN 1 ELSE 0 END)
          FROM pg_catalog.generate_series(0, (SELECT COALESCE(sum(q.workers), 0)::integer - 1 FROM q)) AS g(slot)
        UNION ALL
        SELECT 13, q.queue, pg_catalog.format('toygun_queue_paused{queue="%s"} %s',
                                              toygun._prometheus_label(q.queue), CASE WHEN q.paused THEN 1 ELSE 0 END)
          FROM q
        UNION ALL
        SELECT 14, d.resource_type || ' ' || d.name,
               pg_catalog.format('toygun_breaker_open{resource_type="%s",task="%s"} %s',
                                 toygun._prometheus_label(d.resource_type), toygun._prometheus_label(d.name),
                                 CASE b.state WHEN 'open' THEN '1' WHEN 'half_open' THEN '0.5' ELSE '0' END)
          FROM ONLY toygun.task_type d
          LEFT JOIN ONLY toygun.breaker b ON b.resource_type = d.resource_type AND b.task = d.name
         WHERE d.breaker IS NOT NULL AND d.resource_type = ANY (toygun.readable_types())
        UNION ALL
        SELECT 15, r.name, pg_catalog.format('toygun_rate_limit_tokens{rate_limit="%s"} %s',
                                             toygun._prometheus_label(r.name), r.tokens)
          FROM toygun.rate_limit_status() r WHERE r.tokens IS NOT NULL
        UNION ALL
        SELECT 16, f.resource_type || ' ' || f.task,
               pg_catalog.format('toygun_limit_running{resource_type="%s",task="%s"} %s',
                                 toygun._prometheus_label(f.resource_type), toygun._prometheus_label(f.task),
                                 f.running)
          FROM (SELECT d.resource_type, d.name AS task,
                       -- as toygun.flow's running, without its counts of due runs
                       (SELECT COALESCE(sum(h.running), 0)::integer FROM toygun.limit_status() h
                         WHERE h.limit_id = d.limit_id AND (h.flow_key IS NULL) = (d.max_running IS NOT NULL))
                          AS running
                  FROM ONLY toygun.task_type d
                 WHERE d.limit_id IS NOT NULL AND d.resource_type = ANY (toygun.readable_types())) f
        UNION ALL
        SELECT 17, '', pg_catalog.format('toygun_outbox_pending %s', ob.pending) FROM ob
        UNION ALL
        SELECT 18, '', pg_catalog.format('toygun_outbox_failed %s', ob.failed) FROM ob
    ),
    lines (n, sort, line) AS (
        SELECT f.n, '', pg_catalog.format(E'# HELP %s %s\n# TYPE %s %s', f.name, f.help, f.name, f.type)
          FROM families f
        UNION ALL
        SELECT s.n, E'\x01' || s.sort, s.line FROM samples s
    )
    SELECT pg_catalog.string_agg(l.line, E'\n' ORDER BY l.n, l.sort COLLATE "C") || E'\n' FROM lines l;
END;
GRANT EXECUTE ON FUNCTION toygun.metrics() TO PUBLIC;

-- The dashboard's charts (issue 18): the workers' ticks and failed ticks per
-- type over time, from the same flush as _tick_metrics()'s counters, kept in
-- shared memory in two rings per type (src/metrics.c). "window" '1h' gives
-- the one-minute buckets of the last hour, '24h' the thirty-minute buckets of
-- the last 24 hours; at is a bucket's start; only buckets that counted
-- something, oldest first. Read as the caller: the types it may read
-- (readable_types()), and the overflow (resource_type NULL) only with the
-- extension owner's privileges. From zero when the server starts.
CREATE FUNCTION toygun.metrics_series("window" text DEFAULT '1h')
    RETURNS TABLE (at timestamptz, resource_type text, task text, ticks bigint, failures bigint)
    AS 'MODULE_PATHNAME', 'toygun_metrics_series' LANGUAGE C VOLATILE;
GRANT EXECUTE ON FUNCTION toygun.metrics_series(text) TO PUBLIC;

-- issue 18's deliverer: when a retry is due, and who delivered a row; one
-- alarm's events to a channel are sent in order, looked up by alarm.
ALTER TABLE toygun.outbox ADD COLUMN next_attempt_at timestamptz, ADD COLUMN delivered_by text;
CREATE INDEX outbox_alarm_pending_idx ON toygun.outbox (alarm_id, id) WHERE delivered_at IS NULL;

-- ---- src/install/citus.sql (issue 19) ----
-- Scale-out on Citus (issue 19; doc/citus.md). toygun.distribute(), once, on
-- the coordinator of a Citus cluster after CREATE EXTENSION toygun: resources
-- distributed by id and their runs by resource_id, co-located, so that a run
-- and its resource are on one node, whose worker claims and ticks them there
-- (worker.c reads the node's own shards). Citus refuses two things of the
-- single-node schema on a distributed table, and the function changes them
-- on those two tables only:
--   - a policy with a subquery: the policies call readable_types() per row
--     instead of once per query;
--   - a unique key without the distribution column: the runs' primary key
--     becomes (resource_id, id) (ids are made unique by toygun, not by callers).
-- The definitions (types, triggers, grants, queues, rate limits, schedules,
-- renames) become reference tables: a copy on every node, written from the
-- coordinator by Citus to all of them in one distributed transaction, so
-- that a type defined once is known on every node. Their policies lose
-- their subqueries as above, and each gets the trigger
-- toygun.definitions_changed(), which Citus copies onto every node's shard:
-- it tells that node's backends (its toygun worker's cached definitions)
-- that the table changed, as define_* does on the node it runs on.
-- The breaker stays a table of each node (its state changes on every
-- failure), and the outbox, its channels and routes stay on the
-- coordinator (doc/citus.md says which and why).

-- The trigger distribute() puts on each definition table, naming the table.
-- Any role may execute it, as any trigger function: it runs only as a
-- trigger (refused otherwise), and only a table's owner puts a trigger on it.
CREATE FUNCTION toygun.definitions_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'toygun_definitions_changed_trigger' LANGUAGE C;

CREATE FUNCTION toygun.distribute() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    is_coordinator boolean;
    def text;
    unsafe_triggers text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'toygun.distribute() needs Citus in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On the coordinator: CREATE EXTENSION citus, add the worker nodes (citus_add_node), then call toygun.distribute().';
    END IF;
    IF NOT pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'toygun'),
                                  'USAGE') THEN
        RAISE EXCEPTION 'permission denied to distribute toygun''s tables'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) calls toygun.distribute().';
    END IF;
    -- Citus's own functions, by EXECUTE: this body is compiled where Citus is not installed too
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO STRICT is_coordinator;
    IF NOT is_coordinator THEN
        RAISE EXCEPTION 'toygun.distribute() runs on the Citus coordinator, not on a worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator and call it there; Citus propagates the tables to the workers.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'toygun.task'::pg_catalog.regclass) THEN
        RAISE NOTICE 'toygun''s tables are distributed already';
        RETURN;
    END IF;

    DROP POLICY readable ON toygun.resource;
    CREATE POLICY readable ON toygun.resource FOR SELECT
        USING (type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.task;
    CREATE POLICY readable ON toygun.task FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    ALTER TABLE toygun.task DROP CONSTRAINT task_pkey;
    ALTER TABLE toygun.task ADD PRIMARY KEY (resource_id, id);

    -- toygun's statements by a run's id alone (locks, outcome writes on a
    -- node's shard) need an index on id now that the key starts with resource_id
    CREATE INDEX task_id_idx ON toygun.task (id);

    PERFORM pg_catalog.create_distributed_table('toygun.resource', 'id');
    PERFORM pg_catalog.create_distributed_table('toygun.task', 'resource_id', colocate_with => 'toygun.resource');

    -- The definitions: reference tables, their policies per row
    DROP POLICY readable ON toygun.trigger;
    CREATE POLICY readable ON toygun.trigger FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.rename;
    CREATE POLICY readable ON toygun.rename FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.schedule;
    CREATE POLICY readable ON toygun.schedule FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types())
            OR resource_type OPERATOR(pg_catalog.=) ANY (toygun.startable_types()));
    -- Citus copies a table's triggers onto its shards only with this set
    -- (for this transaction): toygun's trigger reads nothing, it only sends
    -- an invalidation on the node it runs on
    unsafe_triggers := pg_catalog.current_setting('citus.enable_unsafe_triggers');
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH def IN ARRAY ARRAY['queue', 'resource_type', 'task_type', 'trigger', 'type_grant',
                               'rate_limit', 'schedule', 'rename'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER definitions_changed'
                                  ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON toygun.%I'
                                  ' FOR EACH STATEMENT EXECUTE FUNCTION toygun.definitions_changed(%L)',
                                  def, def);
        PERFORM pg_catalog.create_reference_table(pg_catalog.format('toygun.%I', def));
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
REVOKE ALL ON FUNCTION toygun.distribute() FROM PUBLIC;
