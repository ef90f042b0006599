-- Handlers: what they receive, what their outcomes do, what happens when they
-- fail, and how they are kept from affecting each other.
BEGIN;
\ir ../fixtures.sql
SELECT plan(32);

-- a task whose handler does whatever its args say, and records what it saw
CREATE TABLE public.seen (state text, step bigint, usr text, path text, work_mem text);
CREATE FUNCTION public.probe(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen VALUES (t.state, t.step, current_user, current_setting('search_path'),
                                    current_setting('work_mem'));
    CASE t.attrs->>'do'
    WHEN 'null' THEN RETURN NULL;
    WHEN 'stay' THEN RETURN toygun.stay('{"polled": true}');
    WHEN 'wait' THEN RETURN toygun.stay(wait => '2 seconds');
    WHEN 'go' THEN RETURN toygun.go('two', '{"went": 1}');
    WHEN 'stop' THEN RETURN toygun.stop('{"done": true}');
    WHEN 'panic' THEN RETURN toygun.panic('cannot go on');
    WHEN 'raise' THEN UPDATE public.seen SET usr = 'written'; RAISE EXCEPTION 'handler failed';
    WHEN 'missing' THEN RETURN toygun.go('nowhere');
    WHEN 'bogus' THEN RETURN ROW('jump', NULL, NULL, NULL, NULL)::toygun.next;
    WHEN 'set' THEN PERFORM set_config('work_mem', '1234kB', false); RETURN NULL;
    WHEN 'temp' THEN CREATE TEMP TABLE sneaky (x int); RETURN NULL;
    WHEN 'self' THEN PERFORM toygun.tick_task(t.id); RETURN NULL;
    WHEN 'start' THEN RETURN toygun.go('two', jsonb_build_object('started', toygun.start_task(t.resource_id, 'test')));
    ELSE RETURN NULL;
    END CASE;
END $$;
SELECT toygun.define_task('dummy', 'probe', '{one,two}', 'probe(toygun.task)');
CREATE FUNCTION pg_temp.run(what text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE r uuid := toygun.create_resource('dummy');
BEGIN
    RETURN toygun.start_task(r, 'probe', jsonb_build_object('do', what));
END $$;

-- what a handler receives
SELECT pg_temp.run('null') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT results_eq('SELECT state, step FROM public.seen', $$ VALUES ('one', 1::bigint) $$,
                  'on the first tick the handler sees the first state, entered');

-- NULL means stay()
SELECT is((SELECT state || '/' || step FROM toygun.task WHERE id = :'t'), 'one/1', 'a NULL outcome stays in the state');
SELECT ok((SELECT run_at > clock_timestamp() + interval '5 seconds' FROM toygun.task WHERE id = :'t'),
          'a NULL outcome waits toygun.poll_interval');
SELECT is(pg_temp.steps(:'t'), 1::bigint, 'staying records no transition');

-- stay, with attrs and a wait
SELECT pg_temp.run('stay') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT is((SELECT attrs->>'polled' FROM toygun.task WHERE id = :'t'), 'true', 'stay() persists its attrs');
SELECT pg_temp.run('wait') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT ok((SELECT run_at BETWEEN clock_timestamp() + interval '1 second' AND clock_timestamp() + interval '3 seconds'
             FROM toygun.task WHERE id = :'t'), 'stay(wait => 2 seconds) is due in 2 seconds');

-- go and stop
SELECT pg_temp.run('go') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, 'two', 'go() moves to its state');
SELECT is((SELECT attrs->'went' FROM toygun.task WHERE id = :'t'), '1'::jsonb, 'go() merges its attrs');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t'), 'go() makes the run due at once');
SELECT pg_temp.run('stop') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'stop() stops');
SELECT is((SELECT attrs->'done' FROM toygun.task WHERE id = :'t'), 'true'::jsonb, 'stop() merges its attrs');
SELECT ok((SELECT run_at IS NULL FROM toygun.task WHERE id = :'t'), 'a stopped run is not due');

-- panic
SELECT pg_temp.run('panic') AS t \gset
SELECT is((toygun.tick_task(:'t')).state, '__panic__', 'panic() panics');
SELECT is((SELECT attrs->>'panic_message' FROM toygun.task WHERE id = :'t'), 'cannot go on',
          'panic() records panic_message');
