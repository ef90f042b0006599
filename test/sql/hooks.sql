-- Start and stop hooks (issue 15): should_start and should_stop, checked
-- where defined and called as the type's owner; stop_state for task and
-- resource types (a first stop moves there, a second is the force);
-- __new__ declared as a first state; a periodic start asking should_start.
BEGIN;
\ir ../fixtures.sql
SELECT plan(63);

SET LOCAL timezone = 'UTC';
CREATE ROLE tg_hook_owner;
CREATE ROLE tg_hook_user;
CREATE TABLE public.hook_log (hook text, usr text, detail text);
GRANT INSERT ON public.hook_log TO PUBLIC;

-- the error context of a statement that fails, or NULL
CREATE FUNCTION pg_temp.context_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE c text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT;
    RETURN c;
END $$;

-- should_start: args->>'start' decides ('yes', 'no', 'null', 'boom', 'role');
-- it logs who ran it and what it saw
CREATE FUNCTION public.hook_start(r toygun.resource, args jsonb) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hook_log VALUES ('should_start', current_user, r.attrs->>'name');
    CASE args->>'start'
    WHEN 'no' THEN RETURN false;
    WHEN 'null' THEN RETURN NULL;
    WHEN 'boom' THEN RAISE EXCEPTION 'should_start blew up' USING ERRCODE = 'P0001';
    WHEN 'role' THEN SET ROLE postgres; RETURN true;
    WHEN 'skip' THEN RETURN r.attrs->>'skip' IS NULL;
    ELSE RETURN true;
    END CASE;
END $$;
-- should_stop: the run's attrs->>'stop' decides
CREATE FUNCTION public.hook_stop(t toygun.task) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hook_log VALUES ('should_stop', current_user, t.state);
    CASE t.attrs->>'stop'
    WHEN 'yes' THEN RETURN true;
    WHEN 'null' THEN RETURN NULL;
    WHEN 'boom' THEN RAISE EXCEPTION 'should_stop blew up' USING ERRCODE = 'P0002';
    ELSE RETURN false;
    END CASE;
END $$;
-- a task handler: work -> draining (stay, then stop), logging every call
CREATE FUNCTION public.hook_task(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hook_log VALUES ('handler', current_user, t.state);
    CASE t.state
    WHEN '__new__' THEN
        IF t.attrs->>'refuse' = 'yes' THEN RETURN toygun.stop(); END IF;
        IF t.attrs ? 'ready' THEN RETURN toygun.go('work'); END IF;
        RETURN toygun.stay();
    WHEN 'work' THEN RETURN toygun.stay();
    WHEN 'draining' THEN RETURN toygun.stop();
    END CASE;
END $$;
CREATE FUNCTION public.hook_resource(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE r.state
    WHEN 'closing' THEN RETURN toygun.stop();
    ELSE RETURN toygun.stay();
    END CASE;
END $$;
-- wrong shapes
CREATE FUNCTION public.start_one_arg(r toygun.resource) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION public.start_int(r toygun.resource, args jsonb) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.stop_on_resource(r toygun.resource) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION public.start_private(r toygun.resource, args jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT true';
REVOKE EXECUTE ON FUNCTION public.start_private(toygun.resource, jsonb) FROM PUBLIC;

-- 1. Definitions: shapes, EXECUTE, stop_state, __new__
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)',
                       should_start => 'start_one_arg(toygun.resource)')$$, '42P13',
                 'should_start hook public.start_one_arg(toygun.resource) must be a function taking toygun.resource and jsonb and returning boolean',
                 'should_start of the wrong arguments is refused');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)',
                       should_start => 'start_int(toygun.resource,jsonb)')$$, '42P13', NULL,
                 'should_start that does not return boolean is refused');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)',
                              should_start => 'start_int(toygun.resource,jsonb)')$$),
          'Declare it as CREATE FUNCTION f(r toygun.resource, args jsonb) RETURNS boolean.',
          'the hint shows the shape');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)',
                       should_stop => 'stop_on_resource(toygun.resource)')$$, '42P13',
                 'should_stop hook public.stop_on_resource(toygun.resource) must be a function taking toygun.task and returning boolean',
                 'should_stop of the wrong argument is refused');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)',
                       should_stop => 'hook_start(toygun.resource,jsonb)')$$, '42P13', NULL,
                 'should_start given as should_stop is refused');
