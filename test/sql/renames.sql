-- Renames (issue 16): rename_state, rename_task and rename_resource_type, who
-- may, what they refuse, and every row that follows the new name (and the
-- history that keeps the old one), the pg_cron jobs, the rename log, and the
-- definition cache (a move by the new name in the same session).
BEGIN;
\ir ../fixtures.sql
SELECT plan(54);

CREATE ROLE rn_owner;
CREATE ROLE rn_member IN ROLE rn_owner;
CREATE ROLE rn_other;
CREATE ROLE rn_reader;

CREATE FUNCTION public.rn_box_h(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stay() $$;
CREATE FUNCTION public.rn_job_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('rn_box', '{starting,running,stopping}', 'rn_box_h(toygun.resource)',
                              stop_state => 'stopping', owner => 'rn_owner');
SELECT toygun.define_resource('rn_part', '{on}', parent_type => 'rn_box', owner => 'rn_owner');
SELECT toygun.define_task('rn_box', 'deploy', '{build,ship,drain}', 'rn_job_h(toygun.task)',
                          stop_state => 'drain', owner => 'rn_owner',
                          breaker => '{"failures": 3, "within": "1 minute", "cooldown": "300 s"}');
SELECT toygun.define_task('rn_box', 'watch', '{look}', 'rn_job_h(toygun.task)', owner => 'rn_owner');
SELECT toygun.grant_type('rn_box', 'rn_reader', '{read}');

SELECT toygun.create_resource('rn_box') AS r1 \gset
SELECT toygun.create_resource('rn_part', parent => :'r1') AS p1 \gset
SELECT toygun.transition_resource(:'r1', 'running') IS NOT NULL;
SELECT toygun.start_task(:'r1', 'deploy') AS d0 \gset
SELECT toygun.transition_task(:'d0', '__stop__') IS NOT NULL;
SELECT toygun.start_task(:'r1', 'deploy') AS d1 \gset
SELECT toygun.transition_task(:'d1', 'ship') IS NOT NULL;
SELECT toygun.define_trigger('rn_box', 'running', 'deploy', '{}');
SELECT toygun.start_every('rn_box', 'deploy', '0 3 * * *', states => '{running}') AS job0 \gset
INSERT INTO toygun.breaker (resource_type, task) VALUES ('rn_box', 'deploy');
SELECT toygun.raise_alarm(:'d1', 'custom', 'look at it') AS alarm \gset
SELECT toygun.send(:'d1', '{"hello": 1}') IS NOT NULL;
INSERT INTO toygun.failure (object_id, failure_no, resource_type, attempt, at, error)
    VALUES (:'d1', 1, 'rn_box', 1, now(), 'boom');
SELECT toygun.define_channel('rn_hook', 'webhook', '{"url": "https://hooks.example.com/rn"}');
SELECT toygun.define_route('type:rn_box', 'rn_hook');
CREATE TEMP TABLE rn_ids AS SELECT :'r1'::uuid AS r1, :'d1'::uuid AS d1, :'alarm'::uuid AS alarm;

-- ---------------------------------------------------------------------------
-- who may, what is refused
SELECT is(pg_temp.as_role('rn_member', $$SELECT toygun.rename_state('rn_box', 'watch', 'look', 'peek')$$),
          'ok', 'a member of the owner renames a state');
SELECT alike(pg_temp.as_role('rn_other', $$SELECT toygun.rename_state('rn_box', 'watch', 'peek', 'look')$$),
             '42501 permission denied for resource type "rn_box"%', 'another role may not');
SELECT alike(pg_temp.as_role('rn_reader', $$SELECT toygun.rename_task('rn_box', 'watch', 'glance')$$),
             '42501 permission denied for resource type "rn_box"%', 'nor a role with a right on the type');
SELECT alike(pg_temp.as_role('rn_other', $$SELECT toygun.rename_resource_type('rn_box', 'mine')$$),
             '42501 permission denied for resource type "rn_box"%', 'nor rename the type');
SELECT is_empty($$SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'build', 'ship')$q$, '42710'],
    [$q$SELECT toygun.rename_state('rn_box', NULL, 'running', 'running')$q$, '42710'],
    [$q$SELECT toygun.rename_task('rn_box', 'deploy', 'watch')$q$, '42710'],
    [$q$SELECT toygun.rename_resource_type('rn_box', 'rn_part')$q$, '42710'],
    [$q$SELECT toygun.rename_resource_type('rn_box', 'rn_box')$q$, '42710'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'nowhere', 'x')$q$, '42704'],
    [$q$SELECT toygun.rename_state('rn_box', 'nothing', 'build', 'x')$q$, '42704'],
    [$q$SELECT toygun.rename_state('rn_nothing', NULL, 'build', 'x')$q$, '42704'],
    [$q$SELECT toygun.rename_task('rn_box', 'nothing', 'x')$q$, '42704'],
    [$q$SELECT toygun.rename_resource_type('rn_nothing', 'x')$q$, '42704'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', '__new__', 'x')$q$, '42939'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', '__stop__', 'x')$q$, '42939'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'build', '__panic__')$q$, '42939'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'build', '__mine')$q$, '42939'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'build', '')$q$, '22023'],
    [$q$SELECT toygun.rename_task('rn_box', 'deploy', E'a\tb')$q$, '22023'],
    [$q$SELECT toygun.rename_resource_type('rn_box', repeat('x', 64))$q$, '42622'],
    [$q$SELECT toygun.rename_state('rn_box', 'deploy', 'build', NULL)$q$, '22004'],
    [$q$SELECT toygun.rename_task(NULL, 'deploy', 'x')$q$, '22004'],
    [$q$SELECT toygun.rename_resource_type('rn_box', NULL)$q$, '22004']
]::text[])$$, 'taken names are 42710, missing ones 42704, reserved 42939, invalid 22023/42622, NULL 22004');
SELECT throws_ok($$SELECT toygun.rename_state('rn_box', 'deploy', 'build', 'ship')$$, '42710',
                 'task type "rn_box.deploy" already declares state "ship"', 'the message names the type and the state');

