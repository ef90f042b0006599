-- Queues (issue 17, flow control): define_resource and define_task name a
-- queue, made on first use; resources and runs take their type's queue at
-- creation and start, and a redefinition moves the live ones; pause_queue
-- and resume_queue, their errors; queue_status(). Which worker claims what
-- is the workers': test/scenario/queues.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(33);
SET LOCAL client_min_messages = error;   -- the WARNING of a queue without workers (toygun.workers = 0 here)

SELECT is((SELECT name FROM toygun.queue WHERE id = 0), 'default', 'queue 0, default, is installed');
SELECT is((SELECT queue_id FROM toygun.resource_type WHERE name = 'dummy'), 0::smallint,
          'a type defined without a queue is in default');

-- a queue named by a definition is made, with the lowest free id
SELECT toygun.define_resource('qres', queue => 'reports') IS NULL AS defined \gset
SELECT is((SELECT id FROM toygun.queue WHERE name = 'reports'), 1::smallint, 'define_resource makes its queue');
SELECT is((SELECT queue_id FROM toygun.resource_type WHERE name = 'qres'), 1::smallint, 'and the type is in it');
SELECT toygun.define_task('qres', 'job', '{a,b}', 'dummy_another(toygun.task)', queue => 'reports') IS NULL AS defined \gset
SELECT toygun.define_task('qres', 'other', '{a,b}', 'dummy_another(toygun.task)') IS NULL AS defined \gset
SELECT is((SELECT count(*) FROM toygun.queue), 2::bigint, 'a queue named again is not made again');
SELECT is((SELECT queue_id FROM toygun.task_type WHERE resource_type = 'qres' AND name = 'job'), 1::smallint,
          'define_task puts its type in the queue');
SELECT is((SELECT queue_id FROM toygun.task_type WHERE resource_type = 'qres' AND name = 'other'), 0::smallint,
          'a task type has its own queue, not its resource type''s');

-- objects take their type's queue
SELECT toygun.create_resource('qres') AS r \gset
SELECT is((SELECT queue_id FROM toygun.resource WHERE id = :'r'), 1::smallint, 'a resource takes its type''s queue');
SELECT toygun.start_task(:'r', 'job') AS j \gset
SELECT toygun.start_task(:'r', 'other') AS o \gset
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'j'), 1::smallint, 'a run takes its task type''s queue');
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'o'), 0::smallint, 'default, for a type without one');
SELECT toygun.start_every('qres', 'job', '0 3 * * *') IS NOT NULL AS scheduled \gset
SELECT toygun.create_resource('qres') AS r2 \gset
SELECT cmp_ok(toygun.run_schedule('qres', 'job', '2024-05-01 03:00:30+00'), '>=', 1::bigint, 'a firing starts runs');
SELECT is((SELECT array_agg(DISTINCT queue_id) FROM toygun.task WHERE resource_id = :'r2'), '{1}'::smallint[],
          'in the type''s queue too');
SELECT is((toygun.task_for(:'r', 'job')).queue_id, 1::smallint, 'task_for returns the queue');

-- a redefinition into another queue moves the live objects; stopped ones stay
SELECT toygun.stop_task(:'o') IS NULL AS stopped \gset
SELECT toygun.define_task('qres', 'other', '{a,b}', 'dummy_another(toygun.task)', queue => 'batch') IS NULL AS defined \gset
SELECT is((SELECT id FROM toygun.queue WHERE name = 'batch'), 2::smallint, 'a redefinition can make a queue');
SELECT toygun.start_task(:'r', 'other') AS o2 \gset
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'o2'), 2::smallint, 'later starts take the new queue');
SELECT toygun.define_task('qres', 'job', '{a,b}', 'dummy_another(toygun.task)', queue => 'batch') IS NULL AS defined \gset
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'j'), 2::smallint,
          'a live run is moved to its type''s new queue');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_type = 'qres' AND name = 'job' AND state <> '__stop__' AND queue_id <> 2),
          0::bigint, 'every live run of the type');
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'o'), 0::smallint, 'a stopped run stays where it was');
SELECT toygun.define_resource('qres') IS NULL AS defined \gset
SELECT is((SELECT queue_id FROM toygun.resource WHERE id = :'r'), 0::smallint,
          'a redefinition without a queue moves a type''s resources back to default');

-- names
SELECT throws_ok($$SELECT toygun.define_resource('qbad', queue => '')$$, '22023', 'queue name must not be empty',
                 'an empty queue name is refused (22023)');
SELECT throws_ok(format('SELECT toygun.define_task(%L, %L, %L, %L, queue => %L)', 'qres', 'job', '{a,b}',
                        'dummy_another(toygun.task)', repeat('q', 64)),
                 '42622', 'queue name is too long', 'a queue name over 63 bytes is refused (42622)');
-- 256 queues at most
INSERT INTO toygun.queue (id, name) SELECT i, 'filler' || i FROM generate_series(3, 255) AS i;
SELECT throws_ok($$SELECT toygun.define_resource('qbad', queue => 'one_too_many')$$, '54000',
                 'queue "one_too_many" of resource type "qbad" cannot be made: there are 256 queues already',
                 'a 257th queue is refused (54000)');
SELECT is((SELECT count(*) FROM toygun.resource_type WHERE name = 'qbad'), 0::bigint, 'and defines nothing');
DELETE FROM toygun.queue WHERE name LIKE 'filler%';

-- pause and resume
SELECT throws_ok($$SELECT toygun.pause_queue(NULL)$$, '22004', 'name must not be null',
                 'pause_queue(NULL) is refused (22004)');
SELECT throws_ok($$SELECT toygun.resume_queue('nosuch')$$, '42704', 'queue "nosuch" does not exist',
                 'an unknown queue is refused (42704)');
SELECT is(pg_temp.hint_of($$SELECT toygun.pause_queue('nosuch')$$),
          'Queues are made by define_resource and define_task (queue => ...); see toygun.queue_status().',
          'with a hint');
SELECT lives_ok($$SELECT toygun.pause_queue('reports'); SELECT toygun.pause_queue('reports')$$,
                'pause_queue is idempotent');
SELECT is((SELECT paused FROM toygun.queue WHERE name = 'reports'), true, 'the queue is paused');
SELECT is((SELECT paused FROM toygun.queue_status() WHERE queue = 'reports'), true, 'queue_status() says so');
SELECT lives_ok($$SELECT toygun.resume_queue('reports'); SELECT toygun.resume_queue('reports')$$,
                'resume_queue is idempotent');
SELECT is((SELECT paused FROM toygun.queue WHERE name = 'reports'), false, 'and resumes it');
CREATE ROLE tg_q_app;
SELECT is(pg_temp.as_role('tg_q_app', $$SELECT toygun.pause_queue('reports')$$),
          '42501 permission denied to pause queue "reports"',
          'only the extension''s owner pauses a queue (42501)');
SELECT is((SELECT array_agg(queue ORDER BY id) FROM toygun.queue_status() WHERE id IS NOT NULL),
          '{default,reports,batch}'::text[], 'queue_status() lists the queues');

SELECT * FROM finish();
ROLLBACK;
