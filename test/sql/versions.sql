-- Schema versions (issue 16): a type's version and upgrade function; objects
-- record the version of their attrs, are upgraded (once, as the type's
-- owner) before their next tick or move by hand, or by toygun.backfill() in
-- bounded batches; a failing upgrade fails like a tick; versions never go
-- down.
BEGIN;
\ir ../fixtures.sql
SELECT plan(44);

CREATE ROLE tg_v_owner;
CREATE ROLE tg_v_other;
GRANT tg_v_owner TO CURRENT_USER;
-- the handler keeps what it saw: its attrs and version
CREATE FUNCTION public.v_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'a' THEN toygun.go('b', jsonb_build_object('saw', t.attrs - 'saw', 'saw_version', t.version))
                        ELSE toygun.stay(wait => '1 hour') END $$;
CREATE FUNCTION public.v_r(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay(wait => '1 hour') $$;
-- version 2: size (GB) becomes size_mb; counts its calls, says who ran it and from what
CREATE FUNCTION public.v_up(attrs jsonb, from_version integer) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (attrs - 'size') || jsonb_build_object('size_mb', (attrs->>'size')::int * 1024,
        'from', from_version, 'by', current_user,
        'upgrades', COALESCE((attrs->>'upgrades')::int, 0) + 1) $$;
CREATE FUNCTION public.v_bad(attrs jsonb, from_version integer) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF attrs ? 'bad' THEN RAISE EXCEPTION 'cannot upgrade this one'; END IF;
    RETURN attrs || jsonb_build_object('upgrades', COALESCE((attrs->>'upgrades')::int, 0) + 1);
END $$;
CREATE FUNCTION public.v_null(attrs jsonb, from_version integer) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT NULL::jsonb $$;
CREATE FUNCTION public.v_wrong(attrs jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT attrs $$;
GRANT EXECUTE ON FUNCTION public.v_h(toygun.task), public.v_r(toygun.resource) TO tg_v_owner;

SET ROLE tg_v_owner;
SELECT toygun.define_resource('v', '{up}', handler => 'v_r(toygun.resource)');
SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)', fields => '{size,size_mb,from,by,upgrades,saw,saw_version,bad,note}');
RESET ROLE;

-- definitions
SELECT is((SELECT version FROM toygun.task_type WHERE resource_type = 'v' AND name = 'job'), 1,
          'a type is at version 1 unless it says otherwise');
SELECT toygun.start_task(toygun.create_resource('v'), 'job', '{"size": 2}') AS t1 \gset
SELECT toygun.start_task(toygun.create_resource('v'), 'job', '{"size": 3}') AS t3 \gset
SELECT toygun.start_task(toygun.create_resource('v'), 'job', '{"size": 4}') AS t4 \gset
SELECT toygun.start_task(toygun.create_resource('v'), 'job', '{"size": 5}') AS t5 \gset
SELECT is((SELECT version FROM toygun.task WHERE id = :'t1'), 1, 'its runs record version 1');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)',
             fields => '{size,size_mb,from,by,upgrades,saw,saw_version,bad,note}', version => 2,
             upgrade => 'v_wrong(jsonb)')$$), '42P13', 'an upgrade function of another shape is refused');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)', version => 0)$$),
          '22023', 'version 0 is refused');
SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)',
                          fields => '{size,size_mb,from,by,upgrades,saw,saw_version,bad,note}',
                          version => 2, upgrade => 'v_up(jsonb,integer)');
SELECT is((SELECT (version, upgrade)::text FROM toygun.task_type WHERE resource_type = 'v' AND name = 'job'),
          '(2,"public.v_up(pg_catalog.jsonb,integer)")', 'version and upgrade are stored');
SELECT throws_ok($$SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)', version => 1)$$, '22023',
                 'version of task type "v.job" cannot go down from 2 to 1', 'lowering the version is refused');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)', version => 1)$$),
          'Give version 2 or higher, or leave version out (NULL) to keep it.', 'with a hint');
-- left out, the version and its upgrade stay
SELECT toygun.define_task('v', 'job', '{a,b}', 'v_h(toygun.task)',
                          fields => '{size,size_mb,from,by,upgrades,saw,saw_version,bad,note}');
