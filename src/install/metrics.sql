
-- Metrics (issue 18). The workers count their ticks per task type and
-- resource type in shared memory (src/metrics.c): ticks (successful and
-- failed), failures, panics (objects a tick or a last failed attempt moved
-- to __panic__) and a histogram of tick durations. _tick_metrics() returns
-- a row per type the caller may read (its resource type is in
-- readable_types()) that a worker ticked since the server started, and a
-- row with resource_type NULL for the ticks of types past
-- toygun.metrics_types. Every counter starts from zero when the server
-- starts.
CREATE FUNCTION toygun._tick_metrics()
    RETURNS TABLE (resource_type text, task text, ticks bigint, failures bigint, panics bigint,
                   duration_sum double precision, le text[], buckets bigint[])
    AS 'MODULE_PATHNAME', 'toygun_tick_metrics' LANGUAGE C VOLATILE;

-- A label value as Prometheus's text format writes it: \, " and newline escaped.
CREATE FUNCTION toygun._prometheus_label(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               COALESCE(value, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n');

-- Everything toygun can tell a monitoring system, in Prometheus's text
-- exposition format (version 0.0.4), read as the caller: the counters of
-- _tick_metrics(), the gauges of toygun.ops_gauges(), the workers and queues, the
-- breakers, rate limits and concurrency limits, each for what the caller
-- may read. A family is written with its HELP and TYPE lines even when it
-- has no sample.
CREATE FUNCTION toygun.metrics() RETURNS text
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH c AS (
        SELECT m.*,
               pg_catalog.format('resource_type="%s",task="%s"',
                                 toygun._prometheus_label(m.resource_type),
                                 toygun._prometheus_label(m.task)) AS labels
          FROM toygun._tick_metrics() m
    ),
    g AS (SELECT * FROM toygun.ops_gauges()),
    per_type AS (
        SELECT pg_catalog.format('resource_type="%s",task="%s"',
                                 toygun._prometheus_label(g.resource_type),
                                 toygun._prometheus_label(g.task)) AS labels,
               g.due, g.panicked, g.failing, COALESCE(EXTRACT(epoch FROM g.oldest_due_age), 0) AS oldest_due
          FROM g
    ),
    q AS (SELECT * FROM toygun.queue_status()),
    ob AS (SELECT * FROM toygun._outbox_gauges()),
    families (n, name, type, help) AS (VALUES
        (1, 'toygun_ticks_total', 'counter', 'Ticks by the workers (successful and failed) since the server started.'),
        (2, 'toygun_tick_failures_total', 'counter', 'Failed ticks by the workers since the server started.'),
        (3, 'toygun_panics_total', 'counter', 'Objects a worker''s tick, or its last failed attempt, moved to __panic__ since the server started.'),
        (4, 'toygun_tick_duration_seconds', 'histogram', 'How long the workers'' ticks took, failed ones included.'),
        (5, 'toygun_metrics_overflow_ticks_total', 'counter', 'Ticks of the types past toygun.metrics_types, counted together.'),
        (6, 'toygun_due_capped', 'gauge', 'Whether a due count stopped at 5,000 due objects of one claim index: due counts and oldest due ages are then lower bounds.'),
        (7, 'toygun_due', 'gauge', 'Objects due for a tick now.'),
        (8, 'toygun_panicked', 'gauge', 'Objects in __panic__.'),
        (9, 'toygun_failing', 'gauge', 'Objects whose last tick failed.'),
        (10, 'toygun_oldest_due_seconds', 'gauge', 'How long the longest-waiting due object has waited; 0: none due.'),
        (11, 'toygun_workers', 'gauge', 'Worker processes per queue: configured (toygun.queues), running, busy ticking.'),
        (12, 'toygun_worker_up', 'gauge', 'Whether the worker of each configured slot is running.'),
        (13, 'toygun_queue_paused', 'gauge', 'Whether a queue is paused (toygun.pause_queue).'),
        (14, 'toygun_breaker_open', 'gauge', 'Whether a task type''s circuit breaker is open (1), half open (0.5) or closed (0).'),
        (15, 'toygun_rate_limit_tokens', 'gauge', 'Tokens a take could have now, per rate limit.'),
        (16, 'toygun_limit_running', 'gauge', 'Slots of a task type''s concurrency limit its runs hold now.')
        UNION ALL
        -- the outbox's: the extension owner's only (no row, so no lines, for others)
        SELECT 17, 'toygun_outbox_pending', 'gauge', 'Outbox rows not yet delivered and not failed (new, or waiting for a retry).'
          FROM ob
        UNION ALL
        SELECT 18, 'toygun_outbox_failed', 'gauge', 'Outbox rows the deliverer gave up on (toygun.redeliver sends one again).'
          FROM ob
    ),
    samples (n, sort, line) AS (
        SELECT 1, c.labels, pg_catalog.format('toygun_ticks_total{%s} %s', c.labels, c.ticks)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 2, c.labels, pg_catalog.format('toygun_tick_failures_total{%s} %s', c.labels, c.failures)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 3, c.labels, pg_catalog.format('toygun_panics_total{%s} %s', c.labels, c.panics)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, pg_catalog.format('%s %s', c.labels, pg_catalog.to_char(b.i, 'FM00')),
               pg_catalog.format('toygun_tick_duration_seconds_bucket{%s,le="%s"} %s', c.labels, b.le, b.count)
          FROM c, unnest(c.le, c.buckets) WITH ORDINALITY AS b(le, count, i)
         WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, c.labels || ' 98', pg_catalog.format('toygun_tick_duration_seconds_sum{%s} %s', c.labels, c.duration_sum)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 4, c.labels || ' 99', pg_catalog.format('toygun_tick_duration_seconds_count{%s} %s', c.labels, c.ticks)
          FROM c WHERE c.resource_type IS NOT NULL
        UNION ALL
        SELECT 5, '', pg_catalog.format('toygun_metrics_overflow_ticks_total %s',
                                        COALESCE((SELECT c.ticks FROM c WHERE c.resource_type IS NULL), 0))
        UNION ALL
        SELECT 6, '', pg_catalog.format('toygun_due_capped %s',
                                        CASE WHEN (SELECT pg_catalog.bool_or(g.due_capped) FROM g) THEN 1 ELSE 0 END)
        UNION ALL
        SELECT 7, p.labels, pg_catalog.format('toygun_due{%s} %s', p.labels, p.due) FROM per_type p
        UNION ALL
        SELECT 8, p.labels, pg_catalog.format('toygun_panicked{%s} %s', p.labels, p.panicked) FROM per_type p
        UNION ALL
        SELECT 9, p.labels, pg_catalog.format('toygun_failing{%s} %s', p.labels, p.failing) FROM per_type p
        UNION ALL
        SELECT 10, p.labels, pg_catalog.format('toygun_oldest_due_seconds{%s} %s', p.labels, p.oldest_due)
          FROM per_type p
        UNION ALL
        SELECT 11, q.queue || w.o::text, pg_catalog.format('toygun_workers{queue="%s",state="%s"} %s',
                                                          toygun._prometheus_label(q.queue), w.state, w.count)
          FROM q, LATERAL (VALUES (1, 'configured', q.workers), (2, 'running', q.running),
                                  (3, 'busy', q.busy)) AS w(o, state, count)
        UNION ALL
        SELECT 12, pg_catalog.to_char(g.slot, 'FM0000000'),
               pg_catalog.format('toygun_worker_up{slot="%s"} %s', g.slot,
                                 CASE WHEN EXISTS (SELECT FROM toygun.worker_status() w WHERE w.slot = g.slot)
                                      THEN 1 ELSE 0 END)
          FROM pg_catalog.generate_series(0, (SELECT COALESCE(sum(q.workers), 0)::integer - 1 FROM q)) AS g(slot)
        UNION ALL
        SELECT 13, q.queue, pg_catalog.format('toygun_queue_paused{queue="%s"} %s',
                                              toygun._prometheus_label(q.queue), CASE WHEN q.paused THEN 1 ELSE 0 END)
          FROM q
        UNION ALL
        SELECT 14, d.resource_type || ' ' || d.name,
               pg_catalog.format('toygun_breaker_open{resource_type="%s",task="%s"} %s',
                                 toygun._prometheus_label(d.resource_type), toygun._prometheus_label(d.name),
                                 CASE b.state WHEN 'open' THEN '1' WHEN 'half_open' THEN '0.5' ELSE '0' END)
          FROM ONLY toygun.task_type d
          LEFT JOIN ONLY toygun.breaker b ON b.resource_type = d.resource_type AND b.task = d.name
         WHERE d.breaker IS NOT NULL AND d.resource_type = ANY (toygun.readable_types())
        UNION ALL
        SELECT 15, r.name, pg_catalog.format('toygun_rate_limit_tokens{rate_limit="%s"} %s',
                                             toygun._prometheus_label(r.name), r.tokens)
          FROM toygun.rate_limit_status() r WHERE r.tokens IS NOT NULL
        UNION ALL
        SELECT 16, f.resource_type || ' ' || f.task,
               pg_catalog.format('toygun_limit_running{resource_type="%s",task="%s"} %s',
                                 toygun._prometheus_label(f.resource_type), toygun._prometheus_label(f.task),
                                 f.running)
          FROM (SELECT d.resource_type, d.name AS task,
                       -- as toygun.flow's running, without its counts of due runs
                       (SELECT COALESCE(sum(h.running), 0)::integer FROM toygun.limit_status() h
                         WHERE h.limit_id = d.limit_id AND (h.flow_key IS NULL) = (d.max_running IS NOT NULL))
                          AS running
                  FROM ONLY toygun.task_type d
                 WHERE d.limit_id IS NOT NULL AND d.resource_type = ANY (toygun.readable_types())) f
        UNION ALL
        SELECT 17, '', pg_catalog.format('toygun_outbox_pending %s', ob.pending) FROM ob
        UNION ALL
        SELECT 18, '', pg_catalog.format('toygun_outbox_failed %s', ob.failed) FROM ob
    ),
    lines (n, sort, line) AS (
        SELECT f.n, '', pg_catalog.format(E'# HELP %s %s\n# TYPE %s %s', f.name, f.help, f.name, f.type)
          FROM families f
        UNION ALL
        SELECT s.n, E'\x01' || s.sort, s.line FROM samples s
    )
    SELECT pg_catalog.string_agg(l.line, E'\n' ORDER BY l.n, l.sort COLLATE "C") || E'\n' FROM lines l;
END;
GRANT EXECUTE ON FUNCTION toygun.metrics() TO PUBLIC;

-- The dashboard's charts (issue 18): the workers' ticks and failed ticks per
-- type over time, from the same flush as _tick_metrics()'s counters, kept in
-- shared memory in two rings per type (src/metrics.c). "window" '1h' gives
-- the one-minute buckets of the last hour, '24h' the thirty-minute buckets of
-- the last 24 hours; at is a bucket's start; only buckets that counted
-- something, oldest first. Read as the caller: the types it may read
-- (readable_types()), and the overflow (resource_type NULL) only with the
-- extension owner's privileges. From zero when the server starts.
CREATE FUNCTION toygun.metrics_series("window" text DEFAULT '1h')
    RETURNS TABLE (at timestamptz, resource_type text, task text, ticks bigint, failures bigint)
    AS 'MODULE_PATHNAME', 'toygun_metrics_series' LANGUAGE C VOLATILE;
GRANT EXECUTE ON FUNCTION toygun.metrics_series(text) TO PUBLIC;
