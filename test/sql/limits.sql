-- Concurrency limits (issue 17): define_task's max_running, concurrency_key
-- and max_per_key, every error they raise, the flow_key a run gets (the
-- same for a tenant, another across tenants and types, '$root' through its
-- ancestors, one for runs without the field), redefinition moving live runs
-- between task_flow_idx and the other claim indexes, and ticks by hand that
-- take slots or are refused at the limit. That the limit holds under real
-- workers, that dying workers give their slots back, and fairness between
-- keys: test/scenario/limits.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(46);

-- the SQLSTATE, message and hint of the error a statement raises
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text;
    h text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || m || ' | ' || coalesce(h, '');
END $$;
CREATE FUNCTION public.lim_handler(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay()
$$;
-- the flow_key of a run
CREATE FUNCTION pg_temp.key_of(run uuid) RETURNS bigint LANGUAGE sql AS $$
    SELECT flow_key FROM toygun.task WHERE id = run
$$;

SELECT col_type_is('toygun', 'task', 'flow_key', 'bigint', 'task.flow_key is bigint');
SELECT has_index('toygun', 'task', 'task_flow_idx', ARRAY['flow_key', 'run_at'], 'task_flow_idx is (flow_key, run_at)');

-- ---------------------------------------------------------------------------
-- errors
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', max_running => 0)$$),
          '22023: max_running of task type "dummy.l" must be between 1 and 10000, not 0 | Leave it NULL for no limit.',
          'max_running below 1: 22023');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)',
                                                        concurrency_key => 'tenant', max_per_key => 10001)$$),
          '22023: max_per_key of task type "dummy.l" must be between 1 and 10000, not 10001 | Leave it NULL for no limit per key.',
          'max_per_key above 10000: 22023');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', concurrency_key => 'tenant')$$),
          '22023: task type "dummy.l" gives concurrency_key without max_per_key | A limit per key needs both: concurrency_key names the key, max_per_key its limit.',
          'concurrency_key without max_per_key: 22023');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', max_per_key => 2)$$),
          '22023: task type "dummy.l" gives max_per_key without concurrency_key | A limit per key needs both: concurrency_key names the key, max_per_key its limit.',
          'max_per_key without concurrency_key: 22023');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)',
                                                        concurrency_key => '', max_per_key => 2)$$),
          '22023: concurrency_key of task type "dummy.l" is empty | Name a top-level field of its attrs, or ''$root''.',
          'an empty concurrency_key: 22023');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)',
                                                        concurrency_key => '$parent', max_per_key => 2)$$),
          '42939: concurrency_key "$parent" of task type "dummy.l" is not a field name nor ''$root'' | Keys starting with $ are reserved; ''$root'' is the root ancestor of the run''s resource.',
          'a key starting with $ other than $root: 42939');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', fields => '{account}',
                                                        concurrency_key => 'tenant', max_per_key => 2)$$),
          '42703: concurrency_key "tenant" of task type "dummy.l" is not one of its fields | Declare it in fields, or name another field.',
          'a key that is no declared field: 42703');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', encrypted_fields => '{tenant}',
                                                        concurrency_key => 'tenant', max_per_key => 2)$$),
          '0A000: concurrency_key "tenant" of task type "dummy.l" is an encrypted field | Name a field that is not encrypted.',
          'a key that is an encrypted field: 0A000');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'l', '{s}', 'lim_handler(toygun.task)', max_running => 3, priority => 5)$$),
          '0A000: task type "dummy.l" has a concurrency limit, so its runs cannot have a priority | Leave priority NULL or 0, or define the type without max_running and max_per_key.',
          'a default priority on a limited type: 0A000');
SELECT is((SELECT count(*) FROM toygun.task_type WHERE name = 'l'), 0::bigint, 'nothing refused was defined');

-- ---------------------------------------------------------------------------
-- definitions and keys
SELECT toygun.define_task('dummy', 'per_tenant', '{s}', 'lim_handler(toygun.task)',
                          concurrency_key => 'tenant', max_per_key => 1);
SELECT toygun.define_task('dummy', 'per_tenant2', '{s}', 'lim_handler(toygun.task)',
                          concurrency_key => 'tenant', max_per_key => 1);
SELECT toygun.define_task('dummy', 'one_at_a_time', '{s}', 'lim_handler(toygun.task)', max_running => 1);
SELECT is((SELECT row(max_running, concurrency_key, max_per_key, limit_id IS NOT NULL)::text
             FROM toygun.task_type WHERE name = 'per_tenant'), '(,tenant,1,t)',
          'the limits are stored, with a limit_id');
