#!/usr/bin/env bash
# Load: 8 clients starting runs and 8 clients reading toygun.task and
# toygun.stats while the workers tick, then the invariants, and toygun.task
# sized within a bound of its live rows after autovacuum. Then the same
# with a transaction holding its snapshot for 60 seconds: ticking goes on,
# and throughput before, during and after is reported.
# TG_LOAD_STARTS sets the starts per client.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh
source test/lib/load.sh

EACH=${TG_LOAD_STARTS:-250}
HOLD=${TG_LOAD_HOLD:-60}
DIR=${TG_WORK:-/tmp/toygun-scenario}/load
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "autovacuum_naptime = 1" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'kill ${LOAD_PIDS[*]} ${READ_PIDS[*]} ${HOLDER:-} 2>/dev/null; tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
ticks() { q "SELECT count(*) FROM ticks"; }

plan 16

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
load_setup "$DIR" tg || bail "setup failed"

# readers: each runs READS queries on the tables and the stats view
readers() {
	local c
	READ_PIDS=()
	for c in $(seq 1 8); do
		(
			for _ in $(seq 1 "$1"); do
				q "SELECT count(*) FROM toygun.task WHERE state <> '__stop__'" >/dev/null 2>&1
				q "SELECT sum(live), sum(due) FROM toygun.stats" >/dev/null 2>&1
			done
		) &
		READ_PIDS+=($!)
	done
}

# 1. 8 starters, 8 readers
T0=$SECONDS
load_clients "$DIR" tg 8 "$EACH" 600
readers $((EACH / 25))
wait "${LOAD_PIDS[@]}" "${READ_PIDS[@]}"
load_wait_done "$DIR" tg 300
ok $? "8 clients started $((8 * EACH)) runs while 8 clients read, and all of them finished"
note "ticks: $(ticks) in $((SECONDS - T0)) s, with 16 clients"
load_invariants "$DIR" tg "under load"

# toygun.task after autovacuum (once it has nothing left to do there):
# within twice the size of a compact copy of its live rows and indexes, plus 2 MB
tg_wait 120 "$DIR" tg "SELECT last_autovacuum IS NOT NULL AND n_dead_tup <= 50 + 0.05 * n_live_tup
                         FROM pg_stat_user_tables WHERE relid = 'toygun.task'::regclass"
ok $? "autovacuum keeps up with toygun.task"
SIZES=$(q "CREATE TEMP TABLE compact AS SELECT * FROM toygun.task;
           CREATE UNIQUE INDEX ON compact (id);
           CREATE UNIQUE INDEX ON compact (resource_id, name) WHERE state <> '__stop__';
           CREATE INDEX ON compact (resource_id, name, seq);
           CREATE INDEX ON compact (run_at) WHERE run_at IS NOT NULL;
           SELECT pg_total_relation_size('toygun.task') || ' ' || pg_total_relation_size('compact')")
read -r ACTUAL COMPACT <<<"$SIZES"
note "toygun.task with indexes: $((ACTUAL / 1024)) kB; a compact copy: $((COMPACT / 1024)) kB"
[ "$ACTUAL" -le $((2 * COMPACT + 2 * 1024 * 1024)) ]
ok $? "toygun.task and its indexes are within 2x their compact size + 2 MB after autovacuum"

# 2. a transaction holds its snapshot for HOLD seconds while 4 clients keep
# starting runs (for HOLD + 40 seconds)
rate() { echo "scale=1; $1 / $2" | bc; }
load_clients "$DIR" tg 4 1000000 $((HOLD + 40))
A=$(ticks); sleep 10; B=$(ticks)
note "throughput before: $(rate $((B - A)) 10) ticks/s"
tg_psql "$DIR" tg -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM toygun.task" \
	-c "SELECT pg_sleep($HOLD)" -c "COMMIT" >/dev/null 2>&1 &
HOLDER=$!
tg_wait 10 "$DIR" tg "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%')" ||
	bail "the snapshot holder did not start"
C=$(ticks); sleep "$HOLD"; D=$(ticks)
during=$((D - C))
note "throughput during a ${HOLD}-second snapshot: $(rate $during "$HOLD") ticks/s"
[ "$during" -gt 0 ]
ok $? "ticking goes on while a transaction holds its snapshot ($during ticks)"
wait "$HOLDER"
E=$(ticks); sleep 10; F=$(ticks)
note "throughput after: $(rate $((F - E)) 10) ticks/s"
wait "${LOAD_PIDS[@]}"
load_wait_done "$DIR" tg 300
load_invariants "$DIR" tg "after a held snapshot"
