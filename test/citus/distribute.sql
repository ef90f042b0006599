-- An EXPERIMENT, not the design (doc/citus.md has the design): distribute
-- toygun's tables as far as today's schema allows, on the coordinator,
-- after CREATE EXTENSION toygun. Each step says what it had to change.
-- Definitions stay local tables, one copy per node (create_reference_table
-- works, but define_resource into a reference table crashes the coordinator,
-- doc/citus.md "What works today").

-- Row-level security: Citus refuses a policy with a subquery on a
-- distributed table ("Subqueries are not supported in policies on
-- distributed tables"); toygun's policies read (SELECT readable_types()) so
-- that it is computed once per query. Without the subquery it is a call per row.
DROP POLICY readable ON toygun.resource;
CREATE POLICY readable ON toygun.resource FOR SELECT USING (type = ANY (toygun.readable_types()));
DROP POLICY readable ON toygun.task;
CREATE POLICY readable ON toygun.task FOR SELECT USING (resource_type = ANY (toygun.readable_types()));

-- Resources by id (today there is no root column: a resource's children are
-- elsewhere), runs with their resource: every unique key must hold the
-- distribution column, so the runs' key becomes (resource_id, id);
-- task_live_idx (resource_id, name) already holds it.
SELECT create_distributed_table('toygun.resource', 'id');
ALTER TABLE toygun.task DROP CONSTRAINT task_pkey;
ALTER TABLE toygun.task ADD PRIMARY KEY (resource_id, id);
SELECT create_distributed_table('toygun.task', 'resource_id', colocate_with => 'toygun.resource');
-- The runs' key no longer starts with id, and toygun's statements by id
-- (locks, outcome writes) read WHERE id = $1: without an index on id alone
-- each would scan its shard (a drain of N runs, N^2/2 rows read). Citus
-- allows an index that is not unique without the distribution column.
CREATE INDEX task_id_idx ON toygun.task (id);
-- The history stays a local table on each node (its partitions are made and
-- dropped by each node's workers): see doc/citus.md for why it must carry root_id.
