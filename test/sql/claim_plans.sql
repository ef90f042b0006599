-- Plan proof (issue 17, flow control): the very statements the workers run
-- to claim, probe the levels in use, find the next due time and release a
-- breaker's held runs, EXPLAINed under generic plans (as the workers' saved
-- plans are), each reading its partial index, never the whole table, and in
-- run_at order without a sort. The text comes from the library
-- (toygun_claim_sql, declared here only: no install script has it).
BEGIN;
\ir ../fixtures.sql
SELECT plan(35);

CREATE FUNCTION pg_temp.claim_sql(which text) RETURNS text
    AS '$libdir/toygun', 'toygun_claim_sql' LANGUAGE C STRICT;

-- the generic plan of a claim statement, given its parameters' types and values, as text
CREATE FUNCTION pg_temp.plan_of(which text, types text, args text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    EXECUTE format('PREPARE claim_%s(%s) AS %s', which, types, pg_temp.claim_sql(which));
    FOR line IN EXECUTE format('EXPLAIN (COSTS OFF) EXECUTE claim_%s(%s)', which, args) LOOP
        plan := plan || line || E'\n';
    END LOOP;
    EXECUTE format('DEALLOCATE claim_%s', which);
    RETURN plan;
END $$;

SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL enable_seqscan = off;

SELECT pg_temp.plan_of('task_due', 'integer, timestamptz', $$10, '-infinity'$$) AS p \gset
SELECT matches(:'p'::text, 'Index Scan using task_due_idx', 'the claim of queue 0 at level 0 reads task_due_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, without a sort or a scan of the table');

SELECT pg_temp.plan_of('task_lane', 'integer, timestamptz, smallint, smallint', $$10, '-infinity', 7, 3$$) AS p \gset
SELECT matches(:'p'::text, 'Index Scan using task_lane_idx', 'the claim of a (queue, level) reads task_lane_idx');
SELECT matches(:'p'::text, 'Index Cond: \(\(queue_id = \$4\) AND \(priority = \$3\)',
               'the queue and the level are its index keys');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, without a sort');

SELECT pg_temp.plan_of('resource_due', 'integer, timestamptz', $$10, '-infinity'$$) AS p \gset
SELECT matches(:'p'::text, 'Index Scan using resource_due_idx', 'the claim of queue 0''s resources reads resource_due_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, without a sort');

SELECT pg_temp.plan_of('resource_queue', 'integer, timestamptz, smallint', $$10, '-infinity', 3$$) AS p \gset
SELECT matches(:'p'::text, 'Index Scan using resource_queue_idx', 'the claim of another queue''s resources reads resource_queue_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, without a sort');

SELECT pg_temp.plan_of('census', 'smallint', '3') AS p \gset
SELECT matches(:'p'::text, 'Index Only Scan using task_lane_idx|Index Scan using task_lane_idx',
               'the census of a queue''s levels descends task_lane_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'once per level, without a sort');

SELECT pg_temp.plan_of('next_due', 'smallint, smallint[]', $$0, '{5,-3}'$$) AS p \gset
SELECT matches(:'p'::text, 'using task_due_idx', 'next_due reads level 0 of queue 0 through task_due_idx');
SELECT matches(:'p'::text, 'using task_lane_idx', 'each level in use through task_lane_idx');
SELECT matches(:'p'::text, 'using resource_due_idx', 'queue 0''s resources through resource_due_idx');
SELECT matches(:'p'::text, 'using resource_queue_idx', 'another queue''s through resource_queue_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan', 'and never the whole table (1M sleepers)');

-- A breaker's release filters on run_at = $3 in each claim index's
-- predicate; on a table this small the planner reads task_runs_idx, and
-- which index wins depends on sizes: what is checked is that no plan reads
-- the whole table.
SELECT pg_temp.plan_of('breaker_release', 'text, text, timestamptz, smallint, smallint', $$'dummy', 'test', now(), 0, 3$$) AS p \gset
SELECT doesnt_match(:'p'::text, 'Seq Scan', 'a breaker''s release never reads the whole table');

-- Concurrency limits (issue 17): a key's claim reads its range of
-- task_flow_idx in run_at order; the keys of a type are read one descent
-- each, never row by row (a flood of one key costs one descent).
SELECT pg_temp.plan_of('task_flow', 'integer, timestamptz, bigint', $$10, '-infinity', 281474976710656$$) AS p \gset
SELECT matches(:'p'::text, 'Index Scan using task_flow_idx', 'the claim of a limited key reads task_flow_idx');
SELECT matches(:'p'::text, 'Index Cond: .*\(flow_key = \$3\)', 'the key is its index key');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, without a sort');
SELECT pg_temp.plan_of('flow_keys', 'bigint, bigint, integer', $$281474976710656, 562949953421312, 256$$) AS p \gset
SELECT matches(:'p'::text, '(Index Only Scan|Index Scan) using task_flow_idx', 'the keys of a limited type descend task_flow_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'once per key, without a sort');

-- The operator's tools (issue 18) read through indexes only, never the whole
-- table (1,000,000 runs: bench/ops.sh), and through no index a tick enters
-- that it did not enter before. The statements' shapes as src/install/ops.sql
-- writes them (list_runs of few types; ops_gauges' head of task_due_idx, its
-- panicked and failing counts), under generic plans.
CREATE FUNCTION pg_temp.plan_sql(name text, types text, sql text, args text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    EXECUTE format('PREPARE %s(%s) AS %s', name, types, sql);
    FOR line IN EXECUTE format('EXPLAIN (COSTS OFF) EXECUTE %s(%s)', name, args) LOOP
        plan := plan || line || E'\n';
    END LOOP;
    EXECUTE format('DEALLOCATE %s', name);
    RETURN plan;
END $$;
SELECT pg_temp.plan_sql('few_runs', 'text[], integer',
    $q$SELECT t.id FROM (SELECT x.id FROM ONLY toygun.resource x WHERE x.type OPERATOR(pg_catalog.=) ANY ($1)) y,
              LATERAL (SELECT t0.id, t0.resource_type FROM ONLY toygun.task t0 WHERE t0.resource_id = y.id OFFSET 0) t
        ORDER BY t.id DESC LIMIT $2$q$, $$'{dummy}', 51$$) AS p \gset
SELECT matches(:'p'::text, '(using|on) resource_type_idx', 'list_runs of few types: their resources by resource_type_idx');
SELECT matches(:'p'::text, '(using|on) task_(runs|live)_idx', 'and their runs by task_runs_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan', 'never the whole table');
SET LOCAL enable_bitmapscan = off;  -- as ops_gauges() sets it
SELECT pg_temp.plan_sql('due_head', 'integer',
    $q$SELECT t.resource_type, t.name, t.run_at FROM ONLY toygun.task t
        WHERE t.run_at IS NOT NULL AND t.queue_id = 0 AND t.priority = 0 AND t.flow_key IS NULL
          AND t.run_at <= pg_catalog.statement_timestamp() ORDER BY t.run_at LIMIT $1$q$, '10000') AS p \gset
SELECT matches(:'p'::text, 'Index Scan using task_due_idx', 'ops_gauges: the due head reads task_due_idx');
SELECT matches(:'p'::text, 'Index Cond: \(run_at <= statement_timestamp\(\)\)', 'from its start, to now');
SELECT doesnt_match(:'p'::text, 'Seq Scan|Sort', 'in run_at order, stopping at the cap');
SELECT pg_temp.plan_sql('panicked', 'integer',
    $q$SELECT t.resource_type, t.name, pg_catalog.count(*) FROM ONLY toygun.task t
        WHERE t.state = '__panic__' AND $1 > 0 GROUP BY t.resource_type, t.name$q$, '1') AS p \gset
SELECT matches(:'p'::text, 'using task_panic_idx', 'ops_gauges: panicked runs from task_panic_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan', 'never the whole table');
SELECT pg_temp.plan_sql('failing', 'integer',
    $q$SELECT t.resource_type, t.name, pg_catalog.count(*) FROM ONLY toygun.task t
        WHERE t.attempts > 0 AND t.state <> '__stop__' AND $1 > 0 GROUP BY t.resource_type, t.name$q$, '1') AS p \gset
SELECT matches(:'p'::text, 'using task_failing_idx', 'ops_gauges: failing runs from task_failing_idx');
SELECT doesnt_match(:'p'::text, 'Seq Scan', 'never the whole table');
SELECT pg_temp.plan_sql('r_panicked', 'integer',
    $q$SELECT r.type, pg_catalog.count(*) FROM ONLY toygun.resource r WHERE r.state = '__panic__' AND $1 > 0
        GROUP BY r.type$q$, '1') AS p \gset
SELECT matches(:'p'::text, 'using resource_panic_idx', 'ops_gauges: panicked resources from resource_panic_idx');
SELECT pg_temp.plan_sql('r_failing', 'integer',
    $q$SELECT r.type, pg_catalog.count(*) FROM ONLY toygun.resource r
        WHERE r.attempts > 0 AND r.state <> '__stop__' AND $1 > 0 GROUP BY r.type$q$, '1') AS p \gset
SELECT matches(:'p'::text, 'using resource_failing_idx', 'ops_gauges: failing resources from resource_failing_idx');

SELECT throws_ok($$SELECT pg_temp.claim_sql('nonsense')$$, '22023', 'no claim statement is called "nonsense"',
                 'an unknown statement is refused');

SELECT * FROM finish();
ROLLBACK;
