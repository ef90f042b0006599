
-- Everybody may read the tables ("datasets") and call the API; the API
-- checks, per call, the caller's right on the type (rights.c), and the rows
-- of resource and task are those of the types the caller may read (the
-- policies in rights.sql). Nobody but the extension's owner writes the
-- tables directly.
GRANT USAGE ON SCHEMA toygun TO PUBLIC;
GRANT SELECT ON toygun.resource_type, toygun.task_type, toygun.transition, toygun.stats,
    toygun.type_grant, toygun.type_grants, toygun.queue TO PUBLIC;
-- Every column but last_error: a handler's error text can carry what its
-- owner would not show (values, names, secrets in a message), so it is read
-- with toygun.last_error(), which checks. toygun.stats reads as its caller.
REVOKE ALL ON toygun.resource, toygun.task FROM PUBLIC;
GRANT SELECT (id, type, parent_id, state, attrs, step, run_at, attempts, created_at, updated_at,
              version, queue_id)
    ON toygun.resource TO PUBLIC;
GRANT SELECT (id, resource_id, resource_type, name, state, attrs, step, run_at, attempts,
              created_at, updated_at, seq, parent_run, version, priority, queue_id, flow_key)
    ON toygun.task TO PUBLIC;
