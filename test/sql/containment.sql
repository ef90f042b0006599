-- Containment (0.3): who owns a definition, what a revoked membership takes
-- away from a task type, and who may read a handler's errors.
BEGIN;
SELECT plan(36);

CREATE ROLE tg_c_owner;
CREATE ROLE tg_c_member IN ROLE tg_c_owner;
CREATE ROLE tg_c_other;
CREATE ROLE tg_c_tasker IN ROLE tg_c_owner;
CREATE FUNCTION public.tg_c_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
CREATE FUNCTION public.tg_c_private(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
REVOKE EXECUTE ON FUNCTION public.tg_c_private(toygun.task) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tg_c_private(toygun.task) TO tg_c_member;

-- a member redefining the owner's type keeps its owner and search_path
SET ROLE tg_c_owner;
SET search_path = tg_c_a, public;
SELECT toygun.define_resource('c_res');
SELECT toygun.define_task('c_res', 'job', '{one}', 'public.tg_c_h(toygun.task)');
SET ROLE tg_c_member;
SET search_path = tg_c_b, public;
SELECT lives_ok($$SELECT toygun.define_resource('c_res', '{up,down}')$$, 'a member may redefine the owner''s resource type');
SELECT lives_ok($$SELECT toygun.define_task('c_res', 'job', '{one,two}', 'public.tg_c_h(toygun.task)')$$,
                'and the owner''s task type');
RESET ROLE;
SELECT results_eq($$SELECT owner::text, search_path, states FROM toygun.resource_type WHERE name = 'c_res'$$,
                  $$VALUES ('tg_c_owner', 'tg_c_a, public', '{up,down}'::text[])$$,
                  'the resource type keeps its owner and search_path, and takes the new states');
SELECT results_eq($$SELECT owner::text, search_path, states FROM toygun.task_type WHERE resource_type = 'c_res'$$,
                  $$VALUES ('tg_c_owner', 'tg_c_a, public', '{one,two}'::text[])$$,
                  'so does the task type');
SET ROLE tg_c_owner;
SELECT toygun.define_resource('c_res', '{up,down}');
RESET ROLE;
SELECT is((SELECT search_path FROM toygun.resource_type WHERE name = 'c_res'), 'tg_c_b, public',
          'the owner redefining it sets its own search_path');

-- an explicit owner
SET ROLE tg_c_member;
SELECT lives_ok($$SELECT toygun.define_resource('c_given', owner => 'tg_c_owner')$$,
                'a member may define a type owned by its group');
SELECT throws_ok($$SELECT toygun.define_resource('c_given2', owner => 'tg_c_other')$$, '42501',
                 'permission denied to make role "tg_c_other" the owner of resource type "c_given2"',
                 'but not one owned by a role it may not act for');
SELECT throws_ok($$SELECT toygun.define_task('c_res', 'theirs', '{one}', 'public.tg_c_h(toygun.task)', owner => 'tg_c_other')$$,
                 '42501', NULL, 'nor a task type');
SELECT throws_ok($$SELECT toygun.define_resource('c_given3', owner => 0::regrole)$$, '42704', NULL,
                 'an owner that is no role is refused');
SELECT throws_ok($$SELECT toygun.define_task('c_res', 'private', '{one}', 'public.tg_c_private(toygun.task)', owner => 'tg_c_owner')$$,
                 '42501', 'permission denied for handler public.tg_c_private(toygun.task)',
                 'the handler is checked against the owner it will run as');
SELECT lives_ok($$SELECT toygun.define_task('c_res', 'private', '{one}', 'public.tg_c_private(toygun.task)')$$,
                'and a caller that owns it may use a handler only it may execute');
SELECT lives_ok($$SELECT toygun.define_resource('c_given', '{a}', owner => 'tg_c_member')$$,
                'a member of the owner may hand the type to itself');
RESET ROLE;
SELECT is((SELECT owner::text FROM toygun.resource_type WHERE name = 'c_given'), 'tg_c_member',
          'and then it owns it');
SELECT is((SELECT count(*) FROM toygun.resource_type WHERE name IN ('c_given2', 'c_given3')), 0::bigint,
          'refused definitions wrote nothing');
SET ROLE tg_c_other;
SELECT throws_ok($$SELECT toygun.define_resource('c_res')$$, '42501',
                 'permission denied for resource type "c_res"', 'another role still cannot redefine it');
RESET ROLE;
-- a superuser redefining a role's type leaves it with that role
SELECT toygun.define_resource('c_res', '{up,down}');
SELECT is((SELECT owner::text FROM toygun.resource_type WHERE name = 'c_res'), 'tg_c_owner',
          'a superuser''s redefinition keeps the owner');

-- a task type on another role's resource type, after the membership is revoked
SET ROLE tg_c_tasker;
SELECT toygun.define_task('c_res', 'borrowed', '{one}', 'public.tg_c_h(toygun.task)');
SELECT toygun.create_resource('c_res') AS cr \gset
SELECT lives_ok(format($$SELECT toygun.start_task(%L, 'borrowed')$$, :'cr'), 'a member''s task type starts');
SELECT toygun.stop_task((toygun.task_for(:'cr', 'borrowed')).id) IS NOT NULL AS stopped \gset
RESET ROLE;
SELECT toygun.start_every('c_res', 'borrowed', '@daily') IS NOT NULL AS scheduled \gset
REVOKE tg_c_owner FROM tg_c_tasker;
SET ROLE tg_c_tasker;
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'borrowed')$$, :'cr'), '42501',
                 'role "tg_c_tasker", owner of task type "c_res.borrowed", may not act for role "tg_c_owner", owner of resource type "c_res"',
                 'once the membership is revoked, it does not start');
