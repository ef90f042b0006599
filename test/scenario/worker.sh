#!/usr/bin/env bash
# The background worker on a real server: runs finish by themselves, states
# follow each other without a poll delay, waits are honoured, failures back
# off and panic, slow ticks are cancelled, handlers run as their definer,
# reloads and pausing take effect, and an idle server commits nothing.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/worker
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" \
	"toygun.poll_interval = '1h'" "toygun.max_attempts = 3" "toygun.retry_backoff = '2s'" \
	"toygun.tick_timeout = '500ms'" "autovacuum = off" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
# wait_for SECONDS SQL: poll until SQL returns t
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
# Wake both workers with a reload and wait until each has claimed nothing and
# gone back to sleep, until the earliest run_at or for the safety maximum (a
# minute). XACTS counts the workers' own transactions (worker_status()), not
# other processes' commits in the database.
XACTS="SELECT sum(transactions) FROM toygun.worker_status()"
WAITING="SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker' AND query = 'waiting for due runs'"
# settled: both workers wait, and neither committed anything over the last second
settled() {
	local deadline=$((SECONDS + 30)) before
	while [ $SECONDS -lt $deadline ]; do
		before=$(q "$XACTS")
		sleep 1
		[ "$(q "SELECT ($XACTS) = $before AND ($WAITING)")" = t ] && return 0
	done
	return 1
}
# each worker (by pid) has committed since: its wake-up on the reload is done
BY_PID="SELECT string_agg(pid || ':' || transactions, ',') FROM toygun.worker_status()"
wake_and_settle() {
	local before
	settled || note "the workers did not settle before the reload"
	before=$(q "$BY_PID")
	tg_psql "$DIR" postgres -c "SELECT pg_reload_conf()" >/dev/null
	wait_for 20 "SELECT bool_and(w.transactions > split_part(b, ':', 2)::bigint) AND ($WAITING)
	               FROM toygun.worker_status() w
	               JOIN unnest(string_to_array('$before', ',')) b ON split_part(b, ':', 1)::int = w.pid" &&
		settled || note "the workers' wake-up on reload was not seen"
}

plan 38

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
-- every committed execution of a handler, with who ran it
CREATE TABLE ticks (run uuid, state text, usr text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON ticks TO PUBLIC;
CREATE FUNCTION public.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    states text[] := ARRAY['a', 'b', 'c', 'd', 'e'];
    i int := array_position(states, t.state);
BEGIN
    INSERT INTO public.ticks (run, state, usr) VALUES (t.id, t.state, current_user);
    CASE t.name
    WHEN 'chain' THEN
        IF i < 5 THEN RETURN toygun.go(states[i + 1]); END IF;
        RETURN toygun.stop();
    WHEN 'waiter' THEN
        IF t.attrs ? 'waited' THEN RETURN toygun.stop(); END IF;
        RETURN toygun.stay('{"waited": true}', '2 seconds');
    WHEN 'flaky' THEN
        RAISE EXCEPTION 'flaky failed on purpose';
    WHEN 'sleepy' THEN
        PERFORM pg_sleep(5);
        RETURN toygun.stop();
    WHEN 'poller' THEN
        RETURN toygun.stay();
    WHEN 'handy' THEN
        CASE t.attrs->>'by'
        WHEN 'hand' THEN RETURN toygun.stop();
        WHEN 'worker' THEN RETURN toygun.stay('{"by": "hand"}', '2 seconds');
        ELSE RETURN toygun.stay('{"by": "worker"}', '1 hour');
        END CASE;
    END CASE;
END $$;
SELECT toygun.define_resource('thing');
SELECT toygun.define_task('thing', 'chain', '{a,b,c,d,e}', 'h(toygun.task)');
SELECT toygun.define_task('thing', 'waiter', '{a}', 'h(toygun.task)');
SELECT toygun.define_task('thing', 'flaky', '{a}', 'h(toygun.task)');
SELECT toygun.define_task('thing', 'sleepy', '{a}', 'h(toygun.task)');
SELECT toygun.define_task('thing', 'poller', '{a}', 'h(toygun.task)');
SELECT toygun.define_task('thing', 'handy', '{a}', 'h(toygun.task)');
SQL

# workers are there, with their own backend type
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker'"
ok $? "two workers run, with backend type 'toygun worker'"
is "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'toygun launcher'")" 1 "one launcher runs"

# a session that makes a run due later (a tick by hand that stays 2 seconds)
# wakes a worker, which then sleeps until that run_at, not until its own
# earlier target (the safety maximum is a minute)
HANDY=$(q "SELECT toygun.start_task(toygun.create_resource('thing'), 'handy')")
wait_for 20 "SELECT attrs->>'by' = 'worker' FROM toygun.task WHERE id = '$HANDY'"
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker' AND query = 'waiting for due runs'
                AND NOT EXISTS (SELECT FROM toygun.task WHERE run_at < now() + '1 minute' AND id <> '$HANDY')
                AND NOT EXISTS (SELECT FROM toygun.resource WHERE run_at < now() + '1 minute')" ||
	note "a run or resource is due within a minute: $(q "SELECT string_agg(name || ' ' || run_at, ', ') FROM toygun.task WHERE run_at < now() + '1 minute'")"
