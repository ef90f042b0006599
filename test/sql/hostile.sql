-- Hostile input to every public function and type input, beyond the basic
-- cases of bad_input.sql and secrets.sql: names that look like SQL, 1 MB
-- names, empty strings and NULLs, over-long lists, handlers swapped for
-- something else, deep and huge JSON, negative and huge intervals and
-- counts, hand-made outcomes, and secrets truncated, flipped or from another
-- key. Each is a clear error with its own SQLSTATE or a correct result, and
-- failed calls write nothing.
BEGIN;
\ir ../fixtures.sql
SELECT plan(64);

-- The message of the error a statement fails with, or NULL.
CREATE FUNCTION pg_temp.message_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;
-- Everything toygun stores, as one digest: equal digests, nothing written.
CREATE FUNCTION pg_temp.snapshot() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.resource_type x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.task_type x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.resource x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.task x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.transition x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.schedule x),
        (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM toygun.schedule_start x)))
$$;
CREATE TEMP TABLE snap (name text PRIMARY KEY, digest text);
-- Tick a run whose handler returns the outcome n: the SQLSTATE, or 'ok'.
CREATE FUNCTION pg_temp.tick_with(n toygun.next, id uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('hostile.next', n::text, true);
    PERFORM toygun.tick_task(id);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- A handler that walks a run through its declared states, whatever they are called.
CREATE FUNCTION public.hostile_walk(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    s text[] := (SELECT states FROM toygun.task_type WHERE resource_type = t.resource_type AND name = t.name);
    i int := array_position(s, t.state);
BEGIN
    IF i < array_length(s, 1) THEN RETURN toygun.go(s[i + 1]); END IF;
    RETURN toygun.stop();
END $$;
-- A handler that returns whatever toygun.next the setting hostile.next holds.
CREATE FUNCTION public.hostile_next(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    RETURN nullif(current_setting('hostile.next', true), '')::toygun.next;
END $$;
-- A handler that hands its input on: attrs.in into out (plain) and s (encrypted).
CREATE FUNCTION public.hostile_echo(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    RETURN toygun.stop(jsonb_build_object('out', t.attrs->'in', 's', t.attrs->'in'));
END $$;
SELECT toygun.define_task('dummy', 'next', '{one,two}', 'hostile_next(toygun.task)', fields => '{a,s}',
                          encrypted_fields => '{s}');
SELECT toygun.define_resource('vault', encrypted_fields => '{s}');
SELECT toygun.define_task('vault', 'echo', '{one}', 'hostile_echo(toygun.task)', encrypted_fields => '{s}');
SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test') AS t \gset
-- a run that has made two transitions (beginning, middle)
SELECT toygun.start_task(:'r', 'another') AS a2 \gset
SELECT (toygun.tick_task(:'a2')).state AS ticked \gset

-- ---------------------------------------------------------------------------
-- Names that look like SQL, quotes and semicolons are names like any other
SELECT toygun.define_resource($n$a'b;"c$n$);
SELECT toygun.define_task($n$a'b;"c$n$, $n$x'); DROP TABLE toygun.task; --$n$,
                          ARRAY[$n$it's$n$, 'two;', '"three"', $n$$$; SELECT 1; $$$n$], 'hostile_walk(toygun.task)');
SELECT toygun.start_task(toygun.create_resource($n$a'b;"c$n$), $n$x'); DROP TABLE toygun.task; --$n$) AS q \gset
SELECT (toygun.tick_task(:'q')).state AS s1, (toygun.tick_task(:'q')).state AS s2,
       (toygun.tick_task(:'q')).state AS s3, (toygun.tick_task(:'q')).state AS s4 \gset
SELECT results_eq(format('SELECT to_state FROM toygun.history(%L)', :'q'),
                  ARRAY[$n$it's$n$, 'two;', '"three"', $n$$$; SELECT 1; $$$n$, '__stop__'],
                  'a type, task and states named like SQL are stored and walked through as they are');
SELECT ok(to_regclass('toygun.task') IS NOT NULL, 'and nothing of them ran as SQL');
SELECT is((SELECT count(*) FROM toygun.task WHERE name = $n$x'); DROP TABLE toygun.task; --$n$), 1::bigint,
          'the run is found by its name');
SELECT ok(NOT toygun.is_running((SELECT resource_id FROM toygun.task WHERE id = :'q'), $n$x'); DROP TABLE toygun.task; --$n$)
          AND (toygun.task_for((SELECT resource_id FROM toygun.task WHERE id = :'q'), $n$x'); DROP TABLE toygun.task; --$n$)).id = :'q',
          'is_running and task_for find it by that name');
SELECT lives_ok(format('SELECT toygun.define_resource(%L)', repeat('é', 31) || 'x'),
                'a name of 63 bytes in multibyte characters is accepted');
SELECT throws_ok(format('SELECT toygun.define_resource(%L)', repeat('é', 32)), '42622', 'resource type name is too long',
                 'a name of 64 bytes in multibyte characters is too long');
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.define_resource(E'x\u0085y')$q$, '22023'],
    [$q$SELECT toygun.define_resource(E'x\u009fy')$q$, '22023'],
    [$q$SELECT toygun.define_resource(E'x\x1b[2Jy')$q$, '22023'],
    [$q$SELECT toygun.define_resource(E'x\x7fy')$q$, '22023'],
    [$q$SELECT toygun.define_resource('x', ARRAY['a' || chr(8) || 'y'])$q$, '22023'],
    [$q$SELECT toygun.define_resource('x', fields => ARRAY['a' || chr(13) || 'y'])$q$, '22023'],
    [$q$SELECT toygun.define_task('dummy', E'x\u0080', '{a}', 'dummy_test(toygun.task)')$q$, '22023']]) $$,
    'control characters (C0, DEL, C1) are refused in every kind of name');

-- ---------------------------------------------------------------------------
-- 1 MB names, empty names and NULLs wherever a name is taken
INSERT INTO snap SELECT 'names', pg_temp.snapshot();
SELECT is_empty(format($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    ['SELECT toygun.define_resource(repeat(''x'', 1100000))', '42622'],
    ['SELECT toygun.define_resource(''x'', ARRAY[repeat(''s'', 1100000)])', '42622'],
    ['SELECT toygun.define_resource(''x'', fields => ARRAY[repeat(''f'', 1100000)])', '42622'],
    ['SELECT toygun.define_resource(''x'', encrypted_fields => ARRAY[repeat(''f'', 1100000)])', '42622'],
    ['SELECT toygun.define_task(repeat(''x'', 1100000), ''t'', ''{a}'', ''dummy_test(toygun.task)'')', '42622'],
    ['SELECT toygun.define_task(''dummy'', repeat(''t'', 1100000), ''{a}'', ''dummy_test(toygun.task)'')', '42622'],
    ['SELECT toygun.create_resource(repeat(''x'', 1100000))', '42622'],
    ['SELECT toygun.start_task(''%1$s'', repeat(''t'', 1100000))', '42622'],
    ['SELECT toygun.transition_task(''%2$s'', repeat(''s'', 1100000))', '42622'],
    ['SELECT toygun.transition_task(''%2$s'', ''middle'', NULL, repeat(''s'', 1100000))', '42622'],
    ['SELECT toygun.transition_resource(''%1$s'', repeat(''s'', 1100000))', '42622'],
    ['SELECT toygun.start_every(repeat(''x'', 1100000), ''test'', ''1 day'')', '42622'],
    ['SELECT toygun.start_every(''dummy'', repeat(''t'', 1100000), ''1 day'')', '42622'],
    ['SELECT toygun.start_every(''dummy'', ''test'', repeat(''* '', 550000))', '22023'],
    ['SELECT toygun.stop_every(repeat(''x'', 1100000), ''test'')', '42622'],
    ['SELECT toygun.run_schedule(''dummy'', repeat(''t'', 1100000))', '42622'],
    ['SELECT toygun.schedule_bucket(repeat(''1'', 1100000))', '22023'],
    ['SELECT toygun.define_task(''dummy'', '''', ''{a}'', ''dummy_test(toygun.task)'')', '22023'],
    ['SELECT toygun.start_task(''%1$s'', '''')', '22023'],
    ['SELECT toygun.transition_task(''%2$s'', '''')', '22023'],
    ['SELECT toygun.transition_task(''%2$s'', ''middle'', NULL, '''')', '22023'],
    ['SELECT toygun.transition_resource(''%1$s'', '''')', '22023'],
    ['SELECT toygun.start_every('''', ''test'', ''1 day'')', '22023'],
    ['SELECT toygun.stop_every(''dummy'', '''')', '22023'],
    ['SELECT toygun.run_schedule('''', ''test'')', '22023'],
    ['SELECT toygun.define_resource(''x'', fields => ''{a,NULL}'')', '22004'],
    ['SELECT toygun.define_resource(''x'', encrypted_fields => ''{NULL}'')', '22004'],
    ['SELECT toygun.transition_resource(NULL, ''running'')', '22004'],
    ['SELECT toygun.panic_task(NULL, ''m'')', '22004'],
    ['SELECT toygun.rewind_task(NULL)', '22004'],
    ['SELECT toygun.stop_resource(NULL)', '22004'],
    ['SELECT toygun.start_every(NULL, ''test'', ''1 day'')', '22004'],
    ['SELECT toygun.start_every(''dummy'', NULL, ''1 day'')', '22004'],
    ['SELECT toygun.start_every(''dummy'', ''test'', ''1 day'', NULL)', '22004'],
    ['SELECT toygun.stop_every(NULL, ''test'')', '22004'],
    ['SELECT toygun.run_schedule(''dummy'', NULL)', '22004'],
    ['SELECT toygun.schedule_bucket(NULL)', '22004'],
    ['SELECT toygun.schedule_bucket(''1 day'', NULL)', '22004']]) $$, :'r', :'t'),
    'over-long, empty and NULL names and arguments are each refused with their own SQLSTATE');
SELECT is(pg_temp.snapshot(), (SELECT digest FROM snap WHERE name = 'names'), 'and none of them wrote anything');
SELECT ok(length(pg_temp.message_of(format('SELECT toygun.transition_task(%L, repeat(''s'', 1100000))', :'t'))) < 100,
          'the error about a 1 MB state name does not repeat it');
SELECT ok(toygun.task_for(:'r', repeat('t', 1100000)) IS NULL AND NOT toygun.is_running(:'r', repeat('t', 1100000))
          AND (SELECT toygun.field(t, repeat('f', 1100000)) IS NULL FROM toygun.task t WHERE id = :'t')
          AND (SELECT toygun.field(t, '') IS NULL FROM toygun.task t WHERE id = :'t'),
          'looking up a 1 MB or empty name finds nothing');
SELECT is(toygun.decrypt(toygun.encrypt('"v"', repeat('c', 1100000)), repeat('c', 1100000)), '"v"'::jsonb,
          'a 1 MB context is a context like any other');
SELECT is((SELECT length(attrs->>'panic_message') FROM toygun.panic_task(:'t', repeat('m', 1100000))), 1100000,
          'a 1 MB panic message is kept whole');
SELECT (toygun.transition_task(:'t', 'beginning')).state AS moved \gset
SELECT ok(toygun.key_number(NULL) IS NULL AND toygun.field(NULL::toygun.task, 'x') IS NULL
          AND (SELECT toygun.field(t, NULL) IS NULL FROM toygun.task t WHERE id = :'t'),
          'key_number and field of NULL are NULL');
SELECT toygun.define_resource('nulls', encrypted_fields => NULL);
SELECT is((SELECT encrypted_fields FROM toygun.resource_type WHERE name = 'nulls'), '{}'::text[],
          'NULL encrypted_fields means none');

-- ---------------------------------------------------------------------------
-- Lists: at most 1000 states and fields; any lower bound
SELECT throws_ok($$SELECT toygun.define_resource('long', (SELECT array_agg('s' || i) FROM generate_series(1, 1001) i))$$,
                 '54000', 'too many states', 'more than 1000 states are refused');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'long', '{a}', 'dummy_test(toygun.task)',
                          fields => (SELECT array_agg('f' || i) FROM generate_series(1, 1001) i))$$,
                 '54000', 'too many fields', 'more than 1000 fields are refused');
SELECT throws_ok($$SELECT toygun.define_resource('long',
                          encrypted_fields => (SELECT array_agg('f' || i) FROM generate_series(1, 100000) i))$$,
                 '54000', 'too many encrypted_fields', 'and 100,000 encrypted fields at once, quickly');
SELECT toygun.define_task('dummy', 'long', (SELECT array_agg('s' || i ORDER BY i) FROM generate_series(1, 1000) i),
                          'hostile_walk(toygun.task)', fields => (SELECT array_agg('f' || i) FROM generate_series(1, 1000) i));
SELECT toygun.start_task(:'r', 'long', '{"f1000": 1}') AS l \gset
SELECT is((SELECT state FROM toygun.tick_task(:'l')), 's2', 'a type of 1000 states and 1000 fields works');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, 's1', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 100000) i))$$, :'l'),
                 '42703', 'field "k1" is not declared by task type "dummy.long"',
                 'attrs with 100,000 undeclared keys are refused');