SELECT toygun.define_resource('owned', owner => 'tg_hook_owner');
SELECT throws_ok($$SELECT toygun.define_task('owned', 'h', '{work}', 'hook_task(toygun.task)',
                       owner => 'tg_hook_owner', should_start => 'start_private(toygun.resource,jsonb)')$$, '42501',
                 'permission denied for should_start hook public.start_private(toygun.resource,jsonb)',
                 'the owner must be allowed to execute should_start');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work}', 'hook_task(toygun.task)', stop_state => 'gone')$$,
                 '22023', 'stop_state "gone" of task type "dummy.h" is not one of its states',
                 'a task type''s stop_state must be one of its states');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{__new__,work}', 'hook_task(toygun.task)',
                       stop_state => '__new__')$$, '22023', NULL, 'stop_state cannot be __new__');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{a}', stop_state => 'b')$$,
                 '22023', 'stop_state "b" of resource type "x" is not one of its states',
                 'a resource type''s stop_state must be one of its states');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'h', '{work,__new__}', 'hook_task(toygun.task)')$$,
                 '42939', 'state "__new__" may only be declared first, and before another state',
                 '__new__ is declared only first');

SELECT toygun.define_task('dummy', 'h', '{__new__,work,draining}', 'hook_task(toygun.task)',
                          should_start => 'hook_start(toygun.resource,jsonb)',
                          should_stop => 'hook_stop(toygun.task)', stop_state => 'draining');
SELECT is((SELECT (should_start, should_stop, stop_state)::text FROM toygun.task_type WHERE name = 'h'),
          '("public.hook_start(toygun.resource,pg_catalog.jsonb)","public.hook_stop(toygun.task)",draining)',
          'hooks are stored as qualified signatures, with the stop_state');
SELECT toygun.define_task('dummy', 'h2', '{work}', 'hook_task(toygun.task)');
SELECT is((SELECT (should_start, should_stop, stop_state)::text FROM toygun.task_type WHERE name = 'h2'),
          '(,,)', 'a task type without them has none');

-- 2. should_start
SELECT toygun.create_resource('dummy', '{"name": "r1"}') AS r \gset
SELECT isnt(toygun.start_task(:'r', 'h', '{"start": "yes"}'), NULL, 'should_start true: a run starts');
SELECT is((SELECT usr || ' saw ' || detail FROM public.hook_log WHERE hook = 'should_start'), 'postgres saw r1',
          'should_start sees the resource');
SELECT toygun.stop_task(toygun.start_task(:'r', 'h'));
SELECT toygun.stop_task((toygun.task_for(:'r', 'h')).id);
SELECT is(toygun.start_task(:'r', 'h', '{"start": "no"}'), NULL, 'should_start false: start_task returns NULL');
SELECT is(toygun.start_task(:'r', 'h', '{"start": "null"}'), NULL, 'should_start NULL: no run either');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r' AND name = 'h' AND state <> '__stop__'), 0::bigint,
          'a declined start makes no run');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'h', '{"start": "boom"}')$$, :'r'), 'P0001',
                 'should_start blew up', 'an error in should_start is start_task''s error');
SELECT matches(pg_temp.context_of(format($$SELECT toygun.start_task(%L, 'h', '{"start": "boom"}')$$, :'r')),
               'toygun should_start hook of task type "dummy.h" for resource ' || :'r',
               'its context names the hook, the type and the resource');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'h', '{"start": "role"}')$$, :'r'), '42501', NULL,
                 'should_start runs security-restricted: it cannot change role');
SELECT toygun.start_task(:'r', 'h', '{"start": "yes", "stop": "no", "ready": 1}') AS t \gset
DELETE FROM public.hook_log;
SELECT is(toygun.start_task(:'r', 'h', '{"start": "boom"}'), :'t'::uuid,
          'a start that finds a live run returns it without asking should_start');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'h', '{"start": "no"}', if_live => 'error')$$, :'r'), '23505', NULL,
                 'if_live => error refuses it without asking should_start either');
SELECT is((SELECT count(*) FROM public.hook_log WHERE hook = 'should_start'), 0::bigint, 'should_start was not called');

