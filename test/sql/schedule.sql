-- Periodic starts: start_every's pg_cron job, the firing's buckets (at most
-- one start per resource and bucket), stop_every, errors and privileges.
-- pg_cron is installed in this database; everything here rolls back, so its
-- scheduler never sees these jobs: firings are invoked by hand.
BEGIN;
\ir ../fixtures.sql
SELECT plan(91);

SET LOCAL timezone = 'UTC';
SELECT toygun.define_task('dummy', 'fielded', '{one}', 'dummy_another(toygun.task)', fields => '{depth}');
SELECT toygun.define_task('dummy', 'secretive', '{one}', 'dummy_another(toygun.task)');

-- the number of runs of dummy.test on a resource
CREATE FUNCTION pg_temp.runs(r uuid) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM toygun.task WHERE resource_id = r AND name = 'test' $$;
-- the cron schedule start_every makes of a schedule (on dummy.another)
CREATE FUNCTION pg_temp.cron_of(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE job_id bigint := toygun.start_every('dummy', 'another', s);
BEGIN
    RETURN (SELECT schedule FROM cron.job WHERE jobid = job_id);
END $$;
-- invoke the command of dummy.test's job, as pg_cron would
CREATE FUNCTION pg_temp.fire() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE (SELECT command FROM cron.job WHERE jobname = 'toygun:dummy.test') INTO n;
    RETURN n;
END $$;

-- start_every creates the pg_cron job
SELECT toygun.start_every('dummy', 'test', '0 3 * * *', '{"from": "cron"}') AS job \gset
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :job), 1::bigint, 'start_every returns the id of a pg_cron job');
SELECT is((SELECT jobname FROM cron.job WHERE jobid = :job), 'toygun:dummy.test', 'the job is named after the resource type and task');
SELECT is((SELECT schedule FROM cron.job WHERE jobid = :job), '0 3 * * *', 'the job has the schedule');
SELECT is((SELECT command FROM cron.job WHERE jobid = :job), $$SELECT toygun.run_schedule('dummy', 'test')$$,
          'the job''s command fires the schedule');
SELECT is((SELECT database FROM cron.job WHERE jobid = :job), current_database()::text, 'the job runs in the toygun database');
SELECT is((SELECT username FROM cron.job WHERE jobid = :job),
          (SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'toygun'),
          'the job runs as the extension''s owner');
SELECT ok((SELECT active FROM cron.job WHERE jobid = :job), 'the job is active');
SELECT results_eq(
    $$ SELECT resource_type, task, schedule, cron, args, owner::text, job_name, job_id, last_bucket, last_started
         FROM toygun.schedule $$,
    format($$ VALUES ('dummy', 'test', '0 3 * * *', '0 3 * * *', '{"from": "cron"}'::jsonb, %L::text,
                      'toygun:dummy.test', %s::bigint, NULL::timestamptz, 0::bigint) $$, current_user, :job),
    'toygun.schedule lists the schedule, not yet fired');

-- start_every again updates the job, keeping its id
SELECT is(toygun.start_every('dummy', 'test', '15 minutes', '{"from": "update"}'), :'job'::bigint,
          'start_every again returns the same job');
SELECT is((SELECT schedule FROM cron.job WHERE jobid = :job), '*/15 * * * *', 'the job has the new schedule');
SELECT is((SELECT count(*) FROM cron.job WHERE jobname LIKE 'toygun:dummy.test%'), 1::bigint, 'there is still one job');
SELECT is((SELECT args FROM toygun.schedule WHERE task = 'test'), '{"from": "update"}'::jsonb, 'the new args are kept');
SELECT is(toygun.start_every('dummy', 'test', '0 3 * * *', '{"from": "cron"}'), :'job'::bigint, 'and back');

-- intervals become cron expressions that fire evenly
SELECT is(pg_temp.cron_of('1 minute'), '* * * * *', '1 minute');
SELECT is(pg_temp.cron_of('5 minutes'), '*/5 * * * *', '5 minutes');
SELECT is(pg_temp.cron_of('1 hour'), '0 * * * *', '1 hour');
SELECT is(pg_temp.cron_of('6 hours'), '0 */6 * * *', '6 hours');
SELECT is(pg_temp.cron_of('1 day'), '0 0 * * *', '1 day');
SELECT is(pg_temp.cron_of('24 hours'), '0 0 * * *', '24 hours');
SELECT is(pg_temp.cron_of('1 week'), '0 0 * * 0', '1 week');
SELECT is(pg_temp.cron_of('1 month'), '0 0 1 * *', '1 month');
SELECT is(pg_temp.cron_of('3 months'), '0 0 1 */3 *', '3 months');
SELECT is(pg_temp.cron_of('1 year'), '0 0 1 1 *', '1 year');
SELECT is(pg_temp.cron_of('@hourly'), '0 * * * *', '@hourly');
SELECT is(pg_temp.cron_of('  0   3 *  * mon-fri '), '0 3 * * mon-fri', 'a cron expression, its spaces tidied');
SELECT ok(toygun.stop_every('dummy', 'another'), 'stop_every removes a schedule');

