-- Signals: send() stores a message for a run and makes it due; its handler
-- takes its messages with receive(), in order, in the tick's transaction.
BEGIN;
\ir ../fixtures.sql
SELECT plan(16);

CREATE ROLE tg_m_app;
CREATE ROLE tg_m_ops;
CREATE ROLE tg_m_none;

-- a run that waits an hour for messages, and keeps what it received
CREATE FUNCTION public.m_waiter(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    got jsonb := (SELECT coalesce(jsonb_agg(m), '[]') FROM toygun.receive(t) m);
BEGIN
    IF got @> '["fail"]' THEN
        RAISE EXCEPTION 'failing after receiving %', got;
    END IF;
    IF got @> '["peek"]' THEN
        PERFORM toygun.receive(o) FROM toygun.task o WHERE o.id <> t.id LIMIT 1;
    END IF;
    RETURN toygun.stay(jsonb_build_object('got', coalesce(t.attrs->'got', '[]') || got), '1 hour');
END $$;
SELECT toygun.define_resource('mbox');
SELECT toygun.define_task('mbox', 'waiter', '{waiting}', 'm_waiter(toygun.task)');
SELECT toygun.grant_type('mbox', 'tg_m_app', '{read,start}');
SELECT toygun.grant_type('mbox', 'tg_m_ops', '{read,operate}');
SELECT toygun.create_resource('mbox') AS r \gset
SELECT toygun.start_task(:'r', 'waiter') AS t \gset
SELECT count(*) AS ticked FROM toygun.tick_task(:'t') \gset

SELECT ok((SELECT run_at > clock_timestamp() + interval '50 minutes' FROM toygun.task WHERE id = :'t'),
          'the run waits an hour');
SELECT ok(toygun.send(:'t', '{"n": 1}') > 0, 'send returns the message''s number');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'t'),
          'and makes the waiting run due now');
SELECT ok(toygun.send(:'t', '"two"') > 0, 'any JSON value is a message');
SELECT is((SELECT attrs->'got' FROM toygun.tick_task(:'t')), '[{"n": 1}, "two"]'::jsonb,
          'its handler receives the messages in the order they were sent');
SELECT is((SELECT count(*) FROM toygun.message WHERE run_id = :'t'), 0::bigint,
          'and they are taken in its tick');
SELECT is((SELECT attrs->'got' FROM toygun.tick_task(:'t')), '[{"n": 1}, "two"]'::jsonb,
          'a tick with no message receives none');

-- a tick that fails leaves its messages
SELECT toygun.send(:'t', '"fail"') > 0 AS sent \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), 'P0001', NULL, 'a tick that receives, then fails');
SELECT is((SELECT count(*) FROM toygun.message WHERE run_id = :'t'), 1::bigint,
          'leaves the messages it received for the next tick');
DELETE FROM toygun.message WHERE run_id = :'t';

-- receive only in the run's own tick
SELECT throws_ok(format($$SELECT toygun.receive(t) FROM toygun.task t WHERE id = %L$$, :'t'), '55000', NULL,
                 'receive outside a tick is refused');
SELECT toygun.start_task(:'r', 'waiter') IS NULL AS dummy \gset
SELECT toygun.start_task(toygun.create_resource('mbox'), 'waiter') AS other \gset
SELECT toygun.send(:'t', '"peek"') > 0 AS sent \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'t'), '55000', NULL,
                 'a handler cannot take another run''s messages');
DELETE FROM toygun.message WHERE run_id = :'t';

-- stopped and panicked runs
SELECT toygun.panic_task(:'other', 'stuck') IS NOT NULL AS panicked \gset
SELECT ok(toygun.send(:'other', '"later"') > 0 AND (SELECT run_at IS NULL FROM toygun.task WHERE id = :'other'),
          'a panicked run keeps its messages and is not made due');
SELECT toygun.stop_task(:'other') IS NOT NULL AS stopped \gset
SELECT throws_ok(format($$SELECT toygun.send(%L, '"late"')$$, :'other'), '55000', NULL,
                 'a stopped run takes no message');

-- rights and privacy
SELECT alike(pg_temp.as_role('tg_m_app', format($$SELECT toygun.send(%L, '"x"')$$, :'t')),
             '42501 %right "operate"%', 'send needs right operate');
SELECT is(pg_temp.as_role('tg_m_ops', format($$SELECT toygun.send(%L, '"from ops"')$$, :'t')), 'ok',
          'a role with operate sends');
SELECT is(pg_temp.as_role('tg_m_none', $q$DO $do$ BEGIN
              IF EXISTS (SELECT FROM toygun.message) THEN RAISE 'saw'; END IF; END $do$ $q$),
          'ok', 'an unrelated role sees no message');

SELECT * FROM finish();
ROLLBACK;
