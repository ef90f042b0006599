-- Flow control (issue 17) under attack: rate limits whose arithmetic would
-- wrap, shared memory filled by defines that roll back, and a stopped run
-- brought back into a queue its type left. The pause a rolled-back
-- savepoint made: test/scenario/flow_attack.sh; a start racing a
-- redefinition into another queue: specs/queue_move_race.spec.
BEGIN;
\ir ../fixtures.sql
SELECT plan(12);

-- 1. burst * per / rate past 64 bits of nanoseconds: refused, and a row
-- written by hand is capped rather than wrapped (594 years' worth (a year is 360 days to interval arithmetic) of tokens
-- at one a year wrapped to less than one token: a full bucket that never
-- let anything through).
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('wrap', 1, '1 year', 594)$$), '22023',
          'a burst of 594 at one a year (past 64 bits of nanoseconds) is refused');
SELECT matches(pg_temp.detail_of($$SELECT toygun.define_rate_limit('wrap', 1, '1 year', 2147483647)$$),
               'takes \d+ years to fill', 'the detail says how long the burst takes to fill');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('wide', 2147483647, '1 year', 2147483647)$$), 'ok',
          'the largest rate and burst over a year is fine (a year to fill)');
SELECT ok(toygun.take_token('wide', 2147483647), 'and its full bucket gives the whole burst at once');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('century', 1, '1 year', 100)$$), 'ok',
          'a hundred years to fill is the most');
INSERT INTO toygun.rate_limit (name, rate, per, burst, owner)
    VALUES ('by_hand', 1, '1 year', 594, current_user::regrole);
SELECT ok(toygun.take_token('by_hand'), 'a row written by hand with such a burst still lets a token through');
SELECT ok((SELECT tokens BETWEEN 1 AND 594 FROM toygun.rate_limit_status() WHERE name = 'by_hand'),
          'and shows a sane number of tokens');

-- 2. Defines that roll back leave no bucket behind: 2,100 of them, each
-- taking a token of a limit that refills in a year, would otherwise take
-- every one of the 2,048 slots for a year.
DO $$
BEGIN
    FOR i IN 1..2100 LOOP
        BEGIN
            PERFORM toygun.define_rate_limit('leak' || i, 1, '1 year', 1);
            PERFORM toygun.take_token('leak' || i);
            RAISE EXCEPTION 'roll back';
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END LOOP;
END $$;
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.define_rate_limit('after', 1, '1 second')$$), 'ok',
          'after 2,100 defines rolled back, a limit is defined');
SELECT is(pg_temp.sqlstate_of($$SELECT toygun.take_token('after')$$), 'ok',
          'and its bucket finds room in shared memory');

-- 3. A stopped run keeps the queue it stopped in; brought back, it goes to
-- its type's queue, not one no worker of its type claims from any more.
CREATE FUNCTION public.fa_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.go('b') $$;
CREATE FUNCTION public.fa_r(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SET LOCAL client_min_messages = error;  -- the queues have no workers here
SELECT toygun.define_resource('fa', handler => 'public.fa_r(toygun.resource)', queue => 'fa_old');
SELECT toygun.define_task('fa', 'j', '{a,b}', 'public.fa_h(toygun.task)', queue => 'fa_old');
SELECT toygun.create_resource('fa') AS r \gset
SELECT toygun.start_task(:'r', 'j') AS run \gset
SELECT FROM toygun.stop_task(:'run');
SELECT toygun.define_task('fa', 'j', '{a,b}', 'public.fa_h(toygun.task)', queue => 'fa_new');
SELECT is((SELECT queue_id FROM toygun.task WHERE id = :'run'), (SELECT id FROM toygun.queue WHERE name = 'fa_old'),
          'a stopped run stays in the queue it stopped in');
SELECT is((toygun.rewind_task(:'run')).queue_id, (SELECT id FROM toygun.queue WHERE name = 'fa_new'),
          'rewound, it is in its type''s queue (and the row returned says so)');
SELECT FROM toygun.stop_resource(:'r');
SELECT toygun.define_resource('fa', handler => 'public.fa_r(toygun.resource)', queue => 'fa_new');
SELECT FROM toygun.transition_resource(:'r', 'running');
SELECT is((SELECT queue_id FROM toygun.resource WHERE id = :'r'), (SELECT id FROM toygun.queue WHERE name = 'fa_new'),
          'a stopped resource moved out of __stop__ by hand is in its type''s queue');

SELECT * FROM finish();
ROLLBACK;
