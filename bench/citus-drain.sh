#!/usr/bin/env bash
# bench/citus-drain.sh: toygun's drain rate on Citus with one worker node
# against two (issue 19), each node's PostgreSQL pinned to its own core.
#
# Two clusters, made once: A, a coordinator and one worker node (all shards
# on it, pinned to core 0); B, a coordinator and two worker nodes (4 shards
# each, pinned to cores 0 and 1). The coordinators only start runs, before the
# timing. Each round drains N one-state runs (W1's shape: started on the
# coordinator with the workers paused, then let go) on A, then on B; the rate
# is from the first to the last tick's history row over the cluster's nodes.
#
#   bench/citus-drain.sh [N] [ROUNDS]      (default 100000 runs, 3 rounds)
#
# Run as root or postgres. PGBIN names a PostgreSQL with Citus, pg_cron and
# toygun installed (bin/build-citus). Ports 5700-5701 (A) and 5710-5712 (B),
# folders under ${TG_WORK:-/tmp/tgcitus-drain}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
	exec runuser -u postgres -- env PGBIN="${PGBIN:-}" TG_WORK="${TG_WORK:-}" bash "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
source test/lib/cluster.sh
source test/citus/lib.sh
citus_available || { echo "Citus is not installed in $PGBIN's PostgreSQL (bin/build-citus)" >&2; exit 2; }
N=${1:-100000}
ROUNDS=${2:-3}
WORK=${TG_WORK:-/tmp/tgcitus-drain}
mkdir -p "$WORK"

# node CLUSTER I: its port (A: 5700 + I, B: 5710 + I; I = 0 the coordinator)
port() { if [ "$1" = A ]; then echo $((5700 + $2)); else echo $((5710 + $2)); fi; }
nodes() { if [ "$1" = A ]; then echo "0 1"; else echo "0 1 2"; fi; }
q() { local c=$1 i=$2; shift 2; CITUS_PORT0=$(port "$c" 0) citus_psql "$i" "$@"; }
stop_all() {
	local c i
	for c in A B; do for i in $(nodes $c); do TG_PORT=$(port $c "$i") tg_stop "$WORK/$c$i" immediate; done; done
}
trap stop_all EXIT

make_cluster() {
	local c=$1 i
	for i in $(nodes "$c"); do
		CITUS_PORT0=$(port "$c" 0) citus_node_init "$WORK/$c$i" "$(port "$c" "$i")" \
			"toygun.paused = on" "shared_buffers = '512MB'" "max_wal_size = '4GB'" >/dev/null
		# every process of the node inherits the postmaster's core; the coordinator's is idle while timed
		taskset -c $(((i + 1) % 2)) "$PGBIN/pg_ctl" -D "$WORK/$c$i/data" -l "$WORK/$c$i/server.log" -w -t 60 start >/dev/null
		q "$c" "$i" -c "CREATE EXTENSION citus" >/dev/null
	done
	q "$c" 0 -c "SELECT citus_set_coordinator_host('127.0.0.1', $(port "$c" 0))" >/dev/null
	for i in $(nodes "$c"); do
		[ "$i" = 0 ] || q "$c" 0 -c "SELECT citus_add_node('127.0.0.1', $(port "$c" "$i"))" >/dev/null
	done
	q "$c" 0 -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION toygun" >/dev/null
	q "$c" 0 -f test/citus/distribute.sql >/dev/null
	q "$c" 0 -c "CREATE FUNCTION public.one(t toygun.task) RETURNS toygun.next LANGUAGE sql AS 'SELECT toygun.stop()'" >/dev/null
	for i in $(nodes "$c"); do
		q "$c" "$i" -c "SELECT toygun.define_resource('bench')" \
			-c "SELECT toygun.define_task('bench', 'one', '{go}', 'public.one(toygun.task)')" >/dev/null
	done
	q "$c" 0 -c "SELECT count(toygun.create_resource('bench')) FROM generate_series(1, $N)" >/dev/null
	paused "$c" off
	wait_for "$c" "SELECT NOT EXISTS (SELECT FROM toygun.resource WHERE run_at IS NOT NULL)" "tick its resources"
}

# paused CLUSTER on|off: toygun.paused on every node
paused() {
	local i
	for i in $(nodes "$1"); do
		q "$1" "$i" -c "ALTER SYSTEM SET toygun.paused = $2" -c "SELECT pg_reload_conf()" >/dev/null &
	done
	wait
}

# wait_for CLUSTER SQL WHAT: poll the coordinator until SQL is true (bounded)
wait_for() {
	local deadline=$((SECONDS + 600))
	until [ "$(q "$1" 0 -c "$2")" = t ]; do
		[ $SECONDS -lt $deadline ] || { echo "cluster $1 did not $3 in 600 s" >&2; exit 1; }
		sleep 0.2
	done
}

# drain CLUSTER: N one-state runs started on the coordinator, then ticked; prints runs per second
drain() {
	local c=$1 i
	paused "$c" on
	q "$c" 0 -c "TRUNCATE toygun.task" >/dev/null
	for i in $(nodes "$c"); do q "$c" "$i" -c "TRUNCATE toygun.transition" >/dev/null; done
	q "$c" 0 -c "SELECT count(toygun.start_task(id, 'one')) FROM toygun.resource" >/dev/null
	for i in $(nodes "$c"); do q "$c" "$i" -c "CHECKPOINT" >/dev/null; done
	paused "$c" off
	wait_for "$c" "SELECT NOT EXISTS (SELECT FROM toygun.task WHERE state <> '__stop__')" "drain"
	# the history is each node's own (test/citus/distribute.sql); one clock for all nodes
	for i in $(nodes "$c"); do
		q "$c" "$i" -F ' ' -c "SELECT count(*), coalesce(extract(epoch FROM min(at)), 0), coalesce(extract(epoch FROM max(at)), 0)
		                       FROM toygun.transition WHERE worker_pid IS NOT NULL AND from_state = 'go' AND to_state = '__stop__'"
	done | awk '$1 > 0 { n += $1; if (lo == "" || $2 < lo) lo = $2; if ($3 > hi) hi = $3 } END { printf "%d %.0f\n", n, n / (hi - lo) }'
}

make_cluster A
make_cluster B
echo "# $N one-state runs per round on Citus $(q A 0 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"),"
echo "# citus.shard_count = 8; each worker node pinned to its own core (taskset), toygun.workers = 1"
echo "round one_node_runs_per_s two_nodes_runs_per_s ratio"
for ((r = 1; r <= ROUNDS; r++)); do
	read -r n1 one < <(drain A)
	read -r n2 two < <(drain B)
	[ "$n1" -eq "$N" ] && [ "$n2" -eq "$N" ] || { echo "ticked $n1 and $n2 runs, not $N" >&2; exit 1; }
	awk -v r="$r" -v a="$one" -v b="$two" 'BEGIN { printf "%d %d %d %.2f\n", r, a, b, b / a }'
done
