-- Parents that mean something: a resource type's parent_type, enforced by
-- create_resource, and stop_resource stopping the live children first.
BEGIN;
\ir ../fixtures.sql
SELECT plan(19);

SELECT toygun.define_resource('tg_cluster');
SELECT toygun.define_resource('tg_node', parent_type => 'tg_cluster');
SELECT toygun.define_resource('tg_disk', parent_type => 'tg_node');
SELECT is((SELECT parent_type FROM toygun.resource_type WHERE name = 'tg_node'), 'tg_cluster',
          'define_resource stores parent_type');
SELECT throws_ok($$SELECT toygun.define_resource('tg_orphan', parent_type => 'tg_nothing')$$, '42704',
                 'parent type "tg_nothing" of resource type "tg_orphan" does not exist',
                 'a parent type that does not exist is refused');
SELECT lives_ok($$SELECT toygun.define_resource('tg_tree', parent_type => 'tg_tree')$$,
                'a type may be its own parent type');

SELECT toygun.create_resource('tg_cluster') AS c \gset
SELECT toygun.create_resource('dummy') AS d \gset
SELECT throws_ok($$SELECT toygun.create_resource('tg_node')$$, '23502',
                 'resource type "tg_node" needs a parent of type "tg_cluster"',
                 'a type with a parent_type needs a parent');
SELECT throws_ok(format($$SELECT toygun.create_resource('tg_node', '{}', %L)$$, :'d'), '23514',
                 format('parent resource %s is of type "dummy", not "tg_cluster"', :'d'),
                 'the parent must be of that type');
SELECT lives_ok(format($$SELECT toygun.create_resource('dummy', '{}', %L)$$, :'d'),
                'a type without parent_type takes any parent, as before');

-- a tree: cluster > two nodes > a disk each, runs on a node and a disk
SELECT toygun.create_resource('tg_node', '{}', :'c') AS n1 \gset
SELECT toygun.create_resource('tg_node', '{}', :'c') AS n2 \gset
SELECT toygun.create_resource('tg_disk', '{}', :'n1') AS k1 \gset
SELECT toygun.create_resource('tg_disk', '{}', :'n2') AS k2 \gset
SELECT toygun.define_task('tg_disk', 'scrub', '{one}', 'dummy_another(toygun.task)');
SELECT toygun.define_task('tg_node', 'scrub', '{one}', 'dummy_another(toygun.task)');
SELECT toygun.start_task(:'k1', 'scrub') AS t1 \gset
SELECT toygun.start_task(:'n2', 'scrub') AS t2 \gset

-- cascade => false refuses while children are live
SELECT throws_ok(format($$SELECT toygun.stop_resource(%L, cascade => false)$$, :'c'), '55000',
                 format('resource %s has 2 live children', :'c'),
                 'cascade => false refuses while children are live, naming how many');

-- rights: operate on the cluster type only is not enough for its children
CREATE ROLE tg_pa_op;
SELECT toygun.grant_type('tg_cluster', 'tg_pa_op', '{operate}');
SET ROLE tg_pa_op;
SELECT throws_ok(format($$SELECT toygun.stop_resource(%L)$$, :'c'), '42501',
                 format('permission denied to stop child resource %s of type "tg_node": it needs right "operate" on resource type "tg_node"', :'n1'),
                 'a role without operate on a child''s type cannot stop the parent: refused, naming the child''s type');
RESET ROLE;
SELECT toygun.grant_type('tg_node', 'tg_pa_op', '{operate}');
SET ROLE tg_pa_op;
SELECT throws_ok(format($$SELECT toygun.stop_resource(%L)$$, :'c'), '42501',
                 format('permission denied to stop child resource %s of type "tg_disk": it needs right "operate" on resource type "tg_disk"', :'k1'),
                 'and so for a grandchild''s type');
RESET ROLE;
SELECT is((SELECT count(*) FROM toygun.resource WHERE id IN (:'c', :'n1', :'n2', :'k1', :'k2') AND state = '__stop__'),
          0::bigint, 'and nothing was stopped');
SELECT toygun.grant_type('tg_disk', 'tg_pa_op', '{operate}');

-- a stopped parent gets no children
SELECT toygun.create_resource('tg_cluster') AS c2 \gset
SELECT toygun.stop_resource(:'c2') IS NOT NULL AS stopped \gset
SELECT throws_ok(format($$SELECT toygun.create_resource('tg_node', '{}', %L)$$, :'c2'), '55000',
                 format('parent resource %s is stopped', :'c2'),
                 'a stopped parent gets no new children');

-- cascade (the default): children and grandchildren, their runs parked
SET ROLE tg_pa_op;
SELECT is((SELECT state FROM toygun.stop_resource(:'c', 'decommissioned')), '__stop__',
          'with right operate on every type below, stop_resource stops the parent');
RESET ROLE;
SELECT is((SELECT count(*) FROM toygun.resource WHERE id IN (:'n1', :'n2', :'k1', :'k2') AND state = '__stop__'),
          4::bigint, 'and its children and grandchildren');
SELECT is((SELECT count(*) FROM toygun.task WHERE id IN (:'t1', :'t2') AND run_at IS NULL AND state <> '__stop__'),
          2::bigint, 'whose runs are parked, as a stopped resource''s runs are');
SELECT is((SELECT array_agg(DISTINCT h.reason || '/' || h.made_by::text)
             FROM toygun.transition h WHERE h.object_id IN (:'c', :'n1', :'n2', :'k1', :'k2') AND h.to_state = '__stop__'),
          ARRAY['decommissioned/tg_pa_op'], 'every stop records the reason and the maker');
SELECT is((SELECT note FROM toygun.transition WHERE object_id = :'k1' AND to_state = '__stop__'),
          format('stop_resource of parent %s', :'n1'), 'a child''s stop names its parent');
SELECT ok((SELECT (SELECT at FROM toygun.transition WHERE object_id = :'k1' AND to_state = '__stop__') <=
                  (SELECT at FROM toygun.transition WHERE object_id = :'n1' AND to_state = '__stop__')
              AND (SELECT at FROM toygun.transition WHERE object_id = :'n2' AND to_state = '__stop__') <=
                  (SELECT at FROM toygun.transition WHERE object_id = :'c' AND to_state = '__stop__')),
          'children stop before their parent (depth first)');
SELECT is((SELECT state FROM toygun.stop_resource(:'c', cascade => false)), '__stop__',
          'stopping a stopped resource returns it unchanged');
SELECT throws_ok(format($$SELECT toygun.stop_resource(%L, cascade => NULL)$$, :'c'), '22004', NULL,
                 'cascade may not be NULL');

SELECT * FROM finish();
ROLLBACK;
