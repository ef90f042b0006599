#!/usr/bin/env bash
# Containment: one worker runs many owners' handlers, and none of them can
# wedge it, outlast it or spy on the next. A poison run that ends its worker
# (a FATAL, a segfault that restarts the server) is charged, backs off and
# panics while the runs beside it finish; a restart it did not cause never
# panics it; a tick that catches its cancel fails anyway, and one that runs on
# is ended with its process; cursors, advisory locks and constraint modes
# stay with their tick; a worker's memory is bounded; a wake-up never waits
# behind a busy worker; database settings, cancels and revoked privileges
# cannot break the workers.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/contain
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.max_attempts = 3" \
	"toygun.retry_backoff = '200ms'" "toygun.poll_interval = '1h'" "toygun.tick_timeout = '1s'" \
	"toygun.tick_grace = '1s'" "restart_after_crash = on" "log_min_messages = log" \
	>/dev/null || bail "initdb failed"
rm -f "$DIR/server.log"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
LOG="$DIR/server.log"
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
reload() { q "SELECT pg_reload_conf()" >/dev/null; }
set_conf() { q "ALTER SYSTEM SET $1 = '$2'" && reload; }
# the server is up and both workers run
workers_up() { wait_for "${1:-60}" "SELECT count(*) = 2 FROM toygun.worker_status()"; }