SELECT is((SELECT note FROM toygun.history(:'t') WHERE to_state = '__panic__'), 'cannot go on',
          'the panic transition notes the message');

-- a handler that raises: nothing of the tick is written
SELECT pg_temp.run('raise') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), 'P0001', 'handler failed', 'a raising handler fails the tick');
SELECT is((SELECT state || '/' || step FROM toygun.task WHERE id = :'t'), '__new__/0',
          'a failed tick leaves the run as it was, not even in its first state');
SELECT is(pg_temp.steps(:'t'), 0::bigint, 'a failed tick writes no history');
SELECT is((SELECT count(*) FROM public.seen WHERE usr = 'written'), 0::bigint,
          'what the failing handler wrote is rolled back with it');

-- invalid outcomes
SELECT pg_temp.run('missing') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '22023',
                 'state "nowhere" is not declared by task type "dummy.probe"',
                 'a handler going to an undeclared state fails the tick');
SELECT is((SELECT state FROM toygun.task WHERE id = :'t'), '__new__', 'and nothing is written');
SELECT pg_temp.run('bogus') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '22023', 'handler returned an invalid outcome',
                 'a hand-made outcome of an unknown kind fails the tick');

-- handlers are kept apart
SELECT pg_temp.run('set') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT is((SELECT work_mem FROM public.seen ORDER BY ctid DESC LIMIT 1), '4MB', 'a handler starts with default settings');
SELECT is(current_setting('work_mem'), '4MB', 'settings a handler changes are reverted after its tick');
SELECT pg_temp.run('temp') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '42501', NULL,
                 'a handler cannot create temporary tables (security-restricted)');
SELECT pg_temp.run('self') AS t \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '55006',
                 format('task %s is already being ticked', :'t'), 'a handler cannot tick its own run');

-- handlers can start other tasks, in the same transaction
SELECT pg_temp.run('start') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT is((SELECT x.state FROM toygun.task x WHERE x.id = (SELECT (attrs->>'started')::uuid FROM toygun.task WHERE id = :'t')),
          '__new__', 'a handler can start another task');

-- a handler runs with its definer's search_path
CREATE SCHEMA helpers;
CREATE FUNCTION helpers.target() RETURNS text LANGUAGE sql AS $$ SELECT 'two' $$;
CREATE FUNCTION public.pathy(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN RETURN toygun.go(target()); END $$;
SET LOCAL search_path = helpers, public;
SELECT toygun.define_task('dummy', 'pathy', '{one,two}', 'pathy(toygun.task)');
RESET search_path;
SELECT toygun.start_task(toygun.create_resource('dummy'), 'pathy') AS p \gset
SELECT is((toygun.tick_task(:'p')).state, 'two', 'a handler runs with the search_path it was defined with');
SELECT is((SELECT search_path FROM toygun.task_type WHERE name = 'pathy'), 'helpers, public',
          'the definer''s search_path is recorded');

-- a run whose state is no longer declared (as a redefinition before 0.4 could
-- leave it: define_task now refuses that without move_states) fails its tick clearly
SELECT toygun.start_task(toygun.create_resource('dummy'), 'test') AS old \gset
SELECT toygun.define_task('dummy', 'test', '{beginning,end}', 'dummy_test(toygun.task)');
UPDATE toygun.task SET state = 'middle' WHERE id = :'old';
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'old'), '55000',
                 format('task %s is in state "middle", which task type "dummy.test" does not declare', :'old'),
                 'a run in a state no longer declared is not silently skipped');
SELECT is((SELECT state FROM toygun.task WHERE id = :'old'), 'middle', 'and it stays visible in that state');

-- a dropped handler is a clear error
SELECT toygun.start_task(toygun.create_resource('dummy'), 'another') AS gone \gset
-- (toygun_guard_drop refuses the drop; a superuser's replica session skips it)
SET LOCAL session_replication_role = replica;
DROP FUNCTION public.dummy_another(toygun.task);
SET LOCAL session_replication_role = origin;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'gone'), '42883',
                 'handler public.dummy_another(toygun.task) of task type "dummy.another" does not exist',
                 'a missing handler is a clear error');

SELECT * FROM finish();
ROLLBACK;
