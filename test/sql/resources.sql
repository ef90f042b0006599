-- Resources: creation, their first tick, their handler, parents, and what a
-- stopped resource means for its runs.
BEGIN;
\ir ../fixtures.sql
SELECT plan(21);

SELECT toygun.create_resource('dummy', '{"region": "eu"}') AS r \gset
SELECT is((SELECT state FROM toygun.resource WHERE id = :'r'), '__new__', 'a new resource is in __new__');
SELECT is((SELECT attrs FROM toygun.resource WHERE id = :'r'), '{"region": "eu"}'::jsonb, 'a new resource keeps its attrs');
SELECT is((SELECT type FROM toygun.resource WHERE id = :'r'), 'dummy', 'a new resource has its type');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.resource WHERE id = :'r'), 'a new resource is due at once');

-- ticking a resource: __new__ -> its first state, then its live runs but not stopped ones
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT toygun.start_task(:'r', 'another') AS a \gset
SELECT toygun.transition_task(:'t', 'beginning');
SELECT toygun.stop_task(:'a');
SELECT is((toygun.tick_resource(:'r')).state, 'starting', 'the first tick of a resource moves it to its first state');
SELECT is((SELECT state FROM toygun.task WHERE id = :'t'), 'middle', 'ticking a resource ticks its live runs');
SELECT is((SELECT state FROM toygun.task WHERE id = :'a'), '__stop__', 'ticking a resource leaves its stopped runs alone');
SELECT results_eq(format('SELECT step, from_state, to_state FROM toygun.history(%L)', :'r'),
                  $$ VALUES (0::bigint, '__new__', 'starting') $$, 'the resource records its first transition');
SELECT ok((SELECT run_at IS NULL FROM toygun.resource WHERE id = :'r'),
          'a resource whose type has no handler is not due after its first tick');
SELECT is((toygun.tick_resource(:'r')).state, 'starting', 'a resource without a handler stays in its state');
SELECT is((SELECT state FROM toygun.task WHERE id = :'t'), 'end', 'and its runs keep being ticked');

-- a stopped resource's runs are not ticked
SELECT toygun.stop_resource(:'r');
SELECT is((toygun.tick_resource(:'r')).state, '__stop__', 'ticking a stopped resource changes nothing');
SELECT is((SELECT state FROM toygun.task WHERE id = :'t'), 'end', 'a stopped resource''s runs are not ticked');
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '55000',
                 format('resource %s of task %s is stopped', :'r', :'t'),
                 'ticking a run of a stopped resource is refused');

-- a resource type with a handler
CREATE FUNCTION public.db_handler(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE r.state
    WHEN 'creating' THEN RETURN toygun.go('available', jsonb_build_object('host', 'db-' || left(r.id::text, 4)));
    WHEN 'available' THEN RETURN toygun.stay(wait => '1 hour');
    END CASE;
END $$;
SELECT toygun.define_resource('database', '{creating,available,deleting}', 'db_handler(toygun.resource)');
SELECT toygun.create_resource('database') AS d \gset
SELECT is((toygun.tick_resource(:'d')).state, 'available', 'the first tick of a resource with a handler runs it');
SELECT ok((SELECT attrs ? 'host' FROM toygun.resource WHERE id = :'d'), 'a resource handler''s attrs are merged');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.resource WHERE id = :'d'),
          'go() makes a resource due again at once');
SELECT toygun.tick_resource(:'d');
SELECT ok((SELECT run_at > clock_timestamp() + interval '59 minutes' FROM toygun.resource WHERE id = :'d'),
          'stay(wait) sets when the resource is next due');

-- parents
SELECT toygun.create_resource('dummy', parent => :'d') AS c \gset
SELECT is((SELECT parent_id FROM toygun.resource WHERE id = :'c'), :'d'::uuid, 'a child refers to its parent');
SELECT throws_ok($$SELECT toygun.create_resource('dummy', parent => '00000000-0000-0000-0000-000000000000')$$,
                 'P0002', 'parent resource 00000000-0000-0000-0000-000000000000 does not exist',
                 'a parent must exist');

-- a handler added later re-arms resources that had none
SELECT toygun.define_resource('dummy', handler => 'db_handler(toygun.resource)', states => '{starting,creating,available}');
SELECT ok((SELECT run_at IS NOT NULL FROM toygun.resource WHERE id = :'c'),
          'defining a handler makes resources of the type due again');

SELECT * FROM finish();
ROLLBACK;