-- ---------------------------------------------------------------------------
-- rename_state of a task type
SELECT toygun.rename_state('rn_box', 'deploy', 'ship', 'shipping');
SELECT is((SELECT states FROM toygun.task_type WHERE resource_type = 'rn_box' AND name = 'deploy'),
          '{build,shipping,drain}', 'the task type declares the new name in the old one''s place');
SELECT is((SELECT state FROM toygun.task WHERE id = :'d1'), 'shipping', 'the live run in it follows');
SELECT is((SELECT step FROM toygun.task WHERE id = :'d1'), 1::bigint, 'without a step of its history');
SELECT results_eq($$SELECT from_state, to_state FROM toygun.history((SELECT d1 FROM rn_ids)) ORDER BY step$$,
                  $$VALUES ('__new__', 'ship')$$, 'its history keeps the old name');
SELECT is((SELECT state FROM toygun.task WHERE id = :'d0'), '__stop__', 'a stopped run is left stopped');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.transition_task('$$ || :'d1' || $$', 'ship')$$), '22023',
          'the old name is no state of the type any more (the definition cache follows)');
SELECT is((SELECT state FROM toygun.transition_task(:'d1', 'shipping')), 'shipping',
          'and the new one is, in the same session');
SELECT toygun.rename_state('rn_box', 'deploy', 'drain', 'draining');
SELECT is((SELECT stop_state FROM toygun.task_type WHERE resource_type = 'rn_box' AND name = 'deploy'),
          'draining', 'a renamed stop_state follows');
SELECT is((SELECT concat_ws(' ', kind, resource_type, task, old_name, new_name, renamed_by = current_user::regrole,
                           live_objects, renamed_at IS NOT NULL) FROM toygun.rename WHERE old_name = 'ship'),
          'state rn_box deploy ship shipping t 1 t',
          'the rename is recorded: what, who, how many live objects moved');

