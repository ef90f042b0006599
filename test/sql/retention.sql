-- Retention (issue 16): keep, when history rows expire (both write paths),
-- the history's partitions made ahead (aligned, clipped to the gaps) and
-- dropped once expired, the default partition's rows moved or deleted, and
-- maintain() removing stopped runs with the history rows of their stops
-- (in a dropped partition or the default one: expiry fixed at the stop, a
-- run brought back stays, many runs over several batches), stopped resources
-- past their keep, with what only they use, never a live object nor a run
-- stopped while its type kept forever; failures pruned, claims going with
-- their resources; who may call it, and who may read the partitions.
BEGIN;
\ir ../fixtures.sql
SELECT plan(58);

CREATE FUNCTION public.ret_job(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'one' THEN toygun.go('two') ELSE toygun.stop() END
$$;
CREATE FUNCTION pg_temp.bounds(p regclass) RETURNS text LANGUAGE sql AS $$
    SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = p
$$;
-- A time partition for the rows written from now on by a type of this keep,
-- as a round made ahead of them would have: a round never makes one over
-- the range rows are being written to (now + keep on, for tick_timeout and
-- more), so a test that writes now makes it itself, from clock_timestamp() +
-- keep (above the rows written before) to the next partition, at most 30 s;
-- or names the one that holds that time already.
CREATE FUNCTION pg_temp.partition_for(keep interval) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := clock_timestamp() + keep;
    hi timestamptz;
    name text;
BEGIN
    WITH b AS (
        SELECT c.oid::regclass::text AS part,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$FROM \('([^']+)'\)$r$)::timestamptz AS plo,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$TO \('([^']+)'\)$r$)::timestamptz AS phi
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'toygun.transition'::regclass AND c.relname ~ '^transition_[0-9]')
    SELECT (SELECT part FROM b WHERE plo <= lo AND lo < phi),
           least(lo + interval '30 s', (SELECT min(plo) FROM b WHERE plo > lo))
      INTO name, hi;
    IF name IS NOT NULL THEN
        RETURN name;
    END IF;
    name := 'transition_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS');
    EXECUTE format('CREATE TABLE toygun.%I (LIKE toygun.transition, PRIMARY KEY (object_id, step))', name);
    EXECUTE format('ALTER TABLE toygun.transition ATTACH PARTITION toygun.%I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    RETURN 'toygun.' || name;
END $$;
CREATE FUNCTION pg_temp.partitions() RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'toygun.transition'::regclass
$$;
SET TIME ZONE 'UTC';

-- ---------------------------------------------------------------------------
-- keep
SELECT is(current_setting('toygun.keep'), 'forever', 'toygun.keep is forever by default');
SELECT is(toygun.default_keep(), NULL, 'default_keep() is NULL for forever');
SELECT toygun.define_resource('ret', keep => '1 hour');
SELECT toygun.define_task('ret', 'job', '{one,two}', 'ret_job(toygun.task)', keep => '1 hour');
SELECT toygun.define_task('ret', 'forever', '{one,two}', 'ret_job(toygun.task)');
SELECT toygun.define_task('ret', 'gone', '{one,two}', 'ret_job(toygun.task)', keep => '1 hour');
SELECT is((SELECT keep FROM toygun.resource_type WHERE name = 'ret'), '1 hour'::interval,
          'define_resource stores keep');
SELECT is((SELECT keep FROM toygun.task_type WHERE resource_type = 'ret' AND name = 'job'), '1 hour'::interval,
          'define_task stores keep');
SELECT is((SELECT keep FROM toygun.task_type WHERE resource_type = 'ret' AND name = 'forever'), NULL,
          'keep left out is the setting''s: forever');
SELECT throws_ok($$SELECT toygun.define_task('ret', 'bad', '{one}', 'ret_job(toygun.task)', keep => '0 s')$$,
                 '22023', 'keep of task type "ret.bad" must be a positive interval of at most 1000 years, not 00:00:00',
                 'a keep of zero is refused, naming the type');
SELECT throws_ok($$SELECT toygun.define_resource('retbad', keep => '-1 day')$$,
                 '22023', NULL, 'a negative keep is refused');
SELECT throws_ok($$SELECT toygun.define_resource('retbad', keep => '1001 years')$$,
                 '22023', NULL, 'a keep past 1000 years is refused');
SELECT lives_ok($$SELECT toygun.define_resource('retnull', keep => NULL)$$, 'keep => NULL is forever');

-- ---------------------------------------------------------------------------
-- expires_at, on both write paths
SELECT toygun.create_resource('ret') AS r \gset
SELECT toygun.start_task(:'r', 'job') AS job \gset
SELECT toygun.start_task(:'r', 'forever') AS fv \gset
SELECT toygun.tick_task(:'job');
SELECT toygun.tick_task(:'fv');
SELECT is((SELECT array_agg(DISTINCT expires_at - at) FROM toygun.transition WHERE object_id = :'job'),
          ARRAY['1 hour'::interval], 'a tick (the direct path) writes rows that expire keep after they were written');
SELECT is((SELECT array_agg(DISTINCT tableoid::regclass::text) FROM toygun.transition WHERE object_id = :'fv'),
          ARRAY['toygun.transition_forever'], 'rows of a type kept forever go to transition_forever');
SET LOCAL toygun.direct_writes = off;
SELECT toygun.transition_task(:'job', 'one', reason => 'by hand');
SELECT toygun.transition_task(:'fv', 'one', reason => 'by hand');
RESET toygun.direct_writes;
SELECT is((SELECT expires_at - at FROM toygun.transition WHERE object_id = :'job' AND reason = 'by hand'),
          '1 hour'::interval, 'a move by hand through SQL writes the same expiry');
SELECT is((SELECT expires_at FROM toygun.transition WHERE object_id = :'fv' AND reason = 'by hand'),
          'infinity'::timestamptz, 'and infinity for a type kept forever');
SELECT is((SELECT count(*) FROM toygun.transition WHERE tableoid = 'toygun.transition_default'::regclass
             AND object_id = :'job'), 3::bigint, 'with no time partition yet, rows go to the default partition');
SELECT hasnt_index('toygun', 'task', 'task_stopped_idx', 'stopped runs have no index: a stop costs no entry');
-- a run stopped with its stop row in the default partition; then its type keeps forever
SELECT toygun.start_task(toygun.create_resource('ret'), 'gone') AS early \gset
SELECT toygun.test_tick_until(:'early', '__stop__', 3);
SELECT toygun.define_task('ret', 'gone', '{one,two}', 'ret_job(toygun.task)', keep => NULL);

-- ---------------------------------------------------------------------------
-- partitions made ahead, aligned to toygun.history_partition (1 day) from the epoch
SET LOCAL toygun.test_now = '2030-01-01 00:30:00+00';
-- a partition of another width, made before: new ones fill the gaps around it
CREATE TABLE toygun.transition_manual (LIKE toygun.transition);
ALTER TABLE toygun.transition ATTACH PARTITION toygun.transition_manual
    FOR VALUES FROM ('2030-01-02 06:00:00+00') TO ('2030-01-02 18:00:00+00');
-- a row of a range to come, and one long expired, in the default partition
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, expires_at)
VALUES (gen_random_uuid(), 0, '__new__', 'one', 'ret', '2030-01-02 20:00:00+00'),
       (gen_random_uuid(), 0, '__new__', 'one', 'ret', '2029-06-01 00:00:00+00');
