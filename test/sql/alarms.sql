-- Alarms and escalation (issue 15): raise_alarm (idempotent while open),
-- snooze_alarm and re-activation, close_alarm, rights, the alarm a panic
-- raises and each repair closes, and escalation up the resource tree.
BEGIN;
\ir ../fixtures.sql
SELECT plan(61);

-- who was offered what, as whom (handlers write here as their type's owner)
CREATE TABLE public.tg_offers (type text, kind text, made_by text, n int GENERATED ALWAYS AS IDENTITY);
GRANT INSERT, SELECT ON public.tg_offers TO PUBLIC;
CREATE ROLE tg_al_boss;
CREATE FUNCTION public.tg_org_alarm(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tg_offers (type, kind, made_by) VALUES ('org', a.kind, current_user);
    RETURN 'handled';
END $$;
-- the account takes panics (the worked example), escalates the rest
CREATE FUNCTION public.tg_account_alarm(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tg_offers (type, kind, made_by) VALUES ('account', a.kind, current_user);
    RETURN CASE WHEN a.kind = 'panic' THEN 'handled' ELSE 'escalate' END;
END $$;
-- the database escalates everything, and fails on kind 'boom'
CREATE FUNCTION public.tg_database_alarm(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tg_offers (type, kind, made_by) VALUES ('database', a.kind, current_user);
    IF a.kind = 'boom' THEN
        RAISE EXCEPTION 'database alarm handler failed';
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION public.tg_lone_alarm(a toygun.alarm) RETURNS text LANGUAGE sql AS $$ SELECT 'not mine' $$;
CREATE FUNCTION public.tg_bad_alarm(a toygun.alarm) RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION public.tg_bad_alarm2(a text) RETURNS text LANGUAGE sql AS $$ SELECT a $$;
CREATE FUNCTION public.tg_private_alarm(a toygun.alarm) RETURNS text LANGUAGE sql AS $$ SELECT 'handled' $$;
REVOKE EXECUTE ON FUNCTION public.tg_private_alarm(toygun.alarm) FROM PUBLIC;
-- a task whose first state panics
CREATE FUNCTION public.tg_panicky(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN t.state = 'a' THEN toygun.panic('disk full') ELSE toygun.stop() END
$$;
CREATE FUNCTION public.tg_panicky_resource(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.panic('resource broke')
$$;

-- definitions
SELECT toygun.define_resource('tg_org', alarm_handler => 'tg_org_alarm(toygun.alarm)', owner => 'tg_al_boss');
SELECT toygun.define_resource('tg_account', parent_type => 'tg_org', alarm_handler => 'tg_account_alarm(toygun.alarm)');
SELECT toygun.define_resource('tg_database', parent_type => 'tg_account',
                              alarm_handler => 'tg_database_alarm(toygun.alarm)');
SELECT toygun.define_task('tg_database', 'backup', '{a,b}', 'tg_panicky(toygun.task)');
SELECT toygun.define_resource('tg_lone', alarm_handler => 'tg_lone_alarm(toygun.alarm)');
SELECT toygun.define_resource('tg_fragile', '{up}', handler => 'tg_panicky_resource(toygun.resource)');
SELECT is((SELECT alarm_handler FROM toygun.resource_type WHERE name = 'tg_account'),
          'public.tg_account_alarm(toygun.alarm)', 'define_resource stores alarm_handler, qualified');
SELECT is((SELECT alarm_handler FROM toygun.resource_type WHERE name = 'dummy'), NULL,
          'a type defined without one has none');
SELECT throws_ok($$SELECT toygun.define_resource('tg_x', alarm_handler => 'tg_bad_alarm(toygun.alarm)')$$, '42P13',
                 'alarm handler public.tg_bad_alarm(toygun.alarm) must be a function taking toygun.alarm and returning text',
                 'an alarm handler returning something else is refused');
SELECT throws_ok($$SELECT toygun.define_resource('tg_x', alarm_handler => 'tg_bad_alarm2(text)')$$, '42P13', NULL,
                 'an alarm handler taking something else is refused');
SELECT throws_ok($$SELECT toygun.define_resource('tg_x', alarm_handler => 'tg_nothing(toygun.alarm)')$$, '42883', NULL,
                 'an alarm handler that does not exist is refused');
CREATE ROLE tg_al_definer;
SELECT is(pg_temp.as_role('tg_al_definer', $$SELECT toygun.define_resource('tg_x', alarm_handler => 'tg_private_alarm(toygun.alarm)')$$),
          '42501 permission denied for alarm handler public.tg_private_alarm(toygun.alarm)',
          'the owner must be allowed to execute the alarm handler');
SELECT toygun.define_resource('tg_lone', alarm_handler => NULL);
SELECT is((SELECT alarm_handler FROM toygun.resource_type WHERE name = 'tg_lone'), NULL,
          'a redefinition without alarm_handler drops it');
SELECT toygun.define_resource('tg_lone', alarm_handler => 'tg_lone_alarm(toygun.alarm)');

-- a tree: org > account > database, a run on the database; a resource on its own
SELECT toygun.create_resource('tg_org') AS org \gset
SELECT toygun.create_resource('tg_account', '{}', :'org') AS acct \gset
SELECT toygun.create_resource('tg_database', '{}', :'acct') AS db \gset
SELECT toygun.create_resource('tg_lone') AS lone \gset
SELECT toygun.create_resource('dummy') AS plain \gset
SELECT toygun.start_task(:'plain', 'test') AS run \gset

-- raise: opens one, and counts it while open
SELECT toygun.raise_alarm(:'plain', 'disk', 'disk 80% full') AS a1 \gset
SELECT is((SELECT ROW(object_kind, resource_type, task, kind, state, message, count)::text FROM toygun.alarm WHERE id = :'a1'),
          '(resource,dummy,,disk,active,"disk 80% full",1)', 'raise_alarm opens an active alarm on a resource');
SELECT is(toygun.raise_alarm(:'plain', 'disk', 'disk 90% full'), :'a1'::uuid, 'raising it again returns the same alarm');
SELECT is((SELECT ROW(count, message, last_raised_at > first_raised_at)::text FROM toygun.alarm WHERE id = :'a1'),
          '(2,"disk 90% full",t)', 'and counts it, with the last message');
SELECT isnt(toygun.raise_alarm(:'plain', 'cpu', 'hot'), :'a1'::uuid, 'another kind is another alarm');
SELECT toygun.raise_alarm(:'run', 'slow', 'it is slow') AS a2 \gset
SELECT is((SELECT ROW(object_kind, resource_type, task)::text FROM toygun.alarm WHERE id = :'a2'),
          '(task,dummy,test)', 'an alarm on a run names its resource type and task');
SELECT is((SELECT escalation FROM toygun.alarm WHERE id = :'a1'), '[]'::jsonb,
          'a type without alarm handler: nothing offered');
SELECT is(count(*), 0::bigint, 'no resource, no alarm') FROM toygun.alarm WHERE object_id = :'lone';
SELECT is_empty(format($$SELECT * FROM pg_temp.mismatches(ARRAY[
    ['SELECT toygun.raise_alarm(NULL, ''k'', ''m'')', '22004'],
    ['SELECT toygun.raise_alarm(''%1$s'', NULL, ''m'')', '22004'],
    ['SELECT toygun.raise_alarm(''%1$s'', ''k'', NULL)', '22004'],
    ['SELECT toygun.raise_alarm(''%1$s'', '''', ''m'')', '22023'],
    ['SELECT toygun.raise_alarm(''%1$s'', repeat(''k'', 64), ''m'')', '42622'],
    ['SELECT toygun.raise_alarm(''%1$s'', ''panic'', ''m'')', '42939'],
    ['SELECT toygun.raise_alarm(''%1$s'', ''breaker'', ''m'')', '42939'],
    ['SELECT toygun.raise_alarm(gen_random_uuid(), ''k'', ''m'')', 'P0002'],
    ['SELECT toygun.snooze_alarm(NULL, now() + ''1 h'')', '22004'],
    ['SELECT toygun.snooze_alarm(''%2$s'', NULL)', '22004'],
    ['SELECT toygun.snooze_alarm(''%2$s'', now() - interval ''1 s'')', '22023'],
    ['SELECT toygun.snooze_alarm(gen_random_uuid(), now() + ''1 h'')', 'P0002'],
    ['SELECT toygun.close_alarm(NULL)', '22004'],
    ['SELECT toygun.close_alarm(gen_random_uuid())', 'P0002']])$$, :'plain', :'a1'),
    'bad arguments are refused with their SQLSTATE');
SELECT throws_ok(format($$SELECT toygun.raise_alarm(%L, 'panic', 'm')$$, :'plain'), '42939',
                 'alarm kind "panic" is reserved', 'kind panic is toygun''s own');

-- snooze: stays snoozed while raised before its time; after it, reads and becomes active
SELECT is((toygun.snooze_alarm(:'a1', now() + '1 hour')).state, 'snoozed', 'snooze_alarm snoozes it');
SELECT is(toygun.raise_alarm(:'plain', 'disk', 'disk 95% full'), :'a1'::uuid, 'raising a snoozed alarm counts it');
SELECT is((SELECT ROW(a.state, a.count, v.state)::text FROM toygun.alarm a JOIN toygun.alarms v USING (id) WHERE id = :'a1'),
          '(snoozed,3,snoozed)', 'and it stays snoozed before its time');
UPDATE toygun.alarm SET snoozed_until = clock_timestamp() - interval '1 s' WHERE id = :'a1';
SELECT is((SELECT ROW(a.state, v.state)::text FROM toygun.alarm a JOIN toygun.alarms v USING (id) WHERE id = :'a1'),
          '(snoozed,active)', 'once its time has passed, toygun.alarms reads it active');
SELECT is(toygun.raise_alarm(:'plain', 'disk', 'disk full'), :'a1'::uuid, 'a raise after its time counts the same alarm');
SELECT is((SELECT ROW(state, count)::text FROM toygun.alarm WHERE id = :'a1'), '(active,4)',
          'and stores it active again');
SELECT is((toygun.snooze_alarm(:'a1', 'infinity')).snoozed_until, 'infinity'::timestamptz, 'snoozed for ever');

-- close
SELECT is((SELECT ROW(state, closed_reason, closed_by::text, closed_at IS NOT NULL)::text
             FROM toygun.close_alarm(:'a1', 'disk replaced')),
          '(closed,"disk replaced",postgres,t)', 'close_alarm closes it, with the reason and who');
SELECT is((toygun.close_alarm(:'a1', 'again')).closed_reason, 'disk replaced', 'closing a closed alarm leaves it as it was');
SELECT throws_ok(format($$SELECT toygun.snooze_alarm(%L, now() + '1 h')$$, :'a1'), '55000',
                 format('alarm %s is closed', :'a1'), 'a closed alarm is not snoozed');
SELECT isnt(toygun.raise_alarm(:'plain', 'disk', 'full again'), :'a1'::uuid, 'a raise after the close opens a new alarm');
SELECT is((SELECT count(*) FROM toygun.alarm WHERE object_id = :'plain' AND kind = 'disk'), 2::bigint,
          'and the closed one is kept');

-- rights: read to see them, operate to raise, snooze and close
CREATE ROLE tg_al_nobody;
CREATE ROLE tg_al_reader;
CREATE ROLE tg_al_operator;
SELECT toygun.grant_type('dummy', 'tg_al_reader', '{read}');
SELECT toygun.grant_type('dummy', 'tg_al_operator', '{read,operate}');
SELECT toygun.raise_alarm(:'plain', 'rights', 'm') AS a3 \gset
SET ROLE tg_al_nobody;
SELECT is((SELECT count(*) FROM toygun.alarm), 0::bigint, 'a role without read sees no alarm');
SELECT is((SELECT count(*) FROM toygun.alarms), 0::bigint, 'nor in toygun.alarms');
RESET ROLE;
SELECT is(pg_temp.as_role('tg_al_nobody', format($$SELECT toygun.close_alarm(%L)$$, :'a3')),
          '42501 permission denied for resource type "dummy": it needs right "operate"',
          'closing needs operate');
SELECT is(pg_temp.as_role('tg_al_reader', format($$SELECT toygun.raise_alarm(%L, 'rights', 'm')$$, :'plain')),
          '42501 permission denied for resource type "dummy": it needs right "operate"',
          'raising needs operate, read is not enough');
SELECT is(pg_temp.as_role('tg_al_reader', format($$SELECT toygun.snooze_alarm(%L, now() + '1 h')$$, :'a3')),
          '42501 permission denied for resource type "dummy": it needs right "operate"',
          'snoozing needs operate');
SET ROLE tg_al_reader;
SELECT is((SELECT count(*) FROM toygun.alarm WHERE id = :'a3'), 1::bigint, 'a role with read sees them');
RESET ROLE;
SELECT is(pg_temp.as_role('tg_al_operator', format($$SELECT toygun.raise_alarm(%L, 'rights', 'm'), toygun.close_alarm(%L, 'done')$$,
                                                   :'run', :'a3')),
          'ok', 'a role with operate raises (on a run too) and closes');
SELECT is((SELECT closed_by::text FROM toygun.alarm WHERE id = :'a3'), 'tg_al_operator', 'closed_by names it');

-- a panic raises kind 'panic' on the run, offered up the tree; each repair closes it
SELECT toygun.start_task(:'db', 'backup') AS b \gset
SELECT is((toygun.tick_task(:'b')).state, '__panic__', 'the run panics');
SELECT is((SELECT ROW(object_kind, kind, state, message, count)::text FROM toygun.alarm WHERE object_id = :'b'),
          '(task,panic,active,"disk full",1)', 'its panic raised an alarm of kind panic, with the panic''s message');
-- the worked example: the database's type escalates, the account's type handles it
SELECT is((SELECT jsonb_agg(jsonb_build_array(s->>'type', s->>'resource', s->>'result'))
             FROM toygun.alarm, jsonb_array_elements(escalation) s WHERE object_id = :'b'),
          jsonb_build_array(jsonb_build_array('tg_database', :'db', NULL), jsonb_build_array('tg_account', :'acct', 'handled')),
          'offered to the database''s type, which passed, then to the account''s, which handled it');
SELECT is((SELECT handled_by FROM toygun.alarm WHERE object_id = :'b'), 'tg_account', 'handled_by names the account''s type');
SELECT is((SELECT string_agg(type || ':' || made_by, ',' ORDER BY n) FROM public.tg_offers), 'database:postgres,account:postgres',
          'the org''s handler was not offered it');
SELECT is((SELECT count(*) FROM toygun.alarm, jsonb_array_elements(escalation) s
            WHERE object_id = :'b' AND (s->>'at')::timestamptz IS NOT NULL), 2::bigint, 'each offer says when');
SELECT is((toygun.retry_task(:'b', 'freed space')).state, 'a', 'retry_task repairs the run');
SELECT is((SELECT ROW(state, closed_reason)::text FROM toygun.alarm WHERE object_id = :'b'),
          '(closed,"retry_task: freed space")', 'and closes its alarm with the reason');
SELECT is((toygun.tick_task(:'b')).state, '__panic__', 'it panics again');
SELECT is((SELECT count(*) FROM toygun.alarm WHERE object_id = :'b' AND state = 'active'), 1::bigint,
          'which opens a new alarm');
SELECT toygun.rewind_task(:'b', 1);
SELECT is((SELECT closed_reason FROM toygun.alarm WHERE object_id = :'b' ORDER BY first_raised_at DESC LIMIT 1),
          'rewind_task(1)', 'rewind_task closes it');
SELECT toygun.panic_task(:'b', 'by hand');
SELECT is((SELECT ROW(state, message)::text FROM toygun.alarm WHERE object_id = :'b' AND state <> 'closed'),
          '(active,"by hand")', 'panic_task raises it');
SELECT toygun.transition_task(:'b', 'b', reason => 'skipped it');
SELECT is((SELECT closed_reason FROM toygun.alarm WHERE object_id = :'b' ORDER BY first_raised_at DESC LIMIT 1),
          'transition_task: skipped it', 'a transition by hand out of __panic__ closes it');
SELECT toygun.panic_task(:'b', 'once more');
SELECT toygun.stop_task(:'b');
SELECT is((SELECT ROW(closed_reason, closed_by::text)::text FROM toygun.alarm WHERE object_id = :'b' ORDER BY first_raised_at DESC LIMIT 1),
          '(stop_task,postgres)', 'stop_task closes it');
SELECT is((SELECT count(*) FROM toygun.alarm WHERE object_id = :'b' AND state <> 'closed'), 0::bigint,
          'no alarm of the run is left open');
-- a resource's panic
SELECT toygun.create_resource('tg_fragile') AS f \gset
SELECT toygun.tick_resource(:'f');
SELECT is((SELECT ROW(object_kind, kind, state, message)::text FROM toygun.alarm WHERE object_id = :'f'),
          '(resource,panic,active,"resource broke")', 'a resource''s panic raises an alarm on it');
SELECT toygun.transition_resource(:'f', 'up');
SELECT is((SELECT ROW(state, closed_reason)::text FROM toygun.alarm WHERE object_id = :'f'),
          '(closed,transition_resource)', 'moving it out of __panic__ closes it');

-- escalation through three levels: the database passes, the account escalates, the org handles
TRUNCATE public.tg_offers;
SELECT toygun.raise_alarm(:'db', 'latency', 'p99 over 1 s') AS a4 \gset
SELECT is((SELECT jsonb_agg(jsonb_build_array(s->>'type', s->>'resource', s->>'result'))
             FROM toygun.alarm, jsonb_array_elements(escalation) s WHERE id = :'a4'),
          jsonb_build_array(jsonb_build_array('tg_database', :'db', NULL), jsonb_build_array('tg_account', :'acct', 'escalate'),
                            jsonb_build_array('tg_org', :'org', 'handled')),
          'offered up three levels until the org''s type handled it');
SELECT is((SELECT ROW(state, handled_by)::text FROM toygun.alarm WHERE id = :'a4'), '(active,tg_org)',
          'handled: still active, handled_by the org''s type');
SELECT is((SELECT made_by FROM public.tg_offers WHERE type = 'org'), 'tg_al_boss', 'each handler runs as its type''s owner');
SELECT toygun.raise_alarm(:'db', 'latency', 'p99 over 2 s');
SELECT is((SELECT jsonb_array_length(escalation) FROM toygun.alarm WHERE id = :'a4'), 3,
          'raised again while active: not offered again');
SELECT toygun.snooze_alarm(:'a4', now() + '1 hour');
UPDATE toygun.alarm SET snoozed_until = clock_timestamp() - interval '1 s' WHERE id = :'a4';
SELECT toygun.raise_alarm(:'db', 'latency', 'p99 over 3 s');
SELECT is((SELECT ROW(state, jsonb_array_length(escalation), handled_by)::text FROM toygun.alarm WHERE id = :'a4'),
          '(active,6,tg_org)', 're-opened after its snooze: offered again');
-- an error in a handler is that step's result, undone, and the alarm goes up
TRUNCATE public.tg_offers;
SELECT toygun.raise_alarm(:'db', 'boom', 'm') AS a5 \gset
SELECT is((SELECT jsonb_agg(jsonb_build_array(s->>'type', s->>'result', s->>'sqlstate'))
             FROM toygun.alarm, jsonb_array_elements(escalation) s WHERE id = :'a5'),
          '[["tg_database", "error", "P0001"], ["tg_account", "escalate", null], ["tg_org", "handled", null]]'::jsonb,
          'a handler''s error is recorded with its SQLSTATE, and the alarm escalates');
SELECT is((SELECT string_agg(type, ',' ORDER BY n) FROM public.tg_offers), 'account,org',
          'what the failing handler wrote was undone');
-- no taker: stays active at the top
SELECT toygun.raise_alarm(:'lone', 'x', 'm') AS a6 \gset
SELECT is((SELECT ROW(state, handled_by, escalation->0->>'result', jsonb_array_length(escalation))::text
             FROM toygun.alarm WHERE id = :'a6'),
          '(active,,"not mine",1)', 'no handler takes it: it stays active, handled by none');

SELECT * FROM finish();
ROLLBACK;
