-- Notifications (issue 15): channels and routes (the extension owner's
-- only, configs checked per kind), and the outbox rows an alarm's open,
-- re-open and close write for each routed channel, shaped per kind; no row
-- and no query without routes; a panic's alarm routed; rollback undoes.
-- NOTIFY at commit is checked by specs/outbox_notify.spec.
BEGIN;
\ir ../fixtures.sql
SELECT plan(62);

CREATE ROLE tg_ob_reader;
CREATE FUNCTION public.tg_ob_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('tg_ob');
SELECT toygun.define_resource('tg_ob_other');
SELECT toygun.define_task('tg_ob', 'job', '{a}', 'tg_ob_h(toygun.task)');
SELECT toygun.grant_type('tg_ob', 'tg_ob_reader', '{read}');
SELECT toygun.create_resource('tg_ob') AS r \gset
-- the PagerDuty event of an alarm (as it is now) on that resource, through channel 'pager'
CREATE FUNCTION pg_temp.pd(id uuid, action text, event text, line text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('routing_key', 'R0UT1NGKEY', 'event_action', action, 'dedup_key', id,
               'payload', jsonb_build_object('summary', line,
                   'source', format('resource %s of type tg_ob', a.object_id), 'severity', 'critical',
                   'custom_details', to_jsonb(a) || jsonb_build_object('event', event)))
      FROM toygun.alarm a WHERE a.id = pd.id
$$;
SELECT toygun.create_resource('tg_ob_other') AS other \gset
SELECT toygun.start_task(:'r', 'job') AS run \gset

-- ---------------------------------------------------------------------------
-- No routes: no row, and no query (the route list is cached)
SELECT toygun.raise_alarm(:'r', 'warmup', 'loads the route cache');
SELECT pg_stat_get_xact_numscans('toygun.route'::regclass) AS route_scans \gset
SELECT toygun.raise_alarm(:'r', 'quiet', 'nobody hears this');
SELECT toygun.raise_alarm(:'other', 'quiet', 'nor this');
SELECT toygun.close_alarm(toygun.raise_alarm(:'r', 'quiet2', 'nor this'), 'done');
SELECT is(pg_stat_get_xact_numscans('toygun.route'::regclass), :'route_scans'::bigint,
          'with no routes, raising and closing alarms reads no route');
SELECT is((SELECT count(*) FROM toygun.outbox), 0::bigint, 'and writes no outbox row');

-- ---------------------------------------------------------------------------
-- define_channel: each kind, its config checked
SELECT lives_ok($$SELECT toygun.define_channel('hook', 'webhook', '{"url": "https://hooks.example.com/x?token=s3cret"}')$$,
                'define_channel makes a webhook channel');
SELECT lives_ok($$SELECT toygun.define_channel('chat', 'slack', '{"webhook_url": "https://hooks.slack.com/services/T/B/X"}')$$,
                'a slack channel');
SELECT lives_ok($$SELECT toygun.define_channel('pager', 'pagerduty', '{"routing_key": "R0UT1NGKEY", "severity": "critical"}')$$,
                'a pagerduty channel with a severity');
SELECT lives_ok($$SELECT toygun.define_channel('mail', 'email', '{"to": "ops@example.com"}')$$,
                'an email channel to one address');
SELECT lives_ok($$SELECT toygun.define_channel('mail2', 'email', '{"to": ["a@example.com", "b@example.com"]}')$$,
                'an email channel to several');
SELECT lives_ok($$SELECT toygun.define_channel('pager2', 'pagerduty', '{"routing_key": "K2"}')$$,
                'a pagerduty channel without severity');
SELECT toygun.define_channel('mail2', 'email', '{"to": ["a@example.com", "c@example.com"]}');
SELECT is((SELECT config FROM toygun.channel WHERE name = 'mail2'), '{"to": ["a@example.com", "c@example.com"]}'::jsonb,
          'defining a channel again replaces its config');
SELECT is((SELECT array_agg(name || ':' || kind ORDER BY name) FROM toygun.channel),
          '{chat:slack,hook:webhook,mail:email,mail2:email,pager:pagerduty,pager2:pagerduty}', 'the channels are stored');

SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.define_channel(NULL, 'webhook', '{"url": "http://x"}')$q$, '22004'],
    [$q$SELECT toygun.define_channel('c', NULL, '{"url": "http://x"}')$q$, '22004'],
    [$q$SELECT toygun.define_channel('c', 'webhook', NULL)$q$, '22004'],
    [$q$SELECT toygun.define_channel('', 'webhook', '{"url": "http://x"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel(repeat('c', 64), 'webhook', '{"url": "http://x"}')$q$, '42622'],
    [$q$SELECT toygun.define_channel('c', 'sms', '{}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '[]')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '"http://x"')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": 5}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "ftp://x"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "https://"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "https:///path"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "https://a b"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "http://x", "headers": {}}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'slack', '{"url": "http://x"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'slack', '{"webhook_url": ["http://x"]}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'pagerduty', '{}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'pagerduty', '{"routing_key": ""}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'pagerduty', '{"routing_key": 12}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'pagerduty', '{"routing_key": "k", "severity": "fatal"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'pagerduty', '{"routing_key": "k", "severity": 1}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": "nobody"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": "a@b@c"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": "@example.com"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": "a@example.com, b@example.com"}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": []}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": ["a@example.com", 5]}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'email', '{"to": {"a": "a@example.com"}}')$q$, '22023'],
    [$q$SELECT toygun.define_channel('c', 'webhook', '{"url": "HTTP://Example.com"}')$q$, 'ok']
  ]) $$, 'define_channel refuses NULLs, bad names, unknown kinds, and configs with missing, unknown or bad keys');
