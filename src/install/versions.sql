
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
