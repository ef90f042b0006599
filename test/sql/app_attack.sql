-- Attacks on the application's API (issue 14): a hostile tenant and an
-- unlucky operator, against wait, send/receive, children and the helpers.
BEGIN;
\ir ../fixtures.sql
SELECT plan(6);

-- A handler that waits for a run: on its own run it can never see a
-- change (its tick holds it), and in a worker it would hold the batch and
-- take the worker's wake-ups, until the timeout. wait() refuses in a tick,
-- before it reads anything.
CREATE FUNCTION public.aa_waiter(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    PERFORM toygun.wait(coalesce((t.attrs->>'waitfor')::uuid, gen_random_uuid()), '2 s');
    RETURN toygun.stay(NULL, '1 hour');
END $$;
SELECT toygun.define_resource('aa');
SELECT toygun.define_task('aa', 'waits', '{a,b}', 'aa_waiter(toygun.task)');
SELECT toygun.start_task(toygun.create_resource('aa'), 'waits') AS w \gset
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'w'), '55000', 'toygun.wait() is called in a handler',
                 'a handler that waits for a run is refused');
SELECT alike(pg_temp.hint_of(format('SELECT toygun.tick_task(%L)', :'w')), '%toygun.stay()%',
            'the hint says to stay instead');
SELECT throws_ok(format('SELECT toygun.wait(%L, ''0 s'')', gen_random_uuid()), 'P0002', NULL,
                 'outside a tick, wait() is as before');

-- Guards: a tenant without rights on another's type neither sends to its
-- runs nor reads their messages.
CREATE ROLE tg_aa_other;
SELECT toygun.send(:'w', '{"secret": 1}') > 0 AS sent \gset
SELECT matches(pg_temp.as_role('tg_aa_other', format($$SELECT toygun.send(%L, '"x"')$$, :'w')), '^42501 ',
               'a role without operate cannot send to another type''s run');
SELECT is(pg_temp.as_role('tg_aa_other', $q$DO $d$ BEGIN IF EXISTS (SELECT FROM toygun.message) THEN
              RAISE EXCEPTION 'sees messages'; END IF; END $d$$q$), 'ok',
          'nor read its messages');
SELECT is((SELECT count(*) FROM toygun.message WHERE run_id = :'w'), 1::bigint, 'and stored none');
SELECT * FROM finish();
ROLLBACK;