wake_and_settle
q "SELECT state FROM toygun.tick_task('$HANDY')" >/dev/null
wait_for 15 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$HANDY'"
# the tick by hand, then the worker's: within 8 seconds of each other
is "$(q "SELECT count(*) = 2 AND max(at) - min(at) < '8 s' FROM ticks
         WHERE run = '$HANDY' AND at > (SELECT min(at) FROM ticks WHERE run = '$HANDY')")" t \
	"a run a session made due in 2 seconds is ticked by a worker then, not at the worker's next safety wake"

# started runs reach __stop__ by themselves, state after state, with no poll
# delay (poll_interval is an hour)
R=$(q "SELECT toygun.create_resource('thing')")
CHAIN=$(q "SELECT toygun.start_task('$R', 'chain')")
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$CHAIN'"
ok $? "a started five-state run reaches __stop__ by itself"
is "$(q "SELECT string_agg(state, ',' ORDER BY at) FROM ticks WHERE run = '$CHAIN'")" "a,b,c,d,e" \
	"each state ran once, in order"
is "$(q "SELECT extract(epoch FROM max(at) - min(at)) < 5 FROM ticks WHERE run = '$CHAIN'")" t \
	"states follow each other without waiting for toygun.poll_interval"
# the audit trail: a worker's ticks name the worker's role and pid
is "$(q "SELECT count(*) FILTER (WHERE made_by::text = 'postgres' AND reason IS NULL
                 AND worker_pid IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'toygun worker'))
           FROM toygun.transition WHERE object_id = '$CHAIN'")" 6 \
	"every history row of a worker's ticks names the worker's role and a worker's pid"
is "$(q "SELECT state FROM toygun.resource WHERE id = '$R'")" starting "the worker ticks the new resource into its first state"
is "$(q "SELECT run_at IS NULL FROM toygun.resource WHERE id = '$R'")" t "a resource without a handler is not due again"

# stay(wait => '2 seconds') is not ticked early
W=$(q "SELECT toygun.start_task('$R', 'waiter')")
wait_for 10 "SELECT attrs ? 'waited' FROM toygun.task WHERE id = '$W'"
ok $? "the waiter ran once and asked to wait"
wait_for 10 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$W'"
ok $? "the waiter is ticked again after its wait"
is "$(q "SELECT count(*) || ' ' || (extract(epoch FROM max(at) - min(at)) >= 2) FROM ticks WHERE run = '$W'")" "2 true" \
	"it was ticked twice, the second time at least 2 seconds after the first (not early)"

# a failing handler: attempts grow with backoff, other runs still commit, and
# after max_attempts (3) the run panics with the error
R2=$(q "SELECT toygun.create_resource('thing')")
F=$(q "SELECT toygun.start_task('$R2', 'flaky')")
C2=$(q "SELECT toygun.start_task('$R2', 'chain')")
wait_for 10 "SELECT attempts = 1 FROM toygun.task WHERE id = '$F'"
ok $? "a failed tick counts an attempt"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$F'")" "flaky failed on purpose" "it keeps the error in last_error"
# the retry is scheduled retry_backoff (2 s) after the first failure, then
# twice that: checked on whichever attempt the poll catches
BACKOFF="SELECT attempts || ' ' || round(extract(epoch FROM run_at - updated_at)::numeric, 1)
           FROM toygun.task WHERE id = '$F' AND attempts IN (1, 2)"
read -r N1 GAP1 <<<"$(q "$BACKOFF")"
is "$GAP1" "$([ "${N1:-1}" = 1 ] && echo 2.0 || echo 4.0)" "a retry waits toygun.retry_backoff x 2^(attempts - 1) (attempt ${N1:-?})"
wait_for 10 "SELECT attempts >= 2 FROM toygun.task WHERE id = '$F'"
read -r N2 GAP2 <<<"$(q "$BACKOFF")"
if [ "$N2" = 2 ]; then
	is "$GAP2" 4.0 "the second retry waits twice as long"
else
	ok 0 "the second retry waits twice as long (# SKIP the poll missed it)"
fi
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$C2'"
ok $? "the other run of the same resource and batch still completes"
wait_for 20 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$F'"
ok $? "after toygun.max_attempts failures in a row the run panics"
is "$(q "SELECT attrs->>'panic_message' || ' / ' || last_error FROM toygun.task WHERE id = '$F'")" \
	"panicked after 3 failed ticks (the last error is in last_error) / flaky failed on purpose" \
	"panic_message, readable by all, points to last_error, which keeps the error"
is "$(q "SELECT count(*) FROM ticks WHERE run = '$F'")" 0 "nothing a failed tick wrote was kept"
is "$(q "SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY step) FROM toygun.history('$F')")" \
	"__new__>__panic__" "failed ticks leave no transition, not even into the first state; the panic is one"
is "$(q "SELECT note FROM toygun.history('$F') WHERE to_state = '__panic__'")" "panicked after 3 failed ticks" \
	"the panic notes the attempts"