SELECT throws_ok($$SELECT toygun.define_channel('c', 'sms', '{}')$$, '22023', 'unknown channel kind "sms"',
                 'an unknown kind is named');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_channel('c', 'sms', '{}')$$),
          'The kinds are: webhook, slack, pagerduty, email.', 'and the hint lists the kinds');
SELECT throws_ok($$SELECT toygun.define_channel('c', 'webhook', '{}')$$, '22023',
                 'config key "url" is required for webhook channel "c"', 'a missing key is named');
SELECT throws_ok($$SELECT toygun.define_channel('c', 'slack', '{"webhook_url": "https://x", "channel": "#ops"}')$$, '22023',
                 'unknown config key "channel" for slack channel "c"', 'an unknown key is named');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_channel('c', 'pagerduty', '{"key": "x"}')$$),
          'A pagerduty channel takes: routing_key, severity (optional).', 'and the hint lists the keys the kind takes');
SELECT throws_ok($$SELECT toygun.define_channel('c', 'webhook', '{"url": "ftp://user:s3cret@x"}')$$, '22023',
                 'config key "url" of channel "c" must be an http or https URL', 'a bad value is named, not shown');
SELECT throws_ok($$SELECT toygun.define_channel('c', 'pagerduty', '{"routing_key": "k", "severity": "fatal"}')$$, '22023',
                 'config key "severity" of channel "c" must be critical, error, warning or info', 'a bad severity');
SELECT is((SELECT count(*) FROM toygun.channel WHERE name = 'c'), 1::bigint,
          'only the good one of those was defined');

-- ---------------------------------------------------------------------------
-- define_route
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.define_route(NULL, 'hook')$q$, '22004'],
    [$q$SELECT toygun.define_route('kind:x', NULL)$q$, '22004'],
    [$q$SELECT toygun.define_route('panic', 'hook')$q$, '22023'],
    [$q$SELECT toygun.define_route('kind:', 'hook')$q$, '22023'],
    [$q$SELECT toygun.define_route('host:x', 'hook')$q$, '22023'],
    [$q$SELECT toygun.define_route('Kind:x', 'hook')$q$, '22023'],
    [$q$SELECT toygun.define_route('kind:' || repeat('x', 64), 'hook')$q$, '42622'],
    [$q$SELECT toygun.define_route(E'type:a\nb', 'hook')$q$, '22023'],
    [$q$SELECT toygun.define_route('kind:x', 'nowhere')$q$, '42704']
  ]) $$, 'define_route refuses NULLs, bad patterns and channels that do not exist');
