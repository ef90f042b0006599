#!/usr/bin/env bash
# bench/retention.sh: issue 16's retention benchmark. Many ticks under a
# steady load, toygun's tables sampled as they go: with retention they stay
# within 2x their size after the first tenth of the ticks, at a small cost in
# throughput, and a snapshot held for a while does not make them grow without
# bound once it is released. On a temporary cluster that preloads the
# installed toygun with its workers; bin/toygun bench --retention builds and
# installs toygun first, then runs this.
#
#   bench/retention.sh [--ticks N] [--runs forever,short,held] [--dir DIR] ...
#
#   --ticks N        ticks per run (TICKS, default 10000000)
#   --live N         about how many runs are kept live (LIVE, default
#                    TICKS/30, between 1000 and 50000), on a pool of 2 LIVE
#                    resources
#   --first N        the reference point: sizes after N ticks (FIRST,
#                    default TICKS/10, 1M at the default size)
#   --runs LIST      which runs, in this order (RUNS, default forever,short,held):
#                      forever  no retention (toygun.keep's default): the baseline
#                      short    define_task/define_resource(..., keep => KEEP)
#                      held     short, with a REPEATABLE READ snapshot held for
#                               a while in the middle
#   --keep I         the short keep (KEEP, default '10 seconds')
#   --partition I    toygun.history_partition in the short runs (PARTITION, default 2s)
#   --maintain I     toygun.maintain_interval in the short runs (MAINTAIN, default 1s)
#   --hold-at N      the held run takes its snapshot after N ticks (HOLD_AT, default 2 FIRST)
#   --hold-seconds S and releases it after S seconds (HOLD_S, default 30) or
#   --hold-ticks N   N more ticks (HOLD_TICKS, default 2 FIRST), whichever comes first
#   --recover S      after the held run's last tick, how long to wait at most for its
#                    tables to come back within 2x (RECOVER_S, default 120)
#   --interval S     seconds between samples (INTERVAL, default 2)
#   --timeout S      a run that takes longer fails (TIMEOUT, default 3600)
#   --set 'NAME = VALUE'  one more server setting for every run (repeatable),
#                    e.g. --set 'toygun.prune_batch = 5000'
#   --dir DIR        where the clusters, samples and results go (default
#                    .bench/retention in the checkout); each run's cluster is
#                    removed after it, its server log, samples-RUN.tsv and
#                    results.md stay
#
# The workload: 2 LIVE resources; a task type of three states (go, go, stop:
# three ticks a run, four history rows); a producer (a procedure, committing
# each round) that every 0.1 s starts with start_task() as many runs as are
# missing to LIVE (started less a third of the ticks), on the next resources
# of the pool in turn, until TICKS/3 runs were started. Ticks are read from
# the workers' counters (toygun.worker_status()), sizes (table, indexes and
# TOAST) from pg_total_relation_size(), every INTERVAL seconds; CPU time
# from /proc (the whole server, and the toygun workers alone). Without a
# toygun whose define_task takes keep (retention, issue 16), the short and
# held runs are skipped with a message. Exits non-zero if a run does not
# complete (a run lost, failed or left live, or the timeout), never because a
# promise is missed. Run as root or postgres; PGBIN names the PostgreSQL 15
# server binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DIR:-$ROOT/.bench/retention}
TICKS=${TICKS:-10000000}
LIVE=${LIVE:-}
FIRST=${FIRST:-}
RUNS=${RUNS:-forever,short,held}
KEEP=${KEEP:-10 seconds}
PARTITION=${PARTITION:-2s}
MAINTAIN=${MAINTAIN:-1s}
HOLD_AT=${HOLD_AT:-}
HOLD_S=${HOLD_S:-30}
HOLD_TICKS=${HOLD_TICKS:-}
RECOVER_S=${RECOVER_S:-120}
INTERVAL=${INTERVAL:-2}
TIMEOUT=${TIMEOUT:-3600}
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) DIR=$2; shift 2 ;;
	--ticks) TICKS=$2; shift 2 ;;
	--live) LIVE=$2; shift 2 ;;
	--first) FIRST=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--keep) KEEP=$2; shift 2 ;;
	--partition) PARTITION=$2; shift 2 ;;
	--maintain) MAINTAIN=$2; shift 2 ;;
	--hold-at) HOLD_AT=$2; shift 2 ;;
	--hold-seconds) HOLD_S=$2; shift 2 ;;
	--hold-ticks) HOLD_TICKS=$2; shift 2 ;;
	--recover) RECOVER_S=$2; shift 2 ;;
	--interval) INTERVAL=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--set) EXTRA+=("$2"); shift 2 ;;
	--set=*) EXTRA+=("${1#--set=}"); shift ;;
	*) echo "bench/retention.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

