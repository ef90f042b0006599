-- Triggers: define_trigger and drop_trigger (who may, what they check), and
-- the start of a task when a resource enters a state: by a move by hand and
-- by a tick by hand, not on a same-state move, one live run, the args, as
-- the trigger's owner, and a start that fails failing the move.
BEGIN;
\ir ../fixtures.sql
SELECT plan(41);

CREATE ROLE tg_t_owner;
CREATE ROLE tg_t_member IN ROLE tg_t_owner;
CREATE ROLE tg_t_ops;
CREATE ROLE tg_t_other;

CREATE FUNCTION public.tg_box_handler(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    IF r.state = 'starting' THEN RETURN toygun.go('running'); END IF;
    RETURN toygun.stay();
END $$;
CREATE FUNCTION public.tg_deploy(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('tg_box', '{starting,running,stopping}', 'tg_box_handler(toygun.resource)',
                              owner => 'tg_t_owner');
SELECT toygun.define_task('tg_box', 'deploy', '{work}', 'tg_deploy(toygun.task)',
                          fields => '{size,region}', encrypted_fields => '{token}', owner => 'tg_t_owner');
SELECT toygun.define_task('tg_box', 'watch', '{work}', 'tg_deploy(toygun.task)', owner => 'tg_t_owner');
SELECT toygun.grant_type('tg_box', 'tg_t_ops', '{read,operate}');

-- the runs of a task on a resource
CREATE FUNCTION pg_temp.runs(r uuid, n text) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM toygun.task WHERE resource_id = r AND name = n $$;

-- ---------------------------------------------------------------------------
-- define_trigger, drop_trigger
SET ROLE tg_t_owner;
SELECT lives_ok($$SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"size": 1}')$$,
                'the owner of the resource type defines a trigger');
RESET ROLE;
SELECT results_eq($$SELECT on_state, task, args, owner::text FROM toygun.trigger WHERE resource_type = 'tg_box'$$,
                  $$VALUES ('running', 'deploy', '{"size": 1}'::jsonb, 'tg_t_owner')$$,
                  'it is a row of toygun.trigger, owned by its definer');
SELECT is(pg_temp.as_role('tg_t_member', $$SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"size": 2}')$$),
          'ok', 'a member of the owner defines it again');
SELECT results_eq($$SELECT args, owner::text FROM toygun.trigger WHERE resource_type = 'tg_box'$$,
                  $$VALUES ('{"size": 2}'::jsonb, 'tg_t_member')$$,
                  'which replaces its args and makes the member its owner');
SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"size": 3}');   -- back to a superuser's
SELECT alike(pg_temp.as_role('tg_t_other', $$SELECT toygun.define_trigger('tg_box', 'running', 'watch')$$),
            '42501 permission denied for resource type "tg_box"%', 'another role may not define one');
