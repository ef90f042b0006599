
-- Flow control at a glance (issue 17): a row per queue and per task type
-- with a rate limit. Read as the caller, like toygun.stats: due and
-- waiting_for_token count only the objects the caller may read.
--   queue rows: workers (what toygun.queues gives it), running (worker
--     processes serving it), busy (those ticking a batch), paused, due
--     (its tasks and resources due now).
--   task rows: the task type's queue and rate limit, paused (its queue's),
--     due (its runs due now), waiting_for_token (its runs a worker held for
--     a token: due after now, at the latest at the limit's horizon; a run
--     staying until before the horizon counts too), tokens (what a take
--     could have now).
CREATE VIEW toygun.flow WITH (security_invoker = true) AS
    SELECT 'queue'::text AS kind, s.queue, NULL::text AS resource_type, NULL::text AS task,
           NULL::text AS rate_limit, s.workers, s.running, s.busy, s.paused,
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.queue_id = s.id AND t.run_at <= pg_catalog.clock_timestamp())
           + (SELECT count(*) FROM ONLY toygun.resource r
               WHERE r.queue_id = s.id AND r.run_at <= pg_catalog.clock_timestamp()) AS due,
           NULL::bigint AS waiting_for_token, NULL::integer AS tokens
      FROM toygun.queue_status() s
    UNION ALL
    SELECT 'task', q.name, d.resource_type, d.name, d.rate_limit, NULL, NULL, NULL, q.paused,
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.resource_type = d.resource_type AND t.name = d.name
               AND t.run_at <= pg_catalog.clock_timestamp()),
           (SELECT count(*) FROM ONLY toygun.task t
             WHERE t.resource_type = d.resource_type AND t.name = d.name
               AND t.run_at > pg_catalog.clock_timestamp() AND t.run_at <= l.horizon),
           l.tokens
      FROM ONLY toygun.task_type d
      JOIN ONLY toygun.queue q ON q.id = d.queue_id
      LEFT JOIN toygun.rate_limit_status() l ON l.name = d.rate_limit
     WHERE d.rate_limit IS NOT NULL;
GRANT SELECT ON toygun.flow TO PUBLIC;
