#!/usr/bin/env bash
# calls.sh [-v] OBJECT...: the file-level call graph of toygun's C files, from
# their object files (nm: the functions each defines, the symbols it needs),
# and a check that no two files call each other. Two files that call each
# other are one concern split in two, or two concerns tangled: a boundary in
# the wrong place. Prints each such pair with the calls each way and exits 1;
# with -v, prints every edge "a -> b: functions" too.
set -euo pipefail

verbose=0
if [ "${1:-}" = -v ]; then verbose=1; shift; fi
[ $# -gt 0 ] || { echo "usage: calls.sh [-v] OBJECT..." >&2; exit 2; }

for o in "$@"; do
	f=$(basename "$o" .o)
	nm "$o" | awk -v f="$f" '$2 == "T" { print "D", f, $3 } $1 == "U" { print "U", f, $2 }'
done | awk -v verbose="$verbose" '
	$1 == "D" { owner[$3] = $2; next }
	{ need[n++] = $2 " " $3 }
	END {
		for (i = 0; i < n; i++) {
			split(need[i], u, " ")
			if (!(u[2] in owner) || owner[u[2]] == u[1])
				continue
			e = u[1] " -> " owner[u[2]]
			if (e in calls)
				calls[e] = calls[e] ", " u[2]
			else
				calls[e] = u[2]
		}
		bad = 0
		for (e in calls) {
			split(e, p, " -> ")
			if (verbose)
				print e ": " calls[e]
			back = p[2] " -> " p[1]
			if (p[1] < p[2] && (back in calls)) {
				print "cycle: " e ": " calls[e] "; " back ": " calls[back]
				bad = 1
			}
		}
		exit bad
	}' | sort
exit "${PIPESTATUS[1]}"