SELECT toygun.maintain() AS round \gset
SELECT is((:'round'::jsonb ->> 'partitions_created')::int, 4,
          'maintain() makes the partitions from now + keep on, around the others');
SELECT is(pg_temp.partitions(),
          ARRAY['transition_20300101_013106', 'transition_20300102_000000', 'transition_20300102_180000',
                'transition_20300103_000000', 'transition_default', 'transition_forever', 'transition_manual'],
          'each named by its UTC lower bound');
SELECT is(pg_temp.bounds('toygun.transition_20300101_013106'),
          $$FOR VALUES FROM ('2030-01-01 01:31:06+00') TO ('2030-01-02 00:00:00+00')$$,
          'not over the range rows are being written to (now + keep, for tick_timeout, tick_grace and 1 s): '
          'a writer racing its ATTACH would fail');
SELECT is(pg_temp.bounds('toygun.transition_20300103_000000'),
          $$FOR VALUES FROM ('2030-01-03 00:00:00+00') TO ('2030-01-04 00:00:00+00')$$, 'a whole width');
SELECT is(pg_temp.bounds('toygun.transition_20300102_000000'),
          $$FOR VALUES FROM ('2030-01-02 00:00:00+00') TO ('2030-01-02 06:00:00+00')$$,
          'clipped to the gap before an existing partition');
