
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