SELECT toygun.define_resource('bounds', '[0:2]={x,y,z}');
SELECT is((SELECT states FROM toygun.resource_type WHERE name = 'bounds'), '{x,y,z}'::text[],
          'a list with another lower bound is taken in order');

-- ---------------------------------------------------------------------------
-- Handlers swapped for something else under the same signature
CREATE FUNCTION public.swapped(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
CREATE FUNCTION public.swapped_r(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_task('dummy', 'swap', '{one}', 'swapped(toygun.task)');
SELECT toygun.define_resource('swap', handler => 'swapped_r(toygun.resource)');
SELECT toygun.start_task(:'r', 'swap') AS sw \gset
SELECT toygun.create_resource('swap') AS swr \gset
INSERT INTO snap SELECT 'swap', pg_temp.snapshot();
-- (toygun_guard_drop refuses these drops; a superuser's replica session skips it)
SET LOCAL session_replication_role = replica;
DROP FUNCTION public.swapped(toygun.task);
CREATE FUNCTION public.swapped(t toygun.task) RETURNS bigint LANGUAGE sql AS $$ SELECT 42::bigint $$;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'sw'), '42P13',
                 'handler public.swapped(toygun.task) of task type "dummy.swap" is no longer a handler',
                 'a handler dropped and created again returning bigint is refused, not called');
DROP FUNCTION public.swapped(toygun.task);
CREATE FUNCTION public.swapped(t toygun.task) RETURNS text LANGUAGE sql AS $$ SELECT repeat('x', 100) $$;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'sw'), '42P13', NULL, 'so is one returning text');
DROP FUNCTION public.swapped(toygun.task);
CREATE PROCEDURE public.swapped(t toygun.task) LANGUAGE sql AS $$ SELECT 1 $$;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'sw'), '42P13', NULL, 'so is a procedure');
DROP PROCEDURE public.swapped(toygun.task);
CREATE FUNCTION public.swapped(t toygun.task) RETURNS SETOF toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT throws_ok(format('SELECT toygun.tick_task(%L)', :'sw'), '42P13', NULL, 'so is a set-returning function');
DROP FUNCTION public.swapped_r(toygun.resource);
CREATE FUNCTION public.swapped_r(r toygun.resource) RETURNS int LANGUAGE sql AS $$ SELECT 7 $$;
SELECT throws_ok(format('SELECT toygun.tick_resource(%L)', :'swr'), '42P13',
                 'handler public.swapped_r(toygun.resource) of resource type "swap" is no longer a handler',
                 'and so is a resource handler returning int');
