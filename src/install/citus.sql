-- Scale-out on Citus (issue 19; doc/citus.md). toygun.distribute(), once, on
-- the coordinator of a Citus cluster after CREATE EXTENSION toygun: resources
-- distributed by id and their runs by resource_id, co-located, so that a run
-- and its resource are on one node, whose worker claims and ticks them there
-- (worker.c reads the node's own shards). Citus refuses two things of the
-- single-node schema on a distributed table, and the function changes them
-- on those two tables only:
--   - a policy with a subquery: the policies call readable_types() per row
--     instead of once per query;
--   - a unique key without the distribution column: the runs' primary key
--     becomes (resource_id, id) (ids are made unique by toygun, not by callers).
-- The definitions (types, triggers, grants, queues, rate limits, schedules,
-- renames) become reference tables: a copy on every node, written from the
-- coordinator by Citus to all of them in one distributed transaction, so
-- that a type defined once is known on every node. Their policies lose
-- their subqueries as above, and each gets the trigger
-- toygun.definitions_changed(), which Citus copies onto every node's shard:
-- it tells that node's backends (its toygun worker's cached definitions)
-- that the table changed, as define_* does on the node it runs on.
-- The breaker stays a table of each node (its state changes on every
-- failure), and the outbox, its channels and routes stay on the
-- coordinator (doc/citus.md says which and why).

-- The trigger distribute() puts on each definition table, naming the table.
-- Any role may execute it, as any trigger function: it runs only as a
-- trigger (refused otherwise), and only a table's owner puts a trigger on it.
CREATE FUNCTION toygun.definitions_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'toygun_definitions_changed_trigger' LANGUAGE C;

CREATE FUNCTION toygun.distribute() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    is_coordinator boolean;
    def text;
    unsafe_triggers text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'toygun.distribute() needs Citus in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On the coordinator: CREATE EXTENSION citus, add the worker nodes (citus_add_node), then call toygun.distribute().';
    END IF;
    IF NOT pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'toygun'),
                                  'USAGE') THEN
        RAISE EXCEPTION 'permission denied to distribute toygun''s tables'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) calls toygun.distribute().';
    END IF;
    -- Citus's own functions, by EXECUTE: this body is compiled where Citus is not installed too
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO STRICT is_coordinator;
    IF NOT is_coordinator THEN
        RAISE EXCEPTION 'toygun.distribute() runs on the Citus coordinator, not on a worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator and call it there; Citus propagates the tables to the workers.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'toygun.task'::pg_catalog.regclass) THEN
        RAISE NOTICE 'toygun''s tables are distributed already';
        RETURN;
    END IF;

    DROP POLICY readable ON toygun.resource;
    CREATE POLICY readable ON toygun.resource FOR SELECT
        USING (type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.task;
    CREATE POLICY readable ON toygun.task FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    ALTER TABLE toygun.task DROP CONSTRAINT task_pkey;
    ALTER TABLE toygun.task ADD PRIMARY KEY (resource_id, id);

    -- toygun's statements by a run's id alone (locks, outcome writes on a
    -- node's shard) need an index on id now that the key starts with resource_id
    CREATE INDEX task_id_idx ON toygun.task (id);

    PERFORM pg_catalog.create_distributed_table('toygun.resource', 'id');
    PERFORM pg_catalog.create_distributed_table('toygun.task', 'resource_id', colocate_with => 'toygun.resource');

    -- The definitions: reference tables, their policies per row
    DROP POLICY readable ON toygun.trigger;
    CREATE POLICY readable ON toygun.trigger FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.rename;
    CREATE POLICY readable ON toygun.rename FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types()));
    DROP POLICY readable ON toygun.schedule;
    CREATE POLICY readable ON toygun.schedule FOR SELECT
        USING (resource_type OPERATOR(pg_catalog.=) ANY (toygun.readable_types())
            OR resource_type OPERATOR(pg_catalog.=) ANY (toygun.startable_types()));
    -- Citus copies a table's triggers onto its shards only with this set
    -- (for this transaction): toygun's trigger reads nothing, it only sends
    -- an invalidation on the node it runs on
    unsafe_triggers := pg_catalog.current_setting('citus.enable_unsafe_triggers');
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH def IN ARRAY ARRAY['queue', 'resource_type', 'task_type', 'trigger', 'type_grant',
                               'rate_limit', 'schedule', 'rename'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER definitions_changed'
                                  ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON toygun.%I'
                                  ' FOR EACH STATEMENT EXECUTE FUNCTION toygun.definitions_changed(%L)',
                                  def, def);
        PERFORM pg_catalog.create_reference_table(pg_catalog.format('toygun.%I', def));
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
REVOKE ALL ON FUNCTION toygun.distribute() FROM PUBLIC;
