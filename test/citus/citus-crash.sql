-- A crash of Citus 13.2.2 (PostgreSQL 15.20) found by toygun's define_resource,
-- reduced to plain SQL: to report upstream (citusdata/citus). Run on a
-- coordinator with Citus, in a scratch database.
--
-- A reference table, a generic plan, INSERT ... ON CONFLICT DO UPDATE whose
-- WHERE calls a function of a parameter: the backend dies with SIGSEGV in
-- CheckAndBuildDelayedFastPathPlan (planner/multi_router_planner.c,
-- "if (job->deferredPruning)": plan->workerJob is NULL, the plan being a
-- planning error). With citus.enable_local_fast_path_query_optimization = off
-- the same statement fails cleanly instead: "could not create distributed
-- plan ... Possibly this is caused by the use of parameters in SQL functions".
-- Without the function call in WHERE (d.v < $2), or with a custom plan, it works.
CREATE TABLE rt2 (name text PRIMARY KEY, v int);
SELECT create_reference_table('rt2');
SET plan_cache_mode = force_generic_plan;
PREPARE s(text, int) AS
  INSERT INTO rt2 AS d (name, v) VALUES ($1, $2)
  ON CONFLICT (name) DO UPDATE SET v = excluded.v
  WHERE pg_catalog.pg_has_role(10::oid, $2::oid, 'USAGE');
EXECUTE s('y', 1);   -- server closed the connection unexpectedly
