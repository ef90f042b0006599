-- Privileges: handlers run as the role that defined the type; other roles
-- cannot act for it, nor write toygun's tables behind the API.
BEGIN;
\ir ../fixtures.sql
SELECT plan(21);

CREATE ROLE tg_alice;
CREATE ROLE tg_bob;
CREATE ROLE tg_carol IN ROLE tg_alice;
CREATE SCHEMA alice AUTHORIZATION tg_alice;
CREATE TABLE public.secret_stuff (x int);
CREATE TABLE public.alice_log (usr text);
GRANT INSERT ON public.alice_log TO tg_alice;

SET ROLE tg_alice;
CREATE FUNCTION alice.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.alice_log VALUES (current_user);
    IF t.attrs->>'do' = 'peek' THEN PERFORM count(*) FROM public.secret_stuff; END IF;
    IF t.attrs->>'do' = 'escalate' THEN SET ROLE postgres; END IF;
    RETURN toygun.stop();
END $$;
SELECT lives_ok($$SELECT toygun.define_resource('alices')$$, 'an ordinary role can define a resource type');
SELECT lives_ok($$SELECT toygun.define_task('alices', 'job', '{one}', 'alice.h(toygun.task)')$$,
                'an ordinary role can define a task type');
SELECT toygun.create_resource('alices') AS r \gset
SELECT toygun.start_task(:'r', 'job') AS t \gset
RESET ROLE;

SELECT is((SELECT owner::text FROM toygun.task_type WHERE name = 'job'), 'tg_alice', 'the definer owns the task type');
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'a superuser can tick it');
SELECT is((SELECT usr FROM public.alice_log), 'tg_alice', 'the handler runs as the role that defined the task type');
SELECT is(current_user::text, 'postgres', 'the caller''s identity is restored after the tick');

SELECT toygun.start_task(:'r', 'job', '{"do": "peek"}') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '42501', NULL,
                 'the handler has only its definer''s privileges');
SELECT toygun.stop_task(:'t');
SELECT toygun.start_task(:'r', 'job', '{"do": "escalate"}') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '42501', NULL, 'a handler cannot change role');
SELECT toygun.stop_task(:'t');

-- another role cannot act for alice
SET ROLE tg_bob;
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'job')$$, :'r'), '42501',
                 'permission denied for task type "alices.job": it needs right "start" on resource type "alices"', 'another role cannot start alice''s task');
SELECT throws_ok($$SELECT toygun.create_resource('alices')$$, '42501',
                 'permission denied for resource type "alices": it needs right "start"', 'another role cannot create alice''s resources');
SELECT throws_ok($$SELECT toygun.define_resource('alices')$$, '42501',
                 'permission denied for resource type "alices"', 'another role cannot redefine alice''s type');
SELECT throws_ok($$SELECT toygun.define_task('alices', 'bobs', '{one}', 'alice.h(toygun.task)')$$, '42501', NULL,
                 'another role cannot add tasks to alice''s resource type');
SELECT throws_ok(format($$SELECT toygun.stop_task(%L)$$, :'t'), '42501',
                 'permission denied for task type "alices.job": it needs right "operate" on resource type "alices"', 'another role cannot stop alice''s runs');
SELECT throws_ok(format($$SELECT toygun.tick_resource(%L)$$, :'r'), '42501',
                 'permission denied for resource type "alices": it needs right "operate"', 'another role cannot tick alice''s resources');
SELECT throws_ok(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r'), '42501',
                 'permission denied for resource type "alices": it needs right "operate"', 'another role cannot move alice''s resources');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r'), 0::bigint,
          'another role does not see alice''s runs');
SELECT throws_ok(format($$UPDATE toygun.task SET state = 'one' WHERE id = %L$$, :'t'), '42501', NULL,
                 'no role can update toygun.task behind the API');
SELECT throws_ok($$INSERT INTO toygun.task_type SELECT * FROM toygun.task_type$$, '42501', NULL,
                 'no role can write definitions behind the API');
SELECT throws_ok($$DELETE FROM toygun.transition$$, '42501', NULL, 'no role can rewrite history');
RESET ROLE;

-- a member of alice can act for her
SET ROLE tg_carol;
SELECT lives_ok(format($$SELECT toygun.start_task(%L, 'job')$$, :'r'), 'a member of the owning role can start tasks');
RESET ROLE;

-- a handler must be executable by its definer
REVOKE EXECUTE ON FUNCTION alice.h(toygun.task) FROM PUBLIC;
CREATE ROLE tg_dave;
GRANT USAGE ON SCHEMA alice TO tg_dave;
SET ROLE tg_dave;
SELECT toygun.define_resource('daves');
SELECT throws_ok($$SELECT toygun.define_task('daves', 'x', '{one}', 'alice.h(toygun.task)')$$, '42501',
                 'permission denied for handler alice.h(toygun.task)',
                 'a role cannot define a handler it may not execute');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