SELECT is(pg_temp.bounds('toygun.transition_20300102_180000'),
          $$FOR VALUES FROM ('2030-01-02 18:00:00+00') TO ('2030-01-03 00:00:00+00')$$,
          'and to the gap after it');
SELECT is((SELECT tableoid::regclass::text FROM toygun.transition WHERE expires_at = '2030-01-02 20:00:00+00'),
          'toygun.transition_20300102_180000', 'a row of the new range moved out of the default partition');
SELECT is((SELECT count(*) FROM toygun.transition WHERE expires_at = '2029-06-01 00:00:00+00'), 0::bigint,
          'an expired row of the default partition is deleted');
SELECT is(:'round'::jsonb ->> 'history_rows_deleted', '7',
          'and counted, with the three rows of each run above, expired by the test clock');
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'early'), 0::bigint,
          'a stopped run goes with its stop row, deleted from the default partition once expired');
SELECT is((:'round'::jsonb ->> 'runs_removed')::int, 1,
          'even when its type keeps forever since: its expiry was fixed when it stopped');
SELECT is((SELECT toygun.maintain() ->> 'partitions_created'), '0', 'a second round makes none');

-- ---------------------------------------------------------------------------
-- removing what expired: partitions, stopped runs and resources, failures, claims
SELECT toygun.stop_task(:'job');
SELECT toygun.stop_task(:'fv');
SELECT toygun.start_task(:'r', 'job') AS live \gset
SELECT toygun.create_resource('ret') AS r2 \gset
SELECT toygun.stop_resource(:'r2');
SELECT toygun.create_resource('dummy') AS d \gset
SELECT toygun.start_task(:'d', 'another') AS dstop \gset
SELECT toygun.stop_task(:'dstop');
INSERT INTO toygun.failure (object_id, failure_no, resource_type, attempt, at, error)
VALUES (:'job', 1, 'ret', 1, now(), 'of a run to be removed'),
       (:'live', 1, 'ret', 1, now() - interval '3 hours', 'older than keep'),
       (:'dstop', 1, 'dummy', 1, now() - interval '3 hours', 'kept forever');
INSERT INTO toygun.message (run_id, resource_type, message, sent_by) VALUES (:'job', 'ret', '{}', 'postgres');
INSERT INTO toygun.schedule_start VALUES (999999, now(), :'r2');
-- stopped while its type kept forever: a keep set since does not remove it
SELECT toygun.define_task('ret', 'forever', '{one,two}', 'ret_job(toygun.task)', keep => '1 hour');
RESET toygun.test_now;
SELECT toygun.maintain() AS early \gset
SELECT pg_temp.partition_for('1 hour');
SELECT toygun.tick_task(:'live');
SELECT is((SELECT tableoid::regclass::text ~ '^toygun\.transition_[0-9]{8}_[0-9]{6}$' FROM toygun.transition
            WHERE object_id = :'live' ORDER BY step DESC LIMIT 1), true,
          'once a time partition holds its expiry, a tick writes its row straight into it');
