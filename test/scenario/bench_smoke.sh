#!/usr/bin/env bash
# The benchmark at its smoke size (bin/toygun bench --smoke), against the
# installed toygun, so that it cannot rot: every workload completes for
# every system and prints its row. Its timings are not checked.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

WORK=${TG_WORK:-/tmp/toygun-scenario}/bench
OUT=$WORK/out.txt
mkdir -p "$WORK"

plan 11

# npm installs the peers into a folder of ours, not into the checkout
bench/run.sh --smoke --dir "$WORK/cluster" --peers "$WORK/peers" >"$OUT" 2>"$WORK/progress.txt"
status=$?
is "$status" 0 "bench/run.sh --smoke exits 0"
[ "$status" -eq 0 ] || { tail -n 20 "$WORK/progress.txt" | sed 's/^/# /'; tail -n 20 "$WORK/cluster/server.log" 2>/dev/null | sed 's/^/# /'; }

rows() { grep -cE "^\| $1 +\| ($2) +\|" "$OUT"; }
is "$(rows 'W[1-4] [a-z]+' 'toygun|graphile-worker|pg-boss')" 12 \
	"W1 to W4 each printed a row for toygun, graphile-worker and pg-boss"
is "$(rows 'W5 idle' 'toygun|graphile-worker|pg-boss')" 3 "W5 printed a row for each system"
is "$(rows 'W6 memory' 'toygun')" 1 "W6 printed toygun's row"
is "$(rows 'W7 wake' 'toygun')" 1 "W7 printed toygun's row"
is "$(rows 'W8 wait' 'toygun')" 1 "W8 printed toygun's row"
is "$(rows 'W1p priority' 'toygun|graphile-worker|pg-boss')" 3 "W1p printed a row for each system"
is "$(rows 'W9 priority' 'toygun')" 1 "W9 printed toygun's row"
is "$(rows 'W10 fairness' 'toygun')" 1 "W10 printed toygun's row"
is "$(rows 'W11 rate' 'toygun')" 1 "W11 printed toygun's row"
is "$(grep -c 'FAILED' "$OUT")" 0 "no workload failed"
sed -n '/^| workload/,/^$/p' "$OUT" | sed 's/^/# /'