SELECT alike(pg_temp.as_role('tg_t_ops', $$SELECT toygun.drop_trigger('tg_box', 'running', 'deploy')$$),
            '42501 permission denied for resource type "tg_box"%', 'nor drop one, even with right operate');
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    ['SELECT toygun.define_trigger(''nope'', ''running'', ''deploy'')', '42704'],
    ['SELECT toygun.define_trigger(''tg_box'', ''running'', ''nope'')', '42704'],
    ['SELECT toygun.define_trigger(''tg_box'', ''nowhere'', ''deploy'')', '22023'],
    ['SELECT toygun.define_trigger(''tg_box'', ''__stop__'', ''deploy'')', '22023'],
    ['SELECT toygun.define_trigger(''tg_box'', ''__new__'', ''deploy'')', '22023'],
    ['SELECT toygun.define_trigger(''tg_box'', ''running'', ''deploy'', ''[1]'')', '22023'],
    ['SELECT toygun.define_trigger(''tg_box'', ''running'', ''deploy'', ''{"colour": 1}'')', '42703'],
    ['SELECT toygun.define_trigger(''tg_box'', ''running'', ''deploy'', ''{"token": "s3cret"}'')', '0A000'],
    ['SELECT toygun.define_trigger(''tg_box'', ''running'', ''deploy'', NULL)', '22004'],
    ['SELECT toygun.define_trigger(''tg_box'', NULL, ''deploy'')', '22004'],
    ['SELECT toygun.define_trigger(NULL, ''running'', ''deploy'')', '22004'],
    ['SELECT toygun.define_trigger(''tg_box'', '''', ''deploy'')', '22023'],
    ['SELECT toygun.define_trigger(''tg_box'', repeat(''x'', 64), ''deploy'')', '42622'],
    ['SELECT toygun.drop_trigger(''nope'', ''running'', ''deploy'')', '42704'],
    ['SELECT toygun.drop_trigger(''tg_box'', NULL, ''deploy'')', '22004'],
    ['SELECT toygun.define_trigger(''tg_box'', ''__panic__'', ''watch'')', 'ok'],
    ['SELECT toygun.drop_trigger(''tg_box'', ''__panic__'', ''watch'')', 'ok']]::text[]) $q$,
    'define_trigger checks the type, the state, the task and the args as a start does');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_trigger('tg_box', 'nowhere', 'deploy')$$),
          'Fire on one of: starting, running, stopping, __panic__.', 'an undeclared state: the hint lists those it may fire on');
SELECT throws_ok($$SELECT toygun.define_trigger('tg_box', '__stop__', 'deploy')$$, '22023',
                 'a trigger cannot fire on state "__stop__" of resource type "tg_box"', '__stop__ is refused by name');
SELECT throws_ok($$SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"token": "s3cret"}')$$, '0A000',
                 'triggers cannot pass encrypted field "token"', 'an encrypted field in the args is refused by name');

-- ---------------------------------------------------------------------------
-- firing on a move by hand
SELECT toygun.create_resource('tg_box') AS r \gset
SELECT toygun.transition_resource(:'r', 'starting') IS NOT NULL AS moved \gset
SELECT is(pg_temp.runs(:'r', 'deploy'), 0::bigint, 'a move into a state without a trigger starts nothing');
SELECT toygun.transition_resource(:'r', 'running') IS NOT NULL AS moved \gset
SELECT is(pg_temp.runs(:'r', 'deploy'), 1::bigint, 'a move into the state starts the task');
SELECT results_eq(format($$SELECT state, attrs FROM toygun.task WHERE resource_id = %L AND name = 'deploy'$$, :'r'),
                  $$VALUES ('__new__', '{"size": 3}'::jsonb)$$, 'a new run, with the trigger''s args');
SELECT ok((SELECT run_at IS NOT NULL FROM toygun.task WHERE resource_id = :'r' AND name = 'deploy'),
          'due, for the workers');
SELECT toygun.stop_task((toygun.task_for(:'r', 'deploy')).id) IS NOT NULL AS stopped \gset
SELECT toygun.transition_resource(:'r', 'running') IS NOT NULL AS moved \gset
SELECT is(pg_temp.runs(:'r', 'deploy'), 1::bigint, 'a move from the state to itself does not fire');
SELECT toygun.update_resource(:'r', '{"x": 1}') IS NOT NULL AS updated \gset
SELECT is(pg_temp.runs(:'r', 'deploy'), 1::bigint, 'nor does an update of its attrs');
SELECT toygun.transition_resource(:'r', 'stopping') IS NOT NULL AS moved \gset
SELECT toygun.transition_resource(:'r', 'running') IS NOT NULL AS moved \gset
SELECT is(pg_temp.runs(:'r', 'deploy'), 2::bigint, 'entering it again starts a new run');
SELECT toygun.transition_resource(:'r', 'stopping') IS NOT NULL AS moved \gset
SELECT lives_ok(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r'),
                'entering it while the run is live is no error');
SELECT is(pg_temp.runs(:'r', 'deploy'), 2::bigint, 'and starts nothing: one live run');
SELECT is((SELECT attrs FROM toygun.task WHERE resource_id = :'r' AND name = 'deploy' AND state <> '__stop__'),
          '{"size": 3}'::jsonb, 'the live run is left as it was');

-- several triggers on a state; one defined after the type's last move (the cache)
SELECT toygun.define_trigger('tg_box', 'stopping', 'deploy', '{"region": "eu"}');
SELECT toygun.define_trigger('tg_box', 'stopping', 'watch');
SELECT toygun.create_resource('tg_box') AS r2 \gset
SELECT toygun.transition_resource(:'r2', 'stopping') IS NOT NULL AS moved \gset
SELECT results_eq(format($$SELECT name, attrs FROM toygun.task WHERE resource_id = %L ORDER BY name$$, :'r2'),
                  $$VALUES ('deploy', '{"region": "eu"}'::jsonb), ('watch', '{}'::jsonb)$$,
                  'each trigger of the state starts its task, with its own args, defined after the type''s last move');
SELECT toygun.define_trigger('tg_box', '__panic__', 'watch');
SELECT toygun.create_resource('tg_box') AS r3 \gset
SELECT toygun.transition_resource(:'r3', '__panic__') IS NOT NULL AS moved \gset
SELECT is(pg_temp.runs(:'r3', 'watch'), 1::bigint, 'a trigger on __panic__ fires when the resource panics');
SELECT toygun.stop_resource(:'r3') IS NOT NULL AS stopped \gset
SELECT is((SELECT state FROM toygun.task WHERE resource_id = :'r3'), '__new__', 'stopping it starts nothing');

-- ---------------------------------------------------------------------------
-- firing on a tick by hand: __new__ -> starting -> running in one tick
SELECT toygun.define_trigger('tg_box', 'starting', 'watch', '{"first": true}');
SELECT toygun.create_resource('tg_box') AS r4 \gset
SELECT toygun.tick_resource(:'r4') IS NOT NULL AS ticked \gset
SELECT is((SELECT state FROM toygun.resource WHERE id = :'r4'), 'running', 'the tick moved the resource through starting into running');
SELECT results_eq(format($$SELECT name, attrs FROM toygun.task WHERE resource_id = %L ORDER BY name$$, :'r4'),
                  $$VALUES ('deploy', '{"size": 3}'::jsonb), ('watch', '{"first": true}'::jsonb)$$,
                  'a tick fires the triggers of each state it entered');
SELECT toygun.tick_resource(:'r4') IS NOT NULL AS ticked \gset
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_id = :'r4'), 2::bigint, 'a tick that stays fires nothing');

-- ---------------------------------------------------------------------------
-- as the trigger's owner
SELECT toygun.create_resource('tg_box') AS r5 \gset
SELECT alike(pg_temp.as_role('tg_t_ops', format($$SELECT toygun.start_task(%L, 'deploy')$$, :'r5')),
            '42501 %right "start"%', 'a role with operate but not start may not start the task');
SELECT is(pg_temp.as_role('tg_t_ops', format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r5')),
          'ok', 'but its move into the state fires the trigger');
SELECT is(pg_temp.runs(:'r5', 'deploy'), 1::bigint, 'which starts the run, acting for the trigger''s owner');

-- a start that fails fails the move
SELECT is(pg_temp.as_role('tg_t_member', $$SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"size": 4}')$$),
          'ok', 'a member defines the trigger');
REVOKE tg_t_owner FROM tg_t_member;
SELECT toygun.create_resource('tg_box') AS r6 \gset
SELECT toygun.transition_resource(:'r6', 'starting') IS NOT NULL AS moved \gset
SELECT throws_like(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r6'),
                   '%right "start"%', 'once the member has lost its rights, the move fails with the start''s error');
SELECT is((SELECT state FROM toygun.resource WHERE id = :'r6'), 'starting', 'and the resource stays where it was');
CREATE FUNCTION pg_temp.context_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT;
    RETURN c;
END $$;
SELECT alike(pg_temp.context_of(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r6')),
            format('%%trigger of resource type "tg_box" on state "running", starting task "deploy" on resource %s for role "tg_t_member"%%', :'r6'),
            'its context names the trigger, the resource and the role');
SELECT toygun.define_trigger('tg_box', 'running', 'deploy', '{"size": 5}');   -- a superuser's again
SELECT toygun.define_task('tg_box', 'deploy', '{work}', 'tg_deploy(toygun.task)', fields => '{region}',
                          owner => 'tg_t_owner');
SELECT throws_ok(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r6'), '42703',
                 'field "size" is not declared by task type "tg_box.deploy"',
                 'args that no longer fit the task type fail the move too');

-- ---------------------------------------------------------------------------
-- private, and dropped
SELECT is(pg_temp.as_role('tg_t_other', $$SELECT toygun.drop_trigger('tg_box', 'running', 'deploy')$$),
          '42501 permission denied for resource type "tg_box"', 'drop_trigger needs the owner''s privileges');
SET ROLE tg_t_other;
SELECT is((SELECT count(*) FROM toygun.trigger), 0::bigint, 'a role without read sees no triggers');
SET ROLE tg_t_ops;
SELECT is((SELECT count(*) FROM toygun.trigger WHERE resource_type = 'tg_box'), 5::bigint, 'a role with read sees them');
RESET ROLE;
SELECT ok(toygun.drop_trigger('tg_box', 'running', 'deploy'), 'drop_trigger drops it');
SELECT ok(NOT toygun.drop_trigger('tg_box', 'running', 'deploy'), 'and says when there was none');
SELECT lives_ok(format($$SELECT toygun.transition_resource(%L, 'running')$$, :'r6'),
                'a move into the state of a dropped trigger');
SELECT is(pg_temp.runs(:'r6', 'deploy'), 0::bigint, 'starts nothing');

SELECT * FROM finish();
ROLLBACK;
