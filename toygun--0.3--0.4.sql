-- toygun 0.3 to 0.4. Frozen once released, like every upgrade script.
\echo Use "ALTER EXTENSION toygun UPDATE TO '0.4'" to load this file. \quit

-- sql/upgrade.sql proves that a database updated from 0.1 through 0.3 has
-- exactly the objects of a fresh 0.4 install; a change to src/sql/ without
-- its upgrade step here fails that test.

-- Every query on toygun's tables reads ONLY toygun's own rows: a table a DBA
-- makes that INHERITS from one of them is never read through the API.
CREATE OR REPLACE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
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
