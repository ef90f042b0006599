-- Periodic starts: schedules and their buckets, the exact text of their
-- errors, and start_every without pg_cron, then with it. pg_cron is not
-- created in this database until the second part; its scheduler reads
-- database postgres here, so it never runs these jobs.
SET timezone = 'UTC';
CREATE EXTENSION toygun;
CREATE FUNCTION sched_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('host', fields => '{name}');
SELECT toygun.define_task('host', 'nightly', '{check}', 'sched_h(toygun.task)', fields => '{depth}');
SELECT toygun.define_task('host', 'rotate', '{swap}', 'sched_h(toygun.task)', encrypted_fields => '{token}');

-- schedules: the bucket of a firing is the latest fire time at or before it, in GMT
SELECT s AS schedule, toygun.schedule_bucket(s, '2024-05-15 13:47:30+00') AS bucket
  FROM (VALUES ('0 3 * * *'), ('*/15 * * * *'), ('30 13 * * mon-fri'), ('0 12 * jan,jul *'),
               ('0 0 13 * fri'), ('0 0 */2 * 1'), ('0 0 29 2 *'), ('0 0 * * 7'), ('@daily'),
               ('@weekly'), ('1 minute'), ('5 minutes'), ('1 hour'), ('2 hours'), ('1 day'),
               ('1 week'), ('1 month'), ('3 months'), ('1 year')) v(s);

-- invalid schedules
SELECT toygun.schedule_bucket('');
SELECT toygun.schedule_bucket('hello');
SELECT toygun.schedule_bucket('5');
SELECT toygun.schedule_bucket('0 0 * * * *');
SELECT toygun.schedule_bucket('60 * * * *');
SELECT toygun.schedule_bucket('* 24 * * *');
SELECT toygun.schedule_bucket('* * 0 * *');
SELECT toygun.schedule_bucket('* * * 13 *');
SELECT toygun.schedule_bucket('* * * * 8');
SELECT toygun.schedule_bucket('* * * foo *');
SELECT toygun.schedule_bucket('* * * * funday');
SELECT toygun.schedule_bucket('5-1 * * * *');
SELECT toygun.schedule_bucket('1/5 * * * *');
SELECT toygun.schedule_bucket('*/0 * * * *');
SELECT toygun.schedule_bucket('1,,2 * * * *');
SELECT toygun.schedule_bucket('*-5 * * * *');
-- an unexpected character is quoted whole (never a byte of a multibyte
-- one), and a control character by its code
SELECT toygun.schedule_bucket('5é * * * *');
SELECT toygun.schedule_bucket('* * * * €');
SELECT toygun.schedule_bucket(E'* 3\x01 * * *');
SELECT toygun.schedule_bucket(E'* * 1,\u0085 * *');
SELECT toygun.schedule_bucket('0 0 30 2 *');
SELECT toygun.schedule_bucket('@reboot');
SELECT toygun.schedule_bucket('@fortnightly');
SELECT toygun.schedule_bucket(repeat('* ', 200));

-- intervals pg_cron 1.4.2 cannot express
SELECT toygun.schedule_bucket('30 seconds');
SELECT toygun.schedule_bucket('90 seconds');
SELECT toygun.schedule_bucket('7 minutes');
SELECT toygun.schedule_bucket('90 minutes');
SELECT toygun.schedule_bucket('5 hours');
SELECT toygun.schedule_bucket('2 days');
SELECT toygun.schedule_bucket('5 months');
SELECT toygun.schedule_bucket('1 month 2 days');
SELECT toygun.schedule_bucket('-5 minutes');

-- without pg_cron in this database
SELECT toygun.start_every('host', 'nightly', '0 3 * * *');
SELECT toygun.stop_every('host', 'nightly');
SELECT count(*) FROM toygun.schedule;
SELECT toygun.run_schedule('host', 'nightly');

-- the arguments are checked first
SELECT toygun.start_every('nope', 'nightly', '0 3 * * *');
SELECT toygun.start_every('host', 'weekly', '0 3 * * *');
SELECT toygun.start_every('host', 'nightly', '61 * * * *');
SELECT toygun.start_every('host', 'nightly', NULL);
SELECT toygun.start_every('host', 'nightly', '0 3 * * *', '[1]');
SELECT toygun.start_every('host', 'nightly', '0 3 * * *', '{"colour": 1}');
SELECT toygun.start_every('host', 'rotate', '0 3 * * *', '{"token": "hunter2"}');
SELECT toygun.stop_every('host', 'weekly');
SELECT toygun.run_schedule('host', 'nightly', now() + interval '1 hour');

-- the rest of toygun works without pg_cron
SELECT toygun.create_resource('host', '{"name": "busy"}') AS busy \gset
SELECT toygun.start_task(:'busy', 'nightly') IS NOT NULL AS started;

-- with pg_cron
CREATE EXTENSION pg_cron;
SELECT toygun.start_every('host', 'nightly', '1 day', '{"depth": 2}') > 0 AS scheduled;
SELECT jobname, schedule, command, database, active FROM cron.job;
SELECT resource_type, task, schedule, cron, args, owner, job_name,
       job_id = (SELECT jobid FROM cron.job) AS same_job, last_bucket, last_started
  FROM toygun.schedule;

-- updating keeps the job
SELECT toygun.start_every('host', 'nightly', '0 3 * * *', '{"depth": 3}') = job_id AS same_job
  FROM toygun.schedule;
SELECT jobname, schedule, command FROM cron.job;

-- firings: two idle resources, the busy one and a stopped one
SELECT toygun.create_resource('host', '{"name": "a"}') AS a \gset
SELECT toygun.create_resource('host', '{"name": "b"}') AS b \gset
SELECT toygun.create_resource('host', '{"name": "gone"}') AS gone \gset
SELECT state FROM toygun.stop_resource(:'gone');
SELECT toygun.run_schedule('host', 'nightly', '2024-05-01 03:00:30+00');
SELECT toygun.run_schedule('host', 'nightly', '2024-05-02 02:59:59+00');
SELECT r.attrs->>'name' AS resource, count(t.id) AS runs, string_agg(t.attrs::text, ', ') AS args
  FROM toygun.resource r LEFT JOIN toygun.task t ON t.resource_id = r.id
 WHERE r.type = 'host' GROUP BY 1 ORDER BY 1;
SELECT schedule, last_bucket, last_started FROM toygun.schedule;
SELECT toygun.run_schedule('host', 'nightly', '2024-04-30 12:00:00+00');

-- removing it
SELECT toygun.stop_every('host', 'nightly');
SELECT toygun.stop_every('host', 'nightly');
SELECT count(*) AS jobs FROM cron.job;
SELECT count(*) AS schedules FROM toygun.schedule;
DROP EXTENSION pg_cron;
SET client_min_messages = warning;
DROP EXTENSION toygun CASCADE;
