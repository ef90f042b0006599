-- Rate limits (issue 17): define_rate_limit, drop_rate_limit, take_token and
-- rate_limit_status; define_task's rate_limit; a tick by hand without a
-- token is refused. The buckets are in shared memory: a take is the same in
-- a transaction that rolls back. Holds of runs in a worker (no attempt, no
-- history row, spread one emission interval apart) and the rate a worker
-- keeps: test/scenario/rates.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(45);

CREATE ROLE tg_rl_a;
CREATE ROLE tg_rl_b;
CREATE ROLE tg_rl_member IN ROLE tg_rl_a;
-- take_token as a role: t, f, or the SQLSTATE
CREATE FUNCTION pg_temp.take_as(role text, lim text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    r := toygun.take_token(lim)::text;
    RESET ROLE;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.take_as(text, text) TO PUBLIC;
-- n takes in a row, as t/f
CREATE FUNCTION pg_temp.takes(lim text, n int, weight int DEFAULT 1) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text := '';
BEGIN
    FOR i IN 1..n LOOP
        r := r || CASE WHEN toygun.take_token(lim, weight) THEN 't' ELSE 'f' END;
    END LOOP;
    RETURN r;
END $$;
-- the message and hint of the error a statement raises
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text;
    d text;
    h text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || m || ' | ' || coalesce(d, '') || ' | ' || coalesce(h, '');
END $$;
CREATE FUNCTION public.rl_handler(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay()
$$;

-- ---------------------------------------------------------------------------
-- the table
SELECT columns_are('toygun', 'rate_limit', ARRAY['name', 'rate', 'per', 'burst', 'owner', 'defined_at'],
                   'toygun.rate_limit has its columns');
SELECT ok('toygun.rate_limit'::regclass = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'toygun')::oid[]),
          'pg_dump keeps the definitions (the buckets are runtime)');
SELECT col_type_is('toygun', 'task_type', 'rate_limit', 'text', 'task_type.rate_limit is text');

-- ---------------------------------------------------------------------------
-- errors
SELECT toygun.define_rate_limit('rl_err', 1, '1 hour', 3);
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$$SELECT toygun.define_rate_limit(NULL, 1, '1 s')$$, '22004'],
    [$$SELECT toygun.define_rate_limit('x', NULL, '1 s')$$, '22004'],
    [$$SELECT toygun.define_rate_limit('x', 1, NULL)$$, '22004'],
    [$$SELECT toygun.define_rate_limit('', 1, '1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit(repeat('x', 64), 1, '1 s')$$, '42622'],
    [$$SELECT toygun.define_rate_limit('x', 0, '1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', -5, '1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '1 s', 0)$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '0 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '-1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '1 day -86401 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '366 days')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1, '13 months')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1000001, '1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 2147483647, '1 s')$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x', 1000000, '1 s')$$, 'ok'],
    [$$SELECT toygun.define_rate_limit('x2', 1, '365 days', 2147483647)$$, '22023'],
    [$$SELECT toygun.define_rate_limit('x2', 1, '365 days', 100)$$, 'ok'],
    [$$SELECT toygun.drop_rate_limit(NULL)$$, '22004'],
    [$$SELECT toygun.drop_rate_limit('nope')$$, '42704'],
    [$$SELECT toygun.drop_rate_limit(repeat('x', 64))$$, '42622'],
    [$$SELECT toygun.take_token(NULL)$$, '22004'],
    [$$SELECT toygun.take_token('rl_err', NULL)$$, '22004'],
    [$$SELECT toygun.take_token('nope')$$, '42704'],
    [$$SELECT toygun.take_token(repeat('x', 64))$$, '42622'],
    [$$SELECT toygun.take_token('rl_err', 0)$$, '22023'],
    [$$SELECT toygun.take_token('rl_err', -1)$$, '22023'],
    [$$SELECT toygun.take_token('rl_err', 4)$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'rl_handler(toygun.task)', rate_limit => 'nope')$$, '42704'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'rl_handler(toygun.task)', rate_limit => '')$$, '22023'],
    [$$SELECT toygun.define_task('dummy', 'bad', '{a}', 'rl_handler(toygun.task)', rate_limit => repeat('x', 64))$$, '42622']
]) $q$, 'every bad argument is refused with its SQLSTATE');
SELECT is(pg_temp.error_of($$SELECT toygun.take_token('rl_err', 4)$$),
          '22023: weight 4 is more than the burst of rate limit "rl_err" | Its burst is 3: a take of 4 could never succeed. | Take at most 3 tokens at once, or define the limit again with a larger burst.',
          'a weight above the burst names the limit and says why');