RESET ROLE;
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'borrowed')$$, :'cr'), '42501', NULL,
                 'not even for a superuser');
SELECT toygun.run_schedule('c_res', 'borrowed') IS NULL AS fired_null \gset
SELECT is(:'fired_null' || ' ' || (SELECT last_error FROM toygun.schedule WHERE resource_type = 'c_res' AND task = 'borrowed'),
          't 42501: role "tg_c_tasker", owner of task type "c_res.borrowed", may not act for role "tg_c_owner", owner of resource type "c_res"',
          'nor by its periodic start, whose firing keeps the error in last_error and returns NULL');
SELECT throws_ok($$SELECT toygun.define_task('c_res', 'borrowed2', '{one}', 'public.tg_c_h(toygun.task)', owner => 'tg_c_tasker')$$,
                 '42501', NULL, 'and no task type can be defined for such an owner');
SELECT toygun.define_task('c_res', 'borrowed', '{one}', 'public.tg_c_h(toygun.task)', owner => 'tg_c_owner');
SELECT lives_ok(format($$SELECT toygun.start_task(%L, 'borrowed')$$, :'cr'),
                'redefined as the resource type''s owner, it starts again');
SELECT toygun.stop_every('c_res', 'borrowed');

-- last_error: only with the privileges of the type's owner
SELECT toygun.start_task(:'cr', 'job') AS ct \gset
UPDATE toygun.task SET attempts = 1, last_error = 'failed near secret-marker' WHERE id = :'ct';
UPDATE toygun.resource SET attempts = 1, last_error = 'resource failed' WHERE id = :'cr';
SET ROLE tg_c_other;
SELECT throws_ok($$SELECT last_error FROM toygun.task$$, '42501', NULL, 'last_error of runs is not readable by everybody');
SELECT throws_ok($$SELECT last_error FROM toygun.resource$$, '42501', NULL, 'nor of resources');
SELECT is((SELECT count(*) FROM toygun.task WHERE id = :'ct'), 0::bigint,
          'nor are its rows: a role without right read on the type sees none');
SELECT ok(NOT EXISTS (SELECT FROM toygun.stats WHERE resource_type = 'c_res'),
          'toygun.stats counts only the types a role may read');
SELECT throws_ok(format($$SELECT toygun.last_error(%L)$$, :'ct'), '42501',
                 'permission denied for task type "c_res.job": it needs right "read" on resource type "c_res"', 'last_error() refuses other roles');
SELECT ok((toygun.task_for(:'cr', 'job')).id IS NULL, 'task_for finds nothing for them');
RESET ROLE;
SELECT toygun.grant_type('c_res', 'tg_c_other', '{read}');
SET ROLE tg_c_other;
SELECT is((SELECT attempts FROM toygun.task WHERE id = :'ct'), 1, 'with read, the other columns are readable');
SELECT ok((SELECT count(*) > 0 FROM toygun.stats WHERE resource_type = 'c_res'), 'and toygun.stats counts them');
SELECT throws_ok($$SELECT last_error FROM toygun.task$$, '42501', NULL, 'but the last_error column still is not');
RESET ROLE;
SELECT toygun.revoke_type('c_res', 'tg_c_other');
SET ROLE tg_c_member;
SELECT is(toygun.last_error(:'ct'), 'failed near secret-marker', 'a member of the owner reads a run''s error');
SELECT is(toygun.last_error(:'cr'), 'resource failed', 'and a resource''s');
SELECT is((toygun.task_for(:'cr', 'job')).last_error, 'failed near secret-marker', 'task_for shows it to them');
RESET ROLE;
SELECT is(toygun.last_error(toygun.create_resource('c_res')), NULL, 'an object without an error has none');
SELECT throws_ok($$SELECT toygun.last_error('00000000-0000-0000-0000-000000000000')$$, 'P0002', NULL,
                 'an unknown id is an error');

SELECT * FROM finish();
ROLLBACK;
