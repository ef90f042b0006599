#!/usr/bin/env bash
# Crash safety: SIGKILL a worker, then stop the server with -m immediate, each
# in the middle of a load of multi-state runs started by concurrent clients.
# Afterwards every committed start reaches __stop__, every state ran exactly
# once per run, and histories are gapless.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

RUNS=${TG_CRASH_RUNS:-2000}
CLIENTS=4
DIR=${TG_WORK:-/tmp/toygun-scenario}/crash
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "restart_after_crash = on" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
ticks() { q "SELECT count(*) FROM ticks" 2>/dev/null || echo 0; }

plan 8

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
CREATE TABLE ticks (run uuid, state text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ticks (run, state) VALUES (t.id, t.state);
    PERFORM pg_sleep(0.005);
    RETURN CASE t.state WHEN 'a' THEN toygun.go('b') WHEN 'b' THEN toygun.go('c') ELSE toygun.stop() END;
END $$;
SELECT toygun.define_resource('thing');
SELECT toygun.define_task('thing', 'job', '{a,b,c}', 'h(toygun.task)');
SQL

# Clients start runs, 25 per transaction, until each has committed its share
# of half the runs, retrying while the server is down (for at most a minute).
start_clients() {
	local c
	for c in $(seq 1 $CLIENTS); do
		(
			local done=0 deadline=$((SECONDS + 60))
			while [ $done -lt $((RUNS / CLIENTS / 50)) ] && [ $SECONDS -lt $deadline ]; do
				if q "SELECT toygun.start_task(toygun.create_resource('thing'), 'job') FROM generate_series(1, 25)" \
					>/dev/null 2>&1; then
					done=$((done + 1))
				else
					sleep 0.2
				fi
			done
		) &
	done
}

start_clients
tg_wait 60 "$DIR" tg "SELECT count(*) >= 300 FROM ticks" || bail "no progress before the first crash"
WORKER=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'toygun worker' LIMIT 1")
note "killing worker $WORKER with SIGKILL after $(ticks) ticks"
kill -9 "$WORKER"
wait
tg_wait 60 "$DIR" tg "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'toygun worker'"
ok $? "after a worker is killed the server restarts and the workers come back"

# more load, then an immediate stop in the middle of it: with progress made
# and a backlog of live runs left
start_clients
BEFORE=$(ticks)
tg_wait 60 "$DIR" tg "SELECT count(*) >= $BEFORE + 300 FROM ticks" &&
	tg_wait 60 "$DIR" tg "SELECT count(*) >= 100 FROM toygun.task WHERE state <> '__stop__'" ||
	bail "no progress and backlog before the immediate stop"
note "stopping the server with -m immediate after $(ticks) ticks, $(q "SELECT count(*) FROM toygun.task WHERE state <> '__stop__'") runs live"
"$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
# the clients would retry until the server is back: stop them
kill $(jobs -p) 2>/dev/null
wait
RESTART=$(date +%s.%N)
tg_start "$DIR" || bail "server did not start again"
wait_for 30 "SELECT max(at) > to_timestamp($RESTART) FROM ticks"
ok $? "after the restart the workers tick again"
note "restart to first tick: $(q "SELECT round(extract(epoch FROM min(at) - to_timestamp($RESTART))::numeric, 3) FROM ticks WHERE at > to_timestamp($RESTART)") s"

wait_for 180 "SELECT NOT EXISTS (SELECT FROM toygun.task WHERE state <> '__stop__')"
ok $? "every committed start reaches __stop__"
STARTED=$(q "SELECT count(*) FROM toygun.task")
note "runs started and committed: $STARTED"
[ "$STARTED" -ge $((RUNS / 2)) ]
ok $? "the load started hundreds of runs ($STARTED)"
is "$(q "SELECT count(*) FROM (SELECT run FROM ticks GROUP BY run HAVING count(*) <> 3 OR count(DISTINCT state) <> 3) x")" 0 \
	"every run's three states each ran exactly once (nothing applied twice, nothing lost)"
is "$(q "SELECT count(*) FROM toygun.task t WHERE NOT EXISTS (SELECT FROM ticks k WHERE k.run = t.id)")" 0 \
	"every committed run was ticked"
is "$(q "SELECT count(*) FROM (SELECT object_id FROM toygun.transition GROUP BY object_id
                                HAVING min(step) <> 0 OR max(step) <> count(*) - 1) x")" 0 \
	"every history is gapless from step 0"
is "$(q "SELECT count(*) FROM toygun.task WHERE step <> 4 OR run_at IS NOT NULL")" 0 \
	"every run made exactly four transitions and is no longer due"