-- buckets: the latest fire time at or before the firing, in GMT
SET LOCAL timezone = 'America/New_York';
SELECT is(toygun.schedule_bucket('0 3 * * *', '2024-05-01 02:30:00-04'), '2024-05-01 03:00:00+00'::timestamptz,
          'buckets are in GMT, whatever the session''s time zone');
SET LOCAL timezone = 'UTC';
SELECT is(toygun.schedule_bucket('0 3 * * *', '2024-05-01 02:59:59+00'), '2024-04-30 03:00:00+00'::timestamptz,
          'a firing before the day''s fire time belongs to the day before');
SELECT is(toygun.schedule_bucket('*/15 * * * *', '2024-05-01 10:14:59+00'), '2024-05-01 10:00:00+00'::timestamptz,
          'a step of minutes');
SELECT is(toygun.schedule_bucket('0 0 13 * fri', '2024-05-12 00:00:00+00'), '2024-05-10 00:00:00+00'::timestamptz,
          'with both day fields restricted, either one matches');
SELECT is(toygun.schedule_bucket('0 0 */2 * mon', '2024-05-12 00:00:00+00'), '2024-04-29 00:00:00+00'::timestamptz,
          'with a day field starting with *, both must match');
SELECT is(toygun.schedule_bucket('0 0 29 2 *', '2024-02-28 00:00:00+00'), '2020-02-29 00:00:00+00'::timestamptz,
          'February 29 only in leap years');
SELECT is(toygun.schedule_bucket('0 0 * * 7', '2024-05-15 00:00:00+00'), '2024-05-12 00:00:00+00'::timestamptz,
          'day of week 7 is Sunday');
SELECT is(toygun.schedule_bucket('5 4 1 jan,jul *', '2024-12-31 00:00:00+00'), '2024-07-01 04:05:00+00'::timestamptz,
          'month names');

-- firings: three live resources and a stopped one
SELECT toygun.create_resource('dummy') AS r1 \gset
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.create_resource('dummy') AS r3 \gset
SELECT toygun.create_resource('dummy') AS gone \gset
SELECT toygun.stop_resource(:'gone') IS NOT NULL AS stopped \gset

SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-01 03:00:30+00'), 3::bigint,
          'a firing starts the task on every live resource');
SELECT is(pg_temp.runs(:'r1') + pg_temp.runs(:'r2') + pg_temp.runs(:'r3'), 3::bigint, 'one run each');
SELECT is(pg_temp.runs(:'gone'), 0::bigint, 'a stopped resource is skipped');
SELECT results_eq(
    $$ SELECT DISTINCT state, attrs, run_at IS NOT NULL FROM toygun.task WHERE name = 'test' $$,
    $$ VALUES ('__new__', '{"from": "cron"}'::jsonb, true) $$,
    'the runs are new, due, with the schedule''s args');
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-02 02:59:59+00'), 0::bigint,
          'a repeated firing of the bucket starts nothing');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'test'), 3::bigint, 'still three runs');
SELECT results_eq(
    $$ SELECT last_bucket, last_started FROM toygun.schedule WHERE task = 'test' $$,
    $$ VALUES ('2024-05-01 03:00:00+00'::timestamptz, 3::bigint) $$,
    'toygun.schedule shows the last bucket and how many runs it started');

-- the next bucket: only where the previous run has stopped, and new resources join
SELECT toygun.stop_task((toygun.task_for(:'r1', 'test')).id) IS NOT NULL AS stopped \gset
SELECT toygun.panic_task((toygun.task_for(:'r3', 'test')).id, 'stuck') IS NOT NULL AS panicked \gset
SELECT toygun.create_resource('dummy') AS r4 \gset
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-02 03:00:00+00'), 2::bigint,
          'the next bucket starts where the previous run stopped, and on a new resource');
