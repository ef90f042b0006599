-- generated from src/sql/*.sql by make; do not edit
\echo Use "CREATE EXTENSION toygun" to load this file. \quit
-- CREATE EXTENSION made schema toygun, or found it there already. Refuse
-- one that another role owns, or that holds objects already: its owner
-- could drop or replace toygun's objects, and objects made before ours
-- could shadow them.
DO $$
DECLARE
    nsp pg_catalog.oid := (SELECT n.oid FROM pg_catalog.pg_namespace n
                            WHERE n.nspname OPERATOR(pg_catalog.=) 'toygun');
    owner pg_catalog.name := (SELECT pg_catalog.pg_get_userbyid(n.nspowner) FROM pg_catalog.pg_namespace n
                               WHERE n.oid OPERATOR(pg_catalog.=) nsp);
BEGIN
    IF owner OPERATOR(pg_catalog.<>) CURRENT_USER THEN
        RAISE EXCEPTION 'schema toygun belongs to role %, not to the role installing toygun', owner
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'The owner of a schema can drop and replace the objects in it.',
                  HINT = pg_catalog.format('Drop schema toygun, or make role %I its owner, before CREATE EXTENSION toygun.',
                                           CURRENT_USER);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_operator WHERE oprnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_collation WHERE collnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_conversion WHERE connamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_opfamily WHERE opfnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_config WHERE cfgnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_dict WHERE dictnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_statistic_ext WHERE stxnamespace OPERATOR(pg_catalog.=) nsp) THEN
        RAISE EXCEPTION 'schema toygun already holds objects'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'Objects made before toygun''s own could shadow them.',
                  HINT = 'Move them to another schema, or drop them, before CREATE EXTENSION toygun.';
    END IF;
END $$;


-- Tables: definitions, the objects they govern, and their append-only history.
--
-- Rows of toygun.resource and toygun.task are written only through the API
-- functions (which run these writes as the extension's owner); everybody may
-- read them. No foreign keys: the task row is updated on every tick, and a
-- foreign key would take FOR KEY SHARE locks on the parent on every update.

-- A resource type: its states, optional handler and declared fields.
CREATE TABLE toygun.resource_type (
    name             text PRIMARY KEY,
    states           text[] NOT NULL,
    handler          text,               -- qualified signature, resolved at each tick
    fields           text[],             -- NULL: any key allowed
    encrypted_fields text[] NOT NULL DEFAULT '{}',
    owner            regrole NOT NULL,   -- handlers run as this role
    search_path      text NOT NULL,      -- the definer's search_path, used by the handler
    defined_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- A task type: an ordered list of states and the handler that runs them.
CREATE TABLE toygun.task_type (
    resource_type    text NOT NULL,
    name             text NOT NULL,
    states           text[] NOT NULL,
    handler          text NOT NULL,
    fields           text[],
    encrypted_fields text[] NOT NULL DEFAULT '{}',
    owner            regrole NOT NULL,
    search_path      text NOT NULL,
    defined_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (resource_type, name)
);

-- run_at is when the object is next due for a tick; NULL when it is not
-- scheduled at all (stopped, panicked, a resource without a handler, or a
-- task whose resource is stopped).
CREATE TABLE toygun.resource (
    id          uuid PRIMARY KEY,
    type        text NOT NULL,
    parent_id   uuid,
    state       text NOT NULL DEFAULT '__new__',
    attrs       jsonb NOT NULL DEFAULT '{}',
    step        bigint NOT NULL DEFAULT 0,
    run_at      timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX resource_type_idx ON toygun.resource (type);
CREATE INDEX resource_parent_idx ON toygun.resource (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX resource_due_idx ON toygun.resource (run_at) WHERE run_at IS NOT NULL;

-- Runs are ordered by seq (start order), never by a transaction's constant now().
CREATE SEQUENCE toygun.task_seq;

-- One row per run: each start creates a new row.
CREATE TABLE toygun.task (
    id          uuid PRIMARY KEY,
    resource_id uuid NOT NULL,
    resource_type text NOT NULL,     -- the resource's type: with name, the task type
    name        text NOT NULL,
    state       text NOT NULL DEFAULT '__new__',
    attrs       jsonb NOT NULL DEFAULT '{}',
    step        bigint NOT NULL DEFAULT 0,
    run_at      timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    seq         bigint NOT NULL DEFAULT pg_catalog.nextval('toygun.task_seq')
);
ALTER SEQUENCE toygun.task_seq OWNED BY toygun.task.seq;
-- At most one live (not __stop__) run per resource and task name.
CREATE UNIQUE INDEX task_live_idx ON toygun.task (resource_id, name) WHERE state <> '__stop__';
CREATE INDEX task_runs_idx ON toygun.task (resource_id, name, seq);
CREATE INDEX task_due_idx ON toygun.task (run_at) WHERE run_at IS NOT NULL;

-- Rows of resources and runs are updated on every tick: leave room on each
-- page for the new version (a HOT update, when no indexed value changes),
-- and vacuum them often, as job-queue tables need.
ALTER TABLE toygun.resource SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05,
                                 autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE toygun.task SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05,
                             autovacuum_vacuum_insert_scale_factor = 0.05);

-- The history of every resource and task: step is gapless per object from 0.
CREATE TABLE toygun.transition (
    object_id   uuid NOT NULL,
    step        bigint NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    note        text,
    PRIMARY KEY (object_id, step)
);

-- pg_dump keeps the contents of these tables.
SELECT pg_catalog.pg_extension_config_dump('toygun.resource_type', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task_type', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.resource', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.transition', '');

-- What a handler returns: go to a state, stay (tick again later), stop, or panic.
-- Build it with the constructors below; the tick validates it again on use.
CREATE TYPE toygun.next AS (
    kind     text,       -- 'go', 'stay', 'stop' or 'panic'
    state    text,       -- target of 'go'
    attrs    jsonb,      -- merged into the object's attrs
    wait     interval,   -- 'stay': tick again after this long (NULL: toygun.poll_interval)
    message  text        -- 'panic': stored as attrs.panic_message
);

CREATE FUNCTION toygun.go(state text, attrs jsonb DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_go' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.stay(attrs jsonb DEFAULT NULL, wait interval DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_stay' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.stop(attrs jsonb DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_stop' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.panic(message text) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_panic' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- Defining types. Both are idempotent: defining again replaces the definition,
-- and keeps its owner unless owner names another (that the caller may act for).
CREATE FUNCTION toygun.define_resource(
    type text,
    states text[] DEFAULT '{starting,running,stopping,restarting}',
    handler regprocedure DEFAULT NULL,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_resource' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.define_task(
    resource_type text,
    name text,
    states text[],
    handler regprocedure,
    fields text[] DEFAULT NULL,
    encrypted_fields text[] DEFAULT '{}',
    owner regrole DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_task' LANGUAGE C VOLATILE;

-- Resources and tasks.
CREATE FUNCTION toygun.create_resource(type text, attrs jsonb DEFAULT '{}', parent uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_create_resource' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.start_task(resource uuid, name text, args jsonb DEFAULT '{}') RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_start_task' LANGUAGE C VOLATILE;

-- The last error of a resource or run: the message of its last failed tick,
-- NULL if it has none. For roles with the privileges of its type's owner.
CREATE FUNCTION toygun.last_error(id uuid) RETURNS text
    AS 'MODULE_PATHNAME', 'toygun_last_error' LANGUAGE C STABLE;

-- The latest run of a task on a resource, or NULL. Its last_error is there
-- for roles with the privileges of the task type's owner, NULL for others.
CREATE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq)::toygun.task
          FROM toygun.task t
          LEFT JOIN toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;

-- Whether the latest run exists and is not __stop__ (__new__ and __panic__ count).
CREATE FUNCTION toygun.is_running(resource uuid, name text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT COALESCE((SELECT t.state <> '__stop__' FROM toygun.task t
                          WHERE t.resource_id = is_running.resource AND t.name = is_running.name
                          ORDER BY t.seq DESC LIMIT 1), false);
    END;

-- The transitions of a resource or task, in order.
CREATE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note FROM toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;

-- Operations on stored objects: administration, tests and repair.
CREATE FUNCTION toygun.tick_task(id uuid) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_tick_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_task(id uuid, state text, attrs jsonb DEFAULT NULL,
                                       expected_state text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_transition_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.stop_task(id uuid) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_stop_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.panic_task(id uuid, message text) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_panic_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rewind_task(id uuid, n integer DEFAULT 1) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_rewind_task' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.tick_resource(id uuid) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_tick_resource' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_resource(id uuid, state text, attrs jsonb DEFAULT NULL,
                                           expected_state text DEFAULT NULL) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_transition_resource' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.stop_resource(id uuid) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_stop_resource' LANGUAGE C VOLATILE;

-- The background workers, from shared memory: one row per running worker.
-- transactions counts the worker's own commits, deaths the ticks in this
-- slot that ended their worker's process since the server started.
CREATE FUNCTION toygun.worker_status()
    RETURNS TABLE (pid integer, slot integer, idle boolean, started_at timestamptz,
                   ticks bigint, failures bigint, last_tick_at timestamptz,
                   transactions bigint, deaths bigint)
    AS 'MODULE_PATHNAME', 'toygun_worker_status' LANGUAGE C VOLATILE;

-- Live objects per type and state: how many, how many due now, panicked,
-- failing (a failed tick not yet followed by a successful one), and how long
-- the oldest due one has waited (by the clock, not the transaction's start).
CREATE VIEW toygun.stats AS
    SELECT 'task'::text AS kind, r.type AS resource_type, t.name AS task, t.state,
           count(*) AS live,
           count(*) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS due,
           count(*) FILTER (WHERE t.state = '__panic__') AS panicked,
           count(*) FILTER (WHERE t.attempts > 0) AS failing,
           pg_catalog.clock_timestamp() - min(t.run_at) FILTER (WHERE t.run_at <= pg_catalog.clock_timestamp()) AS oldest_due_age
      FROM toygun.task t JOIN toygun.resource r ON r.id = t.resource_id
     WHERE t.state <> '__stop__'
     GROUP BY r.type, t.name, t.state
    UNION ALL
    SELECT 'resource', r.type, NULL, r.state,
           count(*),
           count(*) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp()),
           count(*) FILTER (WHERE r.state = '__panic__'),
           count(*) FILTER (WHERE r.attempts > 0),
           pg_catalog.clock_timestamp() - min(r.run_at) FILTER (WHERE r.run_at <= pg_catalog.clock_timestamp())
      FROM toygun.resource r
     WHERE r.state <> '__stop__'
     GROUP BY r.type, r.state;

-- Say so at install time when nothing will tick runs in the background here.
DO $$
BEGIN
    IF pg_catalog.current_setting('shared_preload_libraries')
           OPERATOR(pg_catalog.!~) '(^|,)\s*toygun\s*(,|$)' THEN
        RAISE WARNING 'toygun is not in shared_preload_libraries, so no worker will tick runs'
            USING HINT = 'Add toygun to shared_preload_libraries in postgresql.conf and restart the server; '
                         'until then, tick runs by hand with toygun.tick_task().';
    ELSIF pg_catalog.current_setting('toygun.database_name', true)
              OPERATOR(pg_catalog.<>) pg_catalog.current_database() THEN
        RAISE WARNING 'toygun''s workers tick runs in database "%", not in this one',
                      pg_catalog.current_setting('toygun.database_name', true)
            USING HINT = pg_catalog.format('Set toygun.database_name = %L in postgresql.conf and restart the server.',
                                           pg_catalog.current_database());
    END IF;
END $$;

-- Wake the launcher once this installation commits, so that workers start
-- now rather than at its next check.
CREATE FUNCTION toygun._wake_after_install() RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_wake_after_install' LANGUAGE C;
SELECT toygun._wake_after_install();
DROP FUNCTION toygun._wake_after_install();

-- Secrets: a jsonb value encrypted under a numbered key of the keyring file
-- (toygun.keyring_file), and encrypted fields of resources and tasks.

CREATE TYPE toygun.secret;
CREATE FUNCTION toygun.secret_in(cstring) RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_secret_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_out(toygun.secret) RETURNS cstring
    AS 'MODULE_PATHNAME', 'toygun_secret_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_recv(internal) RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_secret_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_send(toygun.secret) RETURNS bytea
    AS 'MODULE_PATHNAME', 'toygun_secret_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- Ciphertext does not compress: store it out of line without trying.
CREATE TYPE toygun.secret (
    INPUT = toygun.secret_in,
    OUTPUT = toygun.secret_out,
    RECEIVE = toygun.secret_recv,
    SEND = toygun.secret_send,
    INTERNALLENGTH = VARIABLE,
    STORAGE = external
);
COMMENT ON TYPE toygun.secret IS 'a jsonb value encrypted with a key of the toygun keyring';

-- A new random nonce every time; the context is bound to the ciphertext.
CREATE FUNCTION toygun.encrypt(value jsonb, context text DEFAULT '') RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_encrypt' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION toygun.decrypt(secret toygun.secret, context text DEFAULT '') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_decrypt' LANGUAGE C STABLE PARALLEL SAFE;
-- The number of the key that encrypted a secret (not secret itself).
CREATE FUNCTION toygun.key_number(secret toygun.secret) RETURNS integer
    AS 'MODULE_PATHNAME', 'toygun_key_number' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- A field of a run or a resource, decrypted if its type declares it encrypted.
CREATE FUNCTION toygun.field(t toygun.task, name text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_field_task' LANGUAGE C STABLE STRICT;
CREATE FUNCTION toygun.field(r toygun.resource, name text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_field_resource' LANGUAGE C STABLE STRICT;

-- Administration: re-encrypt stored fields with the current key, and the
-- numbers (never the keys) of the keys this session has loaded.
CREATE FUNCTION toygun.rotate_secrets() RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_rotate_secrets' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.keyring() RETURNS TABLE (key_number integer, encrypts boolean)
    AS 'MODULE_PATHNAME', 'toygun_keyring' LANGUAGE C VOLATILE;

-- Anyone may encrypt, and read fields of the types they may act for
-- (field() checks); decrypting arbitrary secrets and the administration
-- functions are for the roles they are granted to.
REVOKE ALL ON FUNCTION toygun.decrypt(toygun.secret, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION toygun.rotate_secrets() FROM PUBLIC;
REVOKE ALL ON FUNCTION toygun.keyring() FROM PUBLIC;

-- Periodic starts on pg_cron. A schedule starts a task on every live resource
-- of a type at most once per bucket (the fire time a firing belongs to).
-- pg_cron is optional: nothing here refers to it until start_every() runs.

CREATE SEQUENCE toygun.schedule_seq;

-- One row per periodic start; its pg_cron job runs toygun.run_schedule().
CREATE TABLE toygun.schedule (
    id            bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.schedule_seq'),
    resource_type text NOT NULL,
    task          text NOT NULL,
    schedule      text NOT NULL,          -- as given to start_every
    cron          text NOT NULL,          -- the cron expression pg_cron fires it on (GMT)
    args          jsonb NOT NULL,         -- the attrs each run starts with
    owner         regrole NOT NULL,       -- the role that called start_every; firings act for it
    job_name      text NOT NULL,          -- the pg_cron job, in cron.job
    job_id        bigint,
    last_bucket   timestamptz,            -- the latest bucket fired
    last_started  bigint NOT NULL DEFAULT 0,   -- runs that bucket started
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    UNIQUE (resource_type, task)
);
ALTER SEQUENCE toygun.schedule_seq OWNED BY toygun.schedule.id;

-- The resources a bucket has claimed: a firing claims (schedule, bucket,
-- resource) before it starts a run there, so a repeated or overlapping
-- firing of the bucket starts nothing twice. Only the latest bucket's claims
-- are kept: a firing that opens a new bucket deletes the older ones.
CREATE TABLE toygun.schedule_start (
    schedule_id bigint NOT NULL,
    bucket      timestamptz NOT NULL,
    resource_id uuid NOT NULL,
    PRIMARY KEY (schedule_id, bucket, resource_id)
);

SELECT pg_catalog.pg_extension_config_dump('toygun.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.schedule_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.schedule_start', '');

CREATE FUNCTION toygun.start_every(resource_type text, task text, schedule text,
                                   args jsonb DEFAULT '{}') RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_start_every' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.stop_every(resource_type text, task text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_stop_every' LANGUAGE C VOLATILE;

-- The command of the pg_cron job; at picks a bucket by hand (tests, repair).
CREATE FUNCTION toygun.run_schedule(resource_type text, task text, at timestamptz DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_run_schedule' LANGUAGE C VOLATILE;

-- The bucket a firing at time at belongs to: the latest fire time at or before it.
CREATE FUNCTION toygun.schedule_bucket(schedule text, at timestamptz DEFAULT pg_catalog.now())
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'toygun_schedule_bucket' LANGUAGE C STABLE PARALLEL SAFE;

GRANT SELECT ON toygun.schedule, toygun.schedule_start TO PUBLIC;

-- Everybody may read the tables ("datasets") and call the API; the API
-- checks, per call, that the caller may act for the type's owner. Nobody but
-- the extension's owner writes the tables directly.
GRANT USAGE ON SCHEMA toygun TO PUBLIC;
GRANT SELECT ON toygun.resource_type, toygun.task_type, toygun.transition, toygun.stats TO PUBLIC;
-- Every column but last_error: a handler's error text can carry what its
-- owner would not show (values, names, secrets in a message), so it is read
-- with toygun.last_error(), which checks. toygun.stats reads as its owner.
REVOKE ALL ON toygun.resource, toygun.task FROM PUBLIC;
GRANT SELECT (id, type, parent_id, state, attrs, step, run_at, attempts, created_at, updated_at)
    ON toygun.resource TO PUBLIC;
GRANT SELECT (id, resource_id, resource_type, name, state, attrs, step, run_at, attempts,
              created_at, updated_at, seq)
    ON toygun.task TO PUBLIC;