plan 36

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
q "CREATE EXTENSION toygun" >/dev/null 2>&1
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
SELECT toygun.define_resource('box');
CREATE TABLE ticks (run uuid, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION job(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ticks (run) VALUES (t.id);
  RETURN toygun.stop();
END $$;
-- ends its own process, as a segfaulting extension, the OOM killer or a DBA would
CREATE FUNCTION poison(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_terminate_backend(pg_backend_pid());
  PERFORM pg_sleep(60);
  RETURN toygun.stop();
END $$;
-- a segfault: the postmaster restarts the whole server
CREATE FUNCTION crash(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  COPY (SELECT 1) TO PROGRAM 'kill -SEGV $PPID';
  PERFORM pg_sleep(60);
  RETURN toygun.stop();
END $$;
SELECT toygun.define_task('box', 'job', '{one}', 'job(toygun.task)');
SELECT toygun.define_task('box', 'poison', '{one}', 'poison(toygun.task)');
SELECT toygun.define_task('box', 'crash', '{one}', 'crash(toygun.task)');
SQL
workers_up || bail "the workers did not start"

# --- 1. a poison run ends its worker at every tick --------------------------
# the poison run is the oldest due, so it leads the first batch
set_conf toygun.paused on
POISON=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'poison')")
q "SELECT toygun.start_task(toygun.create_resource('box'), 'job') FROM generate_series(1, 1000)" >/dev/null
START=$(q "SELECT extract(epoch FROM clock_timestamp())")
set_conf toygun.paused off
wait_for 120 "SELECT count(*) = 1000 FROM toygun.task WHERE name = 'job' AND state = '__stop__'"
ok $? "1,000 runs beside a poison run that kills its worker all finish"
note "1,000 runs beside the poison run finished $(q "SELECT round(extract(epoch FROM max(at)) - $START, 2) FROM ticks") s after the workers were unpaused"
is "$(q "SELECT count(*) FROM toygun.task WHERE name = 'job' AND attempts > 0")" 0 \
	"the runs claimed with the poison run are not charged"
wait_for 60 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$POISON'"
ok $? "the poison run panics after toygun.max_attempts deaths"
read -r ATTEMPTS STATE <<<"$(q "SELECT attempts, state FROM toygun.task WHERE id = '$POISON'" | tr '|' ' ')"
note "poison run: $ATTEMPTS attempts, final state $STATE; worker deaths: $(grep -c "died during a tick of task $POISON" "$LOG")"
is "$ATTEMPTS" 3 "each death of its worker was one failed attempt of the poison run"
is "$(q "SELECT last_error ~ '^the worker died during this tick: .*administrator command \(exit code 1\)$' FROM toygun.task WHERE id = '$POISON'")" t \
	"last_error says the worker died during the tick, and how"
ok $(grep -E "toygun worker [0-9]+ died during a tick of task $POISON \(2 in a row\); starting it again in 2000 ms" "$LOG" >/dev/null; echo $?) \
	"a worker that keeps dying is started again later and later, and the log says why"
workers_up
is "$(q "SELECT sum(deaths) FROM toygun.worker_status()")" 3 "worker_status() counts the deaths"

# --- 2. a segfault restarts the server: the records survive it -------------
workers_up || bail "the workers did not come back"
CRASH=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'crash')")
wait_for 120 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$CRASH'"
ok $? "a run whose tick segfaults its worker (restarting the server) panics after toygun.max_attempts"
note "server restarts after a crash: $(grep -c 'all server processes terminated; reinitializing' "$LOG")"
is "$(q "SELECT attempts || ' ' || last_error FROM toygun.task WHERE id = '$CRASH'")" \
	"3 the worker died during this tick: signal 11 (Segmentation fault)" \
	"each crash was charged to it, with the signal"
workers_up
q "SELECT toygun.start_task(toygun.create_resource('box'), 'job') FROM generate_series(1, 100)" >/dev/null
wait_for 60 "SELECT count(*) = 0 FROM toygun.task WHERE state NOT IN ('__stop__', '__panic__')"
ok $? "after the crashes, new runs finish"

# --- 3. a restart the run did not cause never panics it --------------------
set_conf toygun.tick_timeout 30s
set_conf toygun.paused on
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
CREATE FUNCTION sleeper(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  IF t.attempts < 3 THEN PERFORM pg_sleep(20); END IF;
  RETURN toygun.stop();
END $$;
SELECT toygun.define_task('box', 'sleeper', '{one}', 'sleeper(toygun.task)');
SQL
S=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'sleeper')")
# two failures already: one more would panic it, were an immediate stop its fault
q "UPDATE toygun.task SET attempts = 2 WHERE id = '$S'"
set_conf toygun.paused off
wait_for 20 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'tick task $S%')"
ok $? "the run is being ticked"
tg_stop "$DIR" immediate
tg_start "$DIR" || bail "server did not start again"
wait_for 60 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$S'"
ok $? "a run interrupted by an immediate stop is not panicked; it runs again and finishes"
is "$(q "SELECT count(*) FROM toygun.history('$S') WHERE to_state = '__panic__'")" 0 "its history has no panic"
ok $(grep -q "tick of task $S .* failed (attempt 3 of 3): the server restarted during this tick" "$LOG"; echo $?) \
	"it was charged one attempt, and the log says the server restarted"
q "ALTER SYSTEM RESET toygun.tick_timeout" && reload

# --- 4. a timeout the handler catches ---------------------------------------
workers_up
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
-- catches the cancel and returns as if all was well
CREATE FUNCTION swallow(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN RETURN toygun.stop(); END;
  RETURN toygun.stop();
END $$;
-- catches every cancel and runs on
CREATE FUNCTION obstinate(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END;
  END LOOP;
END $$;
SELECT toygun.define_task('box', 'swallow', '{one}', 'swallow(toygun.task)');
SELECT toygun.define_task('box', 'obstinate', '{one}', 'obstinate(toygun.task)');
SQL
SW=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'swallow')")
ST=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'obstinate')")
wait_for 60 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$SW'"
ok $? "a handler that catches its cancel and returns still fails its tick, and panics in the end"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$SW'")" "tick cancelled after toygun.tick_timeout (1000 ms)" \
	"its last_error is the timeout"
wait_for 60 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$ST'"
ok $? "a handler that catches its cancel and runs on is ended with its worker, charged, and panics in the end"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$ST'")" \
	"the worker was ended: this tick still ran 1000 ms after toygun.tick_timeout (1000 ms)" \
	"its last_error says it was ended after the grace period"

# the worker's own panic never puts a handler's error where every role reads it
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
CREATE FUNCTION leaky(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'token s3cr3t-t0ken rejected'; END $$;
SELECT toygun.define_task('box', 'leaky', '{one}', 'leaky(toygun.task)');
SELECT toygun.define_task('box', 'sealed', '{one}', 'leaky(toygun.task)', encrypted_fields => '{panic_message}');
SQL
LK=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'leaky')")
SE=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'sealed')")
wait_for 30 "SELECT bool_and(state = '__panic__') FROM toygun.task WHERE id IN ('$LK', '$SE')"
ok $? "two runs whose handler always fails panic"
is "$(q "SELECT attrs->>'panic_message' FROM toygun.task WHERE id = '$LK'")" \
	"panicked after 3 failed ticks (the last error is in last_error)" \
	"the worker's panic_message does not copy the error into attrs"
is "$(q "SELECT (attrs->'panic_message' ? '\$secret') AND attrs::text NOT LIKE '%s3cr3t%' FROM toygun.task WHERE id = '$SE'")" t \
	"a panic_message the type declares encrypted is sealed"
