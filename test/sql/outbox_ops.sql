-- The outbox to the operator (issue 18): toygun.list_outbox (pending,
-- failed, delivered, all; newest first, keyset pages), toygun.redeliver (an
-- undelivered row again, NOTIFY; a delivered one refused), the owner's only;
-- and toygun.metrics()'s outbox gauges, the owner's only.
BEGIN;
\ir ../fixtures.sql
SELECT plan(24);

CREATE ROLE tg_obo_reader;
CREATE FUNCTION public.tg_obo_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('tg_obo');
SELECT toygun.define_task('tg_obo', 'job', '{a}', 'tg_obo_h(toygun.task)');
SELECT toygun.grant_type('tg_obo', 'tg_obo_reader', '{read}');
SELECT toygun.create_resource('tg_obo') AS r \gset
SELECT toygun.define_channel('hook', 'webhook', '{"url": "https://hooks.example.com/x"}');
SELECT toygun.define_route('type:tg_obo', 'hook');
-- four alarms, four rows; then the deliverer's marks: delivered, a retry, failed
SELECT count(toygun.raise_alarm(:'r', 'k' || i, 'alarm ' || i)) AS n FROM generate_series(1, 4) i \gset
SELECT array_agg(id ORDER BY id) AS ids FROM toygun.outbox \gset
SELECT (:'ids'::bigint[])[1] AS o1, (:'ids'::bigint[])[2] AS o2, (:'ids'::bigint[])[3] AS o3,
       (:'ids'::bigint[])[4] AS o4 \gset
UPDATE toygun.outbox SET delivered_at = now(), attempts = 1, delivered_by = 'h:1' WHERE id = :o1;
UPDATE toygun.outbox SET attempts = 2, last_error = '503', next_attempt_at = now() + interval '1 minute' WHERE id = :o2;
UPDATE toygun.outbox SET attempts = 10, last_error = '404 from hooks.example.com', next_attempt_at = NULL WHERE id = :o3;

SELECT is((SELECT array_agg(id ORDER BY id) FROM toygun.list_outbox()), ARRAY[:o2, :o4]::bigint[],
          'pending: the new row and the one waiting for a retry');
SELECT is((SELECT array_agg(id) FROM toygun.list_outbox('failed')), ARRAY[:o3]::bigint[],
          'failed: an error and no retry to come');
SELECT is((SELECT array_agg(id) FROM toygun.list_outbox('delivered')), ARRAY[:o1]::bigint[], 'delivered');
SELECT is((SELECT array_agg(id) FROM toygun.list_outbox('all')), ARRAY[:o4, :o3, :o2, :o1]::bigint[],
          'all, newest first');
SELECT is((SELECT array_agg(state ORDER BY id) FROM toygun.list_outbox('all')),
          '{delivered,pending,failed,pending}'::text[], 'each row''s state');
SELECT is((SELECT array_agg(id) FROM toygun.list_outbox('all', 2)), ARRAY[:o4, :o3]::bigint[], 'a page of two');
SELECT is((SELECT array_agg(id) FROM toygun.list_outbox('all', 2, :o3)), ARRAY[:o2, :o1]::bigint[],
          'the next page: after the last id');
SELECT is((SELECT row(channel, event, attempts, last_error, alarm_id IS NOT NULL)::text FROM toygun.list_outbox('failed')),
          '(hook,open,10,"404 from hooks.example.com",t)', 'a row: channel, event, attempts, last error, alarm');
SELECT throws_ok($$SELECT * FROM toygun.list_outbox('lost')$$, '22023',
                 'outbox state "lost" is not one toygun.list_outbox knows', 'an unknown state is refused');
SELECT throws_ok($$SELECT * FROM toygun.list_outbox('all', 0)$$, '22023',
                 'limit 0 is out of range for toygun.list_outbox', 'a limit out of range is refused');

-- metrics: the owner sees the gauges
SELECT matches(toygun.metrics(), E'\ntoygun_outbox_pending 2\n', 'metrics() counts pending rows for the owner');
SELECT matches(toygun.metrics(), E'\ntoygun_outbox_failed 1\n', 'and failed rows');
SELECT matches(toygun.metrics(), E'# TYPE toygun_outbox_failed gauge', 'with their HELP and TYPE');

-- redeliver: a failed row is pending again, at once, with a NOTIFY
SELECT is(toygun.redeliver(:o3), true, 'redeliver a failed row');
SELECT is((SELECT row(attempts, last_error, next_attempt_at)::text FROM toygun.outbox WHERE id = :o3), '(0,,)',
          'its attempts, last error and next attempt are reset');
SELECT is((SELECT state FROM toygun.list_outbox('all') WHERE id = :o3), 'pending', 'it is pending again');
SELECT is(toygun.redeliver(:o2), true, 'a row waiting for a retry is sent at once');
SELECT is((SELECT next_attempt_at FROM toygun.outbox WHERE id = :o2), NULL, 'its wait is gone');
SELECT is(toygun.redeliver(-1), false, 'no such row: false');
SELECT throws_ok(format('SELECT toygun.redeliver(%s)', :o1), '55000', NULL, 'a delivered row is refused');
SELECT matches((SELECT pg_temp.hint_of(format('SELECT toygun.redeliver(%s)', :o1))), 'not sent twice',
               'with a hint');

-- a non-owner: refused, and no outbox lines in its metrics
SET ROLE tg_obo_reader;
SELECT throws_ok($$SELECT * FROM toygun.list_outbox()$$, '42501', 'permission denied to read the toygun outbox',
                 'a non-owner reads no outbox');
SELECT throws_ok(format('SELECT toygun.redeliver(%s)', :o3), '42501', NULL, 'nor redelivers');
SELECT unalike(toygun.metrics(), '%toygun_outbox%', 'and its metrics have no outbox line');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
