-- Tables a DBA makes that INHERIT from toygun's (an archive of old runs, say)
-- are never read, locked or written through toygun: its statements read ONLY
-- its own tables. The archive here holds copies of toygun's rows under the
-- same ids, runs toygun never made on its resource (live and due), a resource,
-- definitions and a schedule; none is ever returned, ticked, moved or locked.
-- The history is partitioned (0.4, retention): nothing can inherit from it.
BEGIN;
\ir ../fixtures.sql
SELECT plan(24);

CREATE TABLE public.task_archive () INHERITS (toygun.task);
CREATE TABLE public.resource_archive () INHERITS (toygun.resource);
SELECT throws_ok($$CREATE TABLE public.transition_archive () INHERITS (toygun.transition)$$, '42809',
                 NULL, 'no table inherits from the history: it is partitioned');
CREATE TABLE public.resource_type_archive () INHERITS (toygun.resource_type);
CREATE TABLE public.task_type_archive () INHERITS (toygun.task_type);
CREATE TABLE public.schedule_archive () INHERITS (toygun.schedule);

-- toygun's own rows: a resource, a run of test halfway, a stopped run of another
SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT toygun.tick_task(:'t');
SELECT toygun.start_task(:'r', 'another') AS a \gset
SELECT toygun.stop_task(:'a');

-- the archive: toygun's rows copied under the same ids and moved on in the copy
INSERT INTO public.resource_archive SELECT * FROM ONLY toygun.resource;
UPDATE public.resource_archive SET state = '__stop__', run_at = NULL, step = 7;
INSERT INTO public.task_archive SELECT * FROM ONLY toygun.task;
UPDATE public.task_archive SET state = 'end', step = 9, attrs = '{"archived": true}',
                               run_at = now() - interval '1 hour';
-- runs toygun never made, later than its own (higher seq), live and due
INSERT INTO public.task_archive (id, resource_id, resource_type, name, state, step, run_at)
VALUES ('00000000-0000-7000-8000-00000000a001', :'r', 'dummy', 'test', 'beginning', 1,
        now() - interval '1 hour'),
       ('00000000-0000-7000-8000-00000000a002', :'r', 'dummy', 'another', 'a', 1,
        now() - interval '1 hour');
-- a resource toygun never made, and one parked for want of a handler
INSERT INTO public.resource_archive (id, type, state, step, run_at)
VALUES ('00000000-0000-7000-8000-00000000b001', 'dummy', 'starting', 1, now() - interval '1 hour'),
       ('00000000-0000-7000-8000-00000000b002', 'dummy', 'starting', 1, NULL);
-- definitions toygun never made, and a schedule
INSERT INTO public.resource_type_archive (name, states, owner, search_path)
VALUES ('ghost', '{a}', 'postgres', 'public');
INSERT INTO public.task_type_archive (resource_type, name, states, handler, owner, search_path)
VALUES ('dummy', 'ghost', '{a}', 'public.dummy_test(toygun.task)', 'postgres', 'public');
INSERT INTO public.schedule_archive (resource_type, task, schedule, cron, args, owner, job_name)
VALUES ('dummy', 'test', '1 hour', '0 * * * *', '{}', 'postgres', 'archived');

-- Every archived row with its location and locker: a write moves it, a lock sets xmax.
CREATE FUNCTION pg_temp.archive() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT format('%s %s %s %s', c.relname, x.ctid, x.xmax, x.row)
      FROM (SELECT tableoid, ctid, xmax, to_jsonb(a)::text AS row FROM ONLY public.task_archive a
            UNION ALL SELECT tableoid, ctid, xmax, to_jsonb(a)::text FROM ONLY public.resource_archive a
            UNION ALL SELECT tableoid, ctid, xmax, to_jsonb(a)::text FROM ONLY public.resource_type_archive a
            UNION ALL SELECT tableoid, ctid, xmax, to_jsonb(a)::text FROM ONLY public.task_type_archive a
            UNION ALL SELECT tableoid, ctid, xmax, to_jsonb(a)::text FROM ONLY public.schedule_archive a) x
      JOIN pg_class c ON c.oid = x.tableoid
$$;
CREATE TEMP TABLE archive_before AS SELECT pg_temp.archive() AS line;
SELECT is((SELECT count(*) FROM archive_before), 10::bigint, 'the archive holds its rows');

\set ghost_run '00000000-0000-7000-8000-00000000a001'
\set ghost_res '00000000-0000-7000-8000-00000000b001'