LOG="$DIR/server.log"
ok $(grep -c "tick of task $F (task type \"thing.flaky\") failed" "$LOG" | grep -qx 3; echo $?) \
	"the server log has one line per failed tick, naming the task type"

# two workers and 2,000 five-state runs started at once: every run ticked
# exactly once per state, histories gapless, and both workers took part
q "SELECT toygun.start_task(toygun.create_resource('thing'), 'chain') FROM generate_series(1, 2000)" >/dev/null
wait_for 120 "SELECT count(*) = 0 FROM toygun.task WHERE name = 'chain' AND state <> '__stop__'"
ok $? "2,000 runs started at once all reach __stop__"
is "$(q "SELECT count(*) FROM (SELECT run FROM ticks k JOIN toygun.task t ON t.id = k.run WHERE t.name = 'chain'
                                GROUP BY run HAVING count(*) <> 5 OR count(DISTINCT k.state) <> 5) x")" 0 \
	"every run was ticked exactly once in each of its five states"
is "$(q "SELECT count(*) FROM (SELECT object_id FROM toygun.transition GROUP BY object_id
                                HAVING min(step) <> 0 OR max(step) <> count(*) - 1) x")" 0 \
	"every history is gapless from step 0"
is "$(q "SELECT count(*) FILTER (WHERE ticks > 0) FROM toygun.worker_status()")" 2 "both workers ticked"

# a tick longer than toygun.tick_timeout is cancelled and counts as a failure
S=$(q "SELECT toygun.start_task('$R2', 'sleepy')")
wait_for 10 "SELECT attempts >= 1 FROM toygun.task WHERE id = '$S'"
ok $? "a slow tick is cancelled and counted as a failure"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$S'")" "tick cancelled after toygun.tick_timeout (500 ms)" \
	"its error names the timeout"

# a handler defined by an ordinary role runs as that role, with its privileges
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "role setup failed"
CREATE ROLE alice;
CREATE SCHEMA alice AUTHORIZATION alice;
CREATE TABLE only_superuser (x int);
SET ROLE alice;
CREATE FUNCTION alice.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ticks (run, state, usr) VALUES (t.id, t.state, current_user);
    IF t.attrs ? 'peek' THEN PERFORM count(*) FROM public.only_superuser; END IF;
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('alices');
SELECT toygun.define_task('alices', 'job', '{one}', 'alice.h(toygun.task)');
RESET ROLE;
SQL
AR=$(q "SET ROLE alice; SELECT toygun.create_resource('alices')")
A1=$(q "SET ROLE alice; SELECT toygun.start_task('$AR', 'job')")
wait_for 10 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$A1'"
ok $? "an ordinary role's run is ticked by the worker"
is "$(q "SELECT usr FROM ticks WHERE run = '$A1'")" alice "its handler runs as the role that defined the task"
A2=$(q "SET ROLE alice; SELECT toygun.start_task('$AR', 'job', '{\"peek\": 1}')")
wait_for 10 "SELECT attempts >= 1 FROM toygun.task WHERE id = '$A2'"
is "$(q "SELECT last_error FROM toygun.task WHERE id = '$A2'")" "permission denied for table only_superuser" \
	"and cannot read a table only the superuser can"

# reloads: toygun.workers and toygun.paused take effect on pg_reload_conf()
q "ALTER SYSTEM SET toygun.workers = 3" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for 20 "SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'toygun worker'"
ok $? "raising toygun.workers and reloading starts a worker"
q "ALTER SYSTEM SET toygun.paused = on" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for 20 "SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'toygun worker' AND query = 'paused'"
P=$(q "SELECT toygun.start_task('$R', 'chain')")
sleep 2 # a window in which nothing may happen
is "$(q "SELECT state FROM toygun.task WHERE id = '$P'")" __new__ "with toygun.paused on, nothing is ticked"
q "ALTER SYSTEM RESET toygun.paused" >/dev/null && q "ALTER SYSTEM RESET toygun.workers" >/dev/null &&
	q "SELECT pg_reload_conf()" >/dev/null
wait_for 20 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$P'"
ok $? "turning toygun.paused off resumes ticking"
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker'"
ok $? "lowering toygun.workers and reloading stops the extra worker"

# an idle server: with nothing due, the workers commit no transaction in 10 s.
# Autovacuum is off in this cluster. A worker wakes at least once a minute
# (the safety maximum), so the 10 s start right after a wake.
q "SELECT toygun.stop_task(id) FROM toygun.task WHERE state <> '__stop__'" >/dev/null
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker' AND query = 'waiting for due runs'
                AND NOT EXISTS (SELECT FROM toygun.task WHERE run_at < now() + '20 s')
                AND NOT EXISTS (SELECT FROM toygun.resource WHERE run_at < now() + '20 s')"
ok $? "with nothing due for 20 seconds, both workers wait"
wake_and_settle
BEFORE=$(q "$XACTS")
sleep 10
AFTER=$(q "$XACTS")
note "transactions committed by the workers over 10 idle seconds: $((AFTER - BEFORE))"
is "$((AFTER - BEFORE))" 0 "an idle server: the workers commit no transactions in 10 seconds"