if [ "$(id -un)" != postgres ]; then
	mkdir -p "$DIR"
	chown postgres: "$DIR"
	exec runuser -u postgres -- env PGBIN="${PGBIN:-}" TG_PORT="${TG_PORT:-}" \
		DIR="$DIR" TICKS="$TICKS" LIVE="$LIVE" FIRST="$FIRST" RUNS="$RUNS" KEEP="$KEEP" \
		PARTITION="$PARTITION" MAINTAIN="$MAINTAIN" HOLD_AT="$HOLD_AT" HOLD_S="$HOLD_S" \
		HOLD_TICKS="$HOLD_TICKS" RECOVER_S="$RECOVER_S" INTERVAL="$INTERVAL" TIMEOUT="$TIMEOUT" \
		"$0" ${EXTRA[@]+"${EXTRA[@]/#/--set=}"}
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_PORT:-}" ] || unset TG_PORT
source "$ROOT/test/lib/cluster.sh"

say() { printf '%s\n' "$*" >&2; }
die() { say "retention: $*"; exit 1; }
int() { local v=${1//[,_]/}; [[ $v =~ ^[0-9]+$ ]] || die "not a whole number: $1"; echo "$v"; }

TICKS=$(int "$TICKS")
[ "$TICKS" -ge 3 ] || die "--ticks must be at least 3"
if [ -z "$LIVE" ]; then
	LIVE=$((TICKS / 30))
	[ "$LIVE" -le 50000 ] || LIVE=50000
	[ "$LIVE" -ge 1000 ] || LIVE=1000
fi
LIVE=$(int "$LIVE")
FIRST=$(int "${FIRST:-$((TICKS / 10))}")
HOLD_AT=$(int "${HOLD_AT:-$((2 * FIRST))}")
HOLD_TICKS=$(int "${HOLD_TICKS:-$((2 * FIRST))}")
RUN_COUNT=$(((TICKS + 2) / 3))
DB=bench
mkdir -p "$DIR"
RESULTS=$DIR/results.md

# Durability as shipped and the memory of bench/run.sh's cluster.
SETTINGS=(
	"toygun.database_name = '$DB'"
	"cron.database_name = 'postgres'"
	"fsync = on"
	"synchronous_commit = on"
	"full_page_writes = on"
	"shared_buffers = '1GB'"
	"max_wal_size = '8GB'"
	"checkpoint_timeout = '30min'"
	# the autovacuum a table that deletes some 15,000 runs a second needs:
	# with the defaults (a look every minute, throttled), toygun.task bloats
	# to five times its live size before its space is reused (bench/README.md)
	"autovacuum_naptime = '1s'"
	"autovacuum_vacuum_cost_delay = 0"
	${EXTRA[@]+"${EXTRA[@]}"}
)
# time runs fast in the short runs (a keep of seconds): so does the tick
# timeout, which sets how far ahead of its rows a partition is made
SHORT_SETTINGS=(
	"toygun.history_partition = '$PARTITION'"
	"toygun.maintain_interval = '$MAINTAIN'"
	"toygun.tick_timeout = '5s'"
	"toygun.tick_grace = '1s'"
)

CLUSTER=
HOLD_PID=
PRODUCER_PID=
cleanup() {
	[ -z "$PRODUCER_PID" ] || kill "$PRODUCER_PID" 2>/dev/null || true
	[ -z "$HOLD_PID" ] || kill "$HOLD_PID" 2>/dev/null || true
	if [ -n "$CLUSTER" ]; then
		tg_stop "$CLUSTER" immediate
		rm -rf "$CLUSTER/data"
	fi
}
trap cleanup EXIT

q() { tg_psql "$CLUSTER" "$DB" "$@"; }

# One sample, a line of samples-RUN.tsv: the clock (epoch seconds), ticks
# since the workload began, the total sizes in bytes of toygun.task,
# toygun.resource, toygun.transition (all its partitions) and toygun.failure,
# and how many partitions toygun.transition has (1: not partitioned).
SAMPLE_SQL="SELECT extract(epoch FROM clock_timestamp()),
       (SELECT coalesce(sum(ticks), 0) FROM toygun.worker_status()) - :base,
       pg_total_relation_size('toygun.task'), pg_total_relation_size('toygun.resource'),
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(c.oid))
            ELSE pg_total_relation_size(c.oid) END,
       pg_total_relation_size('toygun.failure'),
       CASE WHEN c.relkind = 'p'
            THEN (SELECT count(*) FROM pg_partition_tree(c.oid) WHERE isleaf) ELSE 1 END
  FROM pg_class c WHERE c.oid = 'toygun.transition'::regclass"
sample() { # PHASE: prints and appends a sample, its fields then the phase
	local line try
	for try in 1 2 3; do
		line=$(q -F $'\t' -c "${SAMPLE_SQL//:base/$BASE}") && break
		[ "$try" -lt 3 ] || return 1
		sleep 0.5
	done
	line="$line	$1"
	echo "$line" >>"$SAMPLES"
	echo "$line"
}

# cpu: CPU seconds used so far by the whole server (the postmaster, its
# children alive, and those it has reaped) and by the toygun workers
# (WORKER_PIDS), from /proc
cpu() {
	local pm
	pm=$(head -n 1 "$CLUSTER/data/postmaster.pid")
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" -v workers=" $WORKER_PIDS " -v hz="$(getconf CLK_TCK)" '
		{
			pid = $1
			rest = substr($0, match($0, /\) [A-Za-z] /) + 2)
			split(rest, f, " ")   # f[1] state, f[2] ppid, f[12] utime, f[13] stime, f[14] cutime, f[15] cstime
			if (pid == pm) server += f[12] + f[13] + f[14] + f[15]
			else if (f[2] == pm) server += f[12] + f[13]
			if (index(workers, " " pid " ")) w += f[12] + f[13]
		}
		END { printf "%.2f %.2f\n", server / hz, w / hz }'
}