-- as the owner, for another role
SELECT toygun.define_task('owned', 'h', '{work,draining}', 'hook_task(toygun.task)', owner => 'tg_hook_owner',
                          should_start => 'hook_start(toygun.resource,jsonb)', should_stop => 'hook_stop(toygun.task)');
SELECT toygun.grant_type('owned', 'tg_hook_user', '{start,operate,read}');
SELECT toygun.create_resource('owned', '{"name": "o1"}') AS o \gset
SET ROLE tg_hook_user;
SELECT toygun.start_task(:'o', 'h', '{"start": "yes"}') AS ot \gset
SELECT is((toygun.tick_task(:'ot')).state, 'work', 'the other role ticks the run');
RESET ROLE;
SELECT is((SELECT string_agg(DISTINCT usr, ',') FROM public.hook_log WHERE hook IN ('should_start', 'should_stop')),
          'tg_hook_owner', 'hooks run as the type''s owner, not the caller');
REVOKE EXECUTE ON FUNCTION public.hook_stop(toygun.task) FROM PUBLIC;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'ot'), '42501',
                 'role "tg_hook_owner" may not execute should_stop hook public.hook_stop(toygun.task) of task type "owned.h"',
                 'EXECUTE revoked from the owner fails the tick');
GRANT EXECUTE ON FUNCTION public.hook_stop(toygun.task) TO PUBLIC;

-- 3. should_stop
DELETE FROM public.hook_log;
SELECT is((toygun.tick_task(:'t')).state, 'work', 'should_stop false: the first tick runs __new__ (declared) and goes on');
SELECT is((SELECT string_agg(hook || ':' || detail, ',' ORDER BY ctid) FROM public.hook_log),
          'should_stop:__new__,handler:__new__', 'should_stop is asked before the first tick too, then the handler');
SELECT toygun.update_task(:'t', '{"stop": "null"}');
SELECT is((toygun.tick_task(:'t')).state, 'work', 'should_stop NULL: the tick goes on');
SELECT toygun.update_task(:'t', '{"stop": "boom"}');
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), 'P0002', 'should_stop blew up',
                 'an error in should_stop fails the tick');
SELECT matches(pg_temp.context_of(format('SELECT toygun.tick_task(%L)', :'t')),
               'toygun should_stop hook of task type "dummy.h" for task ' || :'t',
               'its context names the hook, the type and the run');
SELECT toygun.update_task(:'t', '{"stop": "yes"}');
DELETE FROM public.hook_log;
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'should_stop true: the run stops');
SELECT is((SELECT count(*) FROM public.hook_log WHERE hook = 'handler'), 0::bigint, 'without a handler call');
SELECT is((SELECT from_state || '>' || to_state || ' ' || note FROM toygun.history(:'t') ORDER BY step DESC LIMIT 1),
          'work>__stop__ should_stop', 'its history says should_stop');
SELECT toygun.start_task(:'r', 'h', '{"stop": "yes"}') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'should_stop true before the first tick stops a new run');
SELECT is((SELECT count(*) FROM public.hook_log WHERE hook = 'handler'), 0::bigint, 'without running __new__');

-- 4. __new__ declared
SELECT toygun.start_task(:'r', 'h', '{}') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, '__new__', 'a handler in a declared __new__ can stay there');
SELECT toygun.update_task(:'t', '{"ready": 1}');
SELECT is((toygun.tick_task(:'t')).state, 'work', 'and go on when it is ready');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, '__new__')$$, :'t'), '42939', NULL,
                 'no transition enters __new__, declared or not');
SELECT toygun.stop_task(:'t', 'x');
SELECT toygun.stop_task(:'t', 'x');
SELECT toygun.start_task(:'r', 'h', '{"refuse": "yes"}') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'a handler in __new__ can refuse the run');

-- 5. stop_state of a task type
SELECT toygun.start_task(:'r', 'h', '{"ready": 1}') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT is((toygun.stop_task(:'t', 'maintenance')).state, 'draining', 'stop_task moves a run into its stop_state');
SELECT is((SELECT note || ' ' || reason FROM toygun.history(:'t') ORDER BY step DESC LIMIT 1),
          'stop_task maintenance', 'with note stop_task and the reason');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t'), 'due at once');
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'its handler stops it');
SELECT toygun.start_task(:'r', 'h', '{"ready": 1}') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT toygun.stop_task(:'t');
SELECT is((toygun.stop_task(:'t', 'now')).state, '__stop__', 'a second stop_task stops it on the spot (the force)');
SELECT toygun.start_task(:'r', 'h', '{"ready": 1}') AS t \gset
SELECT toygun.panic_task(:'t', 'stuck');
SELECT is((toygun.stop_task(:'t')).state, '__stop__', 'a panicked run is stopped on the spot');

