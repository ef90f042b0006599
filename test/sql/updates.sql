-- Attrs changed without a transition (update_task, update_resource), and a
-- field set to JSON null is a field removed, in every attrs write.
BEGIN;
\ir ../fixtures.sql
SELECT plan(19);

CREATE ROLE tg_u_app;
CREATE ROLE tg_u_ops;
SELECT toygun.grant_type('dummy', 'tg_u_app', '{read,start}');
SELECT toygun.grant_type('dummy', 'tg_u_ops', '{read,operate}');
-- What q does as role: 'ok', or the SQLSTATE and the message.

SELECT toygun.create_resource('dummy', '{"host": "a", "gone": null}') AS r \gset
SELECT toygun.start_task(:'r', 'test', '{"size": 1, "note": null}') AS t \gset
SELECT toygun.tick_task(:'t') IS NOT NULL AS ticked \gset
SELECT toygun.tick_task(:'t') IS NOT NULL AS ticked \gset
UPDATE toygun.task SET run_at = now() + interval '1 hour', attempts = 2 WHERE id = :'t';
CREATE TEMP TABLE before AS SELECT * FROM toygun.task WHERE id = :'t';

-- ---------------------------------------------------------------------------
-- null removes a field
SELECT is((SELECT attrs FROM toygun.resource WHERE id = :'r'), '{"host": "a"}'::jsonb,
          'create_resource: a field set to null is not stored');
SELECT is((SELECT attrs FROM toygun.task WHERE id = :'t'), '{"size": 1}'::jsonb,
          'start_task: a field set to null is not stored');

-- ---------------------------------------------------------------------------
-- update_task
SELECT is((SELECT attrs FROM toygun.update_task(:'t', '{"size": 2, "owner": "x"}')),
          '{"size": 2, "owner": "x"}'::jsonb, 'update_task merges attrs');
SELECT is((SELECT ARRAY[t.state, t.step::text, (t.run_at = b.run_at)::text, t.attempts::text]
             FROM toygun.task t, before b WHERE t.id = :'t'),
          ARRAY['end', '3', 'true', '2'],
          'and keeps the state, the step, when it is next due and its attempts');
SELECT is(pg_temp.steps(:'t'), 3::bigint, 'and writes no history row');
SELECT is((SELECT attrs FROM toygun.update_task(:'t', '{"owner": null}')), '{"size": 2}'::jsonb,
          'a field updated to null is removed');
SELECT is((SELECT attrs FROM toygun.update_task(:'t', '{"absent": null}')), '{"size": 2}'::jsonb,
          'removing a field that is not there changes nothing');
SELECT is((SELECT attrs FROM toygun.update_task(:'t', '{"deep": {"x": null}}')),
          '{"size": 2, "deep": {"x": null}}'::jsonb,
          'only top-level fields are removed: a nested null is a value');
SELECT is((SELECT attrs FROM toygun.update_task(:'t', '{"size": 3}', 3)), '{"size": 3, "deep": {"x": null}}'::jsonb,
          'with expected_step at the run''s step, it applies');
SELECT throws_ok(format($$SELECT toygun.update_task(%L, '{"size": 4}', 2)$$, :'t'), '40001', NULL,
                 'with an expected_step the run has moved past, it is refused as desynchronized');
SELECT is((SELECT attrs->'size' FROM toygun.task WHERE id = :'t'), '3'::jsonb, 'and nothing was written');
SELECT throws_ok(format($$SELECT toygun.update_task(%L, '[1]')$$, :'t'), '22023', NULL,
                 'attrs must be an object');
SELECT throws_ok(format($$SELECT toygun.update_task(%L, NULL)$$, :'t'), '22004', NULL,
                 'attrs must not be NULL');

-- a parked run (its resource stopped) stays parked
SELECT toygun.create_resource('dummy') AS r2 \gset
SELECT toygun.start_task(:'r2', 'another') AS t2 \gset
SELECT toygun.stop_resource(:'r2') IS NOT NULL AS stopped \gset
SELECT ok((SELECT run_at IS NULL FROM toygun.update_task(:'t2', '{"k": 1}')),
          'an update does not make a parked run due');

-- ---------------------------------------------------------------------------
-- update_resource, transitions and outcomes remove null fields too
SELECT is((SELECT attrs FROM toygun.update_resource(:'r', '{"host": null, "port": 5432}')),
          '{"port": 5432}'::jsonb, 'update_resource merges, and null removes');
SELECT is((SELECT attrs FROM toygun.transition_task(:'t', 'middle', '{"size": null}')),
          '{"deep": {"x": null}}'::jsonb, 'transition_task: null removes a field');
CREATE FUNCTION public.u_clear(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.go('two', '{"temp": null, "kept": true}') $$;
SELECT toygun.define_task('dummy', 'clear', '{one,two}', 'u_clear(toygun.task)');
SELECT toygun.start_task(:'r', 'clear', '{"temp": "scratch"}') AS t3 \gset
SELECT is((SELECT attrs FROM toygun.tick_task(:'t3')), '{"kept": true}'::jsonb,
          'an outcome''s null removes a field');

-- ---------------------------------------------------------------------------
-- rights: operate
SELECT alike(pg_temp.as_role('tg_u_app', format($$SELECT toygun.update_task(%L, '{"a": 1}')$$, :'t')),
             '42501 %right "operate"%', 'update_task needs right operate');
SELECT is(pg_temp.as_role('tg_u_ops', format($$SELECT toygun.update_resource(%L, '{"a": 1}')$$, :'r')),
          'ok', 'a role with operate updates');

SELECT * FROM finish();
ROLLBACK;
