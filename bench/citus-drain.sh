#!/usr/bin/env bash
# bench/citus-drain.sh: the drain rate of toygun's workers on Citus (doc/citus.md
# §3.5), one worker node against two. A coordinator and two worker nodes on
# this machine, worker node 1 and the coordinator pinned to core 0, worker node
# 2 to core 1 (taskset; every process of a server inherits its postmaster's
# core), toygun.workers = 1 on each, toygun's tables distributed by
# toygun.distribute() (8 shards). Each round: all shard groups on
# node 1 (the others moved there), N one-state runs started on the coordinator,
# the workers let go, the drain timed from the nodes' history; then the shards
# spread 4 and 4 and the same again. Prints runs per second and the ratio.
#
#   bench/citus-drain.sh [N] [ROUNDS]      (default 20000 runs, 3 rounds)
#
# Run as root or postgres. PGBIN names a PostgreSQL with Citus, pg_cron and
# toygun installed (bin/build-citus); ports CITUS_PORT0 (5680) to +2, folders
# under ${TG_WORK:-/tmp/tgcitus-drain}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
	exec runuser -u postgres -- env PGBIN="${PGBIN:-}" TG_WORK="${TG_WORK:-}" CITUS_PORT0="${CITUS_PORT0:-}" \
		bash "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_WORK:-}" ] || unset TG_WORK
[ -n "${CITUS_PORT0:-}" ] || unset CITUS_PORT0
source test/lib/cluster.sh
source test/citus/lib.sh
N=${1:-20000}
ROUNDS=${2:-3}
WORK=${TG_WORK:-/tmp/tgcitus-drain}/citus
CORE=(0 0 1)
c() { citus_psql "$@"; }
stop_all() { for n in 0 1 2; do TG_PORT=$((CITUS_PORT0 + n)) tg_stop "$WORK/n$n" immediate; done; }
trap stop_all EXIT
# until SECONDS NODE SQL: poll until SQL says t
# (count(*) = 0, not NOT EXISTS (SELECT FROM …): Citus 13.2.2 fails to plan the latter on a
# distributed table, "a column definition list is required for functions returning record")
until_t() {
	local deadline=$((SECONDS + $1)) n=$2 sql=$3
	until [ "$(c "$n" -c "$sql")" = t ]; do
		[ $SECONDS -lt $deadline ] || { echo "timed out: $sql" >&2; exit 1; }
		sleep 0.2
	done
}
pause() { local n; for n in 0 1 2; do c "$n" -c "ALTER SYSTEM SET toygun.paused = $1" -c "SELECT pg_reload_conf()" >/dev/null; done; }
# place FROM TO: move every shard group on worker node FROM to worker node TO
place() {
	local from=$((CITUS_PORT0 + $1)) to=$((CITUS_PORT0 + $2)) s
	for s in $(c 0 -c "SELECT s.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node d USING (groupid)
	                    WHERE s.logicalrelid = 'toygun.task'::regclass AND d.nodeport = $from"); do
		c 0 -c "SELECT citus_move_shard_placement($s, '127.0.0.1', $from, '127.0.0.1', $to, shard_transfer_mode => 'block_writes')" >/dev/null
	done
	# deferred drops of the moved shards' old copies, now rather than mid-drain
	c 0 -c "CALL citus_cleanup_orphaned_resources()" >/dev/null 2>&1 || true
}
# drain: N runs started (workers paused), then ticked; prints runs per second
drain() {
	local n t0
	pause on
	c 0 -c "TRUNCATE toygun.task" >/dev/null
	for n in 1 2; do c "$n" -c "TRUNCATE toygun.transition" -c "CHECKPOINT" >/dev/null; done
	c 0 -c "DO \$\$ DECLARE r uuid; BEGIN FOREACH r IN ARRAY ARRAY(SELECT id FROM toygun.resource ORDER BY id LIMIT $N) LOOP
		PERFORM toygun.start_task(r, 'one'); END LOOP; END \$\$" >/dev/null
	pause off
	until_t 600 0 "SELECT count(*) = 0 FROM toygun.task WHERE state <> '__stop__'"
	# from the first to the last tick's history row, over both nodes (one clock)
	for n in 1 2; do
		c "$n" -F ' ' -c "SELECT count(DISTINCT object_id), extract(epoch FROM min(at)), extract(epoch FROM max(at))
		                  FROM toygun.transition WHERE worker_pid IS NOT NULL AND to_state = '__stop__'"
	done | awk '{ n += $1; if ($1 > 0 && (lo == "" || $2 < lo)) lo = $2; if ($3 > hi) hi = $3 } END { printf "%d %.0f\n", n, n / (hi - lo) }'
}

mkdir -p "$WORK"
for n in 0 1 2; do
	citus_node_init "$WORK/n$n" $((CITUS_PORT0 + n)) "toygun.paused = on" "shared_buffers = '256MB'" \
		"max_wal_size = '4GB'" >/dev/null
	taskset -c "${CORE[$n]}" "$PGBIN/pg_ctl" -D "$WORK/n$n/data" -l "$WORK/n$n/server.log" -w -t 60 start >/dev/null
	c "$n" -c "CREATE EXTENSION citus" >/dev/null
done
c 0 -c "SELECT citus_set_coordinator_host('127.0.0.1', $CITUS_PORT0)" \
	-c "SELECT citus_add_node('127.0.0.1', $((CITUS_PORT0 + 1)))" \
	-c "SELECT citus_add_node('127.0.0.1', $((CITUS_PORT0 + 2)))" >/dev/null
c 0 -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION toygun" >/dev/null
c 0 -c "SELECT toygun.distribute()" >/dev/null
c 0 -c "CREATE FUNCTION public.one(t toygun.task) RETURNS toygun.next LANGUAGE sql AS 'SELECT toygun.stop()'" \
	-c "SELECT toygun.define_resource('bench')" \
	-c "SELECT toygun.define_task('bench', 'one', '{go}', 'public.one(toygun.task)')" >/dev/null
# the resources, ticked once each (a resource's first tick) before any timing
c 0 -c "SELECT count(toygun.create_resource('bench')) FROM generate_series(1, $N)" >/dev/null
pause off
until_t 600 0 "SELECT count(*) = 0 FROM toygun.resource WHERE run_at IS NOT NULL"

echo "# $N one-state runs per round; Citus $(c 0 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), 8 shards; node 1 (and the coordinator) on core 0, node 2 on core 1; toygun.workers = 1 per node"
echo "round one_node_runs_per_s two_nodes_runs_per_s ratio"
for ((r = 1; r <= ROUNDS; r++)); do
	place 2 1
	read -r n1 one < <(drain)
	c 0 -c "SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')" >/dev/null
	c 0 -c "SELECT citus_rebalance_wait()" >/dev/null
	c 0 -c "CALL citus_cleanup_orphaned_resources()" >/dev/null 2>&1 || true
	read -r n2 two < <(drain)
	[ "$n1" -eq "$N" ] && [ "$n2" -eq "$N" ] || { echo "ticked $n1 and $n2 runs, not $N" >&2; exit 1; }
	awk -v r="$r" -v a="$one" -v b="$two" 'BEGIN { printf "%d %d %d %.2f\n", r, a, b, b / a }'
done