-- 6. stop_resource with runs that have a stop_state, and runs that have none
SELECT toygun.start_task(:'r', 'h', '{"ready": 1}') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT toygun.start_task(:'r', 'h2') AS t2 \gset
SELECT is((toygun.stop_resource(:'r', 'retire')).state, '__stop__', 'the resource (no stop_state) stops');
SELECT is((SELECT state || ' ' || (run_at IS NOT NULL) FROM toygun.task WHERE id = :'t'), 'draining true',
          'its run with a stop_state is in it, and not parked');
SELECT is((SELECT note || ' ' || reason FROM toygun.history(:'t') ORDER BY step DESC LIMIT 1),
          'stop_resource retire', 'moved by stop_resource, with its reason');
SELECT is((SELECT (run_at IS NULL)::text FROM toygun.task WHERE id = :'t2'), 'true', 'a run without one is parked');
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'the stopping run ticks on after its resource stopped, until it stops');

-- 7. stop_state of a resource type
SELECT toygun.define_resource('closable', '{open,closing}', 'hook_resource(toygun.resource)', stop_state => 'closing');
SELECT is((SELECT stop_state FROM toygun.resource_type WHERE name = 'closable'), 'closing', 'a resource type keeps its stop_state');
SELECT toygun.create_resource('closable') AS c \gset
SELECT toygun.tick_resource(:'c');
SELECT is((toygun.stop_resource(:'c')).state, 'closing', 'stop_resource moves it into its stop_state');
SELECT is((toygun.tick_resource(:'c')).state, '__stop__', 'whose handler stops it');
SELECT toygun.create_resource('closable') AS c \gset
SELECT toygun.stop_resource(:'c');
SELECT is((toygun.stop_resource(:'c')).state, '__stop__', 'a second stop_resource stops it on the spot');

-- 8. a periodic start asks should_start of each resource
SELECT toygun.define_task('dummy', 'p', '{work}', 'hook_task(toygun.task)',
                          should_start => 'hook_start(toygun.resource,jsonb)');
SELECT toygun.create_resource('dummy', '{"name": "p1"}') AS p1 \gset
SELECT toygun.create_resource('dummy', '{"name": "p2", "skip": true}') AS p2 \gset
SELECT toygun.start_every('dummy', 'p', '0 3 * * *', '{"start": "skip"}');
SELECT is(toygun.run_schedule('dummy', 'p', '2024-05-01 03:00:30+00'), 1::bigint,
          'a firing starts only where should_start says yes');
SELECT is((SELECT last_declined FROM toygun.schedule WHERE task = 'p'), 1::bigint, 'and counts the declined');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'p' AND resource_id = :'p2'), 0::bigint,
          'the declined resource has no run');
SELECT is(toygun.run_schedule('dummy', 'p', '2024-05-01 03:00:40+00'), 0::bigint,
          'the same bucket asks no resource twice');
SELECT is((SELECT last_declined FROM toygun.schedule WHERE task = 'p'), 1::bigint, 'nor counts it twice');
UPDATE toygun.schedule SET args = '{"start": "boom"}' WHERE task = 'p';
SELECT throws_ok($$SELECT toygun.run_schedule('dummy', 'p', '2024-05-02 03:00:30+00')$$, 'P0001', 'should_start blew up',
                 'an error in should_start fails the firing');
UPDATE toygun.schedule SET args = '{"start": "no"}' WHERE task = 'p';
SELECT toygun.stop_task((toygun.task_for(:'p1', 'p')).id);
SELECT is(toygun.run_schedule('dummy', 'p', '2024-05-03 03:00:30+00'), 0::bigint, 'a firing where all decline starts none');
SELECT is((SELECT last_declined FROM toygun.schedule WHERE task = 'p'), 2::bigint,
          'and counts them for the new bucket');

SELECT * FROM finish();
ROLLBACK;
