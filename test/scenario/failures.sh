#!/usr/bin/env bash
# Failed attempts kept (issue 13): every failed tick of a run, an error it
# raised or a tick that ended its worker, leaves a row in toygun.failure with
# its error, worker pid and duration; only the last toygun.failures_kept of a
# run are kept, numbered on across a reset of attempts; rows are readable
# only with right read on the type. And the retry policy per task type: its
# own max_attempts, retry_backoff and tick_timeout, beside types that keep
# the settings.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/failures
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.max_attempts = 100" \
	"toygun.retry_backoff = '10ms'" "toygun.poll_interval = '1h'" "toygun.failures_kept = 3" \
	"toygun.tick_timeout = '1s'" "toygun.tick_grace = '1s'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 21

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
SELECT toygun.define_resource('box');
-- fails every tick after 50 ms, naming its attempt
CREATE FUNCTION fail(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.05);
  RAISE EXCEPTION 'boom %', t.attempts + 1;
END $$;
-- ends its own process
CREATE FUNCTION poison(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_terminate_backend(pg_backend_pid());
  PERFORM pg_sleep(60);
  RETURN toygun.stop();
END $$;
SELECT toygun.define_task('box', 'fail', '{one}', 'fail(toygun.task)');
SELECT toygun.define_task('box', 'poison', '{one}', 'poison(toygun.task)');
-- the retry policy of a type, beside the settings (max_attempts 100,
-- retry_backoff 10ms, tick_timeout 1s)
SELECT toygun.define_task('box', 'few', '{one}', 'fail(toygun.task)', max_attempts => 2);
SELECT toygun.define_task('box', 'slowback', '{one}', 'fail(toygun.task)', retry_backoff => '3 s');
CREATE FUNCTION nap(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.6);
  RETURN toygun.stop();
END $$;
SELECT toygun.define_task('box', 'hasty', '{one}', 'nap(toygun.task)', tick_timeout => '300 ms');
SELECT toygun.define_task('box', 'patient', '{one}', 'nap(toygun.task)');
-- catches every cancel and runs on: ended after its timeout and the grace (1s)
CREATE FUNCTION obstinate(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END;
  END LOOP;
END $$;
SELECT toygun.define_task('box', 'obstinate', '{one}', 'obstinate(toygun.task)', tick_timeout => '300 ms');
CREATE ROLE reader;
CREATE ROLE stranger;
SQL
tg_wait 30 "$DIR" tg "SELECT count(*) = 2 FROM toygun.worker_status()" || bail "the workers did not start"

# --- 1. raised errors, kept up to failures_kept ------------------------------
F=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'fail')")
wait_for 30 "SELECT attempts >= 5 FROM toygun.task WHERE id = '$F'"
ok $? "a failing run fails again and again"
# a stop resets attempts: the newest failure's number is the attempts it had
q "SELECT toygun.stop_task('$F')" >/dev/null
N=$(q "SELECT max(failure_no) FROM toygun.failure WHERE object_id = '$F'")
is "$(q "SELECT count(*) FROM toygun.failure WHERE object_id = '$F'")" 3 \
	"only the last toygun.failures_kept (3) failures are kept"
is "$(q "SELECT string_agg(failure_no || ':' || attempt || ':' || error, ',' ORDER BY failure_no)
           FROM toygun.failure WHERE object_id = '$F'")" \
	"$((N - 2)):$((N - 2)):boom $((N - 2)),$((N - 1)):$((N - 1)):boom $((N - 1)),$N:$N:boom $N" \
	"each row has its attempt and the error it raised, the newest kept (of $N)"
is "$(q "SELECT bool_and(duration >= '50 ms' AND duration < '10 s') FROM toygun.failure WHERE object_id = '$F'")" t \
	"each row has how long the failed tick ran"
is "$(q "SELECT bool_and(worker_pid IN (SELECT pid FROM toygun.worker_status())) AND bool_and(resource_type = 'box')
           FROM toygun.failure WHERE object_id = '$F'")" t \
	"and the pid of the worker that ran it, and the resource type"

# a move by hand resets attempts: the failures are numbered on, without a clash
q "SELECT toygun.transition_task('$F', 'one')" >/dev/null
wait_for 30 "SELECT attempts >= 2 FROM toygun.task WHERE id = '$F'"
ok $? "after a move by hand that reset attempts, the run fails again"
q "SELECT toygun.stop_task('$F')" >/dev/null
is "$(q "SELECT count(*) = 3 AND min(failure_no) > $N - 2 AND max(failure_no) > $N
                AND (array_agg(attempt ORDER BY failure_no DESC))[1] = max(failure_no) - $N
           FROM toygun.failure WHERE object_id = '$F'")" t \
	"failure_no goes on where attempt starts again at 1, and the cap still holds"

# --- 2. a tick that ends its worker ------------------------------------------
P=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'poison')")
wait_for 60 "SELECT attempts >= 1 FROM toygun.task WHERE id = '$P'"
ok $? "a tick that ends its worker is charged to its run"
q "SELECT toygun.stop_task('$P')" >/dev/null
is "$(q "SELECT error ~ '^the worker died during this tick: .*administrator command \\(exit code 1\\)$'
           FROM toygun.failure WHERE object_id = '$P' AND failure_no = 1")" t \
	"and leaves a failure row saying how the worker died"