SELECT is(pg_temp.snapshot(), (SELECT digest FROM snap WHERE name = 'swap'), 'none of these ticks wrote anything');
DROP FUNCTION public.swapped(toygun.task);
CREATE FUNCTION public.swapped(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT is((toygun.tick_task(:'sw')).state, '__stop__', 'with a proper handler again, the run goes on');
CREATE FUNCTION pg_temp.temporary(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'temp', '{one}', 'pg_temp.temporary(toygun.task)')$$, '42P13', NULL,
                 'a temporary function cannot be a handler');
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.define_task('dummy', 'x', '{a}', 0::regprocedure)$q$, '42883'],
    [$q$SELECT toygun.define_task('dummy', 'x', '{a}', 4294967295::oid::regprocedure)$q$, '42883'],
    [$q$SELECT toygun.define_resource('x', handler => 'pg_catalog.now()')$q$, '42P13']]) $$,
    'a handler that is no function, or any built-in, is refused');

-- ---------------------------------------------------------------------------
-- Deep JSON: as deep as the parser goes, through every way into attrs
SELECT (repeat('[', 10000) || '"deep"' || repeat(']', 10000)) AS deep \gset
SELECT toygun.create_resource('vault', jsonb_build_object('p', :'deep'::jsonb, 's', :'deep'::jsonb)) AS dr \gset
SELECT ok((SELECT toygun.field(x, 's') = :'deep'::jsonb AND toygun.field(x, 'p') = :'deep'::jsonb
             FROM toygun.resource x WHERE id = :'dr'),
          'JSON 10,000 levels deep in attrs, plain and encrypted, reads back the same');