SELECT is((SELECT (version, upgrade)::text FROM toygun.task_type WHERE resource_type = 'v' AND name = 'job'),
          '(2,"public.v_up(pg_catalog.jsonb,integer)")', 'a redefinition without version keeps version and upgrade');
SELECT is((SELECT count(*) FROM toygun.task WHERE resource_type = 'v' AND version = 1), 4::bigint,
          'redefining upgrades nothing by itself');

-- a new run starts at the current version, with nothing to upgrade
SELECT toygun.start_task(toygun.create_resource('v'), 'job', '{"size_mb": 10}') AS t2 \gset
SELECT is((SELECT version FROM toygun.task WHERE id = :'t2'), 2, 'a run started now is at version 2');
SELECT is((SELECT attrs FROM toygun.tick_task(:'t2')), '{"saw": {"size_mb": 10}, "size_mb": 10, "saw_version": 2}'::jsonb,
          'and its tick runs no upgrade');

-- lazy upgrade: a tick by hand upgrades first, once
SELECT pg_temp.steps(:'t1') AS steps_before \gset
SELECT is((SELECT attrs FROM toygun.tick_task(:'t1')),
          '{"by": "tg_v_owner", "from": 1, "size_mb": 2048, "upgrades": 1,
            "saw": {"by": "tg_v_owner", "from": 1, "size_mb": 2048, "upgrades": 1}, "saw_version": 2}'::jsonb,
          'a tick upgrades the run before its handler, which sees the new attrs and version');
SELECT is((SELECT version FROM toygun.task WHERE id = :'t1'), 2, 'the run is at version 2');
SELECT is(pg_temp.steps(:'t1'), :steps_before + 2::bigint, 'an upgrade adds no history row (the tick its two)');
SELECT toygun.tick_task(:'t1');
SELECT is((SELECT attrs->>'upgrades' FROM toygun.task WHERE id = :'t1'), '1', 'the next tick does not upgrade again');
SELECT is((SELECT attrs->>'by' FROM toygun.task WHERE id = :'t1'), 'tg_v_owner',
          'the upgrade function ran as the type''s owner, not as the caller');

-- the API: moves and updates by hand upgrade first; reads, stops and panics do not
SELECT is((SELECT attrs FROM toygun.update_task(:'t3', '{"note": "x"}')),
          '{"by": "tg_v_owner", "from": 1, "note": "x", "size_mb": 3072, "upgrades": 1}'::jsonb,
          'update_task upgrades, then merges');
SELECT is((SELECT version FROM toygun.task_for(r.resource_id, 'job')), 2, 'task_for shows the version')
  FROM toygun.task r WHERE r.id = :'t3';
SELECT is((SELECT (version, attrs->'size_mb')::text FROM toygun.transition_task(:'t4', 'b')), '(2,4096)',
          'transition_task upgrades');
SELECT is((SELECT (version, attrs)::text FROM toygun.stop_task(:'t5')), '(1,"{""size"": 5}")',
          'stop_task does not upgrade: a stopped run keeps the version it stopped at');
SELECT is((SELECT version FROM toygun.task_for(r.resource_id, 'job')), 1, 'task_for reads it as stored')
  FROM toygun.task r WHERE r.id = :'t5';

-- backfill, in batches
SELECT toygun.define_task('v', 'bf', '{a,b}', 'v_h(toygun.task)', owner => 'tg_v_owner');
CREATE TEMP TABLE bf AS
    SELECT toygun.start_task(toygun.create_resource('v'), 'bf', jsonb_build_object('size', i)) AS id, i
      FROM generate_series(1, 5) i;
SELECT toygun.stop_task(id) FROM bf WHERE i = 5;
SELECT toygun.define_task('v', 'bf', '{a,b}', 'v_h(toygun.task)', version => 2, upgrade => 'v_up(jsonb,integer)');
SELECT is(toygun.backfill('v', 'bf', 3), 1::bigint, 'a batch of 3 upgrades 3, and 1 live run remains');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = 'bf' AND version = 2), 3::bigint, 'three are at version 2');
SELECT is(toygun.backfill('v', 'bf', 3), 0::bigint, 'the next call does the rest');
SELECT is(toygun.backfill('v', 'bf'), 0::bigint, 'and then there is nothing to do');
SELECT is((SELECT array_agg(t.attrs->>'upgrades' ORDER BY bf.i) FROM bf JOIN toygun.task t ON t.id = bf.id WHERE bf.i < 5),
          '{1,1,1,1}', 'each live run was upgraded once');
