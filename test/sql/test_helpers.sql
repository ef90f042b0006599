-- Testing users' handlers: test_tick_until ticks a run by hand until a state
-- or until it waits, and the test clock (toygun.test_now, test_advance) ends
-- a wait without sleeping, in this session only.
BEGIN;
\ir ../fixtures.sql
SELECT plan(37);

-- prepare, then cool for an hour, then stop
CREATE FUNCTION public.bake(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'prepare' THEN RETURN toygun.go('cool', '{"prepared": true}');
    WHEN 'cool' THEN
        IF t.attrs ? 'cooling' THEN RETURN toygun.stop('{"done": true}'); END IF;
        RETURN toygun.stay('{"cooling": true}', wait => '1 hour');
    END CASE;
END $$;
-- waits an hour three times, then stops
CREATE FUNCTION public.hourly(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    n int := coalesce((t.attrs->>'n')::int, 0);
BEGIN
    IF n = 3 THEN RETURN toygun.stop(); END IF;
    RETURN toygun.stay(jsonb_build_object('n', n + 1), wait => '1 hour');
END $$;
-- goes round forever; stays without a wait; stays with a zero wait
CREATE FUNCTION public.odd(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'ping' THEN RETURN toygun.go('pong');
    WHEN 'pong' THEN RETURN toygun.go('ping');
    WHEN 'poll' THEN
        IF t.attrs ? 'polled' THEN RETURN toygun.stop(); END IF;
        RETURN toygun.stay('{"polled": true}');
    WHEN 'spin' THEN RETURN toygun.stay(wait => '0');
    WHEN 'doom' THEN RETURN toygun.panic('out of flour');
    WHEN 'boom' THEN RAISE EXCEPTION 'oven broke';
    WHEN 'await' THEN
        IF EXISTS (SELECT FROM toygun.receive(t)) THEN RETURN toygun.stop(); END IF;
        RETURN toygun.stay(wait => '1 day');
    END CASE;
END $$;
SELECT toygun.define_task('dummy', 'bake', '{prepare,cool}', 'bake(toygun.task)');
SELECT toygun.define_task('dummy', 'hourly', '{wait}', 'hourly(toygun.task)');
SELECT toygun.define_task('dummy', 'cycle', '{ping,pong}', 'odd(toygun.task)');
SELECT toygun.define_task('dummy', 'poll', '{poll}', 'odd(toygun.task)');
SELECT toygun.define_task('dummy', 'spin', '{spin}', 'odd(toygun.task)');
SELECT toygun.define_task('dummy', 'doom', '{doom}', 'odd(toygun.task)');
SELECT toygun.define_task('dummy', 'boom', '{boom}', 'odd(toygun.task)');
SELECT toygun.define_task('dummy', 'await', '{await}', 'odd(toygun.task)');
SELECT toygun.create_resource('dummy') AS r \gset

-- start a run, tick it to completion, check the result
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT is((toygun.test_tick_until(:'t')).state, '__stop__', 'test_tick_until ticks a run to __stop__ by default');
SELECT is(pg_temp.steps(:'t'), 4::bigint, 'in as many ticks as it takes, each in the history');
SELECT is((SELECT array_agg(DISTINCT made_by::text) FROM toygun.history(:'t')), ARRAY[current_user::text],
          'made by the caller, as tick_task');
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT is((toygun.test_tick_until(:'t', 'end')).state, 'end', 'or until a state it names');
SELECT is((toygun.test_tick_until(:'t', 'end')).step, 3::bigint, 'a run already in the state is not ticked');

-- check that it waits, advance the clock, check that it goes on
SELECT toygun.start_task(:'r', 'bake') AS b \gset
SELECT is((SELECT ARRAY[state, attrs::text] FROM toygun.test_tick_until(:'b')),
          ARRAY['cool', '{"cooling": true, "prepared": true}'],
          'a run that stays with a wait is returned waiting, short of the state');
SELECT ok((SELECT run_at BETWEEN now() + interval '59 minutes' AND clock_timestamp() + interval '1 hour'
             FROM toygun.task WHERE id = :'b'), 'due in an hour');
SELECT (SELECT updated_at FROM toygun.task WHERE id = :'b') AS waited \gset
SELECT is((SELECT ARRAY[state, updated_at::text] FROM toygun.test_tick_until(:'b')), ARRAY['cool', :'waited'],
          'called again before the wait ends, it ticks nothing');
SELECT ok(toygun.test_advance('59 minutes') >= now() + interval '59 minutes',
          'test_advance moves the clock on and returns it');
SELECT is((toygun.test_tick_until(:'b')).state, 'cool', 'an hour''s wait has not ended after 59 minutes');
SELECT ok(toygun.test_advance('1 minute') > now() + interval '1 hour', 'another minute');
SELECT is((SELECT ARRAY[state, attrs->>'done'] FROM toygun.test_tick_until(:'b')), ARRAY['__stop__', 'true'],
          'after an hour it goes on to __stop__');

-- each advance ends one wait: a stay waits from the clock, not the real time
SELECT toygun.start_task(:'r', 'hourly') AS h \gset
SELECT is((toygun.test_tick_until(:'h')).attrs->>'n', '1', 'a run waits an hour');
SELECT toygun.test_advance('1 hour') IS NOT NULL AS advanced \gset
SELECT is((toygun.test_tick_until(:'h')).attrs->>'n', '2', 'an hour on, it ticks once and waits again');
SELECT toygun.test_advance('1 hour') IS NOT NULL AS advanced \gset
SELECT is((toygun.test_tick_until(:'h')).attrs->>'n', '3', 'and once more an hour later, not twice');
SELECT ok((SELECT run_at > toygun.test_advance('0') + interval '59 minutes' FROM toygun.task WHERE id = :'h'),
          'its wait ends an hour after the clock''s reading');
SELECT toygun.test_advance('1 hour') IS NOT NULL AS advanced \gset
SELECT is((toygun.test_tick_until(:'h')).state, '__stop__', 'the last hour ends it');

-- a stay without a wait waits toygun.poll_interval
SELECT toygun.start_task(:'r', 'poll') AS p \gset
SELECT is((toygun.test_tick_until(:'p')).state, 'poll', 'stay() waits the poll interval');
SELECT toygun.test_advance(current_setting('toygun.poll_interval')::interval) IS NOT NULL AS advanced \gset
SELECT is((toygun.test_tick_until(:'p')).state, '__stop__', 'and goes on once the clock passes it');

-- a message makes a waiting run due: no clock needed
SELECT toygun.start_task(:'r', 'await') AS m \gset
SELECT is((toygun.test_tick_until(:'m')).state, 'await', 'a run waits a day for a message');
SELECT toygun.send(:'m', '{"go": true}') > 0 AS sent \gset
SELECT is((toygun.test_tick_until(:'m')).state, '__stop__', 'a message sent to it lets it go on at once');

-- the clock: a setting of this session, undone by a rollback, never back in time
SELECT current_setting('toygun.test_now') AS clock \gset
SAVEPOINT clock;
SELECT toygun.test_advance('1 day') IS NOT NULL AS advanced \gset
ROLLBACK TO SAVEPOINT clock;
SELECT is(current_setting('toygun.test_now'), :'clock', 'a rollback undoes test_advance');
SET LOCAL toygun.test_now = '2000-01-01 00:00:00+00';
SELECT toygun.start_task(:'r', 'bake') AS b \gset
SELECT is((toygun.test_tick_until(:'b')).state, 'cool', 'a clock set in the past reads the real time');
SELECT ok(toygun.test_advance('0') >= now(), 'and test_advance moves on from the real time');
SET LOCAL toygun.test_now = '2100-01-01 00:00:00+00';
SELECT is((toygun.test_tick_until(:'b')).state, '__stop__', 'SET toygun.test_now sets the clock directly');
RESET toygun.test_now;
SELECT is((SELECT string_agg(q || ': ' || got, '; ') FROM pg_temp.mismatches(ARRAY[
    ['SET toygun.test_now = ''soon''', '22023'],
    ['SET toygun.test_now = ''infinity''', '22023'],
    ['SELECT toygun.test_advance(''-1 second'')', '22023'],
    ['SELECT toygun.test_advance(''1 month -31 days'')', '22023'],
    ['SELECT toygun.test_advance(NULL)', '22004'],
    ['SELECT toygun.test_advance(''300000 years'')', '22008'],
    ['SET toygun.test_now = ''2030-01-01 12:00 Europe/Paris''', 'ok'],
    ['SET toygun.test_now = ''''', 'ok']])), NULL, 'the clock''s errors');

-- where the run ends elsewhere
SELECT toygun.start_task(:'r', 'test') AS t \gset
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L, 'beginning')$$, :'t'), '55000',
                 format('task %s stopped before reaching state "beginning"', :'t'),
                 'a run that stops before the state is an error naming it');
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L, 'middle')$$, :'t'), '55000',
                 format('task %s stopped before reaching state "middle"', :'t'),
                 'also when it was stopped already');
SELECT toygun.start_task(:'r', 'doom') AS d \gset
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L)$$, :'d'), '55000',
                 format('task %s panicked before reaching state "__stop__"', :'d'),
                 'a run that panics is an error naming it');
SELECT is((SELECT ARRAY[state, attrs->>'panic_message'] FROM toygun.test_tick_until(:'d', '__panic__')),
          ARRAY['__panic__', 'out of flour'], 'unless the test waits for the panic');
SELECT toygun.start_task(:'r', 'cycle') AS c \gset
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L, max_ticks => 5)$$, :'c'), '54000',
                 format('task %s is still in state "pong" after 5 ticks', :'c'),
                 'past max_ticks it raises 54000 naming the state the run is in');
SELECT is(pg_temp.steps(:'c'), 0::bigint, 'and nothing of its ticks is kept');
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L, max_ticks => 7)$$, toygun.start_task(:'r', 'spin')),
                 '54000', NULL, 'a stay with a zero wait is due at once: it never gets there');
SELECT toygun.start_task(:'r', 'boom') AS x \gset
SELECT throws_ok(format($$SELECT toygun.test_tick_until(%L)$$, :'x'), 'P0001', 'oven broke',
                 'a handler''s error is raised to the test');

-- bad arguments and rights
SELECT is((SELECT string_agg(q || ': ' || got, '; ') FROM pg_temp.mismatches(ARRAY[
    [format($$SELECT toygun.test_tick_until(%L, 'nope')$$, :'t'), '22023'],
    [format($$SELECT toygun.test_tick_until(%L, '__new__')$$, :'t'), '22023'],
    [format($$SELECT toygun.test_tick_until(%L, '')$$, :'t'), '22023'],
    [format($$SELECT toygun.test_tick_until(%L, max_ticks => 0)$$, :'t'), '22023'],
    [format($$SELECT toygun.test_tick_until(%L, NULL)$$, :'t'), '22004'],
    [format($$SELECT toygun.test_tick_until(%L, max_ticks => NULL)$$, :'t'), '22004'],
    ['SELECT toygun.test_tick_until(NULL)', '22004'],
    [format($$SELECT toygun.test_tick_until(%L)$$, gen_random_uuid()), 'P0002']])), NULL,
    'test_tick_until''s bad arguments');
CREATE ROLE tg_h_reader;
SELECT toygun.grant_type('dummy', 'tg_h_reader', '{read,start}');
SET LOCAL ROLE tg_h_reader;
SELECT throws_like(format($$SELECT toygun.test_tick_until(%L)$$, toygun.start_task(:'r', 'another')),
                   '%needs right "operate"%', 'it needs right operate, as tick_task');
RESET ROLE;
SELECT toygun.grant_type('dummy', 'tg_h_reader', '{operate}');
SET LOCAL ROLE tg_h_reader;
SELECT is((toygun.test_tick_until((SELECT id FROM toygun.task WHERE name = 'another' AND state = '__new__'))).state,
          '__stop__', 'which is enough');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
