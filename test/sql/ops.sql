-- The operator's tools' SQL (issue 18): list_runs, run_detail, list_alarms,
-- ops_status, ops_whoami, under rights; and the UUIDv7 ids of periodic starts.
BEGIN;
\ir ../fixtures.sql
SELECT plan(62);

CREATE ROLE tg_ops_reader;      -- read on ops_a
CREATE ROLE tg_ops_secrets;     -- read and read_secrets on ops_a
CREATE ROLE tg_ops_stranger;    -- read, start and operate on ops_b only
SELECT toygun.define_resource('ops_a');
SELECT toygun.define_task('ops_a', 'job', '{beginning,middle,end}', 'dummy_test(toygun.task)',
                          encrypted_fields => '{secret}');
SELECT toygun.define_task('ops_a', 'other', '{a,b}', 'dummy_another(toygun.task)');
SELECT toygun.define_resource('ops_b');
SELECT toygun.define_task('ops_b', 'job', '{a,b}', 'dummy_another(toygun.task)');
SELECT toygun.grant_type('ops_a', 'tg_ops_reader', '{read}');
SELECT toygun.grant_type('ops_a', 'tg_ops_secrets', '{read,read_secrets}');
SELECT toygun.grant_type('ops_b', 'tg_ops_stranger', '{read,start,operate}');

-- five resources of ops_a, each with a run of job (the third panicked, the
-- fourth failing), one run of other; one run of ops_b
CREATE TEMP TABLE a_runs (n int, id uuid, resource uuid);
GRANT SELECT ON a_runs TO PUBLIC;
DO $$
DECLARE r uuid;
BEGIN
    FOR i IN 1..5 LOOP
        r := toygun.create_resource('ops_a');
        INSERT INTO a_runs VALUES (i, toygun.start_task(r, 'job', '{"secret": "swordfish", "plain": 1}'), r);
    END LOOP;
END $$;
SELECT toygun.start_task((SELECT resource FROM a_runs WHERE n = 1), 'other') AS other \gset
SELECT toygun.start_task(toygun.create_resource('ops_b'), 'job') AS b_run \gset
SELECT id AS panicked FROM a_runs WHERE n = 3 \gset
SELECT id AS failing FROM a_runs WHERE n = 4 \gset
SELECT toygun.panic_task(:'panicked', 'broken', 'testing the tools');
UPDATE toygun.task SET attempts = 2, last_error = 'boom' WHERE id = :'failing';

-- list_runs: newest first, filters
SELECT results_eq(
    $$ SELECT id FROM toygun.list_runs(type => 'ops_a', task => 'job') $$,
    $$ SELECT id FROM a_runs ORDER BY n DESC $$,
    'list_runs lists a type''s runs newest first');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_a', panicked => true) $$,
                  ARRAY[:'panicked'::uuid], 'list_runs: panicked');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(state => '__panic__', type => 'ops_a') $$,
                  ARRAY[:'panicked'::uuid], 'list_runs: by state');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(failing => true, type => 'ops_a') $$,
                  ARRAY[:'failing'::uuid], 'list_runs: failing');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(resource => (SELECT resource FROM a_runs WHERE n = 1)) $$,
                  ARRAY[:'other'::uuid, (SELECT id FROM a_runs WHERE n = 1)], 'list_runs: by resource');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_a', task => 'other') $$,
                  ARRAY[:'other'::uuid], 'list_runs: by task');
SELECT is((SELECT count(*) FROM toygun.list_runs(type => 'ops_a', due => true)), 5::bigint,
          'list_runs: due (the live runs but the panicked one)');
SELECT is((SELECT last_error FROM toygun.list_runs(failing => true, type => 'ops_a')), 'boom',
          'list_runs shows the owner the last error');

-- pagination: pages of 2 walk the 6 runs of ops_a once, with runs started between pages
CREATE TEMP TABLE seen (page int, id uuid, next text);
INSERT INTO seen SELECT 1, id, next FROM toygun.list_runs(type => 'ops_a', "limit" => 2);
SELECT toygun.start_task((SELECT resource FROM a_runs WHERE n = 2), 'other') AS later \gset
INSERT INTO seen SELECT 2, id, next FROM toygun.list_runs(type => 'ops_a', "limit" => 2,
                                                          after => (SELECT next FROM seen WHERE page = 1 AND next IS NOT NULL));
INSERT INTO seen SELECT 3, id, next FROM toygun.list_runs(type => 'ops_a', "limit" => 2,
                                                          after => (SELECT next FROM seen WHERE page = 2 AND next IS NOT NULL));