-- ---------------------------------------------------------------------------
-- rename_state of a resource type
SELECT toygun.rename_state('rn_box', NULL, 'running', 'up');
SELECT is((SELECT states FROM toygun.resource_type WHERE name = 'rn_box'), '{starting,up,stopping}',
          'the resource type declares the new name');
SELECT is((SELECT state FROM toygun.resource WHERE id = :'r1'), 'up', 'its live resource in it follows');
SELECT is((SELECT on_state FROM toygun.trigger WHERE resource_type = 'rn_box'), 'up', 'its trigger''s on_state follows');
SELECT is((SELECT states FROM toygun.schedule WHERE resource_type = 'rn_box'), '{up}',
          'its periodic start''s states follow');
SELECT results_eq($$SELECT to_state FROM toygun.history((SELECT r1 FROM rn_ids)) ORDER BY step$$,
                  $$VALUES ('running')$$, 'the resource''s history keeps the old name');
SELECT toygun.rename_state('rn_box', NULL, 'stopping', 'halting');
SELECT is((SELECT stop_state FROM toygun.resource_type WHERE name = 'rn_box'), 'halting',
          'a resource type''s renamed stop_state follows');
SELECT is((SELECT count(*) FROM toygun.rename WHERE kind = 'state' AND task IS NULL), 2::bigint,
          'each rename of a resource type''s state is recorded');

-- ---------------------------------------------------------------------------
-- rename_task
SELECT toygun.rename_task('rn_box', 'deploy', 'release');
SELECT is((SELECT count(*) FROM toygun.task_type WHERE resource_type = 'rn_box' AND name = 'deploy'), 0::bigint,
          'the old task type is gone');
SELECT is((SELECT states FROM toygun.task_type WHERE resource_type = 'rn_box' AND name = 'release'),
          '{build,shipping,draining}', 'the new one is it');
SELECT is((SELECT name FROM toygun.task WHERE id = :'d1'), 'release', 'its live run follows');
SELECT is((SELECT name FROM toygun.task WHERE id = :'d0'), 'release', 'and its stopped run');
SELECT is((toygun.task_for(:'r1', 'release')).id, :'d1'::uuid, 'task_for finds the run by the new name');
SELECT is(toygun.is_running(:'r1', 'deploy'), false, 'and nothing by the old one');
SELECT is((SELECT task FROM toygun.trigger WHERE resource_type = 'rn_box'), 'release', 'its trigger follows');
SELECT is((SELECT task FROM toygun.breaker WHERE resource_type = 'rn_box'), 'release', 'its breaker follows');
SELECT is((SELECT task FROM toygun.alarm WHERE id = :'alarm'), 'release', 'its run''s alarm follows');
SELECT is((SELECT task FROM toygun.rename WHERE old_name = 'ship'), 'release',
          'and the record of its state''s rename');
SELECT results_eq($$SELECT task, job_name FROM toygun.schedule WHERE resource_type = 'rn_box'$$,
                  $$VALUES ('release', 'toygun:rn_box.release')$$, 'its periodic start follows, with its job''s name');
SELECT is((SELECT concat_ws(' | ', j.jobname, j.command, j.schedule) FROM cron.job j
              JOIN toygun.schedule s ON s.job_id = j.jobid WHERE s.resource_type = 'rn_box'),
          'toygun:rn_box.release | SELECT toygun.run_schedule(''rn_box'', ''release'') | 0 3 * * *',
                  'its pg_cron job is named and fires by the new name');
SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'toygun:rn_box.deploy'), 0::bigint,
          'the old job is gone');
SELECT is(toygun.stop_every('rn_box', 'release'), true, 'stop_every finds it by the new name');
SELECT toygun.start_every('rn_box', 'release', '0 3 * * *', states => '{up}') IS NOT NULL;
SELECT is((SELECT state FROM toygun.transition_task(:'d1', 'build')), 'build',
          'the run moves by its renamed type in the same session');
SELECT is((SELECT count(*) FROM toygun.rename WHERE kind = 'task' AND old_name = 'deploy' AND new_name = 'release'
                                                  AND live_objects = 1), 1::bigint, 'the task''s rename is recorded');