SELECT is(pg_temp.runs(:'r1'), 2::bigint, 'a resource whose run stopped gets a new one');
SELECT is(pg_temp.runs(:'r2'), 1::bigint, 'a run still live is left alone');
SELECT is((toygun.task_for(:'r3', 'test')).state, '__panic__', 'a panicked run is left alone');
SELECT is(pg_temp.runs(:'r3'), 1::bigint, 'and gets no second run');
SELECT is(pg_temp.runs(:'r4'), 1::bigint, 'a resource created since joins at the next bucket');
SELECT is(pg_temp.runs(:'gone'), 0::bigint, 'the stopped resource is still skipped');
SELECT results_eq(
    $$ SELECT bucket, count(*) FROM toygun.schedule_start GROUP BY bucket $$,
    $$ VALUES ('2024-05-02 03:00:00+00'::timestamptz, 2::bigint) $$,
    'a new bucket prunes the claims of older ones');

-- a bucket is decided once per resource, even after its run stops
SELECT toygun.stop_task((toygun.task_for(:'r4', 'test')).id) IS NOT NULL AS stopped \gset
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-02 18:00:00+00'), 0::bigint,
          'a repeated firing starts nothing where the bucket''s run has stopped');
SELECT is(pg_temp.runs(:'r4'), 1::bigint, 'the resource still has one run');
SELECT is(toygun.run_schedule('dummy', 'test', '2024-05-01 12:00:00+00'), 0::bigint,
          'a firing of a bucket older than the last starts nothing');
SELECT is(pg_temp.runs(:'r4') + pg_temp.runs(:'r1'), 3::bigint, 'not even where no run is live');
SELECT is((SELECT last_bucket FROM toygun.schedule WHERE task = 'test'), '2024-05-02 03:00:00+00'::timestamptz,
          'an older bucket does not move the last bucket back');

-- the job's own command, twice in one bucket (now's)
SELECT toygun.stop_task((toygun.task_for(:'r1', 'test')).id) IS NOT NULL AS stopped \gset
SELECT is(pg_temp.fire(), 2::bigint, 'the job''s command starts the task where no run is live');
SELECT is(pg_temp.fire(), 0::bigint, 'invoking it again in the same bucket starts nothing');
SELECT is((SELECT last_bucket FROM toygun.schedule WHERE task = 'test'), toygun.schedule_bucket('0 3 * * *', now()),
          'the command fires the bucket of now');
SELECT is(pg_temp.runs(:'r1') + pg_temp.runs(:'r2') + pg_temp.runs(:'r3') + pg_temp.runs(:'r4'), 7::bigint,
          'each resource started at most once in that bucket');

-- stop_every
SELECT ok(toygun.stop_every('dummy', 'test'), 'stop_every returns true when there was a schedule');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :job), 0::bigint, 'stop_every removes the job');
SELECT is((SELECT count(*) FROM toygun.schedule), 0::bigint, 'and the schedule');
SELECT is((SELECT count(*) FROM toygun.schedule_start), 0::bigint, 'and its claims');
SELECT ok(NOT toygun.stop_every('dummy', 'test'), 'stop_every returns false when there was none');
SELECT throws_ok($$SELECT toygun.run_schedule('dummy', 'test')$$, '42704',
                 'task "test" of resource type "dummy" has no periodic start', 'a removed schedule cannot fire');

-- errors
SELECT throws_ok($$SELECT toygun.start_every('nope', 'test', '0 3 * * *')$$, '42704',
                 'resource type "nope" does not exist', 'an unknown resource type');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'nope', '0 3 * * *')$$, '42704',
                 'task "nope" is not defined for resource type "dummy"', 'an unknown task');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '0 25 * * *')$$, '22023',
                 'invalid schedule "0 25 * * *"', 'an invalid cron expression');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', 'every day')$$, '22023',
                 'invalid schedule "every day"', 'neither a cron expression nor an interval');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '10 seconds')$$, '0A000',
                 'interval "10 seconds" cannot be expressed as a pg_cron schedule', 'a sub-minute interval');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '45 minutes')$$, '0A000',
                 'interval "45 minutes" cannot be expressed as a pg_cron schedule', 'an interval that does not divide an hour');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'fielded', '0 3 * * *', '{"colour": 1}')$$, '42703',
                 'field "colour" is not declared by task type "dummy.fielded"', 'args are checked as start_task checks them');
SELECT lives_ok($$SELECT toygun.start_every('dummy', 'secretive', '0 3 * * *', '{"token": "hunter2"}')$$,
                'args may hold a plain field');
SELECT toygun.define_task('dummy', 'secretive', '{one}', 'dummy_another(toygun.task)', encrypted_fields => '{token}');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'secretive', '0 3 * * *', '{"token": "hunter2"}')$$, '0A000',
                 'periodic starts cannot pass encrypted field "token"', 'but not an encrypted field');