SELECT is((SELECT array_agg(page ORDER BY page) FROM seen), '{1,1,2,2,3,3}'::int[],
          'pages of 2 over 6 runs are full');
SELECT is((SELECT count(DISTINCT id) FROM seen), 6::bigint, 'the pages show every run once');
SELECT is((SELECT count(*) FROM seen WHERE id = :'later'), 0::bigint,
          'a run started after the first page is not among the later pages (newest first)');
SELECT is((SELECT array_agg(next IS NOT NULL ORDER BY page, id DESC) FROM seen),
          '{f,t,f,t,f,f}'::boolean[],
          'only a page''s last row carries the cursor, and none at the end (a full last page too)');
SELECT ok((SELECT bool_and(next ~ '^r1:') FROM seen WHERE next IS NOT NULL), 'cursors are r1: ...');

-- errors
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_runs(after => 'nonsense') $$), '22023',
          'list_runs: a malformed cursor is 22023');
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_runs("limit" => 0) $$), '22023',
          'list_runs: a limit of 0 is 22023');
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_runs("limit" => 1001) $$), '22023',
          'list_runs: a limit over 1000 is 22023');
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_runs(type => 'nope') $$), '42704',
          'list_runs: an unknown resource type is 42704');
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_runs(type => 'ops_b', task => 'other') $$), '42704',
          'list_runs: an unknown task type is 42704');

-- rights: a stranger sees nothing of ops_a, a reader no error texts through... its own grant shows them
SET ROLE tg_ops_stranger;
SELECT is((SELECT count(*) FROM toygun.list_runs(type => 'ops_a')), 0::bigint,
          'a stranger lists none of another''s runs');
SELECT results_eq($$ SELECT id FROM toygun.list_runs() $$, ARRAY[:'b_run'::uuid],
                  'a stranger lists only the runs of its types');
SELECT is(pg_temp.sqlstate_of(format('SELECT toygun.run_detail(%L)', :'panicked')), 'P0002',
          'run_detail of another''s run is P0002');
SELECT is((SELECT count(*) FROM toygun.list_alarms(state => 'all')), 0::bigint,
          'a stranger lists none of another''s alarms');
SELECT is((toygun.ops_status() ->> 'panicked')::int, 0, 'ops_status counts none of another''s panicked runs');
SELECT is((toygun.ops_status() ->> 'open_alarms')::int, 0, 'ops_status counts none of another''s alarms');
SELECT is(toygun.ops_whoami() -> 'types', '{"ops_b": ["read", "start", "operate"]}'::jsonb,
          'ops_whoami: the stranger''s rights');
RESET ROLE;
SET ROLE tg_ops_reader;
SELECT is((SELECT count(*) FROM toygun.list_runs(type => 'ops_a')), 7::bigint, 'a reader lists the type''s runs');
SELECT is((SELECT last_error FROM toygun.list_runs(failing => true)), 'boom',
          'a reader granted read sees the error text');
SELECT is(toygun.run_detail(:'panicked') -> 'attrs', '{"secret": {"$sealed": true}, "plain": 1, "panic_message": "broken"}'::jsonb,
          'run_detail seals an encrypted field without read_secrets');
SELECT is(toygun.run_detail(:'panicked') -> 'may', '{"operate": false, "read_secrets": false}'::jsonb,
          'run_detail says what the reader may do');
SELECT is((toygun.ops_status() ->> 'panicked')::int, 1, 'ops_status counts the readable panicked run');
SELECT is((toygun.ops_status() ->> 'failing')::int, 1, 'ops_status counts the readable failing run');
SELECT is((toygun.ops_status() ->> 'due')::int, 6, 'ops_status counts the readable due runs');
SELECT is((toygun.ops_status() ->> 'open_alarms')::int, 1, 'ops_status counts the readable open alarms');
SELECT is(toygun.ops_whoami() -> 'types', '{"ops_a": ["read"]}'::jsonb, 'ops_whoami: the reader''s rights');
RESET ROLE;
SET ROLE tg_ops_secrets;
SELECT is(toygun.run_detail(:'panicked') -> 'attrs', '{"secret": "swordfish", "plain": 1, "panic_message": "broken"}'::jsonb,
          'run_detail decrypts for a role with read_secrets');
RESET ROLE;

-- run_detail's parts
SELECT is(pg_temp.sqlstate_of($$ SELECT toygun.run_detail('00000000-0000-0000-0000-000000000000') $$), 'P0002',
          'run_detail of an unknown id is P0002');