hold_start() {
	local fifo=$CLUSTER/hold.fifo
	rm -f "$fifo"
	mkfifo "$fifo"
	PGAPPNAME=lcbench-hold psql -X -q -h "$CLUSTER" -p "${TG_PORT:-5432}" -U postgres -d "$DB" -At \
		<"$fifo" >"$CLUSTER/hold.out" 2>&1 &
	HOLD_PID=$!
	exec 7>"$fifo"
	echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM toygun.task;" >&7
	tg_wait 30 "$CLUSTER" "$DB" "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE application_name = 'lcbench-hold' AND state = 'idle in transaction' AND backend_xmin IS NOT NULL)" ||
		die "the snapshot holder did not start: $(cat "$CLUSTER/hold.out")"
}
hold_release() {
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$HOLD_PID" || die "the snapshot holder failed: $(cat "$CLUSTER/hold.out")"
	HOLD_PID=
}

skip() {
	say "retention: skipping the $1 run: this toygun's define_task takes no keep (retention, issue 16, is not built in it)"
	echo "$1 skipped" >>"$FIGURES"
	rm -rf "$CLUSTER" "$SAMPLES"
	CLUSTER=
}

# run NAME: one run on a fresh cluster; appends its figures to $FIGURES.
run() {
	local name=$1 keep= settings=("${SETTINGS[@]}") t0 now line ticks phase=run
	local hold_t= hold_ticks= release_t= done_t= deadline status
	case "$name" in
	forever) ;;
	short | held) keep=$KEEP; settings+=("${SHORT_SETTINGS[@]}") ;;
	*) die "unknown run $name (forever, short, held)" ;;
	esac
	CLUSTER=$DIR/$name
	SAMPLES=$DIR/samples-$name.tsv
	rm -f "$SAMPLES"
	if [ -n "$keep" ] && [ "${HAS_KEEP:-}" = f ]; then
		skip "$name"
		return 0
	fi
	: >"$SAMPLES"
	mkdir -p "$CLUSTER"
	tg_stop "$CLUSTER" immediate
	tg_init "$CLUSTER" "${settings[@]}" >/dev/null
	: >"$CLUSTER/server.log"
	tg_start "$CLUSTER"
	tg_psql "$CLUSTER" postgres -c "CREATE DATABASE $DB" >/dev/null
	q -c "SET client_min_messages = warning" -c "CREATE EXTENSION toygun"
	HAS_KEEP=$(q -c "SELECT 'keep' = ANY (proargnames) FROM pg_proc WHERE oid = 'toygun.define_task'::regproc")
	if [ -n "$keep" ] && [ "$HAS_KEEP" != t ]; then
		tg_stop "$CLUSTER" fast
		skip "$name"
		return 0
	fi
	local keeparg=
	[ -z "$keep" ] || keeparg=", keep => interval '$keep'"
	q -v live="$LIVE" >/dev/null <<SQL