SELECT is((SELECT (t.version, t.attrs)::text FROM bf JOIN toygun.task t ON t.id = bf.id WHERE bf.i = 5),
          '(1,"{""size"": 5}")', 'a stopped run is left as it is');
SELECT is((SELECT sum(pg_temp.steps(id)) FROM bf), 1::numeric, 'backfill adds no history row (the stop its one)');
SELECT is((SELECT count(*) FROM toygun.task t JOIN bf ON bf.id = t.id WHERE t.run_at > now() + interval '1 minute'),
          0::bigint, 'and leaves when the runs are due as it was');
-- a failing upgrade: the object is skipped, recorded as a failed tick; the others go on
SELECT toygun.update_task(id, '{"bad": true}') FROM bf WHERE i = 2;
SELECT toygun.define_task('v', 'bf', '{a,b}', 'v_h(toygun.task)', version => 3, upgrade => 'v_bad(jsonb,integer)');
SET client_min_messages = error;
SELECT is(toygun.backfill('v', 'bf', 10), 0::bigint,
          'backfill skips an object whose upgrade fails, which then waits out its backoff');
RESET client_min_messages;
SELECT is((SELECT array_agg(t.version ORDER BY bf.i) FROM bf JOIN toygun.task t ON t.id = bf.id WHERE bf.i < 5),
          '{3,2,3,3}', 'the others are upgraded');
SELECT is((SELECT (t.attempts, t.last_error)::text FROM bf JOIN toygun.task t ON t.id = bf.id WHERE bf.i = 2),
          '(1,"cannot upgrade this one")', 'the failure counts as an attempt, with its error');
SELECT is((SELECT count(*) FROM toygun.failure f JOIN bf ON bf.id = f.object_id WHERE bf.i = 2), 1::bigint,
          'and is kept in toygun.failure');
SELECT throws_ok($$SELECT toygun.tick_task(id) FROM bf WHERE i = 2$$, 'P0001', 'cannot upgrade this one',
                 'a tick whose upgrade fails fails as a handler''s error does');
SELECT is((SELECT t.version FROM bf JOIN toygun.task t ON t.id = bf.id WHERE bf.i = 2), 2,
          'and leaves the run at its version');
SELECT toygun.define_task('v', 'bf', '{a,b}', 'v_h(toygun.task)', version => 4, upgrade => 'v_null(jsonb,integer)');
SELECT throws_ok($$SELECT toygun.tick_task(id) FROM bf WHERE i = 1$$, '22004',
                 'upgrade function public.v_null(pg_catalog.jsonb,integer) of task type "v.bf" returned NULL',
                 'an upgrade that returns NULL fails the tick');

-- resource types; rights; arguments; the function cannot be dropped
SELECT toygun.create_resource('v') AS r1 \gset
CREATE FUNCTION public.v_rup(attrs jsonb, from_version integer) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT attrs || jsonb_build_object('rv', from_version) $$;
SELECT toygun.define_resource('v', '{up}', handler => 'v_r(toygun.resource)', version => 2,
                              upgrade => 'v_rup(jsonb,integer)');
SELECT toygun.create_resource('v') AS r2 \gset
SELECT is((SELECT version FROM toygun.resource WHERE id = :'r2'), 2, 'a resource created now is at version 2');
SELECT cmp_ok(toygun.backfill('v', batch => 100), '=', 0::bigint, 'backfill of a resource type');
SELECT is((SELECT (version, attrs)::text FROM toygun.resource WHERE id = :'r1'), '(2,"{""rv"": 1}")',
          'upgrades its resources');
SELECT is((SELECT attrs FROM toygun.resource WHERE id = :'r2'), '{}'::jsonb, 'but not those at the version');
SELECT matches(pg_temp.as_role('tg_v_other', $$SELECT toygun.backfill('v', 'bf')$$), '^42501 ',
            'backfill needs right operate');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.backfill('v', 'bf', 0)$$), '22023', 'a batch below 1 is refused');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.backfill('nope')$$), '42704', 'an unknown type is refused');
SELECT is(pg_temp.sqlstate_of($$DROP FUNCTION public.v_rup(jsonb, integer)$$), '2BP01',
          'a type''s upgrade function cannot be dropped');

SELECT * FROM finish();
ROLLBACK;
