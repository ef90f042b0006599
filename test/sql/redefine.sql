-- Safe redefinition (issue 16): a type defined again without a state its live
-- objects are in is refused with the counts, unless move_states says where
-- they go (moved in the same transaction, with history rows); a function a
-- type uses cannot be dropped (toygun_guard_drop, an event trigger).
BEGIN;
\ir ../fixtures.sql
SELECT plan(35);

CREATE ROLE tg_rd_owner;
CREATE FUNCTION public.rd_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'one' THEN toygun.go('two') WHEN 'two' THEN toygun.go('three')
                        ELSE toygun.stop() END $$;
CREATE FUNCTION public.rd_r(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay(wait => '1 hour') $$;
SELECT toygun.define_resource('rd', '{up,down,gone}', handler => 'rd_r(toygun.resource)');
SELECT toygun.define_task('rd', 'job', '{one,two,three}', 'rd_h(toygun.task)');
SELECT toygun.create_resource('rd') AS r \gset
-- two runs in two, one in three, one stopped in two's place, one new
SELECT toygun.start_task(:'r', 'job') AS a \gset
SELECT toygun.test_tick_until(:'a', 'two');
SELECT toygun.start_task(toygun.create_resource('rd'), 'job') AS b \gset
SELECT toygun.test_tick_until(:'b', 'two');
SELECT toygun.start_task(toygun.create_resource('rd'), 'job') AS c \gset
SELECT toygun.test_tick_until(:'c', 'three');
SELECT toygun.start_task(toygun.create_resource('rd'), 'job') AS d \gset
SELECT toygun.test_tick_until(:'d', '__stop__');
SELECT toygun.start_task(toygun.create_resource('rd'), 'job') AS e \gset

-- refused, with how many in which states
SELECT throws_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)')$$, '55000',
                 'task type "rd.job" has live runs in states its new definition does not declare',
                 'a redefinition without states live runs are in is refused');
SELECT is(pg_temp.detail_of($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)')$$),
          'Live runs: 1 in state "three", 2 in state "two".', 'naming how many are in which states');
SELECT is((SELECT states FROM toygun.task_type WHERE name = 'job'), '{one,two,three}', 'the definition stays');
-- a move for one state is not enough
SELECT is(pg_temp.detail_of($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)',
                                                     move_states => '{"two": "four"}')$$),
          'Live runs: 1 in state "three".', 'a state move_states leaves out is still refused');
-- a redefinition that keeps every state in use, or adds some, goes through
SELECT lives_ok($$SELECT toygun.define_task('rd', 'job', '{one,two,three,four}', 'rd_h(toygun.task)')$$,
                'adding a state goes through');
-- a resource type too
SELECT toygun.transition_resource(:'r', 'down');
SELECT throws_ok($$SELECT toygun.define_resource('rd', '{up,gone}', handler => 'rd_r(toygun.resource)')$$, '55000',
                 'resource type "rd" has live resources in states its new definition does not declare',
                 'a resource type too');
SELECT is(pg_temp.detail_of($$SELECT toygun.define_resource('rd', '{up,gone}', handler => 'rd_r(toygun.resource)')$$),
          'Live resources: 1 in state "down".', 'with its counts');

-- invalid move targets, named
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)',
                                 move_states => '{"two": "five", "three": "four"}')$$), '22023',
          'a move to an undeclared state is refused');
SELECT throws_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)',
                   move_states => '{"two": "five", "three": "four"}')$$, '22023',
                 'move_states of task type "rd.job" moves state "two" to "five", which is not one of its states',
                 'naming the state and the target');
SELECT is(pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"two": "two", "three": "four"}')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"two": "__new__", "three": "four"}')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"two": "__panic__", "three": "four"}')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"two": 4, "three": "four"}')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '["two"]')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"one": "four", "two": "four", "three": "four"}')$q$, '22023'],
    [$q$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"__stop__": "four"}')$q$, '22023']
  ]::text[]), NULL, 'targets that are no declared state, __new__, __panic__, no string; a kept state moved; no object');
SELECT is((SELECT states FROM toygun.task_type WHERE name = 'job'), '{one,two,three,four}', 'none of them changed it');

-- moved, in the same transaction, with history rows
SET LOCAL ROLE tg_rd_owner;
SELECT throws_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)',
                   move_states => '{"two": "four", "three": "__stop__"}')$$, '42501', NULL,
                 'a role that may not redefine it moves nothing');
RESET ROLE;
SELECT lives_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)',
                  move_states => '{"two": "four", "three": "__stop__"}')$$, 'with move_states it goes through');
SELECT is((SELECT states FROM toygun.task_type WHERE name = 'job'), '{one,four}', 'the new definition is stored');
SELECT is(ARRAY(SELECT state FROM toygun.task WHERE id IN (:'a', :'b', :'c', :'d', :'e') ORDER BY id = :'a' DESC, id = :'b' DESC, id = :'c' DESC, id = :'d' DESC),
          '{four,four,__stop__,__stop__,__new__}', 'the runs in two are in four, in three stopped; the others stay');