ok $(grep -q "tick of task $LK (task type \"box.leaky\") failed" "$LOG"; echo $?) "the log line of a failed tick names the task type"

# --- 5. what one tick leaves behind, the next does not see ----------------
workers_up
set_conf toygun.paused on
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
CREATE TABLE seen (what text, val text);
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (pid int REFERENCES parent DEFERRABLE INITIALLY IMMEDIATE);
CREATE FUNCTION leaver(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'leftover';
BEGIN
  OPEN c FOR SELECT 1;
  PERFORM pg_advisory_lock(4242);
  SET CONSTRAINTS ALL DEFERRED;
  RETURN toygun.stop();
END $$;
CREATE FUNCTION looker(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seen SELECT 'cursors', count(*)::text FROM pg_cursors;
  INSERT INTO seen SELECT 'locks', count(*)::text FROM pg_locks
   WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objid = 4242;
  BEGIN
    INSERT INTO child VALUES (999);
    INSERT INTO seen VALUES ('fk', 'deferred');
  EXCEPTION WHEN foreign_key_violation THEN
    INSERT INTO seen VALUES ('fk', 'immediate');
  END;
  RETURN toygun.stop();
END $$;
CREATE FUNCTION deferrer(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN SET CONSTRAINTS ALL DEFERRED; RETURN toygun.stop(); END $$;
SELECT toygun.define_task('box', 'leaver', '{one}', 'leaver(toygun.task)');
SELECT toygun.define_task('box', 'deferrer', '{one}', 'deferrer(toygun.task)');
SELECT toygun.define_task('box', 'looker', '{one}', 'looker(toygun.task)');
SQL
# one worker, and the runs due in this order: one batch would tick them all
set_conf toygun.workers 1
wait_for 20 "SELECT count(*) = 1 FROM toygun.worker_status()" || note "toygun.workers = 1 was not seen"
for name in leaver looker deferrer looker; do
	q "SELECT toygun.start_task(toygun.create_resource('box'), '$name')" >/dev/null
done
set_conf toygun.paused off
wait_for 20 "SELECT count(*) = 0 FROM toygun.task WHERE name IN ('leaver', 'deferrer', 'looker') AND state <> '__stop__'"
ok $? "the runs that leave things behind and those that look for them finish"
is "$(q "SELECT string_agg(DISTINCT what || '=' || val, ', ') || ' ' || count(*) FROM seen")" \
	"cursors=0, fk=immediate, locks=0 6" \
	"a tick sees no cursor, session advisory lock or constraint mode an earlier tick left"
is "$(q "SELECT pg_try_advisory_lock(4242)")" t "a session advisory lock taken in a handler does not stay with the worker"
set_conf toygun.workers 2

# --- 6. a worker's memory is bounded ----------------------------------------
workers_up
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
-- a handler whose cached plan holds a 100,000-item list
DO $do$ BEGIN
EXECUTE format('CREATE FUNCTION bloat(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS %L',
  'BEGIN IF t.id::text IN (' || (SELECT string_agg(quote_literal(g::text), ',') FROM generate_series(1, 100000) g)
  || ') THEN RETURN toygun.panic(''unexpected''); END IF; RETURN toygun.stop(); END');
END $do$;
SELECT toygun.define_task('box', 'bloat', '{one}', 'bloat(toygun.task)');
SQL
set_conf toygun.worker_memory 16MB
PIDS=$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM toygun.worker_status()")
B=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'bloat')")
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$B'"
ok $? "the run of a memory-hungry handler finishes"
wait_for 20 "SELECT count(*) = 2 AND string_agg(pid::text, ',' ORDER BY pid) <> '$PIDS' FROM toygun.worker_status()"
ok $? "the worker that ran it past toygun.worker_memory was replaced by a fresh one"
ok $(grep -q "is starting afresh: it holds [0-9]* kB of memory, more than toygun.worker_memory (16384 kB)" "$LOG"; echo $?) \
	"the log says why"
q "ALTER SYSTEM RESET toygun.worker_memory" && reload

# --- 7. a wake-up does not wait behind a busy worker -----------------------
workers_up
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
CREATE FUNCTION slow(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(3); RETURN toygun.stop(); END $$;
SELECT toygun.define_task('box', 'slow', '{one}', 'slow(toygun.task)');
SQL
set_conf toygun.tick_timeout 10s
MISSED=0
for i in 1 2 3 4; do
	SLOW=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'slow')")
	wait_for 20 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'tick task $SLOW%')" ||
		{ MISSED=$((MISSED + 1)); continue; }
	FAST=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'job')")
	# the fast run is ticked while the slow tick still runs
	wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$FAST'"
	[ "$(q "SELECT state FROM toygun.task WHERE id = '$SLOW'")" = __new__ ] || MISSED=$((MISSED + 1))
	wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$SLOW'"