SET client_min_messages = warning;
-- three ticks a run: a -> b, b -> c, c -> __stop__
CREATE FUNCTION lcb_handler(t toygun.task) RETURNS toygun.next LANGUAGE sql AS \$\$
    SELECT CASE t.state WHEN 'a' THEN toygun.go('b') WHEN 'b' THEN toygun.go('c') ELSE toygun.stop() END
\$\$;
SELECT toygun.define_resource('lcb'$keeparg);
SELECT toygun.define_task('lcb', 't', '{a,b,c}', 'lcb_handler(toygun.task)'$keeparg);
-- a pool of twice as many resources as live runs, numbered
CREATE TABLE lcb_resource (i integer PRIMARY KEY, id uuid NOT NULL);
INSERT INTO lcb_resource SELECT i, toygun.create_resource('lcb') FROM generate_series(1, 2 * :live) i;

-- Every 0.1 s, a round in a transaction of its own: the runs live are about
-- those started less a third of the ticks since the workload began (base:
-- the workers' counters then); as many runs as are missing to live are
-- started on the next resources of the pool, in turn (one whose run is
-- still live is skipped), until runs runs were started.
CREATE PROCEDURE lcb_produce(runs bigint, live integer, base bigint) LANGUAGE plpgsql AS \$\$
DECLARE
    pool integer := (SELECT count(*) FROM lcb_resource);
    started bigint := 0;
    ticks bigint;
    cur integer := 0;
    k integer;
    n integer;
BEGIN
    WHILE started < runs LOOP
        SELECT coalesce(sum(w.ticks), 0) - base INTO ticks FROM toygun.worker_status() w;
        k := least(runs - started, live - (started - ticks / 3));
        IF k > 0 THEN
            SELECT count(toygun.start_task(r.id, 't')) INTO n
              FROM lcb_resource r
             WHERE (r.i > cur AND r.i <= cur + k OR r.i <= cur + k - pool)
               AND NOT EXISTS (SELECT 1 FROM toygun.task t
                                WHERE t.resource_id = r.id AND t.name = 't' AND t.state <> '__stop__');
            started := started + n;
            cur := (cur + k) % pool;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.1);
        COMMIT;
    END LOOP;
