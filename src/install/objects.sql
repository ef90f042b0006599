
-- Resources and tasks.
CREATE FUNCTION toygun.create_resource(type text, attrs jsonb DEFAULT '{}', parent uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_create_resource' LANGUAGE C VOLATILE;

-- priority (issue 17): -100..100, the run's; NULL: its task type's
-- (define_task's priority). Ignored when a live run is returned.
CREATE FUNCTION toygun.start_task(resource uuid, name text, args jsonb DEFAULT '{}',
                                   if_live text DEFAULT 'return', priority integer DEFAULT NULL) RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_start_task' LANGUAGE C VOLATILE;

-- The last error of a resource or run: the message of its last failed tick,
-- NULL if it has none. For roles with the privileges of its type's owner.
CREATE FUNCTION toygun.last_error(id uuid) RETURNS text
    AS 'MODULE_PATHNAME', 'toygun_last_error' LANGUAGE C STABLE;

-- The latest run of a task on a resource, or NULL. Its last_error is there
-- for roles with the privileges of the task type's owner or right read on
-- its resource type, NULL for others.
CREATE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    BEGIN ATOMIC
        SELECT ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step,
                   t.run_at, t.attempts,
                   CASE WHEN pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE')
                             OR t.resource_type OPERATOR(pg_catalog.=) ANY (toygun.error_readable_types())
                        THEN toygun.last_error(t.id) END,
                   t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id, t.flow_key)::toygun.task
          FROM ONLY toygun.task t
          LEFT JOIN ONLY toygun.task_type d ON d.resource_type = t.resource_type AND d.name = t.name
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;

-- Whether the latest run exists and is not __stop__ (__new__ and __panic__ count).
CREATE FUNCTION toygun.is_running(resource uuid, name text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT COALESCE((SELECT t.state <> '__stop__' FROM ONLY toygun.task t
                          WHERE t.resource_id = is_running.resource AND t.name = is_running.name
                          ORDER BY t.seq DESC LIMIT 1), false);
    END;

-- The transitions of a resource or task, in order, with who made each and why.
CREATE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text,
                   made_by regrole, worker_pid integer, reason text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note, h.made_by, h.worker_pid, h.reason
          FROM toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;

-- Operations on stored objects: administration, tests and repair.
CREATE FUNCTION toygun.tick_task(id uuid) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_tick_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_task(id uuid, state text, attrs jsonb DEFAULT NULL,
                                       expected_state text DEFAULT NULL,
                                       reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_transition_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.stop_task(id uuid, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_stop_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.panic_task(id uuid, message text, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_panic_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rewind_task(id uuid, n integer DEFAULT 1, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_rewind_task' LANGUAGE C VOLATILE;

-- A failing, waiting or panicked run due now (issue 14).
CREATE FUNCTION toygun.retry_task(id uuid, reason text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_retry_task' LANGUAGE C VOLATILE;

-- The run once its committed state is one of states, or at the timeout as
-- it is then (issue 14): it sleeps until a commit that changed the run
-- wakes it. Right read; READ COMMITTED only.
CREATE FUNCTION toygun.wait(id uuid, timeout interval DEFAULT '30 s',
                            states text[] DEFAULT '{__stop__,__panic__}') RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_wait' LANGUAGE C VOLATILE;

-- Attrs merged by hand, with no transition (null removes a field).
CREATE FUNCTION toygun.update_task(id uuid, attrs jsonb, expected_step bigint DEFAULT NULL)
    RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_update_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.update_resource(id uuid, attrs jsonb, expected_step bigint DEFAULT NULL)
    RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_update_resource' LANGUAGE C VOLATILE;

-- Testing users' handlers (issue 14): ticks by hand until a state, or until
-- the run waits by this session's test clock (toygun.test_now), which
-- test_advance() moves on. Workers ignore the clock.
CREATE FUNCTION toygun.test_tick_until(id uuid, state text DEFAULT '__stop__',
                                       max_ticks integer DEFAULT 100) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_test_tick_until' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.test_advance(by interval) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'toygun_test_advance' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.tick_resource(id uuid) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_tick_resource' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_resource(id uuid, state text, attrs jsonb DEFAULT NULL,
                                           expected_state text DEFAULT NULL,
                                           reason text DEFAULT NULL) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_transition_resource' LANGUAGE C VOLATILE;
-- cascade: stop the live children first (false: refuse while there are any)
CREATE FUNCTION toygun.stop_resource(id uuid, reason text DEFAULT NULL, cascade boolean DEFAULT true)
    RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_stop_resource' LANGUAGE C VOLATILE;
