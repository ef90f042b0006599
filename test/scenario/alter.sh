#!/usr/bin/env bash
# A DBA alters toygun's tables on a live server, with the workers ticking:
# columns added and dropped, defaults, CHECK constraints, triggers, a
# publication without replica identity, a renamed column or table, a table
# rewritten. No change crashes the server or stalls the workers; runs either
# finish, with every row as SQL would write it, or fail cleanly with SQL's
# error and finish once the change is undone. The direct writes step aside
# for a table that is not as toygun made it, and come back when it is again.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/alter
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.max_attempts = 1000" \
	"toygun.retry_backoff = '100ms'" "toygun.poll_interval = '1h'" "restart_after_crash = on" \
	>/dev/null || bail "initdb failed"
rm -f "$DIR/server.log"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 33

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
q "CREATE EXTENSION toygun" >/dev/null 2>&1
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
SELECT toygun.define_resource('box');
CREATE FUNCTION job(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  CASE t.state
  WHEN 'one' THEN RETURN toygun.go('two', '{"went": 1}');
  ELSE RETURN toygun.stop();
  END CASE;
END $$;
SELECT toygun.define_task('box', 'job', '{one,two}', 'job(toygun.task)');
CREATE TABLE box (i int PRIMARY KEY, id uuid);
INSERT INTO box SELECT i, toygun.create_resource('box') FROM generate_series(1, 40) i;
CREATE TABLE round (n int);
INSERT INTO round VALUES (0);
SQL
STARTED=$(q "SELECT pg_postmaster_start_time()")

# A round: one run on each box, then wait until all have stopped.
start_round() {
	q "UPDATE round SET n = n + 1" >/dev/null
	q "SELECT count(toygun.start_task(id, 'job')) FROM box" >/dev/null
}
round_done() {
	wait_for "${1:-60}" "SELECT count(*) = 40 FROM ONLY toygun.task
	                     WHERE seq > (SELECT coalesce(max(seq), 0) FROM ONLY toygun.task) - 40
	                       AND state = '__stop__'"
}
round() {
	start_round
	round_done "$@"
}
# the last round's runs have each failed with this SQLSTATE's message at least once
failing_with() {
	wait_for 60 "SELECT bool_and(attempts > 0 AND last_error LIKE '%' || '$1' || '%') FROM ONLY toygun.task
	             WHERE seq > (SELECT max(seq) FROM ONLY toygun.task) - 40"
}
# the server has not restarted and no process died of a signal
intact() {
	[ "$(q "SELECT pg_postmaster_start_time()")" = "$STARTED" ] &&
		! grep -q "terminated by signal" "$DIR/server.log"
}
# what a tick in a session says, at DEBUG1, about the write path of a table
path_note() {
	local r
	r=$(q "SELECT id FROM box WHERE i = 1")
	q "SELECT toygun.stop_task(toygun.start_task('$r', 'job'))" >/dev/null 2>&1
	tg_psql "$DIR" tg -c "SET client_min_messages = debug1" \
		-c "SELECT toygun.tick_task(toygun.start_task('$r', 'job'))" 2>&1 >/dev/null |
		grep -o "toygun\.[a-z]* is written through SQL: .*" | sort -u | tr '\n' ' '
	q "UPDATE ONLY toygun.task SET state = '__stop__', run_at = NULL WHERE resource_id = '$r' AND state <> '__stop__'" >/dev/null
}

round 120; ok $? "the tables as installed: a round of runs finishes"
is "$(path_note)" "" "the tables as installed are written directly"

# Resources that stop themselves, claimed in one batch with their runs: the
# stop parks the runs (an UPDATE) after the claim read them, so a run's save
# must find the newest version, as SQL does, not fail on the one it read.
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup of hub failed"
CREATE FUNCTION halt(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('hub', '{up}', 'halt(toygun.resource)');
SELECT toygun.define_task('hub', 'job', '{one,two}', 'job(toygun.task)');
SELECT toygun.start_task(toygun.create_resource('hub'), 'job') FROM generate_series(1, 40);
SQL
wait_for 60 "SELECT count(*) = 40 FROM ONLY toygun.task WHERE resource_type = 'hub' AND run_at IS NULL"
is "$(q "SELECT count(*) || ' failed: ' || coalesce(min(last_error), '') FROM ONLY toygun.task
         WHERE resource_type = 'hub' AND (attempts > 0 OR last_error IS NOT NULL)")" "0 failed: " \
	"runs parked by their resource's stop in the batch that claimed them save without failing"

# the crash of the original direct writes: every tick segfaulted
q "ALTER TABLE toygun.transition ADD COLUMN note2 text" >/dev/null
round; ok $? "a column added to toygun.transition: the runs finish"
intact; ok $? "a column added to toygun.transition crashes nothing"
is "$(path_note)" "toygun.transition is written through SQL: it has columns toygun did not make " \
	"a column added to toygun.transition sends its writes through SQL"
q "ALTER TABLE toygun.transition DROP COLUMN note2" >/dev/null
round; ok $? "the column dropped again: the runs finish"
is "$(path_note)" "" "a dropped column leaves the table written directly"

# a default is applied as SQL applies it
q "ALTER TABLE toygun.transition ADD COLUMN extra int DEFAULT 7" >/dev/null
round; ok $? "an int column with a default added: the runs finish"
is "$(q "SELECT count(*) FILTER (WHERE extra IS DISTINCT FROM 7) || '/' || count(*) FROM toygun.transition
         WHERE at > (SELECT max(created_at) FROM ONLY toygun.task) - interval '1 hour'
           AND object_id IN (SELECT id FROM ONLY toygun.task)")" \
	"0/$(q "SELECT count(*) FROM toygun.transition WHERE at > (SELECT max(created_at) FROM ONLY toygun.task) - interval '1 hour' AND object_id IN (SELECT id FROM ONLY toygun.task)")" \
	"every history row written since has the column's default"
q "ALTER TABLE toygun.transition DROP COLUMN extra" >/dev/null

# a CHECK constraint is enforced on ticks as on SQL
q "ALTER TABLE toygun.task ADD CONSTRAINT not_two CHECK (state <> 'two') NOT VALID" >/dev/null
start_round
failing_with 'violates check constraint "not_two"'; ok $? "a CHECK constraint on toygun.task fails the ticks that break it"
intact; ok $? "a CHECK constraint crashes nothing"
q "ALTER TABLE toygun.task DROP CONSTRAINT not_two" >/dev/null
round_done; ok $? "the constraint dropped: the runs finish"
is "$(q "SELECT count(*) FROM ONLY toygun.task WHERE state = 'two' AND attempts > 0 AND step < 2")" "0" \
	"no run entered a state the constraint forbade"

# a trigger sees every history row
q "CREATE TABLE seen (n int); CREATE FUNCTION count_it() RETURNS trigger LANGUAGE plpgsql AS
   'BEGIN INSERT INTO public.seen VALUES (1); RETURN NEW; END';
   CREATE TRIGGER count_it AFTER INSERT ON toygun.transition FOR EACH ROW EXECUTE FUNCTION count_it()" >/dev/null
before=$(q "SELECT count(*) FROM toygun.transition")
round; ok $? "a trigger on toygun.transition: the runs finish"
is "$(q "SELECT count(*) FROM seen")" "$(($(q "SELECT count(*) FROM toygun.transition") - before))" \
	"the trigger fired for every history row written"
note "$(q "SELECT count(*) FROM seen") history rows seen by the trigger"
q "DROP TRIGGER count_it ON toygun.transition" >/dev/null

# a publication of updates on a table without replica identity
q "SET client_min_messages = error; CREATE PUBLICATION p FOR TABLE toygun.task WITH (publish = 'update');
   ALTER TABLE toygun.task REPLICA IDENTITY NOTHING" >/dev/null
start_round
wait_for 30 "SELECT (SELECT sum(failures) FROM toygun.worker_status()) > 0"; ok $? \
	"without a replica identity the ticks fail, as SQL's updates do"
intact; ok $? "a publication without replica identity crashes nothing"
q "ALTER TABLE toygun.task REPLICA IDENTITY DEFAULT" >/dev/null
round_done; ok $? "the replica identity back: the runs finish"
q "DROP PUBLICATION p" >/dev/null

# a renamed column, then a renamed table: clean errors, no crash, and back
q "ALTER TABLE toygun.transition RENAME COLUMN note TO remark" >/dev/null
start_round
wait_for 30 "SELECT (SELECT sum(failures) FROM toygun.worker_status()) > 0"
intact; ok $? "a renamed column of toygun.transition crashes nothing"
q "ALTER TABLE toygun.transition RENAME COLUMN remark TO note" >/dev/null
round_done; ok $? "the column named back: the runs finish"
q "ALTER TABLE toygun.task RENAME TO task_away" >/dev/null
start_round 2>/dev/null
wait_for 10 "SELECT count(*) = 2 FROM toygun.worker_status()"
intact; ok $? "a renamed toygun.task crashes nothing"
q "ALTER TABLE toygun.task_away RENAME TO task" >/dev/null
round; ok $? "toygun.task named back: the runs finish"

# rewritten tables: a new relfilenode under the open store
q "ALTER TABLE toygun.task SET UNLOGGED" >/dev/null
round; ok $? "toygun.task made unlogged: the runs finish"
q "ALTER TABLE toygun.task SET LOGGED" >/dev/null
q "VACUUM FULL toygun.transition" >/dev/null
q "CLUSTER toygun.task USING task_pkey" >/dev/null
round; ok $? "toygun.task logged again, toygun.transition vacuumed full: the runs finish"
is "$(path_note)" "" "after all of it, the tables are written directly again"

# A handler (the superuser's) that clusters toygun.task in the middle of a
# batch: the runs claimed with it were read from the file it replaced, where
# their places now hold other runs, or nothing.
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup of tidy failed"
CREATE FUNCTION tidy(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  CLUSTER toygun.task USING task_runs_idx;
  RETURN toygun.stop();
END $$;
SELECT toygun.define_task('box', 'tidy', '{one}', 'tidy(toygun.task)');
SQL
tg_psql "$DIR" tg -q -c "BEGIN" -c "UPDATE round SET n = n + 1" \
	-c "SELECT toygun.start_task(id, 'tidy') FROM box WHERE i = 1" \
	-c "SELECT count(toygun.start_task(id, 'job')) FROM box" -c "COMMIT" >/dev/null
round_done; ok $? "toygun.task clustered by a handler amid a batch: the runs finish"
wait_for 30 "SELECT state = '__stop__' FROM ONLY toygun.task WHERE name = 'tidy'"
is "$(q "SELECT count(*) || ' failed: ' || coalesce(min(last_error), '') FROM ONLY toygun.task
         WHERE seq > (SELECT max(seq) FROM ONLY toygun.task) - 41 AND (attempts > 0 OR last_error IS NOT NULL)")" \
	"0 failed: " "the run that clustered, and the runs claimed with it, save without failing"
q "CREATE EXTENSION IF NOT EXISTS amcheck" >/dev/null
is "$(q "SELECT count(*) FROM pg_index i, LATERAL (SELECT bt_index_check(i.indexrelid, true)) c
         WHERE i.indrelid = 'toygun.task'::regclass
            OR i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'toygun.transition'::regclass)")" "11" \
	"the indexes of toygun.task and of toygun.transition's partitions agree with their tables (amcheck)"

# the histories are whole: gapless steps from 0, one per transition
is "$(q "SELECT count(*) FROM (SELECT object_id, count(*) n, max(step) m, min(step) s
                               FROM toygun.transition GROUP BY object_id) h
         WHERE n <> m + 1 OR s <> 0")" "0" "every history is gapless from step 0"
is "$(q "SELECT count(*) FROM (SELECT id FROM ONLY toygun.task GROUP BY id HAVING count(*) > 1) d")" "0" \
	"no run appears twice"
intact; ok $? "the server never restarted, no process died of a signal"
is "$(q "SELECT count(*) FROM toygun.worker_status()")" "2" "both workers run"
exit $((TAP_FAILED > 0))