SELECT toygun.start_task(:'dr', 'echo', jsonb_build_object('in', :'deep'::jsonb)) AS de \gset
SELECT is((toygun.tick_task(:'de')).state, '__stop__', 'a handler hands it on in its outcome');
SELECT ok((SELECT toygun.field(x, 's') = :'deep'::jsonb AND x.attrs->'out' = :'deep'::jsonb
             FROM toygun.task x WHERE id = :'de'), 'and the outcome attrs hold it, sealed and plain');
SELECT ok((toygun.transition_resource(:'dr', 'running', jsonb_build_object('s', :'deep'::jsonb))).attrs->'s' ? '$secret',
          'transition_resource seals it too');
SELECT throws_ok(format('SELECT toygun.create_resource(''vault'', %L)',
                        '{"p": ' || repeat('[', 200000) || repeat(']', 200000) || '}'), '54001', NULL,
                 'JSON nested deeper than the stack allows is a clear error');
SELECT toygun.encrypt(:'deep'::jsonb, 'deep') AS deep_secret \gset
SET LOCAL max_stack_depth = '1MB';
SELECT throws_ok(format('SELECT toygun.decrypt(%L, ''deep'')', :'deep_secret'), '54001', NULL,
                 'decrypting it with too little stack says so, and does not call the secret corrupted');
