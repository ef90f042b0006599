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

-- Queues (issue 17, flow control): a type's objects are claimed only by the
-- workers toygun.queues gives its queue. Made by define_resource and
-- define_task (queue => ...); 'default' (0) is installed. paused: no worker
-- claims from it (pause_queue, resume_queue). pg_dump keeps the queues but
-- 'default', which the restore's CREATE EXTENSION installs, running.
CREATE TABLE toygun.queue (
    id         smallint PRIMARY KEY CHECK (id >= 0 AND id < 256),
    name       text NOT NULL UNIQUE,
    paused     boolean NOT NULL DEFAULT false
);
INSERT INTO toygun.queue (id, name) VALUES (0, 'default');
SELECT pg_catalog.pg_extension_config_dump('toygun.queue', 'WHERE id <> 0');

-- A resource type: its states, optional handler and declared fields.
CREATE TABLE toygun.resource_type (
    name             text PRIMARY KEY,
    states           text[] NOT NULL,
    handler          text,               -- qualified signature, resolved at each tick
    fields           text[],             -- NULL: any key allowed
    encrypted_fields text[] NOT NULL DEFAULT '{}',
    owner            regrole NOT NULL,   -- handlers run as this role
    search_path      text NOT NULL,      -- the definer's search_path, used by the handler
    defined_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    parent_type      text,               -- NULL: any parent or none; else its resources need a live parent of that type
    stop_state       text,               -- the state stop_resource moves it into; NULL: __stop__
    alarm_handler    text,               -- qualified signature of a function (toygun.alarm) RETURNS text, or NULL
    field_types      jsonb,              -- {"field": "type", ...}; NULL: no typed field
    version          integer NOT NULL DEFAULT 1,  -- the schema version of its objects' attrs
    upgrade          text,               -- qualified signature of f(jsonb, integer) RETURNS jsonb, or NULL
    keep             interval,           -- how long stopped objects and history rows are kept; NULL: forever
    queue_id         smallint NOT NULL DEFAULT 0  -- toygun.queue: where its resources are claimed (0.4)
);

-- A task type: an ordered list of states and the handler that runs them,
-- and its retry policy: max_attempts, retry_backoff and tick_timeout, each
-- NULL for the setting of that name.
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
    max_attempts     integer,
    retry_backoff    interval,
    tick_timeout     interval,
    should_start     text,               -- hooks, qualified signatures like handler's; NULL: none
    should_stop      text,
    stop_state       text,               -- the state stop_task moves a run into; NULL: __stop__
    breaker          jsonb,              -- {"failures", "within", "cooldown"}; NULL: no circuit breaker
    field_types      jsonb,              -- {"field": "type", ...}; NULL: no typed field
    version          integer NOT NULL DEFAULT 1,  -- the schema version of its runs' attrs
    upgrade          text,               -- qualified signature of f(jsonb, integer) RETURNS jsonb, or NULL
    keep             interval,           -- how long stopped runs and history rows are kept; NULL: forever
    priority         smallint NOT NULL DEFAULT 0,  -- the priority of its runs when a start gives none (0.4)
    queue_id         smallint NOT NULL DEFAULT 0,  -- toygun.queue: where its runs are claimed (0.4)
    rate_limit       text,               -- the toygun.rate_limit its ticks take a token of; NULL: none (0.4)
    max_running      integer,            -- concurrency limits (0.4, issue 17): runs ticked at once; NULL: any
    concurrency_key  text,               -- a top-level attrs field, or '$root': runs with one key share max_per_key
    max_per_key      integer,            -- runs of one key ticked at once; NULL: any
    limit_id         smallint UNIQUE,    -- 1..64 while it has a limit: the high bits of its runs' flow_key
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
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    version     integer NOT NULL DEFAULT 1,  -- the schema version its attrs are in (0.4)
    queue_id    smallint NOT NULL DEFAULT 0  -- its type's queue, copied at its creation (0.4, issue 17)
);
CREATE INDEX resource_type_idx ON toygun.resource (type);
CREATE INDEX resource_parent_idx ON toygun.resource (parent_id) WHERE parent_id IS NOT NULL;
-- Each scheduled resource is in one claim index: queue 0's in resource_due_idx,
-- the others' in resource_queue_idx (issue 17); the claims repeat each
-- predicate literally, so that a generic plan matches it.
CREATE INDEX resource_due_idx ON toygun.resource (run_at) WHERE run_at IS NOT NULL AND queue_id = 0;
CREATE INDEX resource_queue_idx ON toygun.resource (queue_id, run_at) WHERE run_at IS NOT NULL AND queue_id <> 0;

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
    seq         bigint NOT NULL DEFAULT pg_catalog.nextval('toygun.task_seq'),
    parent_run  uuid,                -- the run whose handler started it (0.4)
    version     integer NOT NULL DEFAULT 1,  -- the schema version its attrs are in (0.4)
    priority    smallint NOT NULL DEFAULT 0, -- -100..100: higher is claimed first (0.4, issue 17)
    queue_id    smallint NOT NULL DEFAULT 0, -- its task type's queue, copied at its start (0.4, issue 17)
    flow_key    bigint               -- limited types only: limit_id << 48 | a 48-bit hash of its key (0.4, issue 17)
);
ALTER SEQUENCE toygun.task_seq OWNED BY toygun.task.seq;
-- At most one live (not __stop__) run per resource and task name.
CREATE UNIQUE INDEX task_live_idx ON toygun.task (resource_id, name) WHERE state <> '__stop__';
CREATE INDEX task_runs_idx ON toygun.task (resource_id, name, seq);
-- Flow control (issue 17): each scheduled run is in exactly one claim index.
-- Runs of queue 0 at priority 0 in task_due_idx, as before; the others in
-- task_lane_idx, where a claim reads one (queue, level) at a time in run_at
-- order; runs of types with a concurrency limit in task_flow_idx, by key. The
-- claims repeat each predicate literally, so that a generic plan matches the
-- partial index.
CREATE INDEX task_due_idx ON toygun.task (run_at)
    WHERE run_at IS NOT NULL AND queue_id = 0 AND priority = 0 AND flow_key IS NULL;