END \$\$;
SQL
	# the resources' first ticks (no handler: they then rest) are not counted
	tg_wait 120 "$CLUSTER" "$DB" "SELECT NOT EXISTS (SELECT 1 FROM toygun.resource WHERE run_at IS NOT NULL)" ||
		die "$name: the resources were not ticked within 120 s"
	q -c "VACUUM ANALYZE" -c "CHECKPOINT"
	BASE=$(q -c "SELECT coalesce(sum(ticks), 0) FROM toygun.worker_status()")
	[ "$(q -c "SELECT count(*) FROM toygun.worker_status()")" -gt 0 ] || die "$name: no toygun worker is running"

	WORKER_PIDS=$(q -c "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM toygun.worker_status()")
	say "retention: $name run: $TICKS ticks ($RUN_COUNT runs of 3 ticks), $LIVE live${keep:+, keep $keep}"
	local cpu0 cpu1
	cpu0=$(cpu)
	line=$(sample run)
	t0=$(cut -f1 <<<"$line")
	# the producer's session never uses a hash or merge join: the anti-join
	# probes the live runs' index, whatever the number of stopped runs
	PGOPTIONS="-c enable_hashjoin=off -c enable_mergejoin=off" \
		tg_psql "$CLUSTER" "$DB" -c "CALL lcb_produce($RUN_COUNT, $LIVE, $BASE)" >"$CLUSTER/producer.out" 2>&1 &
	PRODUCER_PID=$!
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		# closely until the reference sample (the first after FIRST ticks)
		if [ "$(cut -f2 <<<"$line")" -lt "$FIRST" ]; then sleep 0.2; else sleep "$INTERVAL"; fi
		line=$(sample "$phase")
		now=$(cut -f1 <<<"$line")
		ticks=$(cut -f2 <<<"$line")
		say "retention: $name: $ticks ticks, $(awk -F'\t' '{ printf "%.1f MB", ($3 + $4 + $5 + $6) / 1048576 }' <<<"$line")$([ "$phase" = run ] || echo ", snapshot $phase")"
		if [ "$name" = held ]; then
			if [ -z "$hold_t" ] && [ "$ticks" -ge "$HOLD_AT" ]; then
				hold_start
				hold_t=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
				hold_ticks=$ticks
				phase=held
				say "retention: $name: holding a REPEATABLE READ snapshot"
			elif [ -n "$hold_t" ] && [ -z "$release_t" ] &&
				{ awk -v a="$now" -v b="$hold_t" -v s="$HOLD_S" 'BEGIN { exit !(a - b >= s) }' ||
					[ $((ticks - hold_ticks)) -ge "$HOLD_TICKS" ]; }; then
				hold_release
				release_t=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
				phase=released
				say "retention: $name: released the snapshot"
			fi
		fi
		if ! kill -0 "$PRODUCER_PID" 2>/dev/null; then
			status=0
			wait "$PRODUCER_PID" || status=$?
			PRODUCER_PID=
			[ "$status" -eq 0 ] || die "$name: the producer failed: $(cat "$CLUSTER/producer.out")"
			if [ "$name" = held ] && [ -z "$hold_t" ]; then
				# a small run can start its last runs before HOLD_AT ticks
				say "retention: $name: the producer ended before $HOLD_AT ticks: holding the snapshot from here to the end"
				hold_start
				hold_t=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
				phase=held
			fi
			break
		fi
		[ $SECONDS -lt $deadline ] || die "$name: not done within $TIMEOUT s"
	done
	# every run started: wait for the last ticks, closely, for the end time
	# (then for the workers' counters, added to just after each commit)
	while [ "$(q -c "SELECT EXISTS (SELECT 1 FROM toygun.task WHERE run_at IS NOT NULL)")" = t ]; do
		[ $SECONDS -lt $deadline ] || die "$name: not done within $TIMEOUT s"
		sleep 0.1
	done
	for _ in $(seq 50); do
		[ "$(q -c "SELECT coalesce(sum(ticks), 0) - $BASE >= 3 * $RUN_COUNT FROM toygun.worker_status()")" = f ] || break
		sleep 0.1
	done
	line=$(sample "$phase")
	cpu1=$(cpu)
	done_t=$(cut -f1 <<<"$line")
	ticks=$(cut -f2 <<<"$line")
	[ "$(q -c "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM toygun.worker_status()")" = "$WORKER_PIDS" ] ||
		say "retention: $name: the workers changed during the run: their CPU time is not all counted"
	if [ "$name" = held ]; then
		if [ -z "$release_t" ]; then
			hold_release
			release_t=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
			say "retention: $name: released the snapshot at the end of the run"
		fi
		# a bounded poll: until the sizes are within 2x of the size at FIRST ticks
		local limit
		limit=$(awk -F'\t' -v f="$FIRST" '$2 >= f { print 2 * ($3 + $4 + $5 + $6); exit }' "$SAMPLES")
		local until=$((SECONDS + RECOVER_S))
		while [ $SECONDS -lt $until ] &&
			! awk -F'\t' -v r="$release_t" -v l="$limit" '$1 >= r && $3 + $4 + $5 + $6 <= l { f = 1 } END { exit !f }' "$SAMPLES"; do
			sleep "$INTERVAL"
			sample after >/dev/null
		done
	fi
	# nothing lost, failed or left live
	local live stopped failures
	live=$(q -c "SELECT count(*) FROM toygun.task WHERE state <> '__stop__'")
	failures=$(q -c "SELECT count(*) FROM toygun.failure")
	stopped=$(q -c "SELECT count(*) FROM toygun.task")
	[ "$live" -eq 0 ] || die "$name: $live runs not stopped at the end (panicked or lost)"
	[ "$failures" -eq 0 ] || die "$name: $failures failed ticks"
	[ "$ticks" -eq $((3 * RUN_COUNT)) ] ||
		die "$name: the workers counted $ticks ticks, not $((3 * RUN_COUNT)) (a worker restarted, or ticks were lost)"
	say "retention: $name: done, $ticks ticks in $(awk -v a="$done_t" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s; $stopped stopped runs left"
	echo "$name $t0 $done_t $ticks ${hold_t:--} ${release_t:--} $stopped $cpu0 $cpu1" >>"$FIGURES"
	tg_stop "$CLUSTER" fast
	rm -rf "$CLUSTER/data"
	CLUSTER=
}