SELECT is((SELECT ROW(from_state, to_state, note, made_by::text, worker_pid, reason)::text FROM toygun.transition
            WHERE object_id = :'a' ORDER BY step DESC LIMIT 1),
          ROW('two', 'four', 'redefine', current_user, NULL::int, NULL::text)::text,
          'each move has a history row: note redefine, made by the caller');
SELECT is(pg_temp.steps(:'a'), 3::bigint, 'one row per move');
SELECT is((SELECT to_state FROM toygun.transition WHERE object_id = :'c' ORDER BY step DESC LIMIT 1), '__stop__',
          'a move to __stop__ too');
SELECT is(pg_temp.steps(:'d'), 4::bigint, 'a stopped run is not moved');
SELECT is((SELECT run_at IS NOT NULL FROM toygun.task WHERE id = :'a'), true, 'a moved run is due');
SELECT is((toygun.tick_task(:'a')).state, '__stop__', 'and ticks on in its new state');
-- orphans from before 0.4, in states neither definition declares, are counted and can be moved
UPDATE toygun.task SET state = 'lost' WHERE id = :'b';
SELECT throws_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{}')$$, '55000', NULL,
                 'move_states given checks every live run, even for a state the old definition lacked');
SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', move_states => '{"lost": "one"}');
SELECT is((SELECT state FROM toygun.task WHERE id = :'b'), 'one', 'and moves it');
-- resources, moved by define_resource's move_states
SELECT toygun.define_resource('rd', '{up,gone}', handler => 'rd_r(toygun.resource)', move_states => '{"down": "gone"}');
SELECT is((SELECT state FROM toygun.resource WHERE id = :'r'), 'gone', 'a resource is moved');
SELECT is((SELECT note FROM toygun.transition WHERE object_id = :'r' ORDER BY step DESC LIMIT 1), 'redefine',
          'with its history row');
-- stop_state follows the existing validation against the new states
SELECT throws_ok($$SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', stop_state => 'two')$$,
                 '22023', NULL, 'a stop_state the new definition lacks is refused');

-- a function a type uses cannot be dropped
SELECT throws_ok('DROP FUNCTION public.rd_h(toygun.task)', '2BP01',
                 'cannot drop function public.rd_h(toygun.task) because a toygun type uses it',
                 'DROP FUNCTION of a handler is refused');
SELECT is(pg_temp.detail_of('DROP FUNCTION public.rd_h(toygun.task)'),
          'The drop would take it: function public.rd_h(toygun.task) is the handler of task type "rd.job".',
          'naming the type');
SELECT is(pg_temp.sqlstate_of('DROP FUNCTION public.rd_h(toygun.task) CASCADE'), '2BP01', 'CASCADE too');
SELECT is(pg_temp.sqlstate_of('DROP FUNCTION public.rd_r(toygun.resource)'), '2BP01', 'a resource handler too');
CREATE SCHEMA rd_app;
CREATE FUNCTION rd_app.hook(t toygun.task) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE FUNCTION rd_app.alarm(a toygun.alarm) RETURNS text LANGUAGE sql AS $$ SELECT NULL::text $$;
SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)', should_stop => 'rd_app.hook(toygun.task)');
SELECT toygun.define_resource('rd', '{up,gone}', handler => 'rd_r(toygun.resource)', alarm_handler => 'rd_app.alarm(toygun.alarm)');
SELECT throws_ok('DROP SCHEMA rd_app CASCADE', '2BP01', 'cannot drop 2 functions because toygun types use them',
                 'DROP SCHEMA ... CASCADE that would take hooks is refused');
SELECT is(pg_temp.detail_of('DROP SCHEMA rd_app CASCADE'),
          'The drop would take them: function rd_app.alarm(toygun.alarm) is the alarm_handler of resource type "rd"; '
          'function rd_app.hook(toygun.task) is the should_stop of task type "rd.job".',
          'saying what it would take');
-- once the type no longer uses them, they go
SELECT toygun.define_task('rd', 'job', '{one,four}', 'rd_h(toygun.task)');
SELECT toygun.define_resource('rd', '{up,gone}', handler => 'rd_r(toygun.resource)');
SELECT lives_ok('DROP SCHEMA rd_app CASCADE', 'a function no type uses is dropped');
CREATE FUNCTION public.rd_unused(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
ALTER FUNCTION public.rd_unused(toygun.task) OWNER TO tg_rd_owner;
SET LOCAL ROLE tg_rd_owner;
SELECT lives_ok('DROP FUNCTION public.rd_unused(toygun.task)', 'a role without rights on toygun drops its own unused function');
RESET ROLE;
SELECT is((SELECT evtowner::regrole::text FROM pg_event_trigger WHERE evtname = 'toygun_guard_drop'),
          (SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'toygun'), 'the event trigger is the extension''s');
SELECT is((SELECT count(*) FROM pg_depend WHERE classid = 'pg_event_trigger'::regclass AND deptype = 'e'
            AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'toygun')), 1::bigint,
          'and a member of it, dropped with it');

SELECT * FROM finish();
ROLLBACK;
