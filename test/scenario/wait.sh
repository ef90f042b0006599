#!/usr/bin/env bash
# toygun.wait() on a real server: it returns soon after the commit that
# moves the run into a state waited for (a worker's tick, or a session's move
# by hand), at its timeout with the run unchanged, at once for a run already
# there; a cancel ends it with 57014; REPEATABLE READ and SERIALIZABLE are
# refused. Every wait here has a 30 s timeout unless said otherwise: a
# return well before it is the wake-up at work, not the timeout.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/wait
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" \
	"toygun.poll_interval = '1h'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 18

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
-- holds an hour in its one state, or stops once attrs say go
CREATE FUNCTION public.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN coalesce((t.attrs->>'go')::boolean, false) THEN toygun.stop()
                ELSE toygun.stay(NULL, '1 hour') END
$$;
SELECT toygun.define_resource('thing');
SELECT toygun.define_task('thing', 'job', '{hold}', 'public.h(toygun.task)');
CREATE TABLE runs (n int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO runs SELECT i, toygun.start_task(toygun.create_resource('thing'), 'job') FROM generate_series(1, 6) i;
SQL
wait_for 20 "SELECT count(*) = 6 FROM toygun.task WHERE state = 'hold'" || bail "the runs did not reach hold"
run() { q "SELECT id FROM runs WHERE n = $1"; }
R1=$(run 1) R2=$(run 2) R3=$(run 3) R4=$(run 4) R5=$(run 5)

# waiter NAME SQL: SQL in a session of its own, in the background; its
# output (with SQLSTATEs) in $DIR/NAME.out
waiter() {
	tg_psql "$DIR" tg -v VERBOSITY=verbose -c "$2" >"$DIR/$1.out" 2>&1 &
}
# sleeping RUN: a session sleeps in wait() on RUN
sleeping() {
	wait_for 10 "SELECT count(*) = 1 FROM pg_stat_activity
	              WHERE wait_event = 'Extension' AND query LIKE '%toygun.wait(''$1''%'"
}
# What a wait returns: the state, and how long it took in ms; and when it returned.
W="SELECT w.state, round(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000),
          clock_timestamp()::text FROM toygun.wait"

# 1. A worker's tick commits the stop.
waiter w1 "$W('$R1') w"
sleeping "$R1"; ok $? "a waiter sleeps on its latch (wait event Extension)"
q "BEGIN; SELECT count(*) FROM toygun.update_task('$R1', '{\"go\": true}'); SELECT count(*) FROM toygun.retry_task('$R1'); COMMIT" >/dev/null
wait
IFS='|' read -r STATE MS RETURNED <"$DIR/w1.out"
is "$STATE" __stop__ "it returns the run once a worker's tick commits its stop"
LAG=$(q "SELECT round(extract(epoch FROM '$RETURNED'::timestamptz - max(at)) * 1000) FROM toygun.history('$R1')")
note "wait took $MS ms; it returned $LAG ms after the stop's transition was made"
[ "$MS" -lt 10000 ] && [ "$LAG" -lt 2000 ]; ok $? "promptly: within 2 s of the tick, well before its 30 s timeout"

# 2. The timeout, with the run unchanged.
IFS='|' read -r STATE MS _ <<<"$(q "$W('$R2', '1 s') w")"
is "$STATE" hold "at its timeout it returns the run as it is"
[ "$MS" -ge 1000 ] && [ "$MS" -lt 5000 ]; ok $? "after the timeout, not before ($MS ms for 1 s)"
IFS='|' read -r STATE MS _ <<<"$(q "$W('$R2', '0 s') w")"
is "$STATE" hold "a timeout of 0 reads the state once"

# 3. Already there.
IFS='|' read -r STATE MS _ <<<"$(q "$W('$R1') w")"
is "$STATE" __stop__ "a wait on a run already stopped returns it"
[ "$MS" -lt 1000 ] ; ok $? "at once ($MS ms)"
IFS='|' read -r STATE MS _ <<<"$(q "$W('$R2', states => '{hold}') w")"
[ "$STATE" = hold ] && [ "$MS" -lt 1000 ]; ok $? "as does one on a run in a state waited for ($MS ms)"

# 4. A session's move by hand, committed.
waiter w3 "$W('$R3') w"
sleeping "$R3" || note "the waiter was not seen sleeping"
q "SELECT count(*) FROM toygun.transition_task('$R3', 'hold', '{\"n\": 1}')" >/dev/null
sleep 0.3
[ -n "$(jobs -r)" ]; ok $? "a commit that leaves the run in a state not waited for does not end the wait"
q "SELECT count(*) FROM toygun.transition_task('$R3', '__stop__')" >/dev/null
wait
IFS='|' read -r STATE MS RETURNED <"$DIR/w3.out"
LAG=$(q "SELECT round(extract(epoch FROM '$RETURNED'::timestamptz - max(at)) * 1000) FROM toygun.history('$R3')")
[ "$STATE" = __stop__ ] && [ "$LAG" -lt 2000 ]
ok $? "a session's transition_task commit wakes a waiter ($LAG ms after the move)"

# 5. A cancel; the session waits again afterwards.
tg_psql "$DIR" tg -v VERBOSITY=verbose -v ON_ERROR_STOP=0 >"$DIR/w4.out" 2>&1 <<SQL &
$W('$R4') w;
$W('$R5', '200 ms') w;
SQL
sleeping "$R4" || note "the waiter was not seen sleeping"
PID=$(q "SELECT pid FROM pg_stat_activity WHERE wait_event = 'Extension' AND query LIKE '%toygun.wait(''$R4''%'")
q "SELECT pg_cancel_backend($PID)" >/dev/null
wait
grep -q "ERROR:  57014: canceling statement due to user request" "$DIR/w4.out"
ok $? "pg_cancel_backend() ends a wait with 57014"
grep -q "^hold|" "$DIR/w4.out"; ok $? "and the session can wait again"

# 6. Only READ COMMITTED.
for level in "REPEATABLE READ" SERIALIZABLE; do
	OUT=$(tg_psql "$DIR" tg -v VERBOSITY=verbose -c "BEGIN ISOLATION LEVEL $level" -c "SELECT toygun.wait('$R1')" 2>&1)
	echo "$OUT" | grep -q "ERROR:  0A000: toygun.wait() cannot run in a $level transaction"
	ok $? "$level is refused with 0A000"
done
echo "$OUT" | grep -q "HINT:  Call toygun.wait() in a READ COMMITTED transaction."; ok $? "with a hint"

# 7. Error texts only for those who may read them, as in task_for().
R6=$(run 6)
q "UPDATE toygun.task SET last_error = 'secret detail' WHERE id = '$R6'; CREATE ROLE tg_w_public;
   SELECT toygun.grant_type('thing', 'public', '{read}')" >/dev/null
is "$(q "SET ROLE tg_w_public; SELECT state || ':' || coalesce(last_error, '-') FROM toygun.wait('$R6', '0 s')")" "hold:-" \
	"a role reading through a grant to public gets the run without its last_error"
is "$(q "SELECT last_error FROM toygun.wait('$R6', '0 s')")" "secret detail" "which its owner reads"
