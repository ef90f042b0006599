-- toygun 0.2 to 0.3. Frozen once released, like every upgrade script.
\echo Use "ALTER EXTENSION toygun UPDATE TO '0.3'" to load this file. \quit

-- sql/upgrade.sql proves that a database updated from 0.1 through 0.2 has
-- exactly the objects of a fresh 0.3 install; a change to src/sql/ without
-- its upgrade step here fails that test.

-- worker_status() gained two OUT columns: a function's result type cannot
-- change in place.
DROP FUNCTION toygun.worker_status();
CREATE FUNCTION toygun.worker_status()
    RETURNS TABLE (pid integer, slot integer, idle boolean, started_at timestamptz,
                   ticks bigint, failures bigint, last_tick_at timestamptz,
                   transactions bigint, deaths bigint)
    AS 'MODULE_PATHNAME', 'toygun_worker_status' LANGUAGE C VOLATILE;

-- define_resource() and define_task() take the owner of the definition:
-- a new argument is a new signature.
DROP FUNCTION toygun.define_resource(text, text[], regprocedure, text[], text[]);
DROP FUNCTION toygun.define_task(text, text, text[], regprocedure, text[], text[]);
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

-- last_error is no longer readable by PUBLIC: toygun.last_error() reads it
-- for roles with the privileges of the type's owner, and task_for() shows it
-- only to them.
REVOKE ALL ON toygun.resource, toygun.task FROM PUBLIC;
GRANT SELECT (id, type, parent_id, state, attrs, step, run_at, attempts, created_at, updated_at)
    ON toygun.resource TO PUBLIC;
GRANT SELECT (id, resource_id, resource_type, name, state, attrs, step, run_at, attempts,
              created_at, updated_at, seq)
    ON toygun.task TO PUBLIC;

-- The last error of a resource or run: the message of its last failed tick,
-- NULL if it has none. For roles with the privileges of its type's owner.
CREATE FUNCTION toygun.last_error(id uuid) RETURNS text
    AS 'MODULE_PATHNAME', 'toygun_last_error' LANGUAGE C STABLE;

-- The latest run of a task on a resource, or NULL. Its last_error is there
-- for roles with the privileges of the task type's owner, NULL for others.
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
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