SELECT throws_ok($$SELECT toygun.run_schedule('dummy', 'secretive', '2024-05-01 03:00:00+00')$$, '0A000',
                 'periodic starts cannot pass encrypted field "token"', 'nor can a firing, once the field is encrypted');
SELECT ok(toygun.stop_every('dummy', 'secretive'), 'that schedule can still be removed');
SELECT throws_ok($$SELECT toygun.start_every('dummy', 'test', '0 3 * * *', NULL)$$, '22004',
                 'args must not be null', 'NULL args');
SELECT throws_ok($$SELECT toygun.run_schedule('dummy', 'test', now() + interval '1 minute')$$, '22023',
                 'at must not be in the future', 'a firing cannot be dated in the future');
SELECT is((SELECT count(*) FROM toygun.schedule), 0::bigint, 'failed calls leave no schedule');

-- privileges: the firing acts for whoever called start_every
CREATE ROLE tg_sched_owner;
CREATE ROLE tg_sched_member IN ROLE tg_sched_owner;
CREATE ROLE tg_sched_other;
CREATE SCHEMA sched_owner AUTHORIZATION tg_sched_owner;
SET ROLE tg_sched_owner;
CREATE FUNCTION sched_owner.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('owned');
SELECT toygun.define_task('owned', 'job', '{one}', 'sched_owner.h(toygun.task)');
SELECT toygun.create_resource('owned') AS owned \gset
SET ROLE tg_sched_other;
SELECT throws_ok($$SELECT toygun.start_every('owned', 'job', '0 3 * * *')$$, '42501',
                 'permission denied for task type "owned.job": it needs right "start" on resource type "owned"', 'start_every needs right start on the resource type');
SET ROLE tg_sched_member;
SELECT lives_ok($$SELECT toygun.start_every('owned', 'job', '0 3 * * *')$$,
                'a member of the owner schedules it, with no privileges on pg_cron');
SELECT ok(NOT has_schema_privilege('tg_sched_member', 'cron', 'USAGE'), 'indeed none');
SET ROLE tg_sched_other;
SELECT throws_ok($$SELECT toygun.run_schedule('owned', 'job', '2024-05-01 03:00:00+00')$$, '42501',
                 'permission denied for task type "owned.job": it needs right "start" on resource type "owned"', 'firing by hand needs it too');
SELECT throws_ok($$SELECT toygun.stop_every('owned', 'job')$$, '42501',
                 'permission denied for task type "owned.job": it needs right "start" on resource type "owned"', 'and so does stop_every');
RESET ROLE;
SELECT is((SELECT owner::text FROM toygun.schedule WHERE task = 'job'), 'tg_sched_member', 'the schedule remembers who made it');
REVOKE tg_sched_owner FROM tg_sched_member;
SELECT throws_ok($$SELECT toygun.run_schedule('owned', 'job', '2024-05-01 03:00:00+00')$$, '42501',
                 'permission denied for task type "owned.job": it needs right "start" on resource type "owned"',
                 'a firing fails once the schedule''s maker may no longer act for the task type');
GRANT tg_sched_owner TO tg_sched_member;
SELECT is(toygun.run_schedule('owned', 'job', '2024-05-01 03:00:00+00'), 1::bigint, 'and works again when it may');

-- rights: a grantee of start schedules, fires and stops; the firing needs the
-- schedule's maker to keep the right
SELECT toygun.grant_type('owned', 'tg_sched_other', '{start}');
SET ROLE tg_sched_other;
SELECT is(toygun.run_schedule('owned', 'job', '2024-05-02 03:00:00+00'), 0::bigint,
          'a grantee of start fires it by hand (the resource''s run of the last bucket is still live)');
SELECT ok(toygun.stop_every('owned', 'job'), 'a grantee of start stops it');
SELECT lives_ok($$SELECT toygun.start_every('owned', 'job', '0 4 * * *')$$, 'and schedules it again');
RESET ROLE;
SELECT is((SELECT owner::text FROM toygun.schedule WHERE task = 'job'), 'tg_sched_other', 'made by the grantee');
SELECT toygun.revoke_type('owned', 'tg_sched_other', '{start}');
SELECT throws_ok($$SELECT toygun.run_schedule('owned', 'job', '2024-05-03 04:00:00+00')$$, '42501',
                 'permission denied for task type "owned.job": it needs right "start" on resource type "owned"',
                 'a firing fails once the schedule''s maker has lost right start');

SELECT * FROM finish();
ROLLBACK;
