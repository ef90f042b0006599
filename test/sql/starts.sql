-- Starting on purpose: start_task(..., if_live) returns the live run, or
-- raises 23505 naming it.
BEGIN;
\ir ../fixtures.sql
SELECT plan(8);

SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test', '{"n": 1}') AS t \gset

SELECT is(toygun.start_task(:'r', 'test', '{"n": 2}'), :'t'::uuid,
          'by default a start that finds a live run returns it');
SELECT is(toygun.start_task(:'r', 'test', '{"n": 2}', if_live => 'return'), :'t'::uuid,
          'as it does with if_live => return');
SELECT is((SELECT attrs FROM toygun.task WHERE id = :'t'), '{"n": 1}'::jsonb, 'and its args are ignored');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'test', '{"n": 2}', if_live => 'error')$$, :'r'),
                 '23505', format('task "test" of resource %s already has a live run, %s', :'r', :'t'),
                 'with if_live => error it raises 23505 naming the live run');
SELECT toygun.panic_task(:'t', 'stuck') IS NOT NULL AS panicked \gset
SELECT is(pg_temp.detail_of(format($$SELECT toygun.start_task(%L, 'test', '{}', if_live => 'error')$$, :'r')),
          'It is in state "__panic__" (panicked: it needs a person).',
          'and says when that run is panicked');
SELECT toygun.stop_task(:'t') IS NOT NULL AS stopped \gset
SELECT isnt(toygun.start_task(:'r', 'test', '{}', if_live => 'error'), :'t'::uuid,
            'with no live run, if_live => error starts a new run');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'another', '{}', if_live => 'fail')$$, :'r'),
                 '22023', NULL, 'an unknown if_live is refused');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'another', '{}', if_live => NULL)$$, :'r'),
                 '22004', NULL, 'if_live must not be NULL');

SELECT * FROM finish();
ROLLBACK;