SELECT is((SELECT count(DISTINCT limit_id) FROM toygun.task_type WHERE limit_id IS NOT NULL), 3::bigint,
          'each limited type has its own limit_id');
SELECT is((SELECT limit_id FROM toygun.task_type WHERE name IN ('test', 'another') AND limit_id IS NOT NULL), NULL,
          'a type without limits has none');
SELECT is(pg_temp.error_of(format($$SELECT toygun.start_task(%L, 'per_tenant', priority => 3)$$,
                                  toygun.create_resource('dummy'))),
          '0A000: task type "dummy.per_tenant" has a concurrency limit, so its runs cannot have a priority | Leave priority NULL or 0, or define the type without max_running and max_per_key.',
          'a start with a priority on a limited type: 0A000');

SELECT toygun.create_resource('dummy') AS r1 \gset
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.create_resource('dummy') AS r3 \gset
SELECT toygun.create_resource('dummy') AS r4 \gset
SELECT toygun.start_task(:'r1', 'per_tenant', '{"tenant": "a"}') AS a1 \gset
SELECT toygun.start_task(:'r2', 'per_tenant', '{"tenant": "a"}') AS a2 \gset
SELECT toygun.start_task(:'r3', 'per_tenant', '{"tenant": "b"}') AS b1 \gset
SELECT toygun.start_task(:'r4', 'per_tenant', '{"other": 1}') AS n1 \gset
SELECT toygun.start_task(:'r4', 'test') AS unused \gset
SELECT toygun.create_resource('dummy') AS r5 \gset
SELECT toygun.start_task(:'r5', 'per_tenant', '{"tenant": "a"}') AS a3 \gset
SELECT toygun.start_task(:'r1', 'per_tenant2', '{"tenant": "a"}') AS x1 \gset
SELECT toygun.start_task(:'r2', 'per_tenant2', '{"other": 2}') AS n2 \gset
SELECT toygun.start_task(:'r3', 'per_tenant2') AS n3 \gset
SELECT toygun.start_task(:'r1', 'one_at_a_time') AS o1 \gset
SELECT toygun.start_task(:'r2', 'one_at_a_time', '{"tenant": "z"}') AS o2 \gset
SELECT toygun.start_task(:'r1', 'test') AS plain \gset

SELECT is(pg_temp.key_of(:'a1'), pg_temp.key_of(:'a2'), 'two runs of one tenant have one flow_key');
SELECT isnt(pg_temp.key_of(:'a1'), pg_temp.key_of(:'b1'), 'another tenant has another');
SELECT isnt(pg_temp.key_of(:'a1'), pg_temp.key_of(:'x1'), 'the same tenant of another type has another');
SELECT is(pg_temp.key_of(:'a1') >> 48, (SELECT limit_id::bigint FROM toygun.task_type WHERE name = 'per_tenant'),
          'its high 16 bits are its type''s limit_id');
SELECT is(pg_temp.key_of(:'n2'), pg_temp.key_of(:'n3'), 'runs without the field share the key of JSON null');
SELECT is(pg_temp.key_of(:'o1'), pg_temp.key_of(:'o2'), 'with max_running alone the type is one key');
SELECT is(pg_temp.key_of(:'o1'), (SELECT limit_id::bigint << 48 FROM toygun.task_type WHERE name = 'one_at_a_time'),
          '(its limit_id << 48)');
SELECT is(pg_temp.key_of(:'plain'), NULL, 'a run of a type without limits has none');

-- $root: the root ancestor, through three levels
SELECT toygun.define_task('dummy', 'per_root', '{s}', 'lim_handler(toygun.task)',
                          concurrency_key => '$root', max_per_key => 2);
SELECT toygun.create_resource('dummy') AS top \gset
SELECT toygun.create_resource('dummy', parent => :'top') AS mid \gset
SELECT toygun.create_resource('dummy', parent => :'mid') AS leaf \gset
SELECT toygun.create_resource('dummy') AS top2 \gset
SELECT toygun.start_task(:'top', 'per_root') AS rt \gset
SELECT toygun.start_task(:'leaf', 'per_root') AS rl \gset
SELECT toygun.start_task(:'mid', 'per_root') AS rm \gset
SELECT toygun.start_task(:'top2', 'per_root') AS rt2 \gset
SELECT is(pg_temp.key_of(:'rl'), pg_temp.key_of(:'rt'), '$root: a run two levels down has its root''s key');
SELECT is(pg_temp.key_of(:'rm'), pg_temp.key_of(:'rt'), '$root: one level down too');
SELECT isnt(pg_temp.key_of(:'rt2'), pg_temp.key_of(:'rt'), '$root: another root, another key');

