-- Hostile review of issue 15 (hooks, triggers, alarms): what a tenant's hook,
-- trigger or alarm handler, or an unlucky DBA, can do. The worker's side is
-- test/scenario/framework_attack.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(9);

CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
CREATE FUNCTION pg_temp.context_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE c text;
BEGIN EXECUTE q; RETURN NULL;
EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT; RETURN c; END $$;

CREATE FUNCTION public.atk_r(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
CREATE FUNCTION public.atk_t(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('atk', '{starting,running,hot}', 'atk_r(toygun.resource)');
SELECT toygun.create_resource('atk') AS r \gset

-- should_start that starts its own task on the same resource: an error, not a crash
CREATE FUNCTION public.atk_rec(r toygun.resource, a jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM toygun.start_task(r.id, 'rec'); RETURN true; END $$;
SELECT toygun.define_task('atk', 'rec', '{a}', 'atk_t(toygun.task)', should_start => 'atk_rec(toygun.resource,jsonb)');
SELECT is(pg_temp.err(format('SELECT toygun.start_task(%L, ''rec'')', :'r')),
          '54001: stack depth limit exceeded', 'a should_start starting its own task recurses into an error');

-- triggers whose should_start moves the resource between their states
CREATE FUNCTION public.atk_move(r toygun.resource, a jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM toygun.transition_resource(r.id, CASE r.state WHEN 'hot' THEN 'running' ELSE 'hot' END);
    RETURN false;
END $$;
SELECT toygun.define_task('atk', 'mover', '{a}', 'atk_t(toygun.task)', should_start => 'atk_move(toygun.resource,jsonb)');
SELECT toygun.define_trigger('atk', 'hot', 'mover', '{}');
SELECT toygun.define_trigger('atk', 'running', 'mover', '{}');
SELECT is(pg_temp.err(format('SELECT toygun.transition_resource(%L, ''hot'')', :'r')),
          '54001: stack depth limit exceeded', 'triggers moving their resource back and forth recurse into an error');
SELECT is(state, '__new__', 'and the resource did not move') FROM toygun.resource WHERE id = :'r';
SELECT toygun.drop_trigger('atk', 'hot', 'mover'), toygun.drop_trigger('atk', 'running', 'mover');

-- should_stop that stops its own run: the tick fails, nothing is half-saved
CREATE FUNCTION public.atk_selfstop(t toygun.task) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM toygun.stop_task(t.id); RETURN false; END $$;
SELECT toygun.define_task('atk', 'selfstop', '{a}', 'atk_t(toygun.task)', should_stop => 'atk_selfstop(toygun.task)');
SELECT toygun.start_task(:'r', 'selfstop') AS t \gset
SELECT matches(pg_temp.err(format('SELECT toygun.tick_task(%L)', :'t')), '^40001: .* is desynchronized$',
               'a should_stop that stops its own run fails the tick as desynchronized');
SELECT is(state || ' ' || step, '__new__ 0', 'and the run is as it was') FROM toygun.task WHERE id = :'t';

-- an alarm raised 2^31 - 1 times still counts, and a panic on it still saves
SELECT toygun.raise_alarm(:'r', 'noisy', 'm') AS a \gset
UPDATE toygun.alarm SET count = 2147483647 WHERE id = :'a';
SELECT is(pg_temp.err(format('SELECT toygun.raise_alarm(%L, ''noisy'', ''again'')', :'r')), 'ok',
          'raising an alarm counted 2^31 - 1 times is not an integer overflow');
SELECT is(count || ' ' || message, '2147483647 again', 'its count stays at the top') FROM toygun.alarm WHERE id = :'a';

-- a dropped trigger owner: the move fails, naming the trigger and the dropped role
CREATE ROLE tg_atk_owner;
CREATE ROLE tg_atk_trig;
GRANT tg_atk_owner TO tg_atk_trig;
SELECT toygun.define_resource('atk2', '{starting,running,hot}', 'atk_r(toygun.resource)', owner => 'tg_atk_owner');
SELECT toygun.define_task('atk2', 'x', '{a}', 'atk_t(toygun.task)', owner => 'tg_atk_owner');
SET LOCAL ROLE tg_atk_trig;
SELECT toygun.define_trigger('atk2', 'hot', 'x', '{}');
RESET ROLE;
DROP ROLE tg_atk_trig;
SELECT toygun.create_resource('atk2') AS r2 \gset
SELECT matches(pg_temp.context_of(format('SELECT toygun.transition_resource(%L, ''hot'')', :'r2')),
               'trigger of resource type "atk2" on state "hot", starting task "x" on resource .* for role "\(dropped role \d+\)"',
               'a trigger whose owner was dropped fails the move, naming the trigger and the dropped role');

-- a trigger defined in a rolled-back subtransaction fires nothing after it
SELECT toygun.drop_trigger('atk2', 'hot', 'x');
SAVEPOINT s;
SELECT toygun.define_trigger('atk2', 'hot', 'x', '{}');
SELECT toygun.transition_resource(:'r2', 'running') IS NOT NULL;
ROLLBACK TO s;
SELECT toygun.transition_resource(:'r2', 'hot') IS NOT NULL;
SELECT is(count(*), 0::bigint, 'a rolled-back define_trigger fires nothing, even in the session that cached it')
  FROM toygun.task WHERE resource_id = :'r2';

SELECT * FROM finish();
ROLLBACK;
