-- Repairs by hand: retry_task, rewinding a run that panicked in its first
-- tick, and a repaired run without its panic_message.
BEGIN;
\ir ../fixtures.sql
SELECT plan(14);

CREATE ROLE tg_p_app;
SELECT toygun.grant_type('dummy', 'tg_p_app', '{read,start}');
SELECT toygun.create_resource('dummy') AS r \gset

-- a run that panicked in its first tick (from __new__)
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT toygun.panic_task(:'t', 'first tick failed') IS NOT NULL AS panicked \gset
SELECT is((SELECT state FROM toygun.rewind_task(:'t')), '__new__',
          'rewinding a run that panicked from __new__ puts it back in __new__');
SELECT is((SELECT state FROM toygun.tick_task(:'t')), 'middle', 'and its next tick runs it from the start');
SELECT ok((SELECT NOT attrs ? 'panic_message' FROM toygun.task WHERE id = :'t'),
          'a repaired run no longer carries panic_message');
SELECT is((SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY step) FROM toygun.history(:'t')),
          '__new__>__panic__ __panic__>__new__ __new__>beginning beginning>middle',
          'the panic and the repair stay in the history');

-- retry_task on a panicked run: back to the state it panicked from
SELECT toygun.panic_task(:'t', 'middle failed') IS NOT NULL AS panicked \gset
SELECT is((SELECT state FROM toygun.retry_task(:'t', 'the database is back')), 'middle',
          'retry_task moves a panicked run back to the state it panicked from');
SELECT is((SELECT ARRAY[note, reason, made_by::text] FROM toygun.history(:'t') ORDER BY step DESC LIMIT 1),
          ARRAY['retry_task', 'the database is back', current_user::text], 'with its maker and reason in the history');
SELECT ok((SELECT NOT attrs ? 'panic_message' AND run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t'),
          'without panic_message, and due now');

-- retry_task on a failing run: due now, same state, attempts start again
UPDATE toygun.task SET attempts = 3, last_error = 'boom', run_at = now() + interval '1 hour' WHERE id = :'t';
SELECT is((SELECT ARRAY[state, attempts::text, coalesce(last_error, '-'), (run_at <= clock_timestamp())::text]
             FROM toygun.retry_task(:'t')),
          ARRAY['middle', '0', '-', 'true'], 'retry_task makes a failing run due now, in its state, attempts reset');
SELECT is((SELECT from_state || '>' || to_state FROM toygun.history(:'t') ORDER BY step DESC LIMIT 1),
          'middle>middle', 'and records it as a move to the same state');

-- a waiting run in __new__, and a stopped run
SELECT toygun.start_task(:'r', 'another') AS a \gset
SELECT is((SELECT state FROM toygun.retry_task(:'a')), '__new__', 'retry_task keeps a run in __new__ there');
SELECT toygun.stop_task(:'a') IS NOT NULL AS stopped \gset
SELECT throws_ok(format($$SELECT toygun.retry_task(%L)$$, :'a'), '55000', NULL,
                 'a stopped run is not retried');
SELECT throws_ok(format($$SELECT toygun.rewind_task(%L)$$, toygun.start_task(:'r', 'another')), '55000', NULL,
                 'a run that has made no transition has nothing to rewind to');

-- rights
SELECT alike(pg_temp.as_role('tg_p_app', format($$SELECT toygun.retry_task(%L)$$, :'t')),
             '42501 %right "operate"%', 'retry_task needs right operate');

-- a stop keeps panic_message
SELECT toygun.panic_task(:'t', 'kept') IS NOT NULL AS panicked \gset
SELECT is((SELECT attrs->>'panic_message' FROM toygun.stop_task(:'t')), 'kept',
          'stopping a panicked run keeps its panic_message');

SELECT * FROM finish();
ROLLBACK;