is "$(q "SELECT worker_pid IS NOT NULL AND worker_pid NOT IN (SELECT pid FROM toygun.worker_status())
                AND duration IS NOT NULL AND duration < '10 s'
           FROM toygun.failure WHERE object_id = '$P' AND failure_no = 1")" t \
	"with the dead worker's pid, and how long the tick ran until it died"

# --- 3. readable with right read ----------------------------------------------
as() { tg_psql "$DIR" tg -c "SET ROLE $1" -c "$2"; }
is "$(as stranger "SELECT count(*) FROM toygun.failure")" 0 "a role without right read sees no failure rows"
q "SELECT toygun.grant_type('box', 'reader', '{read}')" >/dev/null
is "$(as reader "SELECT count(*) FROM toygun.failure")" \
	"$(q "SELECT count(*) FROM toygun.failure")" "a role granted read sees them all"
is "$(as stranger "SELECT count(*) FROM toygun.failure")" 0 "and a role without still none"

# --- 4. the retry policy of a task type -------------------------------------
FEW=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'few')")
wait_for 30 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$FEW'"
ok $? "a task type's max_attempts (2) panics its run, where the setting is 100"
is "$(q "SELECT attempts || ' ' || (attrs->>'panic_message') FROM toygun.task WHERE id = '$FEW'")" \
	"2 panicked after 2 failed ticks (the last error is in last_error)" "after exactly 2 failed ticks"

SB=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'slowback')")
wait_for 30 "SELECT attempts = 1 FROM toygun.task WHERE id = '$SB'"
is "$(q "SELECT extract(epoch FROM t.run_at - (f.at + f.duration)) BETWEEN 2.95 AND 3.5
           FROM toygun.task t JOIN toygun.failure f ON f.object_id = t.id WHERE t.id = '$SB'")" t \
	"a task type's retry_backoff (3 s) sets the next run time, where the setting is 10 ms"
q "SELECT toygun.stop_task('$SB')" >/dev/null

HASTY=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'hasty')")
PATIENT=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'patient')")
wait_for 30 "SELECT attempts >= 1 FROM toygun.task WHERE id = '$HASTY'"
ok $? "a task type's tick_timeout (300 ms) cancels a tick of 600 ms"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$HASTY'")" \
	'tick cancelled after the tick_timeout of task type "box.hasty" (300 ms)' \
	"its error names the type's timeout"
q "SELECT toygun.stop_task('$HASTY')" >/dev/null
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$PATIENT'"
ok $? "while a type without one keeps toygun.tick_timeout (1 s), and the same tick finishes"
is "$(q "SELECT attempts FROM toygun.task WHERE id = '$PATIENT'")" 0 "without a failure"

OB=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'obstinate')")
wait_for 60 "SELECT attempts >= 1 FROM toygun.task WHERE id = '$OB'"
q "SELECT toygun.stop_task('$OB')" >/dev/null
is "$(q "SELECT error || ' ' || (duration BETWEEN '1.2 s' AND '10 s') FROM toygun.failure WHERE object_id = '$OB' AND failure_no = 1")" \
	"the worker was ended: this tick still ran 1000 ms after its task type's tick_timeout (300 ms) true" \
	"a tick that catches its cancel is ended after the grace past its type's timeout, and charged so"
