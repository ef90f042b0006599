-- toygun.definitions_changed() (issue 19): the statement trigger that
-- toygun.distribute() puts on the definition tables on Citus, where a
-- definition reaches a worker node as Citus's own write to that node's
-- shard, not through define_*. A write to a definition table that fires it
-- makes this node's cached definitions stale, as define_* does; one that
-- does not fire it leaves them as they were. Not a trigger of the single-node
-- schema; called other than as a trigger naming a table, refused. On a Citus cluster it is proven by
-- test/citus/definitions.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(7);

SELECT toygun.define_task('dummy', 'fielded', '{one}', 'dummy_another(toygun.task)', fields => '{a}');
CREATE TEMP TABLE dc_res AS SELECT toygun.create_resource('dummy') AS id;
SELECT throws_like($$SELECT toygun.start_task((SELECT id FROM dc_res), 'fielded', '{"b": 1}')$$,
                   '%field "b" is not declared%', 'the cached definition declares a only');

SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgfoid = 'toygun.definitions_changed()'::regprocedure),
          0, 'the single-node schema has no such trigger');

-- a write define_* did not make, without the trigger: this backend's cache keeps the old definition
UPDATE toygun.task_type SET fields = '{a,b}' WHERE resource_type = 'dummy' AND name = 'fielded';
SELECT throws_like($$SELECT toygun.start_task((SELECT id FROM dc_res), 'fielded', '{"b": 1}')$$,
                   '%field "b" is not declared%', 'without the trigger a direct write is not seen');

-- with it (as on each Citus node's shard): the next lookup reads the table again
CREATE TRIGGER definitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON toygun.task_type
    FOR EACH STATEMENT EXECUTE FUNCTION toygun.definitions_changed('task_type');
UPDATE toygun.task_type SET fields = '{a,b,c}' WHERE resource_type = 'dummy' AND name = 'fielded';
SELECT lives_ok($$SELECT toygun.start_task((SELECT id FROM dc_res), 'fielded', '{"c": 1}')$$,
                'with the trigger the same backend sees the new fields');
SELECT is((SELECT fields FROM toygun.task_type WHERE resource_type = 'dummy' AND name = 'fielded'),
          '{a,b,c}'::text[], 'the row is the one written');

-- a trigger without the table's name is refused, naming the trigger
CREATE TRIGGER dc_bad AFTER UPDATE ON toygun.queue
    FOR EACH STATEMENT EXECUTE FUNCTION toygun.definitions_changed();
SELECT throws_ok($$UPDATE toygun.queue SET paused = false WHERE id = 0$$, '39P01',
                 'trigger "dc_bad" must name one table of schema toygun',
                 'a trigger that names no table: 39P01');
SELECT throws_ok($$SELECT toygun.definitions_changed()$$, '39P01',
                 'toygun.definitions_changed() is a trigger function',
                 'called as a function: 39P01');

SELECT * FROM finish();
ROLLBACK;