SELECT throws_ok($$SELECT toygun.define_route('kind:x', 'nowhere')$$, '42704', 'channel "nowhere" does not exist',
                 'a missing channel is named');
SELECT throws_ok($$SELECT toygun.define_route('panic', 'hook')$$, '22023', 'route pattern "panic" is not valid',
                 'a bad pattern is named');
SELECT toygun.define_route('kind:disk', 'hook');
SELECT toygun.define_route('kind:disk', 'chat');
SELECT toygun.define_route('type:tg_ob', 'chat');
SELECT toygun.define_route('type:tg_ob', 'mail2');
SELECT toygun.define_route('kind:*', 'pager');
SELECT toygun.define_route('type:nothing_here', 'mail');
SELECT lives_ok($$SELECT toygun.define_route('kind:disk', 'hook')$$, 'defining a route again is a no-op');
SELECT is((SELECT array_agg(pattern || '>' || channel ORDER BY pattern, channel) FROM toygun.route),
          '{kind:*>pager,kind:disk>chat,kind:disk>hook,type:nothing_here>mail,type:tg_ob>chat,type:tg_ob>mail2}',
          'the routes are stored');

-- ---------------------------------------------------------------------------
-- Rights: the extension owner's only; nobody else reads channels, routes or the outbox
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SET ROLE tg_ob_reader; SELECT toygun.define_channel('x', 'webhook', '{"url": "http://x"}')$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT toygun.drop_channel('hook')$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT toygun.define_route('kind:*', 'hook')$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT toygun.drop_route('kind:disk', 'hook')$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT * FROM toygun.channel$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT * FROM toygun.route$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT * FROM toygun.outbox$q$, '42501'],
    [$q$SET ROLE tg_ob_reader; SELECT count(*) FROM toygun.alarms$q$, 'ok']
  ]) $$, 'another role may not define or drop channels and routes, nor read them or the outbox (it reads alarms)');
RESET ROLE;
SELECT is(pg_temp.as_role('tg_ob_reader', $$SELECT toygun.define_channel('x', 'webhook', '{"url": "http://x"}')$$),
          '42501 permission denied to define channels', 'the refusal says what');
SELECT is(pg_temp.hint_of($$SET ROLE tg_ob_reader; SELECT toygun.define_route('kind:*', 'hook')$$),
          'Act as role "' || current_user || '", which owns extension toygun, or as a superuser.', 'and whom to act as');
RESET ROLE;
SELECT ok(NOT has_table_privilege('public', 'toygun.channel', 'SELECT') AND NOT has_table_privilege('public', 'toygun.route', 'SELECT')
          AND NOT has_table_privilege('public', 'toygun.outbox', 'SELECT'), 'the three tables are not granted to PUBLIC');
SELECT is((SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM pg_extension e, unnest(e.extconfig) c
            WHERE e.extname = 'toygun' AND c::regclass::text IN ('toygun.channel', 'toygun.route', 'toygun.outbox', 'toygun.outbox_seq')),
          '{toygun.channel,toygun.outbox,toygun.outbox_seq,toygun.route}', 'channels, routes and the outbox are dumped');

-- ---------------------------------------------------------------------------
-- open: one row per matched channel (chat matched twice: once), shaped per kind
SELECT toygun.raise_alarm(:'r', 'disk', 'disk 90% full') AS a \gset
SELECT is((SELECT array_agg(channel || ':' || event ORDER BY channel) FROM toygun.outbox WHERE alarm_id = :'a'),
          '{chat:open,hook:open,mail2:open,pager:open}', 'an alarm that opens writes one row per channel its routes match');
SELECT is((SELECT array_agg(DISTINCT (attempts, delivered_at, last_error)::text) FROM toygun.outbox), '{"(0,,)"}',
          'undelivered, no attempt, no error');
SELECT is((SELECT payload FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'hook'),
          (SELECT jsonb_build_object('event', 'open', 'alarm', to_jsonb(a)) FROM toygun.alarm a WHERE id = :'a'),
          'webhook: the event and the alarm row');
