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
