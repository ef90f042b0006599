#!/usr/bin/env bash
# bench/citus-ceiling.sh: the ceiling of doc/citus.md's design on this machine,
# NOT a Citus measurement. In the design a node's worker claims and ticks only
# its own shards, with nothing crossing nodes, so K nodes drain at most what K
# independent single-node toygun servers drain. This measures that: W1-style
# drains (one-state runs started in one transaction, then the worker let go)
# on one server pinned to one core, and on two servers each pinned to its own
# core (taskset), the same total of runs split between them. Until toygun's
# worker ticks on Citus (doc/citus.md §9), this is the figure to beat.
#
#   bench/citus-ceiling.sh [N] [ROUNDS]      (default 200000 runs, 3 rounds)
#
# Run as root or postgres. PGBIN names a PostgreSQL with toygun installed.
# Ports 5685 and 5686, folders under ${TG_WORK:-/tmp/tgcitus-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
	exec runuser -u postgres -- env PGBIN="${PGBIN:-}" TG_WORK="${TG_WORK:-}" bash "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
source test/lib/cluster.sh
N=${1:-200000}
ROUNDS=${2:-3}
WORK=${TG_WORK:-/tmp/tgcitus-bench}
PORTS=(5685 5686)
q() { local i=$1; shift; TG_PORT=${PORTS[$i]} tg_psql "$WORK/s$i" postgres "$@"; }

start_server() {
	local i=$1
	TG_PORT=${PORTS[$i]} tg_init "$WORK/s$i" "toygun.database_name = 'postgres'" "toygun.workers = 1" \
		"shared_preload_libraries = 'toygun'" "toygun.paused = on" "shared_buffers = '512MB'" \
		"max_wal_size = '4GB'" >/dev/null
	# every process of the server inherits the postmaster's core
	taskset -c "$i" "$PGBIN/pg_ctl" -D "$WORK/s$i/data" -l "$WORK/s$i/server.log" -w -t 60 start >/dev/null
	q "$i" -q >/dev/null <<'SQL'
CREATE EXTENSION toygun;
CREATE FUNCTION public.one(t toygun.task) RETURNS toygun.next LANGUAGE sql AS 'SELECT toygun.stop()';
SELECT toygun.define_resource('bench');
SELECT toygun.define_task('bench', 'one', '{go}', 'public.one(toygun.task)');
SQL
}
stop_servers() { for i in 0 1; do TG_PORT=${PORTS[$i]} tg_stop "$WORK/s$i" immediate; done; }
trap stop_servers EXIT

# drain K: N runs split over servers 0..K-1, ticked by their workers; prints runs per second
drain() {
	local k=$1 per=$((N / $1)) i
	for ((i = 0; i < k; i++)); do
		q "$i" -c "ALTER SYSTEM SET toygun.paused = on" -c "SELECT pg_reload_conf()" >/dev/null
		q "$i" -c "TRUNCATE toygun.task" -c "TRUNCATE toygun.transition" \
			-c "SELECT count(toygun.start_task(id, 'one')) FROM (SELECT id FROM toygun.resource ORDER BY id LIMIT $per) r" >/dev/null
		q "$i" -c "CHECKPOINT" >/dev/null
	done
	for ((i = 0; i < k; i++)); do
		q "$i" -c "ALTER SYSTEM SET toygun.paused = off" -c "SELECT pg_reload_conf()" >/dev/null &
	done
	wait
	for ((i = 0; i < k; i++)); do
		TG_PORT=${PORTS[$i]} tg_wait 300 "$WORK/s$i" postgres "SELECT NOT EXISTS (SELECT FROM toygun.task WHERE state <> '__stop__')" ||
			{ echo "server $i did not drain" >&2; exit 1; }
	done
	# from the first to the last tick's history row, over all servers (the server clocks are one)
	for ((i = 0; i < k; i++)); do
		q "$i" -F ' ' -c "SELECT count(DISTINCT object_id), extract(epoch FROM min(at)), extract(epoch FROM max(at))
		                  FROM toygun.transition WHERE worker_pid IS NOT NULL
		                   AND object_id IN (SELECT id FROM toygun.task)"
	done | awk '{ n += $1; if (lo == "" || $2 < lo) lo = $2; if ($3 > hi) hi = $3 } END { printf "%d %.0f\n", n, n / (hi - lo) }'
}

for i in 0 1; do start_server "$i"; done
# the resources, ticked once each (a resource's first tick) before any timing
for i in 0 1; do
	q "$i" -c "SELECT count(toygun.create_resource('bench')) FROM generate_series(1, $N)" \
		-c "ALTER SYSTEM SET toygun.paused = off" -c "SELECT pg_reload_conf()" >/dev/null
done
for i in 0 1; do
	TG_PORT=${PORTS[$i]} tg_wait 300 "$WORK/s$i" postgres "SELECT NOT EXISTS (SELECT FROM toygun.resource WHERE run_at IS NOT NULL)" ||
		{ echo "server $i did not tick its resources" >&2; exit 1; }
done
echo "# $N one-state runs per round; each server pinned to its own core (taskset), toygun.workers = 1"
echo "round one_server_runs_per_s two_servers_runs_per_s ratio"
for ((r = 1; r <= ROUNDS; r++)); do
	read -r n1 one < <(drain 1)
	read -r n2 two < <(drain 2)
	[ "$n1" -eq "$N" ] && [ "$n2" -eq "$N" ] || { echo "ticked $n1 and $n2 runs, not $N" >&2; exit 1; }
	awk -v r="$r" -v a="$one" -v b="$two" 'BEGIN { printf "%d %d %d %.2f\n", r, a, b, b / a }'
done