SELECT is((SELECT payload FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'chat'),
          jsonb_build_object('text', format('[toygun] alarm opened: disk on resource %s of type tg_ob: disk 90%% full', :'r')),
          'slack: the text of an incoming webhook');
SELECT is((SELECT payload FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'pager'),
          pg_temp.pd(:'a', 'trigger', 'open', format('[toygun] alarm opened: disk on resource %s of type tg_ob: disk 90%% full', :'r')),
          'pagerduty: an Events API v2 trigger, deduplicated by the alarm id');
SELECT is((SELECT payload - 'body' FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'mail2'),
          jsonb_build_object('to', '["a@example.com", "c@example.com"]'::jsonb,
                             'subject', format('[toygun] alarm opened: disk on resource %s of type tg_ob', :'r')),
          'email: to (always an array) and subject');
SELECT is((SELECT split_part(payload ->> 'body', E'\n', 1) || '|' || (payload ->> 'body' ~ E'\nMessage: disk 90% full\n')::text
             FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'mail2'),
          format('[toygun] alarm opened: disk on resource %s of type tg_ob: disk 90%% full|true', :'r'),
          'and a body: the line, then the alarm''s fields');
SELECT is((SELECT count(*) FROM toygun.outbox o WHERE o.payload::text LIKE '%s3cret%' OR o.payload::text LIKE '%hooks.slack%'),
          0::bigint, 'no payload carries a webhook URL');

SELECT toygun.raise_alarm(:'r', 'disk', 'disk 91% full');
SELECT is((SELECT count(*) FROM toygun.outbox WHERE alarm_id = :'a'), 4::bigint, 'raising an open alarm again writes nothing');
SELECT toygun.raise_alarm(:'other', 'cpu', 'hot');
SELECT is((SELECT array_agg(o.channel || ':' || o.event) FROM toygun.outbox o JOIN toygun.alarm a ON a.id = o.alarm_id
            WHERE a.object_id = :'other'), '{pager:open}', 'a route by type matches only that type');

-- re-open: a snooze that ran out, raised again
SELECT toygun.snooze_alarm(:'a', now() + interval '1 hour');
SELECT is((SELECT count(*) FROM toygun.outbox WHERE alarm_id = :'a'), 4::bigint, 'snoozing writes nothing');
UPDATE toygun.alarm SET snoozed_until = clock_timestamp() - interval '1 s' WHERE id = :'a';
SELECT toygun.raise_alarm(:'r', 'disk', 'disk 99% full');
SELECT is((SELECT array_agg(channel ORDER BY channel) FROM toygun.outbox WHERE alarm_id = :'a' AND event = 'reopen'),
          '{chat,hook,mail2,pager}', 'a re-opened alarm writes a row per channel, event reopen');
SELECT is((SELECT payload FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'chat' AND event = 'reopen'),
          jsonb_build_object('text', format('[toygun] alarm re-opened: disk on resource %s of type tg_ob: disk 99%% full', :'r')),
          'slack says re-opened');
SELECT is((SELECT payload ->> 'event_action' FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'pager' AND event = 'reopen'),
          'trigger', 'pagerduty triggers again, the same dedup_key');

-- close
SELECT toygun.close_alarm(:'a', 'cleaned up');
SELECT is((SELECT array_agg(channel ORDER BY channel) FROM toygun.outbox WHERE alarm_id = :'a' AND event = 'close'),
          '{chat,hook,mail2,pager}', 'closing writes a row per channel, event close');
SELECT is((SELECT payload FROM toygun.outbox WHERE alarm_id = :'a' AND channel = 'pager' AND event = 'close'),
          pg_temp.pd(:'a', 'resolve', 'close', format('[toygun] alarm closed: disk on resource %s of type tg_ob: cleaned up', :'r')),
          'pagerduty: resolve, the same dedup_key');
SELECT is((SELECT payload #>> '{alarm,state}' || '/' || (payload ->> 'event') FROM toygun.outbox
            WHERE alarm_id = :'a' AND channel = 'hook' AND event = 'close'), 'closed/close', 'webhook: the closed row');
