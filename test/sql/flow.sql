-- toygun.flow (issue 17, visibility): a row per queue and per task type
-- with a rate limit; read as the caller. The numbers a worker changes
-- (busy, running, waiting_for_token of held runs) are checked under the
-- workers: test/scenario/queues.sh and test/scenario/rates.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(12);
SET LOCAL client_min_messages = error;   -- the WARNING of a queue without workers (toygun.workers = 0 here)

CREATE ROLE tg_flow_stranger;
CREATE FUNCTION public.flow_handler(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay()
$$;

SELECT columns_are('toygun', 'flow',
                   ARRAY['kind', 'queue', 'resource_type', 'task', 'rate_limit', 'workers', 'running',
                         'busy', 'paused', 'due', 'waiting_for_token', 'tokens', 'waiting_for_slot'],
                   'toygun.flow has its columns');
SELECT is((SELECT paused FROM toygun.flow WHERE kind = 'queue' AND queue = 'default'), false,
          'the default queue has a row, not paused');

SELECT toygun.define_resource('flres', queue => 'fl_reports') IS NULL AS defined \gset
SELECT toygun.define_task('flres', 'job', '{a}', 'flow_handler(toygun.task)', queue => 'fl_reports') IS NULL AS defined \gset
SELECT toygun.define_rate_limit('fl_limit', 1, '1 hour', 3) IS NULL AS defined \gset
SELECT toygun.define_task('flres', 'paced', '{a}', 'flow_handler(toygun.task)', rate_limit => 'fl_limit') IS NULL AS defined \gset
SELECT toygun.create_resource('flres') AS r \gset
SELECT toygun.start_task(:'r', 'job') AS j \gset
SELECT toygun.start_task(:'r', 'paced') AS p \gset
SELECT is((SELECT due FROM toygun.flow WHERE kind = 'queue' AND queue = 'fl_reports'), 2::bigint,
          'a queue''s due counts its due resources and runs');
SELECT is((SELECT count(*) FROM toygun.flow WHERE kind = 'task' AND task = 'job'), 0::bigint,
          'a task type without a rate limit has no row');
SELECT is((SELECT row(queue, rate_limit, due, waiting_for_token)::text FROM toygun.flow
            WHERE kind = 'task' AND resource_type = 'flres' AND task = 'paced'),
          '(default,fl_limit,1,0)', 'a rate-limited type''s row: its queue, limit, due runs, none held');


SELECT is((SELECT tokens FROM toygun.flow WHERE task = 'paced'), 3, 'tokens: a full bucket');
SELECT ok(toygun.take_token('fl_limit', 2), 'two taken');
SELECT is((SELECT tokens FROM toygun.flow WHERE task = 'paced'), 1, 'tokens: what is left');

SELECT toygun.pause_queue('fl_reports') IS NULL AS paused \gset
SELECT is((SELECT paused FROM toygun.flow WHERE kind = 'queue' AND queue = 'fl_reports'), true,
          'a paused queue shows paused');
SELECT toygun.resume_queue('fl_reports') IS NULL AS resumed \gset
SELECT is((SELECT paused FROM toygun.flow WHERE kind = 'queue' AND queue = 'fl_reports'), false,
          'and resumed again');

-- read as the caller: a role that may not read the type sees none of its
-- objects, and no tokens of a limit it does not own
SET LOCAL ROLE tg_flow_stranger;
SELECT is((SELECT due FROM toygun.flow WHERE kind = 'queue' AND queue = 'fl_reports'), 0::bigint,
          'a stranger counts none of another owner''s objects');
SELECT is((SELECT row(due, tokens)::text FROM toygun.flow WHERE task = 'paced'), '(0,)',
          'nor its runs, nor its limit''s tokens');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