SELECT is(pg_temp.error_of($$SELECT toygun.define_rate_limit('x', 1, '0 s')$$),
          '22023: per of rate limit "x" must be above zero and at most a year |  | Give per as an interval such as ''1 second'' or ''1 hour''.',
          'a bad per names the argument and the limit');
SELECT is(pg_temp.error_of($$SELECT toygun.take_token('nope')$$),
          '42704: rate limit "nope" does not exist |  | Define it with toygun.define_rate_limit().',
          'an unknown limit is named, with a hint');
SELECT is((SELECT burst FROM toygun.rate_limit WHERE name = 'x2'), 100,
          'a year at the most, with a burst that fills within 100 years (test/sql/flow_attack.sql)');

-- the 1025th limit
INSERT INTO toygun.rate_limit (name, rate, per, burst, owner)
    SELECT 'fill' || i, 1, '1 s', 1, 'postgres' FROM generate_series(1, 1024 - (SELECT count(*) FROM toygun.rate_limit)) i;
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('one_more', 1, '1 s')$$), '54000',
          'a 1025th limit is refused (54000)');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('fill1', 2, '1 s')$$), 'ok',
          'one of the 1024 may be defined again');
DELETE FROM toygun.rate_limit WHERE name LIKE 'fill%';

-- ---------------------------------------------------------------------------
-- taking tokens
SELECT toygun.define_rate_limit('rl_hour', 1, '1 hour', 3);
SELECT is(pg_temp.takes('rl_hour', 4), 'tttf', '1 per hour with burst 3: three tokens, then none');
SELECT is(pg_temp.takes('rl_hour', 2), 'ff', 'and none while the hour runs');
SELECT toygun.define_rate_limit('rl_w', 1, '1 hour', 5);
SELECT is(pg_temp.takes('rl_w', 2, 3), 'tf', 'a take of 3 of 5, then of 3 again: refused, nothing taken');
SELECT is(pg_temp.takes('rl_w', 3, 1), 'ttf', 'the 2 left are taken one at a time');
SELECT toygun.define_rate_limit('rl_n', 2, '1 hour');
SELECT is((SELECT burst FROM toygun.rate_limit WHERE name = 'rl_n'), 2, 'burst NULL is rate');
SELECT is(pg_temp.takes('rl_n', 3), 'ttf', 'and that many are taken at once');
SELECT toygun.define_rate_limit('rl_fast', 1000000, '1 s', 1000000);
SELECT is(pg_temp.takes('rl_fast', 5, 200000), 'ttttt', 'a million per second, a million at once');

-- a token taken is spent even if its transaction rolls back
SELECT toygun.define_rate_limit('rl_rb', 1, '1 hour', 2);
SAVEPOINT before_take;
SELECT ok(toygun.take_token('rl_rb'), 'a token taken in a subtransaction');
ROLLBACK TO before_take;
SELECT is(pg_temp.takes('rl_rb', 2), 'tf', 'stays spent when it rolls back');

-- rate_limit_status
SELECT results_eq($$SELECT name, rate, per, burst, tokens, horizon FROM toygun.rate_limit_status()
                     WHERE name IN ('rl_hour', 'rl_w', 'rl_n', 'rl_err') ORDER BY name$$,
                  $$VALUES ('rl_err'::text, 1, '1 hour'::interval, 3, 3, NULL::timestamptz),
                           ('rl_hour', 1, '1 hour', 3, 0, NULL),
                           ('rl_n', 2, '1 hour', 2, 0, NULL),
                           ('rl_w', 1, '1 hour', 5, 0, NULL)$$,
                  'rate_limit_status: the definitions, the tokens left, no run held');

-- redefinition keeps the debt
SELECT toygun.define_rate_limit('rl_hour', 1, '1 hour', 3);
SELECT is(pg_temp.takes('rl_hour', 1), 'f', 'defined again the same: still no token');
SELECT toygun.define_rate_limit('rl_hour', 1, '1 hour', 5);
SELECT is(pg_temp.takes('rl_hour', 3), 'ttf', 'with a burst of 5 after 3 taken: 2 more');
SELECT is((SELECT tokens FROM toygun.rate_limit_status() WHERE name = 'rl_hour'), 0, 'and none left');

-- ---------------------------------------------------------------------------
-- ownership
SELECT is(pg_temp.as_role('tg_rl_a', $$SELECT toygun.define_rate_limit('rl_a', 1, '1 hour', 2)$$), 'ok',
          'any role defines a limit');
