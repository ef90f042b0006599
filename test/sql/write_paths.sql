-- The two write paths of a tick, side by side: the direct writes
-- (src/store.c) and SQL (toygun.direct_writes = off). The same seeded
-- random sequence of starts, ticks, moves, rewinds, stops and rotations
-- runs on tables a DBA has altered in each way below, once through each
-- path, each time from the same savepoint; the rows, the histories and
-- each operation's outcome (or error) must be the same.
BEGIN;
\ir ../fixtures.sql
SELECT plan(29);

CREATE FUNCTION public.diff_task(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    n int := coalesce((t.attrs->>'n')::int, 0) + 1;
BEGIN
    CASE t.state
    WHEN 'one' THEN
        IF t.attrs ? 'moved' AND n % 2 = 0 THEN
            RAISE EXCEPTION 'unlucky %', n;
        END IF;
        RETURN toygun.go('two', jsonb_build_object('n', n));
    WHEN 'two' THEN
        IF n % 3 = 0 THEN
            RETURN toygun.stay(jsonb_build_object('n', n), '1 hour');
        END IF;
        RETURN toygun.go('three', jsonb_build_object('n', n, 'note', repeat('x', n)));
    WHEN 'three' THEN
        RETURN toygun.stop(jsonb_build_object('n', n));
    END CASE;
END $$;

CREATE FUNCTION public.diff_resource(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE r.state
    WHEN 'up' THEN RETURN toygun.go('steady', jsonb_build_object('seen', true));
    ELSE RETURN toygun.stay(wait => '1 hour');
    END CASE;
END $$;

SELECT toygun.define_resource('diff', '{up,steady,down}', 'diff_resource(toygun.resource)',
                              encrypted_fields => '{token}');
SELECT toygun.define_task('diff', 'work', '{one,two,three}', 'diff_task(toygun.task)',
                          encrypted_fields => '{password}');

-- An object's id as its place: resources by their attrs.i, runs by start order.
CREATE FUNCTION pg_temp.place(id uuid) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(
        (SELECT 'r' || (r.attrs->>'i') FROM ONLY toygun.resource r WHERE r.id = place.id),
        (SELECT 't' || n FROM (SELECT t.id, row_number() OVER (ORDER BY t.seq) AS n
                                 FROM ONLY toygun.task t) s WHERE s.id = place.id),
        'unknown')
$$;

-- Without ids, times or sealed values, which differ from run to run.
CREATE FUNCTION pg_temp.plain(j jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_object_agg(key, CASE WHEN jsonb_typeof(value) = 'object' AND value ? '$secret'
                                                THEN '"sealed"'::jsonb ELSE value END), '{}')
      FROM jsonb_each(j)
$$;

CREATE FUNCTION pg_temp.scrub(s text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(s, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g')
$$;

-- What the tables hold, by place.
CREATE FUNCTION pg_temp.contents() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'resources', (SELECT jsonb_agg(to_jsonb(r) - '{id,created_at,updated_at,run_at}'::text[]
                                       || jsonb_build_object('attrs', pg_temp.plain(r.attrs),
                                                             'due', r.run_at IS NOT NULL)
                                       ORDER BY r.attrs->>'i') FROM ONLY toygun.resource r WHERE r.type = 'diff'),
        'tasks', (SELECT jsonb_agg(to_jsonb(t) - '{id,created_at,updated_at,run_at,seq}'::text[]
                                   || jsonb_build_object('resource_id', pg_temp.place(t.resource_id),
                                                         'attrs', pg_temp.plain(t.attrs),
                                                         'last_error', pg_temp.scrub(t.last_error),
                                                         'due', t.run_at IS NOT NULL)
                                   ORDER BY t.seq) FROM ONLY toygun.task t),
        'history', (SELECT jsonb_agg(to_jsonb(h) - '{object_id,at}'::text[]
                                     || jsonb_build_object('object', pg_temp.place(h.object_id))
                                     ORDER BY pg_temp.place(h.object_id), h.step)
                      FROM toygun.transition h))
$$;

-- The sequence: ops random operations on three resources, from seed; each
-- operation's outcome (ok, or its SQLSTATE and message), then the tables.
CREATE FUNCTION pg_temp.run_ops(seed float8, ops int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    outcomes jsonb := '[]';
    r uuid;
    t uuid;
    op int;
    pick text;
    what text;
BEGIN
    PERFORM setseed(seed);
    FOR i IN 1..3 - (SELECT count(*) FROM ONLY toygun.resource WHERE type = 'diff') LOOP
        BEGIN
            PERFORM toygun.create_resource('diff', jsonb_build_object('i', i, 'token', 'tk' || i));
            outcomes := outcomes || to_jsonb('create ok'::text);
        EXCEPTION WHEN OTHERS THEN
            outcomes := outcomes || to_jsonb('create ' || SQLSTATE || ' ' || pg_temp.scrub(SQLERRM));
        END;
    END LOOP;
    FOR i IN 1..ops LOOP
        op := floor(random() * 11)::int;
        pick := (1 + floor(random() * 3))::text;
        SELECT id INTO r FROM ONLY toygun.resource WHERE type = 'diff' AND attrs->>'i' = pick;
        SELECT id INTO t FROM ONLY toygun.task WHERE resource_id = r ORDER BY seq DESC LIMIT 1;
        what := (ARRAY['start', 'start', 'tick', 'tick', 'tick', 'move', 'rewind', 'stop',
                       'tick resource', 'move resource', 'rotate'])[op + 1];
        BEGIN
            CASE op
            WHEN 0, 1 THEN
                PERFORM toygun.start_task(r, 'work', jsonb_build_object('password', 'pw' || i));
            WHEN 2, 3, 4 THEN
                what := what || ' to ' || (SELECT x.state || ', attempts ' || x.attempts
                                             FROM toygun.tick_task(t) x);
            WHEN 5 THEN
                PERFORM toygun.transition_task(t, (ARRAY['one', 'two', 'three'])[1 + floor(random() * 3)::int],
                                               jsonb_build_object('moved', i), reason => 'move ' || i);
            WHEN 6 THEN
                PERFORM toygun.rewind_task(t, 1, 'rewind ' || i);
            WHEN 7 THEN
                PERFORM toygun.stop_task(t, CASE WHEN i % 2 = 0 THEN 'stop ' || i END);
            WHEN 8 THEN
                PERFORM toygun.tick_resource(r);
            WHEN 9 THEN
                PERFORM toygun.transition_resource(r, (ARRAY['up', 'steady', 'down'])[1 + floor(random() * 3)::int]);
            ELSE
                PERFORM toygun.rotate_secrets();
            END CASE;
            outcomes := outcomes || to_jsonb(what || ' ok');
        EXCEPTION WHEN OTHERS THEN
            outcomes := outcomes || to_jsonb(what || ' ' || SQLSTATE || ' ' || pg_temp.scrub(SQLERRM));
        END;
    END LOOP;
    RETURN jsonb_build_object('outcomes', outcomes) || pg_temp.contents();
END $$;

-- One trial: the alteration (ddl), the first half of the sequence, more
-- DDL in the same transaction (mid), the second half; the outcome. It is
-- all rolled back (the exception carries the outcome out), so that every
-- trial starts from the same tables.
CREATE FUNCTION pg_temp.trial(ddl text, mid text, path text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    outcome text;
BEGIN
    BEGIN
        PERFORM set_config('toygun.direct_writes', path, true);
        IF ddl <> '' THEN EXECUTE ddl; END IF;
        outcome := pg_temp.run_ops(0.42, 80)::text;
        IF mid <> '' THEN EXECUTE mid; END IF;
        outcome := jsonb_build_array(outcome::jsonb, pg_temp.run_ops(0.24, 80))::text;
        RAISE EXCEPTION USING ERRCODE = 'TGDIF', DETAIL = outcome;
    EXCEPTION WHEN SQLSTATE 'TGDIF' THEN
        GET STACKED DIAGNOSTICS outcome = PG_EXCEPTION_DETAIL;
    END;
    RETURN outcome::jsonb;
END $$;

CREATE TEMP TABLE alteration (n int, name text, ddl text, mid text DEFAULT '');
INSERT INTO alteration VALUES
    (1, 'the tables as installed', '', ''),
    (2, 'a column added to toygun.transition',
        'ALTER TABLE toygun.transition ADD COLUMN note2 text', ''),
    (3, 'a column added to and dropped from toygun.transition and toygun.resource',
        'ALTER TABLE toygun.transition ADD COLUMN gone text; ALTER TABLE toygun.transition DROP COLUMN gone;
         ALTER TABLE toygun.resource ADD COLUMN gone int; ALTER TABLE toygun.resource DROP COLUMN gone', ''),
    (4, 'an int column with a default added to toygun.resource and to toygun.transition',
        'ALTER TABLE toygun.resource ADD COLUMN extra int DEFAULT 7;
         ALTER TABLE toygun.transition ADD COLUMN extra int DEFAULT 8', ''),
    (5, 'a CHECK constraint on toygun.task and one on toygun.transition',
        $$ALTER TABLE toygun.task ADD CONSTRAINT no_three CHECK (state <> 'three');
          ALTER TABLE toygun.transition ADD CONSTRAINT short CHECK (note IS NULL OR length(note) < 12)$$, ''),
    (6, 'NOT NULL on last_error of toygun.task and toygun.resource',
        $$ALTER TABLE toygun.task ALTER COLUMN last_error SET NOT NULL;
          ALTER TABLE toygun.resource ALTER COLUMN last_error SET DEFAULT '';
          ALTER TABLE toygun.resource ALTER COLUMN last_error SET NOT NULL$$, ''),
    (7, 'a stored generated column on toygun.resource',
        $$ALTER TABLE toygun.resource ADD COLUMN shout text GENERATED ALWAYS AS (upper(state)) STORED$$, ''),
    (8, 'a trigger on toygun.task and one on toygun.transition',
        $$CREATE TRIGGER mark BEFORE UPDATE ON toygun.task FOR EACH ROW EXECUTE FUNCTION pg_temp.mark();
          CREATE TRIGGER note BEFORE INSERT ON toygun.transition FOR EACH ROW EXECUTE FUNCTION pg_temp.note()$$, ''),
    (9, 'a rule on toygun.resource',
        $$CREATE RULE seen AS ON UPDATE TO toygun.resource DO ALSO INSERT INTO pg_temp.seen VALUES (NEW.id)$$, ''),
    (10, 'a table that inherits from toygun.task and holds a copy of a run',
        $$CREATE TABLE pg_temp.child () INHERITS (toygun.task)$$,
        $$INSERT INTO pg_temp.child SELECT * FROM ONLY toygun.task ORDER BY seq LIMIT 1$$),
    (11, 'a publication of updates, and no replica identity, on toygun.task',
        $$SET LOCAL client_min_messages = error;
          CREATE PUBLICATION diff_pub FOR TABLE toygun.task WITH (publish = 'update');
          ALTER TABLE toygun.task REPLICA IDENTITY NOTHING$$, ''),
    (12, 'toygun.resource.last_error narrowed to varchar(8)',
        'ALTER TABLE toygun.resource ALTER COLUMN last_error TYPE varchar(8)', ''),
    (13, 'a unique index on toygun.task (resource_id, step)',
        'CREATE UNIQUE INDEX diff_step ON toygun.task (resource_id, step)', ''),
    (14, 'an expression index on toygun.transition',
        $$CREATE INDEX diff_expr ON toygun.transition (lower(to_state || coalesce(note, '')))$$, ''),
    (15, 'a trigger created after ticks, in the same transaction', '',
        $$CREATE TRIGGER mark BEFORE UPDATE ON toygun.task FOR EACH ROW EXECUTE FUNCTION pg_temp.mark()$$),
    (16, 'a column added after ticks, in the same transaction', '',
        $$ALTER TABLE toygun.transition ADD COLUMN late text DEFAULT 'late';
          ALTER TABLE toygun.task ADD CONSTRAINT few CHECK (attempts < 2)$$),
    (17, 'a deferrable unique constraint and an exclusion constraint',
        $$ALTER TABLE toygun.transition ADD CONSTRAINT once UNIQUE (object_id, to_state, step, expires_at) DEFERRABLE;
          ALTER TABLE toygun.task ADD CONSTRAINT lone EXCLUDE USING btree (resource_id WITH =, name WITH =, state WITH =)$$, ''),
    (18, 'a publication of toygun.task with a row filter and one with a column list',
        $$SET LOCAL client_min_messages = error;
          CREATE PUBLICATION diff_rows FOR TABLE toygun.task WHERE (state <> 'three') WITH (publish = 'update')$$,
        $$SET LOCAL client_min_messages = error; DROP PUBLICATION diff_rows;
          CREATE PUBLICATION diff_cols FOR TABLE toygun.task (state, attrs) WITH (publish = 'update')$$),
    (19, 'row-level security forced on toygun.task, with a policy that hides runs in state three',
        $$ALTER TABLE toygun.task ENABLE ROW LEVEL SECURITY; ALTER TABLE toygun.task FORCE ROW LEVEL SECURITY;
          CREATE POLICY hide ON toygun.task USING (state <> 'three')$$, ''),
    (20, 'a CHECK whose function catches an error (a subtransaction aborts in the write), and an index calling a function',
        $$ALTER TABLE toygun.task ADD CONSTRAINT caught CHECK (pg_temp.caught(state));
          CREATE INDEX diff_fn ON toygun.transition (public.diff_len(to_state))$$, ''),
    (21, 'storage and compression of written columns changed; a BRIN index on run_at',
        $$ALTER TABLE toygun.task ALTER COLUMN attrs SET STORAGE EXTERNAL;
          ALTER TABLE toygun.task ALTER COLUMN last_error SET COMPRESSION pglz;
          ALTER TABLE toygun.transition ALTER COLUMN note SET STORAGE MAIN;
          CREATE INDEX diff_brin ON toygun.task USING brin (run_at)$$, ''),
    (22, 'toygun.task clustered, toygun.transition truncated and toygun.task reindexed after ticks, in the same transaction', '',
        $$CLUSTER toygun.task USING task_runs_idx; TRUNCATE toygun.transition; REINDEX TABLE toygun.task$$),
    (23, 'toygun.task made unlogged and logged again after ticks, in the same transaction', '',
        $$ALTER TABLE toygun.task SET UNLOGGED; ALTER TABLE toygun.task SET LOGGED$$),
    (24, 'row-level security enabled, not forced, on the three tables (toygun''s own policies), with more policies that filter reads',
        $$CREATE POLICY also ON toygun.transition FOR SELECT USING (to_state <> 'three');
          CREATE POLICY also ON toygun.task FOR SELECT USING (state <> 'three')$$, ''),
    (25, 'a statement trigger on toygun.transition (the partitioned history) that refuses every insert',
        $$CREATE TRIGGER refuse AFTER INSERT ON toygun.transition FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.refuse()$$, '');

CREATE FUNCTION pg_temp.mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.attrs := NEW.attrs || '{"trig": 1}'; RETURN NEW; END $$;
CREATE FUNCTION pg_temp.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, '-') || '!'; RETURN NEW; END $$;
CREATE TABLE pg_temp.seen (id uuid);
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'no history today'; END $$;
CREATE FUNCTION pg_temp.caught(s text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 / (length(s) - length(s));
    RETURN true;
EXCEPTION WHEN division_by_zero THEN
    RETURN s <> 'three';
END $$;
CREATE FUNCTION public.diff_len(s text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN length(s); END $$;

SELECT is(pg_temp.trial(ddl, mid, 'on'), pg_temp.trial(ddl, mid, 'off'),
          format('%s: the same rows, histories and errors through both paths', name))
  FROM alteration ORDER BY n;

-- The sequence does something: ticks that fail, moves, histories; and where
-- SQL refuses a write, so do the direct writes.
SELECT pg_temp.trial('', '', 'on') AS plain \gset
SELECT cmp_ok(jsonb_array_length(:'plain'::jsonb -> 1 -> 'history'), '>', 60,
              'the sequence leaves a long history');
SELECT ok(:'plain'::jsonb -> 0 -> 'outcomes' @> '["move ok", "rewind ok", "start ok", "stop ok", "rotate ok"]'
          AND :'plain'::jsonb -> 0 -> 'outcomes' @> '["tick to two, attempts 0 ok", "tick P0001 unlucky 2"]',
          'the sequence starts, ticks, moves and rewinds, and some ticks fail');
SELECT ok(EXISTS (SELECT FROM alteration, jsonb_array_elements(pg_temp.trial(ddl, mid, 'on') -> 0 -> 'outcomes') o
                   WHERE n = 5 AND o #>> '{}' LIKE 'tick 23514 %'),
          'a CHECK constraint refuses a direct write as it refuses SQL');
SELECT ok(EXISTS (SELECT FROM alteration, jsonb_array_elements(pg_temp.trial(ddl, mid, 'on') -> 0 -> 'outcomes') o
                   WHERE n = 11 AND o #>> '{}' LIKE 'tick 55000 %'),
          'a publication without replica identity refuses a direct write as it refuses SQL');

SELECT * FROM finish();
ROLLBACK;