SELECT is((:'early'::jsonb ->> 'runs_removed')::int + (:'early'::jsonb ->> 'resources_removed')::int, 0,
          'nothing stopped within its keep is removed');
SET LOCAL toygun.test_now = '2030-01-05 00:00:00+00';
SELECT toygun.maintain() AS late \gset
SELECT cmp_ok((:'late'::jsonb ->> 'partitions_dropped')::int, '>=', 5,
              'partitions whose upper bound has passed are dropped');
SELECT ok(NOT pg_temp.partitions() && ARRAY['transition_20300101_000000', 'transition_manual'],
          'the expired partitions are gone, whoever made them');
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'job'), 0::bigint, 'a stopped run past its keep is removed');
SELECT is((SELECT count(*) FROM toygun.task WHERE id IN (:'live', :'fv', :'dstop')), 3::bigint,
          'a live run and runs stopped while their types kept forever stay (a keep set later included)');
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r2'), 0::bigint,
          'a stopped resource past its keep, with no runs, is removed');
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r'), 1::bigint, 'a live resource stays');
SELECT is((SELECT array_agg(error ORDER BY error) FROM toygun.failure WHERE object_id IN (:'job', :'live', :'dstop')),
          ARRAY['kept forever', 'older than keep'],
          'failures of removed runs go with them; a live run keeps its own (its last toygun.failures_kept)');
SELECT is((SELECT count(*) FROM toygun.message WHERE run_id = :'job'), 0::bigint,
          'messages to a removed run go with it');
SELECT is((SELECT count(*) FROM toygun.schedule_start WHERE schedule_id = 999999), 0::bigint,
          'periodic starts'' claims on a removed resource go with it');
SELECT is(:'late'::jsonb ->> 'claims_deleted', '1', 'and are counted');
SELECT is((SELECT count(*) FROM toygun.history(:'job')), 0::bigint,
          'the removed run''s history, in an expired partition, is gone');
SELECT ok((SELECT count(*) FROM toygun.history(:'fv')) > 0, 'the history of a type kept forever stays');

-- a stopped resource with a run left (of a type kept forever) stays
SELECT toygun.stop_resource(:'r');
SELECT toygun.stop_task(:'live');
SET LOCAL toygun.test_now = '2030-01-10 00:00:00+00';
SELECT toygun.maintain();
SELECT is((SELECT count(*) FROM toygun.resource WHERE id = :'r'), 1::bigint,
          'a stopped resource with runs left is not removed');

-- ---------------------------------------------------------------------------
-- stopped runs leave with the partition of their stop row, checked at the
-- stop: one brought back stays, one stopped again waits for its later stop
-- row, and more than toygun.prune_batch go over several rounds
RESET toygun.test_now;
SELECT toygun.define_task('ret', 'back', '{one,two}', 'ret_job(toygun.task)', keep => '1 hour');
SELECT toygun.define_task('ret', 'bulk', '{one,two}', 'ret_job(toygun.task)', keep => '3 days');
SELECT toygun.maintain() ->> 'partitions_created' AS made \gset
SELECT toygun.create_resource('ret') AS rb \gset
SELECT toygun.create_resource('ret') AS rb2 \gset
SELECT (toygun.stop_task(toygun.start_task(:'rb', 'back'))).id AS b1 \gset
SELECT toygun.transition_task(:'b1', 'one', reason => 'brought back');
SELECT (toygun.stop_task(toygun.start_task(:'rb2', 'back'))).id AS b2 \gset
SELECT toygun.transition_task(:'b2', 'one', reason => 'brought back');
SELECT toygun.define_task('ret', 'back', '{one,two}', 'ret_job(toygun.task)', keep => '3 days');
SELECT pg_temp.partition_for('3 days') AS bulkpart \gset
SELECT toygun.stop_task(:'b2');
SELECT is((SELECT array_agg(tableoid::regclass::text ORDER BY step) FROM toygun.transition
            WHERE object_id = :'b2' AND to_state = '__stop__'),
          ARRAY[(SELECT tableoid::regclass::text FROM toygun.transition WHERE object_id = :'b1' AND to_state = '__stop__'),
                :'bulkpart'],
          'a run stopped twice has its stop rows in two partitions');