-- reads: only toygun's own rows
SELECT is((toygun.task_for(:'r', 'test')).id, :'t'::uuid, 'task_for returns toygun''s run, not a later archived one');
SELECT is((toygun.task_for(:'r', 'test')).step, 2::bigint, 'task_for returns toygun''s row of a copied run');
SELECT is(toygun.is_running(:'r', 'another'), false, 'is_running does not see an archived live run');
SELECT results_eq(format('SELECT step, to_state FROM toygun.history(%L)', :'t'),
                  $$ VALUES (0::bigint, 'beginning'), (1, 'middle') $$,
                  'history lists toygun''s transitions only, each step once');
SELECT is((SELECT sum(live) FROM toygun.stats WHERE resource_type = 'dummy' AND kind = 'task'), 1::numeric,
          'stats count toygun''s live runs only');
SELECT is((SELECT sum(live) FROM toygun.stats WHERE resource_type = 'dummy' AND kind = 'resource'), 1::numeric,
          'stats count toygun''s live resources only');

-- commands on archived runs, resources, definitions and schedules find nothing
SELECT is_empty(format($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    ['SELECT toygun.last_error(''%1$s'')', 'P0002'],
    ['SELECT toygun.tick_task(''%1$s'')', 'P0002'],
    ['SELECT toygun.transition_task(''%1$s'', ''end'')', 'P0002'],
    ['SELECT toygun.stop_task(''%1$s'')', 'P0002'],
    ['SELECT toygun.panic_task(''%1$s'', ''no'')', 'P0002'],
    ['SELECT toygun.rewind_task(''%1$s'')', 'P0002'],
    ['SELECT toygun.tick_resource(''%2$s'')', 'P0002'],
    ['SELECT toygun.transition_resource(''%2$s'', ''running'')', 'P0002'],
    ['SELECT toygun.stop_resource(''%2$s'')', 'P0002'],
    ['SELECT toygun.start_task(''%2$s'', ''test'')', 'P0002'],
    ['SELECT toygun.create_resource(''dummy'', ''{}'', ''%2$s'')', 'P0002'],
    ['SELECT toygun.create_resource(''ghost'')', '42704'],
    ['SELECT toygun.start_task(''%3$s'', ''ghost'')', '42704'],
    ['SELECT toygun.run_schedule(''dummy'', ''test'', now())', '42704']]) $$,
    :'ghost_run', :'ghost_res', :'r'),
    'no command finds an archived run, resource, definition or schedule');

-- commands on toygun's own rows move them, and only them
SELECT is((toygun.tick_resource(:'r')).state, 'starting', 'tick_resource ticks toygun''s resource');
SELECT is((SELECT state || ' ' || step FROM ONLY toygun.task WHERE id = :'t'), 'end 3',
          'tick_resource ticks toygun''s run once, from toygun''s row');
SELECT is((toygun.rewind_task(:'t')).state, 'middle', 'rewind_task reads toygun''s history');
SELECT is((toygun.transition_task(:'t', 'beginning', '{"x": 1}')).step, 5::bigint,
          'transition_task moves toygun''s run');
SELECT is((toygun.stop_resource(:'r')).state, '__stop__', 'stop_resource stops toygun''s resource');
SELECT ok((SELECT run_at IS NULL FROM ONLY toygun.task WHERE id = :'t'), 'and parks toygun''s run');
SELECT is((toygun.transition_resource(:'r', 'running')).state, 'running', 'a resource comes back');
SELECT ok((SELECT run_at IS NOT NULL FROM ONLY toygun.task WHERE id = :'t'), 'and re-arms toygun''s run');
SELECT is((toygun.panic_task(:'t', 'by hand')).state, '__panic__', 'panic_task panics toygun''s run');
SELECT is((toygun.stop_task(:'t')).state, '__stop__', 'stop_task stops toygun''s run');
SELECT isnt(toygun.start_task(:'r', 'another'), '00000000-0000-7000-8000-00000000a002'::uuid,
            'start_task starts a run beside an archived live one');
CREATE FUNCTION public.inherit_res(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stay() $$;
SELECT lives_ok($$ SELECT toygun.define_resource('dummy', handler => 'inherit_res(toygun.resource)') $$,
                'a handler for a type re-arms its parked resources');
SELECT is((SELECT count(*) FROM toygun.history(:'t')), 7::bigint, 'toygun''s run has its own history');

-- and the archive is as it was: not written, not locked
SELECT results_eq($$ SELECT pg_temp.archive() ORDER BY 1 $$,
                  $$ SELECT line FROM archive_before ORDER BY 1 $$,
                  'no archived row was written or locked');
SELECT is((SELECT count(*) FROM ONLY toygun.task), (SELECT count(DISTINCT id) FROM ONLY toygun.task),
          'toygun''s table holds each run once');

SELECT * FROM finish();
ROLLBACK;
