#!/usr/bin/env bash
# The crash matrix. Under a steady load of three-state runs started by
# concurrent clients: SIGKILL of a worker; SIGKILL of a client backend in
# the middle of start_task; pg_ctl stop -m immediate then start; pg_ctl
# restart -m fast; five crashes in a minute. After each, every committed start
# reaches __stop__, each state of each run ran exactly once, histories are
# gapless and nothing is stuck; the time from restart to the first tick is
# reported. TG_CRASH_STARTS sets the starts per client per phase.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh
source test/lib/load.sh

EACH=${TG_CRASH_STARTS:-100}
CLIENTS=4
DIR=${TG_WORK:-/tmp/toygun-scenario}/crash
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "restart_after_crash = on" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'kill ${LOAD_PIDS[*]} 2>/dev/null; tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
ticks() { q "SELECT count(*) FROM ticks" 2>/dev/null || echo "?"; }
live() { q "SELECT count(*) FROM toygun.task WHERE state <> '__stop__'" 2>/dev/null || echo "?"; }

plan 35

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
load_setup "$DIR" tg || bail "setup failed"
CRASHES=0

# under_load: start the clients and wait until ticks have progressed with a
# backlog of live runs, so that what follows hits the middle of the load
under_load() {
	local before
	load_clients "$DIR" tg $CLIENTS "$EACH" 120 0.01
	before=$(ticks)
	tg_wait 60 "$DIR" tg "SELECT (SELECT count(*) FROM ticks) >= $before + 60
	                         AND (SELECT count(*) FROM toygun.task WHERE state <> '__stop__') >= 20" ||
		bail "no progress under load"
}

# back_and_ticking SINCE: the workers tick again after a restart at SINCE
# (epoch seconds); reports the time to the first tick
back_and_ticking() {
	local since=$1 label=$2
	tg_wait 60 "$DIR" tg "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker'
	                        AND EXISTS (SELECT FROM ticks WHERE at > to_timestamp($since))"
	ok $? "$label: the server comes back and the workers tick"
	note "$label: restart to first tick: $(q "SELECT round(extract(epoch FROM min(at) - to_timestamp($since))::numeric, 3)
	                                          FROM ticks WHERE at > to_timestamp($since)") s"
}

finish_phase() {
	local label=$1
	wait "${LOAD_PIDS[@]}" 2>/dev/null
	load_wait_done "$DIR" tg 180 || note "$label: runs still live after 180 s: $(live)"
	load_invariants "$DIR" tg "$label"
}

# 1. SIGKILL of a worker
under_load
WORKER=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'toygun worker' LIMIT 1")
note "SIGKILL of worker $WORKER after $(ticks) ticks, $(live) runs live"
T=$(date +%s.%N); kill -9 "$WORKER"; CRASHES=$((CRASHES + 1))
back_and_ticking "$T" "worker killed"
finish_phase "worker killed"

# 2. SIGKILL of a client backend in the middle of start_task: that start
# never committed, so its run must not exist afterwards
under_load
tg_psql "$DIR" tg -c "SET application_name = 'doomed'" \
	-c "BEGIN" -c "INSERT INTO started (run) SELECT toygun.start_task(toygun.create_resource('loaded'), 'job')" \
	-c "SELECT pg_sleep(60)" -c "COMMIT" >/dev/null 2>&1 &
DOOMED_CLIENT=$!
tg_wait 20 "$DIR" tg "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'doomed'
                                      AND query LIKE '%pg_sleep%')" || bail "the doomed client did not start"
BACKEND=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'doomed'")
note "SIGKILL of client backend $BACKEND inside a transaction that started a run"
T=$(date +%s.%N); kill -9 "$BACKEND"; CRASHES=$((CRASHES + 1))
wait "$DOOMED_CLIENT" 2>/dev/null
back_and_ticking "$T" "client killed"
finish_phase "client killed"

# 3. pg_ctl stop -m immediate, then start
under_load
note "stop -m immediate after $(ticks) ticks, $(live) runs live"
"$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null; CRASHES=$((CRASHES + 1))
T=$(date +%s.%N)
tg_start "$DIR" || bail "server did not start again"
back_and_ticking "$T" "stop -m immediate"
finish_phase "stop -m immediate"

# 4. pg_ctl restart -m fast
under_load
note "restart -m fast after $(ticks) ticks, $(live) runs live"
T=$(date +%s.%N)
"$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -m fast -w -t 60 restart >/dev/null || bail "restart failed"
back_and_ticking "$T" "restart -m fast"
finish_phase "restart -m fast"

# 5. five crashes within a minute, the clients starting runs all along
EACH=$((EACH * 3)) under_load
START=$SECONDS
BACK=0
for i in 1 2 3 4 5; do
	WORKER=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'toygun worker' LIMIT 1")
	[ -n "$WORKER" ] && kill -9 "$WORKER" && CRASHES=$((CRASHES + 1))
	# the server restarts after the crash: the killed worker is gone, two new ones run
	tg_wait 30 "$DIR" tg "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker'
	                      AND pid <> ${WORKER:-0}" &&
		BACK=$((BACK + 1))
done
[ $BACK -eq 5 ] && [ $((SECONDS - START)) -le 60 ]
ok $? "five crashes within a minute, each followed by the workers coming back ($BACK of 5, $((SECONDS - START)) s)"
finish_phase "five crashes"

note "crashes survived: $CRASHES; runs checked: $(q "SELECT count(*) FROM started")"
