-- A hostile review of concurrency limits (issue 17): a run brought back from
-- __stop__ after its type's limits changed gets the key of its type's limits
-- now (a stale key would leave it in task_flow_idx under a limit no worker
-- of its type claims), limit_status() shows a stranger no other owner's
-- slots, and '$root' refuses a resource deeper than it walks rather than
-- give one tree's resources different keys. The race of a start with a
-- redefinition that changes the limits: specs/flow_rekey_race.spec.
BEGIN;
\ir ../fixtures.sql
SELECT plan(9);

CREATE FUNCTION public.la_stay(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('la');
SELECT toygun.create_resource('la') AS r \gset

-- 1. A run stopped while its type had limits, brought back after the type lost them.
SELECT toygun.define_task('la', 'lost', '{s}', 'public.la_stay(toygun.task)', max_running => 1);
SELECT toygun.start_task(:'r', 'lost') AS lost \gset
SELECT FROM toygun.stop_task(:'lost');
SELECT toygun.define_task('la', 'lost', '{s}', 'public.la_stay(toygun.task)');
SELECT is((toygun.rewind_task(:'lost')).flow_key, NULL,
          'rewound after its type lost its limits, a run has no key (it is claimed as any run)');

-- 2. A run stopped before its type had limits, brought back after it gained them.
SELECT toygun.define_task('la', 'gained', '{s}', 'public.la_stay(toygun.task)');
SELECT toygun.start_task(:'r', 'gained', '{"account": "acme"}') AS gained \gset
SELECT FROM toygun.stop_task(:'gained');
SELECT toygun.define_task('la', 'gained', '{s}', 'public.la_stay(toygun.task)',
                          concurrency_key => 'account', max_per_key => 1);
SELECT FROM toygun.transition_task(:'gained', 's');
SELECT toygun.create_resource('la') AS r2 \gset
SELECT toygun.start_task(:'r2', 'gained', '{"account": "acme"}') AS fresh \gset
SELECT isnt((SELECT flow_key FROM toygun.task WHERE id = :'gained'), NULL,
            'moved out of __stop__ after its type gained limits, a run has a key');
SELECT is((SELECT flow_key FROM toygun.task WHERE id = :'gained'), (SELECT flow_key FROM toygun.task WHERE id = :'fresh'),
          'the key a run of its account started now has');

-- 3. A run stopped under one concurrency_key, brought back under another.
SELECT toygun.define_task('la', 'rekeyed', '{s}', 'public.la_stay(toygun.task)',
                          concurrency_key => 'account', max_per_key => 1);
SELECT toygun.start_task(:'r', 'rekeyed', '{"account": "acme", "region": "eu"}') AS rk \gset
SELECT FROM toygun.stop_task(:'rk');
SELECT toygun.define_task('la', 'rekeyed', '{s}', 'public.la_stay(toygun.task)',
                          concurrency_key => 'region', max_per_key => 1);
SELECT FROM toygun.rewind_task(:'rk');
SELECT toygun.start_task(:'r2', 'rekeyed', '{"account": "other", "region": "eu"}') AS rk2 \gset
SELECT is((SELECT flow_key FROM toygun.task WHERE id = :'rk'), (SELECT flow_key FROM toygun.task WHERE id = :'rk2'),
          'rewound after its type changed its concurrency_key, a run has the key of the new one');

-- 4. limit_status(): the slots of the types the caller may read, not a stranger's.
SELECT toygun.define_task('la', 'held', '{s}', 'public.la_stay(toygun.task)', max_running => 3);
SELECT toygun.start_task(:'r', 'held') AS held \gset
SELECT FROM toygun.tick_task(:'held');   -- holds a slot until this transaction ends
SELECT is((SELECT running FROM toygun.limit_status() s JOIN toygun.task_type d ON d.limit_id = s.limit_id
            WHERE d.resource_type = 'la' AND d.name = 'held'), 1, 'the owner sees its type''s slot');
CREATE ROLE tg_la_stranger;
SET LOCAL ROLE tg_la_stranger;
SELECT is((SELECT count(*) FROM toygun.limit_status()), 0::bigint, 'a stranger sees no slot of another owner''s type');
RESET ROLE;
SELECT toygun.grant_type('la', 'tg_la_stranger', '{read}');
SET LOCAL ROLE tg_la_stranger;
SELECT is((SELECT count(*) FROM toygun.limit_status()), 1::bigint, 'with the read right, it sees them');
RESET ROLE;

-- 5. '$root' deeper than it walks: refused, not the key of an ancestor half way up.
SELECT toygun.define_resource('deep');
SELECT toygun.define_task('deep', 'job', '{s}', 'public.la_stay(toygun.task)',
                          concurrency_key => '$root', max_per_key => 1);
INSERT INTO toygun.resource (id, type, parent_id, state)
SELECT md5('deep' || i)::uuid, 'deep', CASE WHEN i > 0 THEN md5('deep' || (i - 1))::uuid END, 'running'
  FROM generate_series(0, 10001) i;
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'job')$$, md5('deep10001')::uuid), '54000',
                 format('resource %s is more than 10000 levels below its root: a run on it has no ''$root'' key',
                        md5('deep10001')::uuid),
                 'a run on a resource more than 10,000 levels below its root: 54000');
SELECT is(pg_temp.hint_of(format($$SELECT toygun.start_task(%L, 'job')$$, md5('deep10001')::uuid)),
          'Start the run on a resource nearer its root, or define the type with another concurrency_key.',
          'its hint');

SELECT * FROM finish();
ROLLBACK;
