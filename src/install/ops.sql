
-- The operator's tools (issue 18): the SQL under the CLI and the dashboard.
-- Every function reads as its caller, under the tables' row-level security:
-- a role sees only the types it may read, and nothing here has powers of its own.

-- A run id for SQL that starts many runs in one statement (periodic starts):
-- UUIDv7, as the ids of runs started by hand, so ids sort by start.
CREATE FUNCTION toygun._new_id() RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_new_id' LANGUAGE C VOLATILE;

-- The resource types on which the current user has operate, read_secrets
-- (as owner, or by a grant to it or to PUBLIC), sorted, as readable_types().
CREATE FUNCTION toygun.operable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_operable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
CREATE FUNCTION toygun.secret_readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_secret_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;

-- The runs lists' filters on panicked and failing runs: partial indexes that a
-- run enters only when it panics or its tick fails, never on a successful
-- tick or a stop (a tick is never HOT: every index a ticking run meets costs
-- each tick an insert).
CREATE INDEX task_panic_idx ON toygun.task (resource_type, name, id) WHERE state = '__panic__';
CREATE INDEX task_failing_idx ON toygun.task (id) WHERE attempts > 0 AND state <> '__stop__';
-- The same for resources (their own handlers' ticks): what the gauges count.
CREATE INDEX resource_panic_idx ON toygun.resource (type) WHERE state = '__panic__';
CREATE INDEX resource_failing_idx ON toygun.resource (type) WHERE attempts > 0 AND state <> '__stop__';

-- Whether the runs of these resource types (of this task, if given) that the
-- caller may read are few: fewer than 5,000 resources with fewer than 5,000
-- runs in all, counted through resource_type_idx and task_runs_idx (at most
-- 5,000 entries each). Then the runs lists and the gauges read those runs
-- through their resources instead of walking an index of all runs, where a
-- rare type's rows (or a role that reads few types) would make them walk
-- the whole table. As the caller, under row-level security.
CREATE FUNCTION toygun._few_runs(types text[], task text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    few boolean;
BEGIN
    -- EXECUTE: planned for these types (a generic plan would hash-join every run)
    EXECUTE 'SELECT (SELECT count(*) FROM (SELECT FROM ONLY toygun.resource x'
            '                               WHERE x.type OPERATOR(pg_catalog.=) ANY ($1) LIMIT 5000) y) < 5000'
            '   AND (SELECT count(*)'
            '          FROM (SELECT FROM (SELECT x.id FROM ONLY toygun.resource x'
            '                              WHERE x.type OPERATOR(pg_catalog.=) ANY ($1) LIMIT 5000) y,'
            '                        LATERAL (SELECT FROM ONLY toygun.task t'
            '                                  WHERE t.resource_id = y.id AND ($2 IS NULL OR t.name = $2)'
            '                                 OFFSET 0) t'
            '                 LIMIT 5000) z) < 5000'
       INTO few USING types, task;
    RETURN few;
END $$;

-- The gauges of toygun.metrics() and toygun.ops_status(), per resource type
-- and task (NULL: the resources' own), as the caller reads them (row-level
-- security: its readable types only), from indexes only, never a scan of the
-- runs: panicked and failing from the partial indexes above (small by
-- nature); due and the oldest due age from the due heads of the claim
-- indexes, at most cap due objects of each (run_at order where the index
-- has it). due_capped: a head held cap rows, so due counts (and, for types
-- not in the head, the oldest due age) are lower bounds; a caller's count
-- stops at cap of its own rows, never of another's. Unlike toygun.stats, no
-- live count per state: that needs every live row.
CREATE FUNCTION toygun.ops_gauges(cap integer DEFAULT 5000)
    RETURNS TABLE (kind text, resource_type text, task text, due bigint, due_capped boolean,
                   panicked bigint, failing bigint, oldest_due_age interval)
    LANGUAGE sql STABLE
    -- a head is read in run_at order and stops at cap: never a bitmap of every due row, sorted;
    -- no JIT: its cost estimates (of branches not taken) would compile for most of a second
    SET enable_bitmapscan = off SET jit = off
    -- it reads through indexes only: with the caller's types unknown when it is planned, the
    -- planner would otherwise read every resource to find theirs
    SET enable_seqscan = off
    BEGIN ATOMIC
    WITH f AS MATERIALIZED (
        SELECT r.types, CASE WHEN pg_catalog.cardinality(r.types) < (SELECT pg_catalog.count(*) FROM toygun.resource_type)
                             THEN toygun._few_runs(r.types) ELSE false END AS few
          FROM (SELECT toygun.readable_types() AS types) r
    ),
    heads AS (
        -- the caller's types are few: all their live runs, through their resources
        SELECT 0 AS head, 'task'::text AS kind, t.resource_type, t.name, t.run_at
          FROM (SELECT x.id FROM ONLY toygun.resource x
                 WHERE (SELECT f.few FROM f) AND x.type = ANY ((SELECT f.types FROM f)::text[])) y,
               LATERAL (SELECT t0.resource_type, t0.name, t0.run_at FROM ONLY toygun.task t0
                         WHERE t0.resource_id = y.id AND t0.state <> '__stop__'
                           AND t0.run_at <= pg_catalog.statement_timestamp() OFFSET 0) t
        UNION ALL
        SELECT 0, 'resource', x.type, NULL, x.run_at FROM ONLY toygun.resource x
         WHERE (SELECT f.few FROM f) AND x.type = ANY ((SELECT f.types FROM f)::text[])
           AND x.run_at <= pg_catalog.statement_timestamp()
        UNION ALL
        -- else the heads of the claim indexes, their predicates written literally, so that
        -- each reads its partial index; due by the statement's start (an index condition,
        -- unlike the clock), ages by the clock
        SELECT 1 AS head, 'task'::text AS kind, h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND t.queue_id = 0 AND t.priority = 0 AND t.flow_key IS NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 ORDER BY t.run_at LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 2, 'task', h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND (t.queue_id <> 0 OR t.priority <> 0) AND t.flow_key IS NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 3, 'task', h.resource_type, h.name, h.run_at
          FROM (SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
                 WHERE t.run_at IS NOT NULL AND t.flow_key IS NOT NULL
                   AND t.run_at <= pg_catalog.statement_timestamp() AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 4, 'resource', h.type, NULL, h.run_at
          FROM (SELECT r.type, r.run_at FROM ONLY toygun.resource r
                 WHERE r.run_at IS NOT NULL AND r.queue_id = 0 AND r.run_at <= pg_catalog.statement_timestamp()
                   AND NOT (SELECT f.few FROM f)
                 ORDER BY r.run_at LIMIT ops_gauges.cap) h
        UNION ALL
        SELECT 5, 'resource', h.type, NULL, h.run_at
          FROM (SELECT r.type, r.run_at FROM ONLY toygun.resource r
                 WHERE r.run_at IS NOT NULL AND r.queue_id <> 0 AND r.run_at <= pg_catalog.statement_timestamp()
                   AND NOT (SELECT f.few FROM f)
                 LIMIT ops_gauges.cap) h
    ),
    capped AS (SELECT EXISTS (SELECT FROM heads h WHERE h.head > 0 GROUP BY h.head
                                HAVING pg_catalog.count(*) >= ops_gauges.cap)
                          AS capped),
    counts AS (
        SELECT h.kind, h.resource_type, h.name, pg_catalog.count(*) AS due,
               pg_catalog.clock_timestamp() - pg_catalog.min(h.run_at) AS oldest_due_age,
               0::bigint AS panicked, 0::bigint AS failing
          FROM heads h GROUP BY h.kind, h.resource_type, h.name
        UNION ALL
        SELECT 'task', t.resource_type, t.name, 0, NULL, pg_catalog.count(*), 0
          FROM ONLY toygun.task t WHERE t.state = '__panic__' GROUP BY t.resource_type, t.name
        UNION ALL
        SELECT 'task', t.resource_type, t.name, 0, NULL, 0, pg_catalog.count(*)
          FROM ONLY toygun.task t WHERE t.attempts > 0 AND t.state <> '__stop__' GROUP BY t.resource_type, t.name
        UNION ALL
        SELECT 'resource', r.type, NULL, 0, NULL, pg_catalog.count(*), 0
          FROM ONLY toygun.resource r WHERE r.state = '__panic__' GROUP BY r.type
        UNION ALL
        SELECT 'resource', r.type, NULL, 0, NULL, 0, pg_catalog.count(*)
          FROM ONLY toygun.resource r WHERE r.attempts > 0 AND r.state <> '__stop__' GROUP BY r.type
    )
    SELECT c.kind, c.resource_type, c.name, pg_catalog.sum(c.due)::bigint, (SELECT capped FROM capped),
           pg_catalog.sum(c.panicked)::bigint, pg_catalog.sum(c.failing)::bigint, pg_catalog.max(c.oldest_due_age)
      FROM counts c GROUP BY c.kind, c.resource_type, c.name
     ORDER BY c.kind DESC, c.resource_type, c.name;
    END;
GRANT EXECUTE ON FUNCTION toygun.ops_gauges(integer) TO PUBLIC;

-- Who the caller is to toygun: its role, and per resource type it may read or
-- act on, its rights. What the tools may offer; every call still checks.
CREATE FUNCTION toygun.ops_whoami() RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    r text[] := toygun.readable_types();
    s text[] := toygun.startable_types();
    o text[] := toygun.operable_types();
    x text[] := toygun.secret_readable_types();
BEGIN
    RETURN jsonb_build_object(
        'role', current_user::text,
        'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
        'types', COALESCE((
            SELECT jsonb_object_agg(t, to_jsonb(array_remove(ARRAY[
                       CASE WHEN t = ANY (r) THEN 'read' END, CASE WHEN t = ANY (s) THEN 'start' END,
                       CASE WHEN t = ANY (o) THEN 'operate' END, CASE WHEN t = ANY (x) THEN 'read_secrets' END],
                       NULL)) ORDER BY t)
              FROM (SELECT DISTINCT unnest(r || s || o || x) AS t) u), '{}'));
END $$;

-- The state of the system as the caller may see it: workers and queues, and
-- over the runs of its readable types the live, due, failing and panicked
-- counts, the oldest due run's age (seconds), and its open alarms. Bounded
-- reads: due, failing, panicked and the oldest due from toygun.ops_gauges()
-- (due stops at 5,000 per claim index: due_capped), live stops at 5,000
-- (live_capped) unless the caller's runs are few (_few_runs()); toygun.stats
-- counts them all, reading every live run.
CREATE FUNCTION toygun.ops_status() RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    result jsonb;
    types text[] := toygun.readable_types();
    live bigint;
BEGIN
    IF cardinality(types) < (SELECT count(*) FROM toygun.resource_type) AND toygun._few_runs(types) THEN
        -- few: all of them, through their resources (task_live_idx)
        live := (SELECT count(*)
                   FROM (SELECT x.id FROM ONLY toygun.resource x WHERE x.type = ANY (types)) y,
                        LATERAL (SELECT FROM ONLY toygun.task t
                                  WHERE t.resource_id = y.id AND t.state <> '__stop__' OFFSET 0) t);
    ELSE
        live := (SELECT count(*) FROM (SELECT FROM ONLY toygun.task t WHERE t.state <> '__stop__' LIMIT 5000) x);
    END IF;
    SELECT jsonb_build_object(
               'live', live, 'live_capped', live >= 5000,
               'due', COALESCE(sum(g.due), 0), 'due_capped', COALESCE(bool_or(g.due_capped), false),
               'failing', COALESCE(sum(g.failing), 0), 'panicked', COALESCE(sum(g.panicked), 0),
               'oldest_due_age', extract(epoch FROM max(g.oldest_due_age)))
      INTO result
      FROM toygun.ops_gauges() g WHERE g.kind = 'task';
    RETURN result || jsonb_build_object(
        'workers', (SELECT jsonb_build_object('running', count(*), 'busy', count(*) FILTER (WHERE NOT w.idle))
                      FROM toygun.worker_status() w),
        'queues', (SELECT COALESCE(jsonb_agg(jsonb_build_object('queue', q.queue, 'workers', q.workers,
                                                                'running', q.running, 'busy', q.busy,
                                                                'paused', q.paused) ORDER BY q.id), '[]')
                     FROM toygun.queue_status() q),
        'open_alarms', (SELECT count(*) FROM toygun.alarms a WHERE a.state <> 'closed'),
        'at', clock_timestamp());
END $$;

-- One page of runs, newest first (run ids are UUIDv7: start order). Filters:
-- resource type, task name, state, resource; panicked, failing (a failed tick
-- not yet followed by a successful one), due (live and run_at passed). after:
-- the next of the previous page's last row, which is NULL at the end.
-- toygun.list_runs's body (PL/pgSQL takes no parameter and result column of one name)
CREATE FUNCTION toygun._list_runs(p_type text, p_task text, p_state text, p_resource uuid, p_panicked boolean,
                                  p_failing boolean, p_due boolean, p_limit integer, p_after text)
    RETURNS TABLE (o_id uuid, o_resource_id uuid, o_resource_type text, o_task text, o_state text, o_step bigint,
                   o_run_at timestamptz, o_attempts integer, o_priority smallint, o_created_at timestamptz,
                   o_updated_at timestamptz, o_last_error text, o_next text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp SET jit = off
    AS $$
DECLARE
    lim integer := p_limit;
    after_id uuid;
    errors text[] := toygun.error_readable_types();
    types text[];
    few boolean := false;
    q text;
    n integer := 0;
    r record;
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_runs', COALESCE(lim::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 runs a page.';
    END IF;
    IF p_after IS NOT NULL THEN
        IF p_after !~ '^r1:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RAISE EXCEPTION 'cursor "%" is not a cursor of toygun.list_runs', p_after
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the next column of a previous page''s last row, or NULL for the first page.';
        END IF;
        after_id := substr(p_after, 4)::uuid;
    END IF;
    IF p_type IS NOT NULL
       AND NOT EXISTS (SELECT FROM toygun.resource_type d WHERE d.name = p_type) THEN
        RAISE EXCEPTION 'resource type "%" does not exist', p_type
            USING ERRCODE = 'undefined_object', HINT = 'toygun.resource_type lists the resource types.';
    END IF;
    IF p_task IS NOT NULL
       AND NOT EXISTS (SELECT FROM toygun.task_type d
                        WHERE d.name = p_task
                          AND (p_type IS NULL OR d.resource_type = p_type)) THEN
        RAISE EXCEPTION 'task type "%" does not exist', COALESCE(p_type || '.', '') || p_task
            USING ERRCODE = 'undefined_object', HINT = 'toygun.task_type lists the task types.';
    END IF;
    -- Which index the page is read from. The newest-first walk of task_pkey
    -- (below) is quick while the runs the caller may see are a good share of
    -- all; when they are few (a rare type or task, a role that reads few
    -- types) it would walk the whole table. So when the types the page can
    -- show are few (_few_runs(): fewer than 5,000 resources and runs), the
    -- page is read from those runs through their resources, sorted,
    -- instead: at most about 5,000 rows either way. Both
    -- reads are the caller's, under row-level security: a page and its
    -- cursor show only rows the caller may read. resource, panicked and
    -- failing have indexes of their own.
    IF p_resource IS NULL AND NOT COALESCE(p_panicked, false) AND NOT COALESCE(p_failing, false) THEN
        types := ARRAY(SELECT d.name FROM toygun.resource_type d
                        WHERE d.name = ANY (toygun.readable_types())
                          AND (p_type IS NULL OR d.name = p_type)
                          AND (p_task IS NULL OR EXISTS (SELECT FROM toygun.task_type x
                                                          WHERE x.resource_type = d.name AND x.name = p_task)));
        IF cardinality(types) = 0 THEN
            RETURN;
        END IF;
        IF cardinality(types) < (SELECT count(*) FROM toygun.resource_type) OR p_task IS NOT NULL THEN
            few := toygun._few_runs(types, p_task);
        END IF;
    END IF;
    -- the predicates of the partial indexes written literally, so that the plan can use them
    -- the page's rows first, then their error texts and types (for their page only: not for every
    -- row a sort reads)
    q := 'SELECT t.id, t.resource_id, t.resource_type, t.name, t.state, t.step, t.run_at, t.attempts,'
         '       t.priority, t.created_at, t.updated_at,'
         '       CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, ''USAGE'')'
         '                 OR t.resource_type OPERATOR(pg_catalog.=) ANY ($6)'
         '            THEN toygun.last_error(t.id) END AS last_error'
         '  FROM (SELECT t.id, t.resource_id, t.resource_type, t.name, t.state, t.step, t.run_at, t.attempts,'
         '               t.priority, t.created_at, t.updated_at'
         '          FROM ' || CASE WHEN few THEN '(SELECT x.id FROM ONLY toygun.resource x'
                                                 '   WHERE x.type OPERATOR(pg_catalog.=) ANY ($8)) y,'
                                                 ' LATERAL (SELECT t0.id, t0.resource_id, t0.resource_type, t0.name,'
                                                 '                 t0.state, t0.step, t0.run_at, t0.attempts,'
                                                 '                 t0.priority, t0.created_at, t0.updated_at'
                                                 '            FROM ONLY toygun.task t0'
                                                 '           WHERE t0.resource_id = y.id OFFSET 0) t'
                                  ELSE 'ONLY toygun.task t' END ||
         '         WHERE true';
    IF after_id IS NOT NULL THEN q := q || ' AND t.id < $1'; END IF;
    IF p_type IS NOT NULL THEN q := q || ' AND t.resource_type = $2'; END IF;
    IF p_task IS NOT NULL THEN q := q || ' AND t.name = $3'; END IF;
    IF p_state IS NOT NULL THEN q := q || ' AND t.state = $4'; END IF;
    IF p_resource IS NOT NULL THEN q := q || ' AND t.resource_id = $5'; END IF;
    IF p_panicked THEN q := q || ' AND t.state = ''__panic__'''; END IF;
    IF p_failing THEN q := q || ' AND t.attempts > 0 AND t.state <> ''__stop__'''; END IF;
    IF p_due THEN
        q := q || ' AND t.state <> ''__stop__'' AND t.run_at <= pg_catalog.clock_timestamp()';
    END IF;
    q := q || ' ORDER BY t.id DESC LIMIT $7) t'
              '  LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name'
              ' ORDER BY t.id DESC';
    -- one row more than asked: whether there is a next page; the page's last row is held back
    -- until then, and carries the cursor if one followed
    FOR r IN EXECUTE q USING after_id, p_type, p_task, p_state, p_resource,
                             errors, lim + 1, types LOOP
        n := n + 1;
        EXIT WHEN n > lim;
        o_id := r.id; o_resource_id := r.resource_id; o_resource_type := r.resource_type; o_task := r.name;
        o_state := r.state; o_step := r.step; o_run_at := r.run_at; o_attempts := r.attempts;
        o_priority := r.priority; o_created_at := r.created_at; o_updated_at := r.updated_at;
        o_last_error := r.last_error; o_next := NULL;
        IF n < lim THEN RETURN NEXT; END IF;
    END LOOP;
    IF n >= lim THEN
        o_next := CASE WHEN n > lim THEN 'r1:' || o_id::text END;
        RETURN NEXT;
    END IF;
END $$;

-- The runs list itself, over its body above.
CREATE FUNCTION toygun.list_runs(type text DEFAULT NULL, task text DEFAULT NULL, state text DEFAULT NULL,
                                 resource uuid DEFAULT NULL, panicked boolean DEFAULT false,
                                 failing boolean DEFAULT false, due boolean DEFAULT false,
                                 "limit" integer DEFAULT 50, after text DEFAULT NULL)
    RETURNS TABLE (id uuid, resource_id uuid, resource_type text, task text, state text, step bigint,
                   run_at timestamptz, attempts integer, priority smallint, created_at timestamptz,
                   updated_at timestamptz, last_error text, next text)
    LANGUAGE sql STABLE
    BEGIN ATOMIC
        SELECT * FROM toygun._list_runs(list_runs.type, list_runs.task, list_runs.state, list_runs.resource,
                                        list_runs.panicked, list_runs.failing, list_runs.due,
                                        list_runs."limit", list_runs.after);
    END;

-- One run as the tools show it: its row, its attrs with encrypted fields sealed
-- ({"$sealed": true}) unless the caller has read_secrets, its history, failures
-- and alarms, its type's states, and what the caller may do to it.
CREATE FUNCTION toygun.run_detail(id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t toygun.task;
    d record;
    attrs jsonb;
    f text;
    may_secrets boolean;
    may_operate boolean;
BEGIN
    SELECT x.id, x.resource_id, x.resource_type, x.name, x.state, x.attrs, x.step, x.run_at, x.attempts,
           NULL::text, x.created_at, x.updated_at, x.seq, x.parent_run, x.version, x.priority,
           x.queue_id, x.flow_key
      INTO t FROM ONLY toygun.task x WHERE x.id = run_detail.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', run_detail.id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Runs of types you may not read are not shown: toygun.readable_types() lists those you may.';
    END IF;
    SELECT tt.states, tt.encrypted_fields, tt.owner INTO d
      FROM toygun.task_type tt WHERE tt.resource_type = t.resource_type AND tt.name = t.name;
    may_secrets := t.resource_type = ANY (toygun.secret_readable_types())
                   OR pg_has_role(d.owner::oid, 'USAGE');
    may_operate := t.resource_type = ANY (toygun.operable_types()) OR pg_has_role(d.owner::oid, 'USAGE');
    -- the error text as task_for() shows it: not through a grant of read to PUBLIC
    IF pg_has_role(d.owner::oid, 'USAGE') OR t.resource_type = ANY (toygun.error_readable_types()) THEN
        t.last_error := toygun.last_error(t.id);
    END IF;
    attrs := t.attrs;
    -- a declared encrypted field, or any value stored as a secret (ciphertext either way)
    FOR f IN SELECT k FROM jsonb_each(t.attrs) e(k, v)
              WHERE k = ANY (COALESCE(d.encrypted_fields, '{}'))
                 OR (jsonb_typeof(v) = 'object' AND v ? '$secret') LOOP
        IF may_secrets AND f = ANY (COALESCE(d.encrypted_fields, '{}')) THEN
            BEGIN
                attrs := jsonb_set(attrs, ARRAY[f], COALESCE(toygun.field(t, f), 'null'));
            EXCEPTION WHEN insufficient_privilege THEN
                attrs := jsonb_set(attrs, ARRAY[f], '{"$sealed": true}');
            END;
        ELSE
            attrs := jsonb_set(attrs, ARRAY[f], '{"$sealed": true}');
        END IF;
    END LOOP;
    RETURN jsonb_build_object(
        'run', to_jsonb(t) - 'attrs' - 'seq',
        'attrs', attrs,
        'history', (SELECT COALESCE(jsonb_agg(to_jsonb(h) ORDER BY h.step), '[]')
                      FROM toygun.history(t.id) h),
        'failures', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                'failure_no', x.failure_no, 'attempt', x.attempt, 'at', x.at,
                                'duration', extract(epoch FROM x.duration), 'error', x.error,
                                'worker_pid', x.worker_pid) ORDER BY x.failure_no), '[]')
                       FROM toygun.failure x WHERE x.object_id = t.id),
        'alarms', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.first_raised_at, a.id), '[]')
                     FROM toygun.alarms a WHERE a.object_id = t.id),
        'type', jsonb_build_object('states', to_jsonb(d.states), 'encrypted_fields', to_jsonb(d.encrypted_fields)),
        'may', jsonb_build_object('operate', may_operate, 'read_secrets', may_secrets));