RESET max_stack_depth;
SELECT is(toygun.decrypt(:'deep_secret', 'deep'), :'deep'::jsonb, 'with the stack back, it decrypts');

-- ---------------------------------------------------------------------------
-- Intervals and counts
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.stay(wait => '1000000 years')$q$, '22008'],
    [$q$SELECT toygun.stay(wait => '178000000 years')$q$, '22008'],
    [$q$SELECT toygun.stay(wait => '9223372036854775807 microseconds')$q$, '22008'],
    [$q$SELECT toygun.stay(wait => '2147483647 days')$q$, '22008'],
    [$q$SELECT toygun.stay(wait => '1000 years 1 day')$q$, '22008'],
    [$q$SELECT toygun.stay(wait => '-9223372036854775808 microseconds')$q$, '22023'],
    [$q$SELECT toygun.stay(wait => '-2147483648 months')$q$, '22023'],
    [$q$SELECT toygun.stay(wait => '1000 years')$q$, 'ok'],
    [$q$SELECT toygun.stay(wait => '0')$q$, 'ok'],
    [$q$SELECT toygun.schedule_bucket('9223372036854775807 microseconds')$q$, '0A000'],
    [$q$SELECT toygun.schedule_bucket('178000000 years')$q$, '0A000'],
    [$q$SELECT toygun.schedule_bucket('2147483647 days')$q$, '0A000'],
    [$q$SELECT toygun.schedule_bucket('-2147483648 months')$q$, '22023'],
    [$q$SELECT toygun.schedule_bucket('0 minutes')$q$, '22023'],
    [$q$SELECT toygun.schedule_bucket('*/4294967296 * * * *')$q$, '22023'],
    [$q$SELECT toygun.schedule_bucket('99999999999999999999 * * * *')$q$, '22023'],
    [$q$SELECT toygun.schedule_bucket('1 day', 'infinity')$q$, '22008'],
    [$q$SELECT toygun.schedule_bucket('1 day', '-infinity')$q$, '22008'],
    [$q$SELECT toygun.rewind_task(gen_random_uuid(), 0)$q$, '22023'],
    [$q$SELECT toygun.rewind_task(gen_random_uuid(), -2147483648)$q$, '22023']]) $$,
    'negative, huge and out-of-range intervals and counts are each refused with their own SQLSTATE');
SELECT is((toygun.rewind_task(:'a2', 2147483647)).state, 'a', 'rewinding 2147483647 steps clamps to the first state');

-- Outcomes made by hand, returned by a handler
SELECT toygun.start_task(toygun.create_resource('dummy'), 'next') AS n \gset
SELECT set_config('hostile.next', '(stay,,,,)', true) AS next_set, (toygun.tick_task(:'n')).state AS ticked \gset
INSERT INTO snap SELECT 'next', pg_temp.snapshot();
CREATE TEMP TABLE bad_next (n toygun.next, want text);
INSERT INTO bad_next VALUES
    (ROW(NULL, NULL, NULL, NULL, NULL), '22023'),
    (ROW(repeat('k', 1100000), NULL, NULL, NULL, NULL), '22023'),
    (ROW('GO', 'two', NULL, NULL, NULL), '22023'),
    (ROW('go', NULL, NULL, NULL, NULL), '22023'),
    (ROW('go', '', NULL, NULL, NULL), '22023'),
    (ROW('go', repeat('s', 1100000), NULL, NULL, NULL), '42622'),
    (ROW('go', E'tw\x01o', NULL, NULL, NULL), '22023'),
    (ROW('go', '__new__', NULL, NULL, NULL), '42939'),
    (ROW('go', 'nowhere', NULL, NULL, NULL), '22023'),
    (ROW('go', 'two', '[1, 2]', NULL, NULL), '22023'),
    (ROW('go', 'two', '"scalar"', NULL, NULL), '22023'),
    (ROW('go', 'two', '{"undeclared": 1}', NULL, NULL), '42703'),
    (ROW('stay', NULL, NULL, '-1 s', NULL), '22023'),
    (ROW('stay', NULL, NULL, '1000000 years', NULL), '22008'),
    (ROW('stay', NULL, NULL, '-178000000 years', NULL), '22023'),
    (ROW('stop', NULL, 'null', NULL, NULL), '22023'),
    (ROW('panic', NULL, NULL, NULL, NULL), '22023');
