-- Periodic starts that choose: start_every(..., states), the firing's
-- last_error, last_fired_at and next_fire_at, and who sees them.
BEGIN;
\ir ../fixtures.sql
SELECT plan(19);

SET LOCAL timezone = 'UTC';
-- invoke the command of dummy.test's job, as pg_cron would
CREATE FUNCTION pg_temp.fire() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE (SELECT command FROM cron.job WHERE jobname = 'toygun:dummy.test') INTO n;
    RETURN n;
END $$;

-- states are checked
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '0 3 * * *', '{}', '{running,sleeping}')$$, '22023',
                 'state "sleeping" is not a state of resource type "dummy"', 'an unknown state is refused, named');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '0 3 * * *', '{}', '{__stop__}')$$, '22023',
                 'a periodic start cannot start in state "__stop__"', 'so is __stop__');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '0 3 * * *', '{}', '{}')$$, '22023',
                 'states must not be empty', 'and an empty list');

-- resources in three states; the schedule starts only those running or panicked
SELECT toygun.create_resource('dummy') AS fresh \gset
SELECT toygun.create_resource('dummy') AS running \gset
SELECT toygun.create_resource('dummy') AS stopping \gset
SELECT toygun.transition_resource(:'running', 'running') IS NOT NULL AS moved \gset
SELECT toygun.transition_resource(:'stopping', 'stopping') IS NOT NULL AS moved \gset
SELECT toygun.start_every('dummy', 'test', '0 3 * * *', '{}', '{running,__new__}') AS job \gset
SELECT is((SELECT states FROM toygun.schedule WHERE task = 'test'), '{running,__new__}'::text[],
          'start_every stores the states');
SELECT ok((SELECT next_fire_at > now() AND next_fire_at <= now() + interval '1 day'
                  AND to_char(next_fire_at, 'HH24:MI:SS') = '03:00:00'
             FROM toygun.schedule WHERE task = 'test'),
          'and the next fire time of its cron expression');
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-01 03:00:30+00'), 2::bigint,
          'a firing starts only the resources in those states');
SELECT is((SELECT array_agg(r.state ORDER BY r.state) FROM toygun.task t JOIN toygun.resource r ON r.id = t.resource_id
            WHERE t.name = 'test'), '{__new__,running}'::text[], 'the new one and the running one');
SELECT toygun.start_every('dummy', 'test', '*/5 * * * *') IS NOT NULL AS again \gset
SELECT is((SELECT states FROM toygun.schedule WHERE task = 'test'), NULL::text[],
          'start_every again without states: every live resource');
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-02 03:00:30+00'), 1::bigint, 'so the stopping one too');
SELECT ok((SELECT next_fire_at > now() AND next_fire_at <= now() + interval '5 minutes'
                  AND extract(minute FROM next_fire_at)::int % 5 = 0 AND last_fired_at IS NOT NULL
             FROM toygun.schedule WHERE task = 'test'),
          'a firing records when it fired and when it fires next');

-- a firing from pg_cron keeps its error in last_error
CREATE ROLE tg_ss_maker;
SELECT toygun.grant_type('dummy', 'tg_ss_maker', '{start}');
SET ROLE tg_ss_maker;
SELECT toygun.start_every('dummy', 'test', '0 3 * * *') IS NOT NULL AS made \gset
RESET ROLE;
SELECT toygun.revoke_type('dummy', 'tg_ss_maker', '{start}');
SELECT is(pg_temp.fire(), NULL::bigint, 'a firing whose maker lost right start returns NULL');
SELECT is((SELECT last_error FROM toygun.schedule WHERE task = 'test'),
          '42501: permission denied for task type "dummy.test": it needs right "start" on resource type "dummy"',
          'and keeps its error, with its SQLSTATE, in last_error');
SELECT throws_ok($$SELECT toygun.run_schedule('dummy', 'test', now())$$, '42501', NULL,
                 'a firing with an explicit at raises it');
SELECT toygun.start_every('dummy', 'test', '0 3 * * *') IS NOT NULL AS remade \gset
UPDATE toygun.task SET state = '__stop__' WHERE name = 'test';
SELECT is(pg_temp.fire() >= 0, true, 'once it may start again, the firing works');
SELECT is((SELECT last_error FROM toygun.schedule WHERE task = 'test'), NULL, 'and clears last_error');

-- who sees the schedule: roles that may read or start on the type
UPDATE toygun.schedule SET last_error = 'x' WHERE task = 'test';
CREATE ROLE tg_ss_starter;
CREATE ROLE tg_ss_nobody;
SELECT toygun.grant_type('dummy', 'tg_ss_starter', '{start}');
SET ROLE tg_ss_starter;
SELECT is((SELECT last_error FROM toygun.schedule WHERE task = 'test'), 'x',
          'a role with only right start sees the periodic start and its last error');
SELECT is((SELECT count(*) FROM toygun.schedule_start), 0::bigint, 'but not the resources it claimed');
SET ROLE tg_ss_nobody;
SELECT is((SELECT count(*) FROM toygun.schedule), 0::bigint, 'a role without read or start sees none');
RESET ROLE;
SELECT is((SELECT count(*) FROM toygun.schedule_start) > 0, true, 'the owner sees the claims');

SELECT * FROM finish();
ROLLBACK;