-- periodic starts (schedule.c's bulk insert) key their runs too
SELECT toygun.start_every('dummy', 'per_tenant2', '0 3 * * *', '{"tenant": "a"}') IS NOT NULL AS scheduled \gset
SELECT toygun.stop_task(:'x1');
SELECT cmp_ok(toygun.run_schedule('dummy', 'per_tenant2', '2024-05-01 03:00:30+00'), '>=', 1::bigint, 'a firing starts runs');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'per_tenant2' AND state <> '__stop__'
              AND resource_id = :'r1' AND flow_key = pg_temp.key_of(:'x1')), 1::bigint,
          'a run a firing started has its key, as start_task gives it');

-- the other claim indexes never see limited runs, nor task_flow_idx the others
SELECT is((SELECT count(*) FROM toygun.task WHERE name LIKE 'per_%' AND state <> '__stop__' AND flow_key IS NULL), 0::bigint,
          'every live limited run has a key');

-- ---------------------------------------------------------------------------
-- ticks by hand take the run's slots until the transaction ends
SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'a1'), 'a tick by hand takes tenant a''s only slot');
SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'a1'), 'the same run again: it holds it already');
SELECT is(pg_temp.error_of(format($$SELECT toygun.tick_task(%L)$$, :'a2')),
          format('55000: task type "dummy.per_tenant" is at its max_per_key (1) for the key of run %s | Tick it once one of the runs of its key being ticked has committed, or let a worker tick it.', :'a2'),
          'another run of tenant a: refused at the limit (55000)');
SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'b1'), 'tenant b has its own slot');
SELECT is((SELECT row(running, waiting_for_slot)::text FROM toygun.flow WHERE task = 'per_tenant'), '(2,1)',
          'toygun.flow: 2 slots held; of a''s 2 due runs (a2, a3) one waits past a''s slot (a1, ticked here, is no longer due)');
SAVEPOINT s;
SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'n1'), 'the key of JSON null: a slot, in a savepoint');
ROLLBACK TO s;
SELECT is((SELECT running FROM toygun.flow WHERE task = 'per_tenant'), 2,
          'a rolled-back savepoint gave its slot back');
SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'n1'), 'so the key''s slot is free again');

SELECT lives_ok(format($$SELECT toygun.tick_task(%L)$$, :'o1'), 'max_running 1: one tick');
SELECT is(pg_temp.error_of(format($$SELECT toygun.tick_task(%L)$$, :'o2')),
          format('55000: task type "dummy.one_at_a_time" is at its max_running (1): run %s is not ticked | Tick it once one of its runs being ticked has committed, or let a worker tick it.', :'o2'),
          'a second run: refused at max_running (55000)');
SELECT is((SELECT running FROM toygun.flow WHERE task = 'one_at_a_time'), 1, 'toygun.flow: its one slot held');

-- ---------------------------------------------------------------------------
-- redefinition moves live runs between the indexes
SELECT toygun.define_task('dummy', 'per_tenant', '{s}', 'lim_handler(toygun.task)');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'per_tenant' AND state <> '__stop__' AND flow_key IS NOT NULL), 0::bigint,
          'defined again without limits: its live runs lose their keys');
SELECT is((SELECT limit_id FROM toygun.task_type WHERE name = 'per_tenant'), NULL, 'and its limit_id');
SELECT toygun.define_task('dummy', 'per_tenant', '{s}', 'lim_handler(toygun.task)',
                          concurrency_key => 'tenant', max_per_key => 1);
SELECT is(pg_temp.key_of(:'a1'), pg_temp.key_of(:'a2'), 'defined again with them: keyed again, tenant by tenant');

-- a 65th limited type
DO $$
BEGIN
    FOR i IN 1..60 LOOP
        PERFORM toygun.define_task('dummy', 'many' || i, '{s}', 'lim_handler(toygun.task)', max_running => 1);
    END LOOP;
END $$;
SELECT is((SELECT count(*) FROM toygun.task_type WHERE limit_id IS NOT NULL), 64::bigint, '64 limited types');
SELECT is(pg_temp.error_of($$SELECT toygun.define_task('dummy', 'many65', '{s}', 'lim_handler(toygun.task)', max_running => 1)$$),
          '54000: task type "dummy.many65" cannot have a concurrency limit: 64 task types have one already | Define one of them again without max_running and max_per_key.',
          'a 65th: 54000');

SELECT * FROM finish();
ROLLBACK;