FIGURES=$DIR/figures.txt
: >"$FIGURES"
say "retention: $TICKS ticks per run, $LIVE live runs, sizes after $FIRST ticks as the reference; runs: $RUNS"
IFS=, read -ra runs <<<"$RUNS"
for r in "${runs[@]}"; do
	run "$r"
done

# --- the report --------------------------------------------------------------

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# stats RUN: the run's figures from its samples, as shell assignments
stats() {
	# two passes: the first finds the last sample's time (for the halves after the release)
	awk -F'\t' -v first="$FIRST" -v hold="$2" -v rel="$3" -v done="$4" '
		FNR == NR { endt = $1; next }
		{ tot = $3 + $4 + $5 + $6 }
		!f && $2 >= first { f = 1; s1 = tot; t1 = $3; r1 = $4; h1 = $5; x1 = $6 }
		f && $1 <= done + 0.001 { if (tot > mx) mx = tot; if ($3 > tmx) tmx = $3; if ($4 > rmx) rmx = $4
		        if ($5 > hmx) hmx = $5; if ($6 > xmx) xmx = $6; if ($7 > pmx) pmx = $7 }
		$1 <= done + 0.001 { fin = tot; tf = $3; rf = $4; hf = $5; xf = $6; pf = $7 }
		hold != "-" && $1 >= hold && $1 <= rel && tot > heldmx { heldmx = tot }
		hold != "-" && $1 >= rel && tot > aftmx { aftmx = tot }
		hold != "-" && $1 >= rel && $1 < (rel + endt) / 2 && tot > half1 { half1 = tot }
		hold != "-" && $1 >= (rel + endt) / 2 && tot > half2 { half2 = tot }
		hold != "-" && $1 >= rel && !isback && f && tot <= 2 * s1 { isback = 1; back = $1 - rel }
		{ last = tot; lastt = $1 }
		END {
			printf "s1=%.0f mx=%.0f fin=%.0f t1=%.0f tmx=%.0f tf=%.0f r1=%.0f rmx=%.0f rf=%.0f h1=%.0f hmx=%.0f hf=%.0f x1=%.0f xmx=%.0f xf=%.0f pmx=%d pf=%d ",
				s1, mx, fin, t1, tmx, tf, r1, rmx, rf, h1, hmx, hf, x1, xmx, xf, pmx, pf
			printf "heldmx=%.0f aftmx=%.0f half1=%.0f half2=%.0f last=%.0f back=%s waited=%.0f\n", heldmx, aftmx, half1, half2, last,
				(isback ? sprintf("%.0f", back) : "-"), lastt - rel
		}' "$DIR/samples-$1.tsv" "$DIR/samples-$1.tsv"
}
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