SELECT is(toygun.run_detail(:'panicked') #>> '{run,state}', '__panic__', 'run_detail: the row');
SELECT is(toygun.run_detail(:'panicked') #>> '{history,-1,reason}', 'testing the tools',
          'run_detail: the history, with the reason of a move');
SELECT is(toygun.run_detail(:'panicked') #>> '{alarms,0,kind}', 'panic', 'run_detail: the run''s alarms');
SELECT is(jsonb_array_length(toygun.run_detail(:'failing') -> 'failures'), 0, 'run_detail: no failure rows');

-- Bounded reads at any size (bench/ops.sh: 1,000,000 runs). A type of 5,100
-- stopped runs (over _few_runs()'s 5,000) is listed by the newest-first walk
-- of task_pkey; ops_a (few) through its resources; both give the same pages.
SELECT toygun.define_resource('ops_big');
SELECT toygun.define_task('ops_big', 'job', '{a}', 'dummy_another(toygun.task)');
INSERT INTO toygun.resource (id, type, state, step)
    SELECT md5('ops_big' || i)::uuid, 'ops_big', 'ready', 1 FROM generate_series(1, 100) i;
INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step)
    SELECT toygun._new_id(), md5('ops_big' || (i % 100 + 1))::uuid, 'ops_big', 'job', '__stop__', 2
      FROM generate_series(1, 5100) i ORDER BY i;
SELECT toygun.start_task((SELECT resource FROM a_runs WHERE n = 5), 'other') AS newest \gset
ANALYZE toygun.task, toygun.resource;
SELECT ok(toygun._few_runs('{ops_a}') AND NOT toygun._few_runs('{ops_big}')
          AND NOT toygun._few_runs('{ops_a,ops_big}') AND toygun._few_runs('{ops_big}', 'nope'),
          '_few_runs: under 5,000 runs of the types (and task) or not');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_big') $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_big' ORDER BY id DESC LIMIT 50 $$,
                  'list_runs of a type of many runs: its newest 50');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_big',
                                                     after => (SELECT next FROM toygun.list_runs(type => 'ops_big')
                                                                WHERE next IS NOT NULL)) $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_big' ORDER BY id DESC OFFSET 50 LIMIT 50 $$,
                  'and its second page by the cursor');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_a', "limit" => 3) $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_a' ORDER BY id DESC LIMIT 3 $$,
                  'list_runs of a type of few runs (read through its resources): its newest');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(type => 'ops_a', "limit" => 3,
                                                     after => (SELECT next FROM toygun.list_runs(type => 'ops_a', "limit" => 3)
                                                                WHERE next IS NOT NULL)) $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_a' ORDER BY id DESC OFFSET 3 LIMIT 3 $$,
                  'and its second page by the cursor');
SELECT results_eq($$ SELECT id FROM toygun.list_runs(task => 'other', due => true) $$,
                  $$ SELECT id FROM toygun.task WHERE name = 'other' AND state <> '__stop__' AND run_at <= clock_timestamp()
                      ORDER BY id DESC $$,
                  'list_runs of a task of few runs with a filter');
SELECT results_eq($$ SELECT id FROM toygun.list_runs("limit" => 4) $$,
                  $$ SELECT id FROM toygun.task ORDER BY id DESC LIMIT 4 $$,
                  'list_runs with no filter, as a role that reads every type: the newest of all');
-- a reader of ops_a pages through every run in pages of 2, among the 5,100 of ops_big: each row and
-- each cursor is of a run it may read
SET ROLE tg_ops_reader;
CREATE TEMP TABLE reader_pages (page int, id uuid, resource_type text, next text);
DO $$
DECLARE
    c text;
BEGIN
    FOR p IN 1..10 LOOP
        INSERT INTO reader_pages SELECT p, id, resource_type, next FROM toygun.list_runs("limit" => 2, after => c);
        c := (SELECT next FROM reader_pages WHERE page = p AND next IS NOT NULL);
        EXIT WHEN c IS NULL;
    END LOOP;
END $$;
RESET ROLE;
SELECT results_eq($$ SELECT id FROM reader_pages ORDER BY page, id DESC $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_a' ORDER BY id DESC $$,
                  'a reader''s pages show each of its runs once, newest first');
SELECT is((SELECT count(*) FROM reader_pages p JOIN toygun.task t ON t.id = substr(p.next, 4)::uuid
            WHERE p.next IS NOT NULL AND t.resource_type = 'ops_a'),
          (SELECT count(*) FROM reader_pages WHERE next IS NOT NULL),
          'every cursor names a run the reader may read, never one of ops_big');
