#!/usr/bin/env bash
# Rate limits with the workers: a task type limited to 50 ticks per second
# (burst 5) with 1,000 runs due at once. The workers tick the burst, then
# hold the others (run_at moved, no handler call, no attempt, no history
# row), one emission interval (20 ms) apart, and tick each when its token
# exists. Over ten seconds of the drain, counted from the history's
# timestamps, the ticks are 50 per second within a loose band (the bench's
# W11 measures the accuracy); no run failed or panicked.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/rates
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 10

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
-- counts every handler call, even of a tick rolled back
CREATE SEQUENCE calls;
CREATE FUNCTION public.work(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('calls');
    RETURN toygun.stop();
END $$;
SELECT toygun.define_rate_limit('r50', 50, '1 second', 5);
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'work', '{working}', 'work(toygun.task)', rate_limit => 'r50');
SELECT toygun.start_task(toygun.create_resource('svc'), 'work') FROM generate_series(1, 1000);
SQL

STOPS="FROM toygun.transition WHERE to_state = '__stop__'"

# held runs: scheduled ahead, each one emission interval after the one before
wait_for 30 "SELECT count(*) >= 200 FROM toygun.task WHERE state <> '__stop__' AND run_at > clock_timestamp()"
ok $? "runs without a token are held (run_at ahead)"
GAP=$(q "WITH h AS (SELECT run_at - lag(run_at) OVER (ORDER BY run_at) AS gap FROM toygun.task
                     WHERE state <> '__stop__' AND run_at > clock_timestamp() + interval '1 s')
         SELECT extract(epoch FROM min(gap)) * 1000 >= 19.9 FROM h WHERE gap IS NOT NULL")
is "$GAP" t "held runs come due at least one emission interval (20 ms) apart, not in a herd"
is "$(q "SELECT horizon > clock_timestamp() FROM toygun.rate_limit_status() WHERE name = 'r50'")" t \
	"rate_limit_status() shows the horizon of the held runs"
is "$(q "SELECT waiting_for_token >= 100 AND tokens IS NOT NULL FROM toygun.flow WHERE task = 'work'")" t \
	"toygun.flow counts the held runs as waiting for a token"

# the window [t0 + 2 s, t0 + 12 s) is complete once 700 runs stopped, at 50/s
wait_for 90 "SELECT count(*) >= 700 $STOPS"
ok $? "the drain goes on (700 of 1,000 ticked)"
N=$(q "WITH s AS (SELECT at $STOPS), t0 AS (SELECT min(at) AS t0 FROM s)
       SELECT count(*) FROM s, t0 WHERE at >= t0 + interval '2 s' AND at < t0 + interval '12 s'")
note "ticks in 10 s of the drain: $N (50 per second: 500)"
[ "$N" -ge 400 ] && [ "$N" -le 600 ]
ok $? "the ticks over 10 s are 50 per second, within 20% ($N)"

wait_for 60 "SELECT count(*) = 1000 $STOPS"
ok $? "every run ends"
is "$(q "SELECT count(*) FROM toygun.task WHERE attempts > 0 OR state = '__panic__'")
$(q "SELECT count(*) FROM toygun.failure")" "0
0" "no run failed, and none panicked"
is "$(q "SELECT last_value FROM calls")" 1000 "one handler call per run: a held run calls none"
# the 5 runs of the burst were never held, the others were: all have as many rows
note "history rows per run: $(q "SELECT string_agg(n || ' x' || c, ', ') FROM (SELECT n, count(*) AS c FROM
          (SELECT count(*) AS n FROM toygun.transition WHERE object_id IN (SELECT id FROM toygun.task)
            GROUP BY object_id) x GROUP BY n) y")"
is "$(q "SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM toygun.transition
                                        WHERE object_id IN (SELECT id FROM toygun.task) GROUP BY object_id) x")" 1 \
	"every run has as many history rows as a run never held: a hold writes none"