-- rows filling 150 blocks of the bulk runs' partition before their stop rows,
-- so that its scan goes on past the first block range
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, note, expires_at)
SELECT gen_random_uuid(), 0, '__new__', 'one', 'ret',
       (SELECT string_agg(md5(i::text || '.' || j::text), '') FROM generate_series(1, 60) j), clock_timestamp() + interval '3 days'
  FROM generate_series(1, 600) i;
SELECT toygun.create_resource('ret') AS rbulk \gset
SELECT count(toygun.stop_task(toygun.start_task(:'rbulk', 'bulk'))) FROM generate_series(1, 1005);
SELECT cmp_ok((SELECT max((ctid::text::point)[0]) FROM toygun.transition WHERE to_state = '__stop__'
                 AND object_id IN (SELECT id FROM toygun.task WHERE name = 'bulk')), '>=', 150::float8,
              'the bulk runs'' stop rows lie past the first block range of their partition');

SELECT set_config('toygun.test_now', (now() + interval '1 day 2 hours')::text, true);
SELECT toygun.maintain();
SELECT is((SELECT state FROM toygun.task WHERE id = :'b1'), 'one',
          'a run brought back by hand is not removed with its stop row''s partition');
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'b2'), 1::bigint,
          'nor one stopped again since, whose later stop row is in a later partition');
SELECT is((SELECT count(*) FROM toygun.transition WHERE object_id = :'b2' AND to_state = '__stop__'), 1::bigint,
          'its first stop row is gone with its partition');

SELECT set_config('toygun.test_now', (now() + interval '5 days')::text, true);
SELECT toygun.maintain() AS bulk1 \gset
SELECT is((:'bulk1'::jsonb ->> 'runs_removed')::int, 1000, 'a round removes at most toygun.prune_batch runs');
SELECT is((:'bulk1'::jsonb ->> 'more')::boolean, true, 'and says there is more');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'bulk'), 6::bigint, 'the bulk runs left (1005 + b2 - 1000)');
SELECT is(to_regclass(:'bulkpart')::text, :'bulkpart', 'their partition is not dropped before its scan is done');
SELECT toygun.maintain() AS bulk2 \gset
SELECT is((:'bulk2'::jsonb ->> 'runs_removed')::int, 6, 'the next round removes the rest');
SELECT is((SELECT count(*) FROM toygun.task WHERE name IN ('bulk', 'back') AND state = '__stop__'), 0::bigint,
          'every stopped run of the partition is gone, the run stopped twice with its later stop row');
SELECT is(to_regclass(:'bulkpart'), NULL, 'and their partition is dropped');

-- ---------------------------------------------------------------------------
-- who may call maintain(), and who reads the partitions
CREATE ROLE tg_ret_reader;
SELECT toygun.grant_type('ret', 'tg_ret_reader', '{read}');
SET LOCAL ROLE tg_ret_reader;
SELECT throws_ok($$SELECT toygun.maintain()$$, '42501', NULL, 'an ordinary role may not call maintain()');
SELECT throws_ok($$SELECT count(*) FROM toygun.transition_forever$$, '42501', NULL,
                 'nor read a partition of the history directly');
SELECT is((SELECT array_agg(DISTINCT resource_type) FROM toygun.transition), ARRAY['ret'],
          'through toygun.transition it reads the rows of the types it may read');
RESET ROLE;
SELECT is((SELECT count(*) FROM pg_class c WHERE c.relispartition AND c.relnamespace = 'toygun'::regnamespace
             AND c.relacl IS NOT NULL), 0::bigint, 'no partition has a grant');

SELECT * FROM finish();
ROLLBACK;
