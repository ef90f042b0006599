-- The direct writes of a tick (src/store.c) against what a handler, or a
-- DBA in the same transaction, does between the read of a row and its save:
-- the run moved by its own handler, deleted and put back, its table
-- rewritten (CLUSTER, ALTER TABLE) or truncated. Each case runs through both
-- paths (toygun.direct_writes on and off) from the same savepoint; the
-- outcome (the rows, or the error) must be the same, and the indexes must
-- agree with the heap. Then what the direct writes cost beyond SQL: the
-- locks a save takes, and the memory of a long transaction.
BEGIN;
\ir ../fixtures.sql
SELECT plan(15);

CREATE EXTENSION IF NOT EXISTS amcheck;

-- A handler that runs the SQL in the setting hostile.sql (as its owner, the
-- superuser running this file), then moves on to the next state.
CREATE FUNCTION public.hostile_sql(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    IF t.state = 'a' THEN
        EXECUTE replace(current_setting('hostile.sql'), '$id', quote_literal(t.id));
    END IF;
    RETURN toygun.go('c', '{"went": true}');
END $$;
SELECT toygun.define_task('dummy', 'meddle', '{a,b,c}', 'hostile_sql(toygun.task)');

CREATE FUNCTION pg_temp.scrub(s text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(s, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g')
$$;

-- The indexes of toygun.task agree with its heap (amcheck), or what is wrong.
CREATE FUNCTION pg_temp.indexes_ok() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    i regclass;
BEGIN
    FOR i IN SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'toygun.task'::regclass LOOP
        PERFORM bt_index_check(i, true);
    END LOOP;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;

-- One case through one path: on an empty toygun.task, three runs, then
-- the tick of the second (meddle); the outcome (its
-- SQLSTATE and message, or ok), the runs by name and whether the indexes
-- agree. Rolled back, so that each trial starts from the same tables.
CREATE FUNCTION pg_temp.trial(sql text, path text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r uuid;
    t uuid;
    outcome text := 'ok';
    result jsonb;
BEGIN
    BEGIN
        PERFORM set_config('toygun.direct_writes', path, true);
        PERFORM set_config('hostile.sql', sql, true);
        TRUNCATE toygun.task;
        r := toygun.create_resource('dummy');
        PERFORM toygun.start_task(r, 'another');
        t := toygun.start_task(r, 'meddle');
        PERFORM toygun.start_task(r, 'test');
        BEGIN
            PERFORM toygun.tick_task(t);
        EXCEPTION WHEN OTHERS THEN
            outcome := SQLSTATE || ' ' || pg_temp.scrub(SQLERRM);
        END;
        result := jsonb_build_object(
            'outcome', outcome,
            'runs', (SELECT jsonb_agg(jsonb_build_array(name, state, step, attrs) ORDER BY name, step)
                       FROM toygun.task),
            'ids', (SELECT count(DISTINCT id) || ' of ' || count(*) FROM toygun.task),
            'indexes', pg_temp.indexes_ok());
        RAISE EXCEPTION USING ERRCODE = 'TGDIF', DETAIL = result::text;
    EXCEPTION WHEN SQLSTATE 'TGDIF' THEN
        GET STACKED DIAGNOSTICS outcome = PG_EXCEPTION_DETAIL;
    END;
    RETURN outcome::jsonb;
END $$;

-- Locks first, before anything else in this transaction holds one on the
-- tables: the relation locks on toygun's tables a statement leaves behind,
-- through one path (rolled back, which releases them).
CREATE FUNCTION pg_temp.locks_of(q text, path text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    held text;
BEGIN
    BEGIN
        PERFORM set_config('toygun.direct_writes', path, true);
        EXECUTE q;
        SELECT string_agg(c.relname || ' ' || l.mode, ', ' ORDER BY c.relname, l.mode) INTO held
          FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relkind = 'r'
           AND c.relnamespace = 'toygun'::regnamespace AND c.relname IN ('resource', 'task', 'transition');
        RAISE EXCEPTION USING ERRCODE = 'TGDIF', DETAIL = coalesce(held, 'none');
    EXCEPTION WHEN SQLSTATE 'TGDIF' THEN
        GET STACKED DIAGNOSTICS held = PG_EXCEPTION_DETAIL;
    END;
    RETURN held;
END $$;

SELECT toygun.create_resource('dummy') AS res \gset
-- SQL first: the direct writes' locks outlive a rollback to a savepoint
SELECT pg_temp.locks_of(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'res'), 'off') AS plain \gset
SELECT is(pg_temp.locks_of(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'res'), 'on'),
          :'plain', 'moving a resource locks the tables SQL would lock, no more (not toygun.task)');

-- A handler that moves its own run: the save finds the run moved on.
SELECT is(pg_temp.trial($$SELECT toygun.transition_task($id, 'b')$$, 'on'),
          pg_temp.trial($$SELECT toygun.transition_task($id, 'b')$$, 'off'),
          'a handler that moves its own run: the same outcome through both paths');
SELECT is(pg_temp.trial($$SELECT toygun.transition_task($id, 'b')$$, 'on') ->> 'outcome',
          '40001 task <id> is desynchronized',
          'a handler that moves its own run: its tick is desynchronized');

-- A handler that changes its own row in place (the step unchanged): the
-- save writes the newest version, as SQL does.
SELECT is(pg_temp.trial($$UPDATE toygun.task SET last_error = 'seen' WHERE id = $id$$, 'on'),
          pg_temp.trial($$UPDATE toygun.task SET last_error = 'seen' WHERE id = $id$$, 'off'),
          'a handler that updates its own row: the same outcome through both paths');
SELECT is(pg_temp.trial($$UPDATE toygun.task SET last_error = 'seen' WHERE id = $id$$, 'on') ->> 'outcome',
          'ok', 'a handler that updates its own row: its tick is saved');

-- A handler that stops its own resource, which parks its runs, this one too.
SELECT is(pg_temp.trial($$SELECT toygun.transition_resource(resource_id, '__stop__')
                            FROM toygun.task WHERE id = $id$$, 'on'),
          pg_temp.trial($$SELECT toygun.transition_resource(resource_id, '__stop__')
                            FROM toygun.task WHERE id = $id$$, 'off'),
          'a handler that stops its own resource: the same outcome through both paths');
SELECT is(pg_temp.trial($$SELECT toygun.transition_resource(resource_id, '__stop__')
                            FROM toygun.task WHERE id = $id$$, 'on') ->> 'outcome',
          'ok', 'a handler that stops its own resource: its tick is saved');

-- A handler that deletes its row and puts it back (another place, the same step).
SELECT is(pg_temp.trial($$WITH d AS (DELETE FROM toygun.task WHERE id = $id RETURNING *)
                          INSERT INTO toygun.task SELECT * FROM d$$, 'on'),
          pg_temp.trial($$WITH d AS (DELETE FROM toygun.task WHERE id = $id RETURNING *)
                          INSERT INTO toygun.task SELECT * FROM d$$, 'off'),
          'a handler that deletes its row and inserts it again: the same outcome through both paths');

-- Rewritten under the save: the row read is elsewhere in a new file, and
-- where it was is another run, or nothing. The handler first renames the
-- last run so that CLUSTER puts it first; SET UNLOGGED leaves out the run it
-- deleted.
SELECT is(pg_temp.trial($$UPDATE toygun.task SET name = 'aaa' WHERE name = 'test';
                          CLUSTER toygun.task USING task_runs_idx$$, 'on'),
          pg_temp.trial($$UPDATE toygun.task SET name = 'aaa' WHERE name = 'test';
                          CLUSTER toygun.task USING task_runs_idx$$, 'off'),
          'toygun.task clustered by a handler: the same outcome through both paths');
SELECT is(pg_temp.trial($$UPDATE toygun.task SET name = 'aaa' WHERE name = 'test';
                          CLUSTER toygun.task USING task_runs_idx$$, 'on') ->> 'outcome', 'ok',
          'toygun.task clustered by a handler: the tick is saved');
SELECT is(pg_temp.trial($$DELETE FROM toygun.task WHERE name = 'another';
                          ALTER TABLE toygun.task SET UNLOGGED$$, 'on'),
          pg_temp.trial($$DELETE FROM toygun.task WHERE name = 'another';
                          ALTER TABLE toygun.task SET UNLOGGED$$, 'off'),
          'toygun.task made unlogged by a handler: the same outcome through both paths');
SELECT is(pg_temp.trial('TRUNCATE toygun.task', 'on'),
          pg_temp.trial('TRUNCATE toygun.task', 'off'),
          'toygun.task truncated by a handler: the same outcome through both paths');
-- without the unique indexes, which turned the write to the wrong row into an error
SELECT pg_temp.trial($$UPDATE toygun.task SET name = 'aaa' WHERE name = 'test';
                       ALTER TABLE toygun.task DROP CONSTRAINT task_pkey; DROP INDEX toygun.task_live_idx;
                       CLUSTER toygun.task USING task_runs_idx$$, 'on') AS direct,
       pg_temp.trial($$UPDATE toygun.task SET name = 'aaa' WHERE name = 'test';
                       ALTER TABLE toygun.task DROP CONSTRAINT task_pkey; DROP INDEX toygun.task_live_idx;
                       CLUSTER toygun.task USING task_runs_idx$$, 'off') AS plain \gset
SELECT is(:'direct'::jsonb, :'plain'::jsonb,
          'toygun.task without unique indexes clustered by a handler: the same outcome through both paths');
SELECT is(:'direct'::jsonb ->> 'ids', '3 of 3',
          'toygun.task without unique indexes clustered by a handler: no run lost or doubled');

-- Memory: a long transaction of ticks with a statement between them that
-- closes the store each time keeps no more memory than SQL does.
CREATE FUNCTION public.hostile_stay(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stay(wait => '0s') $$;
SELECT toygun.define_task('dummy', 'stay', '{a}', 'hostile_stay(toygun.task)');
CREATE FUNCTION pg_temp.grown(path text, n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t uuid := toygun.start_task(toygun.create_resource('dummy'), 'stay');
    before bigint;
    after bigint;
BEGIN
    PERFORM set_config('toygun.direct_writes', path, true);
    PERFORM toygun.tick_task(t);
    SELECT sum(total_bytes) INTO before FROM pg_backend_memory_contexts
     WHERE name = 'TopTransactionContext' OR parent = 'TopTransactionContext';
    FOR i IN 1..n LOOP
        PERFORM toygun.tick_task(t);
        SET LOCAL hostile.x = 1;
    END LOOP;
    SELECT sum(total_bytes) INTO after FROM pg_backend_memory_contexts
     WHERE name = 'TopTransactionContext' OR parent = 'TopTransactionContext';
    RETURN after - before;
END $$;
SELECT cmp_ok(pg_temp.grown('on', 2000), '<', 2 * 1024 * 1024::bigint,
              '2000 ticks, each after a utility statement, in one transaction: under 2 MB more memory');

SELECT * FROM finish();
ROLLBACK;
