#!/usr/bin/env bash
# The retention benchmark (bin/toygun bench --retention) at a small size,
# against the installed toygun, so that it cannot rot: every run completes
# (or is skipped, without retention) and prints its row. Its timings and the
# issue's promises are not checked.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

WORK=${TG_WORK:-/tmp/toygun-scenario}/bench_retention
OUT=$WORK/out.txt
mkdir -p "$WORK"

plan 4

bench/retention.sh --ticks 50000 --hold-seconds 2 --recover 5 --interval 1 --dir "$WORK/r" \
	>"$OUT" 2>"$WORK/progress.txt"
status=$?
is "$status" 0 "bench/retention.sh --ticks 50000 exits 0"
[ "$status" -eq 0 ] || { tail -n 20 "$WORK/progress.txt" | sed 's/^/# /'; }

is "$(grep -cE '^\| forever \| [0-9]+ \|' "$OUT")" 1 "the forever run printed its row with a rate"
is "$(grep -cE '^\| (short|held) \| ([0-9]+|skipped: define_task takes no keep) ' "$OUT")" 2 \
	"the short and held runs printed their rows (or were skipped, without retention)"
is "$(cmp -s "$OUT" "$WORK/r/results.md"; echo $?)" 0 "the table is left in results.md"
sed -n '/^| run /,/^$/p' "$OUT" | sed 's/^/# /'