SELECT is_empty(format($$ SELECT left(b.n::text, 80), b.want, pg_temp.tick_with(b.n, %L) AS got FROM bad_next b
                          WHERE pg_temp.tick_with(b.n, %L) <> b.want $$, :'n', :'n'),
    'hand-made outcomes that are invalid fail the tick, each with its own SQLSTATE');
SELECT is(pg_temp.snapshot(), (SELECT digest FROM snap WHERE name = 'next'), 'and none of those ticks wrote anything');
SELECT ok(length(pg_temp.message_of(format('SELECT set_config(''hostile.next'', %L, true), toygun.tick_task(%L)',
                                           ROW(repeat('k', 1100000), NULL, NULL, NULL, NULL)::toygun.next::text, :'n'))) < 100,
          'the error about a 1 MB kind does not repeat it');
SELECT set_config('hostile.next', ROW('stay', 'ignored', '{"a": 1}', '-11 months 331 days', NULL)::toygun.next::text, true) AS next_set \gset
SELECT clock_timestamp() AS before_tick \gset
SELECT ok((SELECT state = 'one' AND attrs->'a' = '1' AND run_at >= :'before_tick'::timestamptz
             FROM toygun.tick_task(:'n')),
          'stay ignores a state, keeps attrs, and a wait that lands in the past makes the run due now, not before');
SELECT set_config('hostile.next', ROW('go', 'two', '{"s": "sealed"}', '1 day', 'ignored')::toygun.next::text, true) AS next_set \gset
SELECT ok((SELECT state = 'two' AND attrs->'s' ? '$secret' AND NOT attrs ? 'panic_message' FROM toygun.tick_task(:'n')),
          'go ignores a wait and a message, and seals its encrypted attrs');
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT '(go)'::toygun.next$q$, '22P02'],
    [$q$SELECT '(go,one,,,,extra)'::toygun.next$q$, '22P02'],
    [$q$SELECT '(go,one,"{bad json",,)'::toygun.next$q$, '22P02'],
    [$q$SELECT '(stay,,,"not an interval",)'::toygun.next$q$, '22007'],
    [$q$SELECT '(stay,,,"infinity",)'::toygun.next$q$, '22007'],
    [$q$SELECT 'go,one,,,'::toygun.next$q$, '22P02'],
    [$q$SELECT ''::toygun.next$q$, '22P02']]) $$,
    'malformed toygun.next text is refused by its input function');

-- ---------------------------------------------------------------------------
-- Secrets: truncated, flipped, garbage, from another key
SELECT toygun.encrypt('{"pin": 4711}', 'ctx') AS s \gset
CREATE FUNCTION pg_temp.bytes(s text) RETURNS bytea LANGUAGE sql AS $$ SELECT decode(substr(s, 5), 'base64') $$;
CREATE FUNCTION pg_temp.text_of(b bytea) RETURNS text LANGUAGE sql AS
    $$ SELECT 'tg1:' || translate(encode(b, 'base64'), E'\n', '') $$;
SELECT is((SELECT count(*) FROM generate_series(0, length(:'s') - 1) n
            WHERE pg_temp.sqlstate_of(format('SELECT %L::toygun.secret', left(:'s', n))) <> '22P02'), 0::bigint,
          'every truncation of a secret''s text is malformed');
SELECT is((SELECT count(*) FROM generate_series(0, length(pg_temp.bytes(:'s')) - 1) n
            WHERE pg_temp.sqlstate_of(format('SELECT %L::toygun.secret',
                                             pg_temp.text_of(substr(pg_temp.bytes(:'s'), 1, n)))) <> '22P02'), 0::bigint,
          'every truncation of its bytes is malformed');
