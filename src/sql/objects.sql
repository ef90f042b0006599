
-- Resources and tasks.
CREATE FUNCTION toygun.create_resource(type text, attrs jsonb DEFAULT '{}', parent uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_create_resource' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.start_task(resource uuid, name text, args jsonb DEFAULT '{}') RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_start_task' LANGUAGE C VOLATILE;

-- The latest run of a task on a resource, or NULL.
CREATE FUNCTION toygun.task_for(resource uuid, name text) RETURNS toygun.task
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT t FROM toygun.task t
         WHERE t.resource_id = task_for.resource AND t.name = task_for.name
         ORDER BY t.seq DESC LIMIT 1;
    END;

-- Whether the latest run exists and is not __stop__ (__new__ and __panic__ count).
CREATE FUNCTION toygun.is_running(resource uuid, name text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT COALESCE((SELECT t.state <> '__stop__' FROM toygun.task t
                          WHERE t.resource_id = is_running.resource AND t.name = is_running.name
                          ORDER BY t.seq DESC LIMIT 1), false);
    END;

-- The transitions of a resource or task, in order.
CREATE FUNCTION toygun.history(id uuid)
    RETURNS TABLE (step bigint, from_state text, to_state text, at timestamptz, note text)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT h.step, h.from_state, h.to_state, h.at, h.note FROM toygun.transition h
         WHERE h.object_id = history.id ORDER BY h.step;
    END;

-- Operations on stored objects: administration, tests and repair.
CREATE FUNCTION toygun.tick_task(id uuid) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_tick_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_task(id uuid, state text, attrs jsonb DEFAULT NULL,
                                       expected_state text DEFAULT NULL) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_transition_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.stop_task(id uuid) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_stop_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.panic_task(id uuid, message text) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_panic_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rewind_task(id uuid, n integer DEFAULT 1) RETURNS toygun.task
    AS 'MODULE_PATHNAME', 'toygun_rewind_task' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.tick_resource(id uuid) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_tick_resource' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.transition_resource(id uuid, state text, attrs jsonb DEFAULT NULL,
                                           expected_state text DEFAULT NULL) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_transition_resource' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.stop_resource(id uuid) RETURNS toygun.resource
    AS 'MODULE_PATHNAME', 'toygun_stop_resource' LANGUAGE C VOLATILE;
