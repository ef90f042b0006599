
-- Defining types. Both are idempotent: defining again replaces the definition,
-- and keeps its owner unless owner names another (that the caller may act for).
-- A task type's max_attempts, retry_backoff and tick_timeout are its own
-- retry policy; NULL (as a redefinition that leaves them out) means the setting.
-- should_start(toygun.resource, jsonb) and should_stop(toygun.task) return
-- boolean: whether a run starts, whether a live run stops before its tick.
-- stop_state: the state a first stop moves a run or resource into (its
-- handler then stops it); NULL: stops go straight to __stop__.
-- breaker: {"failures": n, "within": interval, "cooldown": interval}, a task
-- type's circuit breaker (toygun.breaker); NULL: none.
-- field_types: {"field": "type", ...}, the types of fields (text, integer,
-- bigint, numeric, boolean, timestamptz, date, uuid, jsonb, and arrays of all
-- but jsonb: text[], ...); a typed field is a declared field. NULL: none.
-- move_states: {"old": "new", ...}, where the live objects in states the new
-- definition does not declare go (a declared state, or __stop__), moved in
-- the same transaction; without it, such a redefinition is refused.
-- version: the schema version of the type's attrs (NULL: the current one, 1
-- for a new type), never lowered; upgrade: a function f(attrs jsonb,
-- from_version integer) RETURNS jsonb, run as the owner, that brings an
-- object's attrs from an older version to this one before its next tick or
-- move by hand, or in toygun.backfill() (NULL: the one it has while the
-- version stays, none when it rises).
-- keep (retention, issue 16): how long a stopped object of the type, and each
-- history row of its objects, is kept; NULL: forever. Left out, the setting
-- toygun.keep at definition time: default_keep() reads it (NULL for forever).
-- priority (issue 17): -100..100, the priority of its runs when a start
-- gives none (start_every and triggers never do); NULL: 0. A new default
-- applies to later starts: live runs keep theirs.
-- queue (issue 17): the queue whose workers (toygun.queues) claim its
-- objects; NULL: 'default'. Made if it does not exist; a redefinition with
-- another queue moves its live objects there.
-- rate_limit (issue 17): a toygun.rate_limit each tick of its runs takes a
-- token of; a run without one waits (no attempt, no history row). NULL: none.
-- max_running, concurrency_key, max_per_key (issue 17): how many of its runs
-- are ticked at once, in all and per key (a top-level attrs field, or '$root':
-- the root ancestor of the run's resource); NULL: no limit. A run waits for
-- a slot without an attempt; a tick by hand at the limit is refused.
CREATE FUNCTION toygun.default_keep() RETURNS interval
    AS 'MODULE_PATHNAME', 'toygun_default_keep' LANGUAGE C STABLE PARALLEL SAFE;

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

-- A function a defined type uses (handler, alarm_handler, should_start,
-- should_stop) cannot be dropped: PostgreSQL records no dependency on a
-- table row, so an event trigger refuses the DROP (DROP FUNCTION, DROP
-- SCHEMA ... CASCADE, DROP OWNED), naming the functions and the types.
-- DROP EXTENSION toygun is let through.
CREATE FUNCTION toygun.guard_drop() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'toygun_guard_drop' LANGUAGE C;
REVOKE ALL ON FUNCTION toygun.guard_drop() FROM PUBLIC;
CREATE EVENT TRIGGER toygun_guard_drop ON sql_drop EXECUTE FUNCTION toygun.guard_drop();