SELECT is_empty(format($$
    SELECT i, bit, pg_temp.sqlstate_of(q) FROM (
        SELECT i, bit, format('SELECT toygun.decrypt(%%L, ''ctx'')',
                              pg_temp.text_of(set_bit(pg_temp.bytes(%1$L), i * 8 + bit,
                                                      1 - get_bit(pg_temp.bytes(%1$L), i * 8 + bit)))) AS q
          FROM generate_series(0, length(pg_temp.bytes(%1$L)) - 1) i, generate_series(0, 7) bit) f
     WHERE pg_temp.sqlstate_of(q) NOT IN ('22P02', 'XX001', '42704') $$, :'s'),
    'every single flipped bit of a secret fails to decrypt, as malformed, altered or under a missing key');
SELECT is_empty($$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$q$SELECT toygun.decrypt('tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5wmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ==', 'elsewhere')$q$, 'XX001'],
    [$q$SELECT 'tg1:'::toygun.secret$q$, '22P02'],
    [$q$SELECT 'TG1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5wmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ=='::toygun.secret$q$, '22P02'],
    [$q$SELECT ' tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5wmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ=='::toygun.secret$q$, '22P02'],
    [$q$SELECT 'tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5w mK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ=='::toygun.secret$q$, '22P02'],
    [$q$SELECT E'tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5w\nmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ=='::toygun.secret$q$, '22P02'],
    [$q$SELECT 'tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5wmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYR=='::toygun.secret$q$, '22P02'],
    [$q$SELECT 'tg1:AAAAAQAAACCzHVIluu2Qm1R/gE3S6TdS3s5wmK0ooQkXds0HxQloR+gHT2H5kH5qDF46jSwuOL0LY/9ilLNcYQ'::toygun.secret$q$, '22P02'],
    [$q$SELECT ('tg1:' || repeat('A', 10000000))::toygun.secret$q$, '22P02'],
    [$q$SELECT toygun.decrypt(pg_temp.text_of(int4send(1) || int4send(40) || sha512('x'::bytea))::toygun.secret, '')$q$, 'XX001'],
    [$q$SELECT pg_temp.text_of(int4send(-1) || int4send(17) || decode(repeat('00', 41), 'hex'))::toygun.secret$q$, '22P02'],
    [$q$SELECT toygun.decrypt(pg_temp.text_of(int4send(2147483647) || int4send(17) || decode(repeat('00', 41), 'hex'))::toygun.secret, '')$q$, '42704']]) $$,
    'secrets from another key, garbage, and text that is almost base64 are each refused with their own SQLSTATE');
SELECT is(toygun.key_number(pg_temp.text_of(int4send(2147483647) || int4send(17) || decode(repeat('00', 41), 'hex'))::toygun.secret),
          2147483647, 'the highest key number is read as it is');