SELECT is((SELECT owner FROM toygun.rate_limit WHERE name = 'rl_a'), 'tg_rl_a'::regrole, 'and owns it');
SELECT is(pg_temp.take_as('tg_rl_b', 'rl_a'), '42501', 'a stranger cannot take its tokens');
SELECT is(pg_temp.take_as('tg_rl_a', 'rl_a'), 'true', 'its owner can');
SELECT is(pg_temp.take_as('tg_rl_member', 'rl_a'), 'true', 'so can a member of its owner');
SELECT is(pg_temp.take_as('tg_rl_b', 'rl_a'), '42501', 'the stranger took none of them');
SELECT matches(pg_temp.as_role('tg_rl_b', $$SELECT toygun.define_rate_limit('rl_a', 100, '1 s')$$), '^42501 ',
               'a stranger cannot redefine it');
SELECT matches(pg_temp.as_role('tg_rl_b', $$SELECT toygun.drop_rate_limit('rl_a')$$), '^42501 ',
               'nor drop it');
SELECT is((SELECT rate FROM toygun.rate_limit WHERE name = 'rl_a'), 1, 'which left it as it was');
SELECT is(pg_temp.as_role('tg_rl_b', $qq$DO $d$ BEGIN
              IF EXISTS (SELECT FROM toygun.rate_limit_status() WHERE name = 'rl_a')
                 OR EXISTS (SELECT FROM toygun.rate_limit WHERE name = 'rl_a') THEN
                  RAISE EXCEPTION 'seen';
              END IF; END $d$$qq$), 'ok',
          'a stranger does not see it, in rate_limit_status() or the table');
SELECT is(pg_temp.as_role('tg_rl_b', $$SELECT toygun.define_resource('rl_res')$$), 'ok', 'the stranger defines a resource type');
SELECT matches(pg_temp.as_role('tg_rl_b',
                   $$SELECT toygun.define_task('rl_res', 'work', '{one}', 'rl_handler(toygun.task)', rate_limit => 'rl_a')$$),
               '^42501 ', 'a task type of the stranger cannot name it');

-- ---------------------------------------------------------------------------
-- a task type naming a limit
SELECT toygun.define_rate_limit('rl_tick', 1, '1 hour', 1);
SELECT toygun.define_task('dummy', 'limited', '{one}', 'rl_handler(toygun.task)', rate_limit => 'rl_tick');
SELECT is((SELECT rate_limit FROM toygun.task_type WHERE name = 'limited'), 'rl_tick', 'define_task stores its rate_limit');
SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'limited') AS t \gset
SELECT is((SELECT state FROM toygun.tick_task(:'t')), 'one', 'a tick by hand takes the token');
SELECT pg_temp.steps(:'t') AS steps_before \gset
SELECT run_at AS run_at_before FROM toygun.task WHERE id = :'t' \gset
SELECT matches(pg_temp.error_of(format('SELECT toygun.tick_task(%L)', :'t')),
               '^55000: rate limit "rl_tick" of task type "dummy.limited" has no token now \| It lets 1 through per 01:00:00, 1 at once. \| Tick task [0-9a-f-]+ again in [0-9.]+ s, after ',
               'the next tick by hand has none: 55000, with the wait in the hint');
SELECT is((SELECT ROW(attempts, run_at, step)::text FROM toygun.task WHERE id = :'t'),
          (SELECT ROW(0, :'run_at_before'::timestamptz, step)::text FROM toygun.task WHERE id = :'t'),
          'the refused tick left attempts and run_at as they were');
SELECT is(pg_temp.steps(:'t'), :'steps_before'::bigint, 'and wrote no history row');

-- drop while named
SELECT is(pg_temp.error_of($$SELECT toygun.drop_rate_limit('rl_tick')$$),
          '2BP01: rate limit "rl_tick" is used by task types | Task types naming it: dummy.limited. | Define those task types again without rate_limit, then drop it.',
          'a limit a task type names cannot be dropped (2BP01), naming the types');
SELECT toygun.define_task('dummy', 'limited', '{one}', 'rl_handler(toygun.task)');
SELECT is((SELECT rate_limit FROM toygun.task_type WHERE name = 'limited'), NULL, 'defined again without it: none');
SELECT is((SELECT state FROM toygun.tick_task(:'t')), 'one', 'and its runs tick without a token');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.drop_rate_limit('rl_tick')$$), 'ok', 'then the limit can be dropped');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.take_token('rl_tick')$$), '42704', 'and is gone');

SELECT * FROM finish();
ROLLBACK;