SELECT ok((SELECT payload ->> 'body' ~ E'\nClosed: .*, cleaned up$' FROM toygun.outbox
            WHERE alarm_id = :'a' AND channel = 'mail2' AND event = 'close'), 'email: the body says when and why it closed');
SELECT toygun.close_alarm(:'a', 'again');
SELECT is((SELECT count(*) FROM toygun.outbox WHERE alarm_id = :'a'), 12::bigint, 'closing a closed alarm writes nothing');

-- a panic's alarm is routed, and its repair's close
SELECT toygun.panic_task(:'run', 'by hand');
SELECT (SELECT id FROM toygun.alarm WHERE object_id = :'run' AND kind = 'panic') AS pa \gset
SELECT is((SELECT array_agg(channel || ':' || event ORDER BY channel) FROM toygun.outbox WHERE alarm_id = :'pa'),
          '{chat:open,mail2:open,pager:open}', 'a panic''s alarm is routed (by kind:* and type:tg_ob)');
SELECT is((SELECT payload ->> 'text' FROM toygun.outbox WHERE alarm_id = :'pa' AND channel = 'chat'),
          format('[toygun] alarm opened: panic on run %s of task tg_ob/job: by hand', :'run'), 'naming the run');
SELECT toygun.retry_task(:'run', 'fixed');
SELECT is((SELECT array_agg(channel || ':' || (payload ->> 'event_action') ORDER BY channel) FROM toygun.outbox
            WHERE alarm_id = :'pa' AND event = 'close' AND channel = 'pager'), '{pager:resolve}',
          'its repair resolves it');
SELECT is((SELECT payload ->> 'text' FROM toygun.outbox WHERE alarm_id = :'pa' AND channel = 'chat' AND event = 'close'),
          format('[toygun] alarm closed: panic on run %s of task tg_ob/job: retry_task: fixed', :'run'), 'with the repair''s reason');

-- a rollback leaves no row
SELECT count(*) AS before FROM toygun.outbox \gset
SAVEPOINT s;
SELECT toygun.raise_alarm(:'r', 'rolled', 'back');
SELECT ok((SELECT count(*) FROM toygun.outbox) > :'before', 'rows are written in the raising transaction');
ROLLBACK TO SAVEPOINT s;
SELECT is((SELECT count(*) FROM toygun.outbox), :'before'::bigint, 'and rolled back with it');

-- drop_route and drop_channel
SELECT is(toygun.drop_route('kind:disk', 'hook'), true, 'drop_route drops a route');
SELECT is(toygun.drop_route('kind:disk', 'hook'), false, 'and says when there was none');
SELECT is(toygun.drop_channel('chat'), true, 'drop_channel drops a channel');
SELECT is((SELECT count(*) FROM toygun.route WHERE channel = 'chat'), 0::bigint, 'and its routes');
SELECT is(toygun.drop_channel('chat'), false, 'and says when there was none');
SELECT is((SELECT count(*) FROM toygun.outbox WHERE channel = 'chat'), 5::bigint, 'a dropped channel''s rows stay');
SELECT toygun.drop_route('kind:*', 'pager');
SELECT toygun.drop_route('type:tg_ob', 'mail2');
SELECT toygun.raise_alarm(:'r', 'disk', 'after the drops') AS a2 \gset
SELECT is((SELECT count(*) FROM toygun.outbox WHERE alarm_id = :'a2'), 0::bigint,
          'a dropped route routes nothing, in the same transaction');
SELECT toygun.drop_route('type:nothing_here', 'mail');
SELECT pg_stat_get_xact_numscans('toygun.route'::regclass) AS route_scans \gset
SELECT toygun.raise_alarm(:'r', 'quiet3', 'once the cache knows none');
SELECT toygun.raise_alarm(:'other', 'quiet3', 'once the cache knows none');
SELECT is(pg_stat_get_xact_numscans('toygun.route'::regclass), :'route_scans'::bigint + 1,
          'with the last route dropped, the list is read once, then not again');

SELECT * FROM finish();
ROLLBACK;
