
-- The background workers, from shared memory: one row per running worker.
-- transactions counts the worker's own commits, deaths the ticks in this
-- slot that ended their worker's process since the server started; queue
-- the queue toygun.queues gives its slot (issue 17).
CREATE FUNCTION toygun.worker_status()
    RETURNS TABLE (pid integer, slot integer, idle boolean, started_at timestamptz,
                   ticks bigint, failures bigint, last_tick_at timestamptz,
                   transactions bigint, deaths bigint, queue text)
    AS 'MODULE_PATHNAME', 'toygun_worker_status' LANGUAGE C VOLATILE;

-- Live objects per type and state: how many, how many due now, panicked,
-- failing (a failed tick not yet followed by a successful one), and how long
-- the oldest due one has waited (by the clock, not the transaction's start);
-- breaker: the state of a task type's circuit breaker, NULL without one.
-- It reads as the caller, so it counts only the types the caller may read.
CREATE VIEW toygun.stats WITH (security_invoker = true) AS
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