done
is "$MISSED" 0 "with one worker busy on a long tick, a run started meanwhile is ticked by the other at once (4 tries)"
q "ALTER SYSTEM RESET toygun.tick_timeout" && reload

# --- 8. database settings, cancels and revocations --------------------------
# (our own sessions keep ordinary settings)
export PGOPTIONS='-c default_transaction_read_only=off -c exit_on_error=off -c lock_timeout=0'
q "ALTER DATABASE tg SET default_transaction_read_only = on" >/dev/null
q "ALTER DATABASE tg SET lock_timeout = '1ms'" >/dev/null
q "ALTER DATABASE tg SET exit_on_error = on" >/dev/null
# new workers, which connect with the database's settings
OLD=$(q "SELECT string_agg(pid::text, ',') FROM toygun.worker_status()")
q "SELECT pg_terminate_backend(pid) FROM toygun.worker_status()" >/dev/null
wait_for 30 "SELECT count(*) = 2 AND NOT bool_or(pid IN ($OLD)) FROM toygun.worker_status()"
ok $? "the workers start again with the database's settings"
STARTED=$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM toygun.worker_status()")
R=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'job')")
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$R'"
ok $? "with ALTER DATABASE ... SET default_transaction_read_only, lock_timeout and exit_on_error, runs still finish"
is "$(q "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM toygun.worker_status()")" "$STARTED" \
	"and the workers do not exit"
q "ALTER DATABASE tg RESET ALL" >/dev/null
unset PGOPTIONS

# pg_cancel_backend() on an idle worker cancels nothing
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker' AND query = 'waiting for due runs'"
IDLE=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'toygun worker' ORDER BY pid LIMIT 1")
q "SELECT pg_cancel_backend($IDLE)" >/dev/null
R=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'job')")
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$R'"
is "$(q "SELECT count(*) FROM toygun.worker_status() WHERE pid = $IDLE")" 1 "pg_cancel_backend() on an idle worker does not end it"

# a revoked EXECUTE, or a revoked membership, takes effect at the next tick
tg_psql "$DIR" tg -q <<'SQL' >/dev/null
CREATE ROLE boss NOLOGIN;
CREATE ROLE helper NOLOGIN IN ROLE boss;
CREATE ROLE runners NOLOGIN;
GRANT runners TO boss, helper;
GRANT USAGE ON SCHEMA toygun TO boss, helper;
CREATE FUNCTION looping(t toygun.task) RETURNS toygun.next LANGUAGE sql
  AS $$ SELECT toygun.stay(wait => '100 ms') $$;
REVOKE EXECUTE ON FUNCTION looping(toygun.task) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION looping(toygun.task) TO runners;
SET ROLE boss;
SELECT toygun.define_resource('bosses');
SELECT toygun.define_task('bosses', 'mine', '{one}', 'looping(toygun.task)');
SET ROLE helper;
SELECT toygun.define_task('bosses', 'helping', '{one}', 'looping(toygun.task)');
RESET ROLE;
SQL
RB=$(q "SELECT toygun.create_resource('bosses')")
T1=$(q "SELECT toygun.start_task('$RB', 'mine')")
T2=$(q "SELECT toygun.start_task('$RB', 'helping')")
wait_for 20 "SELECT bool_and(state = 'one') FROM toygun.task WHERE id IN ('$T1', '$T2')"
ok $? "two looping runs are ticked"
q "REVOKE runners FROM boss" >/dev/null
q "REVOKE boss FROM helper" >/dev/null
wait_for 20 "SELECT last_error ~ '^role \"boss\" may not execute handler public.looping' FROM toygun.task WHERE id = '$T1'"
ok $? "EXECUTE on the handler lost with a membership fails the next tick, with a clear error"
wait_for 20 "SELECT last_error ~ '^role \"helper\", owner of task type \"bosses.helping\", may not act for role \"boss\"' FROM toygun.task WHERE id = '$T2'"
ok $? "a revoked membership in the resource type's owner fails the task type's next tick"