END $$;

-- Alarms, newest first (alarm ids are UUIDv7), by state: open (active or
-- snoozed), active, snoozed, closed or all; by kind and resource type. after:
-- the id of the previous page's last alarm.
CREATE FUNCTION toygun.list_alarms(state text DEFAULT 'open', kind text DEFAULT NULL, type text DEFAULT NULL,
                                   "limit" integer DEFAULT 50, after uuid DEFAULT NULL)
    RETURNS SETOF toygun.alarms
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF list_alarms.state IS NULL OR list_alarms.state NOT IN ('open', 'active', 'snoozed', 'closed', 'all') THEN
        RAISE EXCEPTION 'alarm state "%" is not one toygun.list_alarms knows', COALESCE(list_alarms.state, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for open, active, snoozed, closed or all.';
    END IF;
    IF list_alarms."limit" IS NULL OR list_alarms."limit" < 1 OR list_alarms."limit" > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_alarms', COALESCE(list_alarms."limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 alarms a page.';
    END IF;
    RETURN QUERY
        SELECT a.* FROM toygun.alarms a
         WHERE (list_alarms.after IS NULL OR a.id < list_alarms.after)
           AND (list_alarms.kind IS NULL OR a.kind = list_alarms.kind)
           AND (list_alarms.type IS NULL OR a.resource_type = list_alarms.type)
           AND CASE list_alarms.state WHEN 'all' THEN true
                                      WHEN 'open' THEN a.state <> 'closed'
                                      ELSE a.state = list_alarms.state END
         ORDER BY a.id DESC LIMIT list_alarms."limit";
END $$;