-- ---------------------------------------------------------------------------
-- rename_resource_type
SELECT toygun.rename_resource_type('rn_box', 'rn_crate');
SELECT is((SELECT count(*) FROM toygun.resource_type WHERE name = 'rn_box'), 0::bigint, 'the old type is gone');
SELECT is((SELECT parent_type FROM toygun.resource_type WHERE name = 'rn_part'), 'rn_crate',
          'another type''s parent_type follows');
SELECT is((SELECT array_agg(name ORDER BY name) FROM toygun.task_type WHERE resource_type = 'rn_crate'),
          '{release,watch}', 'its task types follow');
SELECT is((SELECT type FROM toygun.resource WHERE id = :'r1'), 'rn_crate', 'its resource follows');
SELECT is((SELECT array_agg(resource_type) FROM toygun.task WHERE resource_id = :'r1'),
          '{rn_crate,rn_crate}', 'its runs follow, the stopped one too');
SELECT is((SELECT count(*) FROM toygun.transition WHERE resource_type = 'rn_box'), 0::bigint,
          'the history''s resource_type follows (what row-level security reads)');
SELECT results_eq($$SELECT step, from_state, to_state FROM toygun.history((SELECT d1 FROM rn_ids)) ORDER BY step$$,
                  $$VALUES (0::bigint, '__new__', 'ship'), (1, 'shipping', 'shipping'), (2, 'shipping', 'build')$$,
                  'and keeps the states of its time');
SELECT results_eq($$SELECT (SELECT resource_type FROM toygun.failure WHERE object_id = (SELECT d1 FROM rn_ids)),
                           (SELECT resource_type FROM toygun.message WHERE run_id = (SELECT d1 FROM rn_ids)),
                           (SELECT resource_type FROM toygun.alarm WHERE id = (SELECT alarm FROM rn_ids)),
                           (SELECT resource_type FROM toygun.trigger WHERE task = 'release'),
                           (SELECT resource_type FROM toygun.breaker WHERE task = 'release')$$,
                  $$VALUES ('rn_crate', 'rn_crate', 'rn_crate', 'rn_crate', 'rn_crate')$$,
                  'its failures, messages, alarms, triggers and breakers follow');
SELECT results_eq($$SELECT resource_type, grantee, right_name FROM toygun.type_grants WHERE grantee = 'rn_reader'$$,
                  $$VALUES ('rn_crate', 'rn_reader', 'read')$$, 'its grants follow');
SELECT results_eq($$SELECT pattern FROM toygun.route WHERE channel = 'rn_hook'$$,
                  $$VALUES ('type:rn_crate')$$, 'its route follows');
SELECT is((SELECT concat_ws(' | ', s.job_name, j.jobname, j.command) FROM toygun.schedule s
              JOIN cron.job j ON j.jobid = s.job_id WHERE s.resource_type = 'rn_crate'),
          'toygun:rn_crate.release | toygun:rn_crate.release | SELECT toygun.run_schedule(''rn_crate'', ''release'')',
                  'its periodic starts and their pg_cron jobs follow');
SELECT is((SELECT count(*) FROM toygun.rename WHERE resource_type = 'rn_crate'), 7::bigint,
          'its renames'' records follow, this one with them');
SET ROLE rn_reader;
SELECT is(concat_ws(' ', (SELECT count(*) FROM toygun.resource), (SELECT count(*) FROM toygun.task),
                    (SELECT count(*) FROM toygun.transition), (SELECT count(*) FROM toygun.rename)),
          '1 2 5 7', 'a role with read on the type reads its resource, runs, history and renames by the new name');
RESET ROLE;
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.create_resource('rn_box')$$), '42704',
          'nothing is created with the old name');
SELECT isnt(toygun.create_resource('rn_part', parent => :'r1'), NULL, 'a child of the renamed parent type is created');
SELECT is((SELECT state FROM toygun.tick_task(:'d1')), 'build', 'the run ticks under its renamed type');

SELECT * FROM finish();
ROLLBACK;