SET ROLE tg_ops_stranger;
SELECT results_eq($$ SELECT id FROM toygun.list_runs(task => 'job') $$,
                  $$ SELECT id FROM toygun.task WHERE resource_type = 'ops_b' ORDER BY id DESC $$,
                  'a stranger''s list of a task two types share: its own type''s runs only');
RESET ROLE;

-- ops_gauges: what toygun.stats counts (but live), from indexes
CREATE TEMP VIEW stats_gauges AS
    SELECT s.kind, s.resource_type, s.task, sum(s.due)::bigint AS due, sum(s.panicked)::bigint AS panicked,
           sum(s.failing)::bigint AS failing
      FROM toygun.stats s GROUP BY 1, 2, 3 HAVING sum(s.due) + sum(s.panicked) + sum(s.failing) > 0;
GRANT SELECT ON stats_gauges TO PUBLIC;
SELECT results_eq($$ SELECT kind, resource_type, task, due, panicked, failing FROM toygun.ops_gauges()
                      ORDER BY 1, 2, 3 $$,
                  $$ SELECT * FROM stats_gauges ORDER BY 1, 2, 3 $$,
                  'ops_gauges counts due, panicked and failing objects as toygun.stats does');
SELECT ok(NOT bool_or(due_capped) AND bool_and(oldest_due_age >= '0' OR oldest_due_age IS NULL),
          'not capped; ages of the oldest due') FROM toygun.ops_gauges();
SELECT is((SELECT array[sum(due), count(*) FILTER (WHERE due_capped)]::bigint[] FROM toygun.ops_gauges(cap => 2)
            WHERE kind = 'task'),
          (SELECT array[2, count(*)]::bigint[] FROM toygun.ops_gauges(cap => 2) WHERE kind = 'task'),
          'with a cap of 2 due runs a head stops at 2, and says so');
SET ROLE tg_ops_reader;
SELECT results_eq($$ SELECT kind, resource_type, task, due, panicked, failing FROM toygun.ops_gauges(cap => 2)
                      ORDER BY 1, 2, 3 $$,
                  $$ SELECT * FROM stats_gauges ORDER BY 1, 2, 3 $$,
                  'a reader of few runs: its own counts in full, through their resources, whatever the cap');
SELECT is((SELECT toygun.ops_status() -> 'live')::int, (SELECT sum(live)::int FROM toygun.stats WHERE kind = 'task'),
          'ops_status: the reader''s live runs');
RESET ROLE;
SELECT is((SELECT toygun.ops_status() - '{workers,queues,at,open_alarms,oldest_due_age}'::text[]),
          (SELECT jsonb_build_object('live', sum(live), 'live_capped', false, 'due', sum(due), 'due_capped', false,
                                     'failing', sum(failing), 'panicked', sum(panicked))
             FROM toygun.stats WHERE kind = 'task'),
          'ops_status: live, due, failing and panicked runs, as toygun.stats has them');

-- list_alarms
SELECT results_eq($$ SELECT object_id, kind FROM toygun.list_alarms() $$,
                  format($$ VALUES (%L::uuid, 'panic'::text) $$, :'panicked'), 'list_alarms lists the open alarms');
SELECT toygun.retry_task(:'panicked', 'fixed');
SELECT is((SELECT count(*) FROM toygun.list_alarms()), 0::bigint, 'a repaired run''s alarm is not open');
SELECT is((SELECT closed_reason FROM toygun.list_alarms(state => 'closed', type => 'ops_a')), 'retry_task: fixed',
          'list_alarms lists closed ones by state and type');
SELECT is(pg_temp.sqlstate_of($$ SELECT * FROM toygun.list_alarms(state => 'gone') $$), '22023',
          'list_alarms: an unknown state is 22023');

-- a periodic start's runs have UUIDv7 ids, as the runs started by hand
SELECT toygun.start_every('ops_b', 'job', '0 3 * * *') AS job \gset
UPDATE toygun.task SET state = '__stop__' WHERE resource_type = 'ops_b';
SELECT is(toygun.run_schedule('ops_b', 'job'), 1::bigint, 'the schedule starts a run');
SELECT is((SELECT substr(id::text, 15, 1) FROM toygun.task WHERE resource_type = 'ops_b' AND state <> '__stop__'),
          '7', 'a periodic start''s run id is a UUIDv7');

SELECT * FROM finish();
ROLLBACK;