CREATE TEMP TABLE sec_in (v toygun.secret);
CREATE TEMP TABLE raw_out (b bytea);
SELECT current_setting('data_directory') || '/pgtap_hostile.copy' AS copyfile \gset
CREATE FUNCTION pg_temp.copy_in(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM raw_out;
    INSERT INTO raw_out VALUES (b);
    EXECUTE format('COPY raw_out TO %L (FORMAT binary)', current_setting('hostile.copyfile'));
    EXECUTE format('COPY sec_in FROM %L (FORMAT binary)', current_setting('hostile.copyfile'));
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT set_config('hostile.copyfile', :'copyfile', true) AS copyfile_set \gset
SELECT results_eq(format($$ SELECT pg_temp.copy_in(b) FROM (VALUES (''::bytea), ('\x01'), ('\x02' || substr(%1$L::bytea, 2)),
                                                                  (substr(%1$L::bytea, 1, 20)), (%1$L::bytea || '\x00'),
                                                                  (%1$L::bytea)) v(b) $$,
                         '\x01'::bytea || pg_temp.bytes(:'s')),
                  ARRAY['22P03', '22P03', '22P03', '22P03', '22P03', 'ok'],
                  'binary input refuses empty, short, foreign-version, truncated and padded secrets and takes a whole one');
SELECT is((SELECT toygun.decrypt(v, 'ctx') FROM sec_in), '{"pin": 4711}'::jsonb, 'which decrypts');

-- ---------------------------------------------------------------------------
-- Periodic starts of types and tasks with awkward names: one job each, never shared
SELECT toygun.define_resource('a.b');
SELECT toygun.define_task('a.b', 'c', '{one}', 'hostile_walk(toygun.task)');
SELECT toygun.define_resource('a');
SELECT toygun.define_task('a', 'b.c', '{one}', 'hostile_walk(toygun.task)');
SELECT toygun.define_task($n$a'b;"c$n$, 'b.c', '{one}', 'hostile_walk(toygun.task)');
SELECT toygun.create_resource($n$a'b;"c$n$) AS qr \gset
SELECT toygun.define_resource(repeat('L', 62) || '1');
SELECT toygun.define_resource(repeat('L', 62) || '2');
SELECT toygun.define_task(repeat('L', 62) || '1', repeat('t', 63), '{one}', 'hostile_walk(toygun.task)');
SELECT toygun.define_task(repeat('L', 62) || '2', repeat('t', 63), '{one}', 'hostile_walk(toygun.task)');
SELECT toygun.start_every('a.b', 'c', '1 hour') AS j1 \gset
SELECT toygun.start_every('a', 'b.c', '1 hour') AS j2 \gset
SELECT toygun.start_every($n$a'b;"c$n$, 'b.c', '1 hour') AS j3 \gset
SELECT toygun.start_every(repeat('L', 62) || '1', repeat('t', 63), '1 hour') AS j4 \gset
SELECT toygun.start_every(repeat('L', 62) || '2', repeat('t', 63), '1 hour') AS j5 \gset
SELECT is((SELECT count(DISTINCT jobname) FROM cron.job WHERE jobid IN (:j1, :j2, :j3, :j4, :j5)), 5::bigint,
          'names that differ only in where the dot is, and long names with a long common prefix, get jobs of their own');
SELECT ok((SELECT bool_and(octet_length(jobname) <= 63) FROM cron.job WHERE jobid IN (:j4, :j5)),
          'clipped job names fit a name');
SELECT is((SELECT jobname FROM cron.job WHERE jobid = :j3), $n$toygun:"a'b;""c"."b.c"$n$,
          'a name with a dot or a double quote is double-quoted in the job name');
DO $$ BEGIN EXECUTE (SELECT command FROM cron.job WHERE jobname = $n$toygun:"a'b;""c"."b.c"$n$); END $$;
SELECT ok(toygun.is_running(:'qr', 'b.c'), 'its job''s command quotes the names and starts the task');
SELECT toygun.stop_every('a', 'b.c') AS stopped \gset
SELECT ok((SELECT count(*) = 1 FROM cron.job WHERE jobid = :j1) AND (SELECT count(*) = 0 FROM cron.job WHERE jobid = :j2),
          'stop_every removes its own job only');
UPDATE cron.job SET command = 'SELECT 1' WHERE jobid = :j1;
SELECT throws_ok($$SELECT toygun.start_every('a.b', 'c', '1 day')$$, '42710', NULL,
                 'start_every does not take over a job of its name that runs another command');
SELECT toygun.stop_every('a.b', 'c') AS stopped \gset
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :j1), 1::bigint, 'and stop_every leaves such a job alone');

-- ---------------------------------------------------------------------------
-- Huge JSON: tens of MB (last: no digests of the tables after this)
CREATE TEMP TABLE huge AS SELECT jsonb_build_object('blob', repeat('h', 20000000), 'n', 1) AS v;
SELECT toygun.create_resource('vault', jsonb_build_object('p', v, 's', v)) AS hr FROM huge \gset
SELECT ok((SELECT toygun.field(x, 's') = huge.v AND x.attrs->'p' = huge.v FROM toygun.resource x, huge WHERE id = :'hr'),
          '40 MB of attrs, half of it in an encrypted field, are stored whole');
SELECT toygun.start_task(:'hr', 'echo', jsonb_build_object('in', repeat('o', 10000000))) AS he \gset
SELECT is((toygun.tick_task(:'he')).state, '__stop__', 'a handler hands 10 MB on in its outcome');
SELECT is((SELECT md5(toygun.field(x, 's')#>>'{}') FROM toygun.task x WHERE id = :'he'), md5(repeat('o', 10000000)),
          'and it reads back the same');
SELECT ok((SELECT toygun.decrypt(toygun.encrypt(v)) = v FROM huge), 'encrypt and decrypt of 20 MB');
DROP TABLE huge;
SELECT throws_ok($$SELECT toygun.encrypt(to_jsonb(repeat(chr(1), 23000000)))$$, '54000', 'value is too large to encrypt',
                 'a value whose JSON text is over 128 MB cannot be encrypted');

SELECT * FROM finish();
ROLLBACK;