CREATE INDEX task_lane_idx ON toygun.task (queue_id, priority, run_at)
    WHERE run_at IS NOT NULL AND (queue_id <> 0 OR priority <> 0) AND flow_key IS NULL;
CREATE INDEX task_flow_idx ON toygun.task (flow_key, run_at)
    WHERE run_at IS NOT NULL AND flow_key IS NOT NULL;

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
-- Rows kept forever, and rows no time partition takes (moved out when one is
-- made for them, deleted once expired). Time partitions, toygun.transition_
-- and their UTC lower bound, are made and dropped by toygun.maintain().
-- Each partition has its own key (object_id, step): a key on the parent
-- would have to hold expires_at, and would keep pg_restore from restoring
-- the time partitions (not members of the extension) under the parent
-- CREATE EXTENSION makes. No (object, step) twice across partitions is kept
-- by the writers, who hold the object's row lock.
CREATE TABLE toygun.transition_forever PARTITION OF toygun.transition (PRIMARY KEY (object_id, step))
    FOR VALUES FROM ('infinity') TO (MAXVALUE);
CREATE TABLE toygun.transition_default PARTITION OF toygun.transition (PRIMARY KEY (object_id, step))
    DEFAULT;
-- the default partition's rows by expiry: a round deletes the expired ones
-- and moves out those a new time partition takes without reading them all
CREATE INDEX transition_default_expires_idx ON toygun.transition_default (expires_at);

-- Retention (0.4): the stopped resources of a type, oldest first, found
-- without a scan. created_at, not updated_at: an index on a column every
-- tick writes would end the ticks' HOT updates. (Stopped runs need none:
-- they are found by the history rows of their stops, which expire with them.)
CREATE INDEX resource_stopped_idx ON toygun.resource (type, created_at)
    WHERE state = '__stop__';

-- pg_dump keeps the contents of these tables.
SELECT pg_catalog.pg_extension_config_dump('toygun.resource_type', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task_type', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.resource', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.task_seq', '');
-- the history's rows are in its partitions: those made here are dumped as
-- members, the time partitions (not members) as tables of their own
SELECT pg_catalog.pg_extension_config_dump('toygun.transition_forever', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.transition_default', '');