{
	echo "## Retention benchmark"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $TICKS ticks per run ($RUN_COUNT runs of 3 ticks), $LIVE live runs," \
		"reference: the sizes after $FIRST ticks; short keep: keep => '$KEEP', toygun.history_partition = '$PARTITION'," \
		"toygun.maintain_interval = '$MAINTAIN'${EXTRA[*]:+; also ${EXTRA[*]}}."
	[ "$TICKS" -ge 10000000 ] || echo "Not the issue's size (10,000,000 ticks): the verdicts below are indicative only."
	echo
	echo "| run | ticks/s | server CPU µs/tick | workers' CPU µs/tick | total MB after $FIRST ticks | max MB after | final MB | max / first | promise |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	declare -A rate
	while read -r name t0 done_t ticks hold_t rel_t stopped srv0 wrk0 srv1 wrk1; do
		if [ "$t0" = skipped ]; then
			echo "| $name | skipped: define_task takes no keep (retention not built in this toygun) | | | | | | | |"
			continue
		fi
		eval "$(stats "$name" "$hold_t" "$rel_t" "$done_t")"
		rate[$name]=$(awk -v n="$ticks" -v a="$done_t" -v b="$t0" 'BEGIN { printf "%.0f", n / (a - b) }')
		ratio=$(awk -v a="$mx" -v b="$s1" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }')
		case "$name" in
		forever) promise="baseline, not judged" ;;
		short) promise="$([ "$ratio" = - ] && echo MISS || verdict "$ratio <= 2"): max within 2x" ;;
		held) promise="(see the snapshot table)" ;;
		esac
		us() { awk -v a="$1" -v b="$2" -v n="$ticks" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }'; }
		echo "| $name | ${rate[$name]} | $(us "$srv1" "$srv0") | $(us "$wrk1" "$wrk0") | $(mb "$s1") | $(mb "$mx") | $(mb "$fin") | ${ratio}x | $promise |"
		per+=("| $name | $(mb "$t1") / $(mb "$tmx") / $(mb "$tf") | $(mb "$r1") / $(mb "$rmx") / $(mb "$rf") | $(mb "$h1") / $(mb "$hmx") / $(mb "$hf") | $pmx / $pf | $(mb "$x1") / $(mb "$xmx") / $(mb "$xf") | $stopped |")
		if [ "$name" = held ]; then
			if [ "$back" = - ]; then
				came="not within 2x by the end ($(mb "$last") MB, ${waited} s after the release)"
			else
				came="within 2x ${back} s after the release"
			fi
			# the promise: once released, the tables stop growing (the files keep
			# their size; vacuum makes their space free for reuse): the largest
			# size in the second half of the time after the release is within 10%
			# of the largest in the first half
			pv=$(verdict "$half2 <= 1.1 * $half1")
			held_row="| $(awk -v a="$rel_t" -v b="$hold_t" 'BEGIN { printf "%.0f", a - b }') s | $(mb "$s1") | $(mb "$heldmx") | $(mb "$half1") | $(mb "$half2") | $(mb "$last") | $came | $pv |"
		fi
	done <"$FIGURES"
	echo
	if [ -n "${rate[forever]:-}" ] && [ -n "${rate[short]:-}" ]; then
		cost=$(awk -v s="${rate[short]}" -v f="${rate[forever]}" 'BEGIN { printf "%.1f", 100 * (1 - s / f) }')
		echo "Throughput cost of the short keep: 1 - short/forever = ${cost}% ($(verdict "$cost <= 10"): at most 10%)."
	else
		echo "Throughput cost of the short keep: not measured (needs the forever and short runs)."
	fi
	echo
	echo "Per table, MB after $FIRST ticks / max after / final (table, indexes and TOAST):"
	echo
	echo "| run | toygun.task | toygun.resource | toygun.transition (all partitions) | transition partitions max / final | toygun.failure | runs left (stopped) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	for row in ${per[@]+"${per[@]}"}; do echo "$row"; done
	if [ -n "${held_row:-}" ]; then
		echo
		echo "Held snapshot (held run: REPEATABLE READ, taken after $HOLD_AT ticks, released after $HOLD_S s or $HOLD_TICKS ticks):"
		echo
		echo "| held for | total MB after $FIRST ticks | max MB while held | max MB, first half after the release | max MB, second half | MB at the end | after the release | promise: bounded once released (second half within 10% of the first) |"
		echo "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
		echo "$held_row"
	fi
} >"$RESULTS"
cat "$RESULTS"
say "retention: results in $RESULTS, samples in $DIR/samples-*.tsv"
