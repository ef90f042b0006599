#!/usr/bin/env bash
# toygun.metrics()'s tick counters under real workers (issue 18): runs that
# tick and stop move toygun_ticks_total and the duration histogram; a
# handler that fails moves toygun_tick_failures_total, and its last attempt
# toygun_panics_total; a handler that returns panic() does too; a slow tick
# lands in the histogram's higher buckets. A stranger sees none of it. A
# failed tick in a batch with good ones rolls the batch back and replays it:
# the good ones are counted once. The overflow: with toygun.metrics_types
# entries taken, a further type's ticks go to the overflow counter.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/metrics
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" "toygun.retry_backoff = '20ms'" \
	"toygun.max_attempts = 3" "toygun.metrics_types = 16" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
# the value of the sample named by $1 (a whole series name with labels), as role $2 (default postgres)
sample() {
	local role=${2:-postgres}
	q "SET ROLE $role; SELECT substring(l from ' (\S+)\$') FROM regexp_split_to_table(toygun.metrics(), E'\n') l
	    WHERE starts_with(l, '$1 ')"
}

plan 14

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE ROLE stranger;
CREATE FUNCTION public.quick(t toygun.task) RETURNS toygun.next LANGUAGE sql
    AS $$ SELECT toygun.stop() $$;
CREATE FUNCTION public.slow(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.06); RETURN toygun.stop(); END $$;
CREATE FUNCTION public.fails(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'always'; END $$;
CREATE FUNCTION public.gives_up(t toygun.task) RETURNS toygun.next LANGUAGE sql
    AS $$ SELECT toygun.panic('gave up') $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'quick', '{a}', 'quick(toygun.task)');
SELECT toygun.define_task('svc', 'slow', '{a}', 'slow(toygun.task)');
SELECT toygun.define_task('svc', 'fails', '{a}', 'fails(toygun.task)');
SELECT toygun.define_task('svc', 'gives_up', '{a}', 'gives_up(toygun.task)');
SQL
L='resource_type="svc",task'

# quick runs, ticked once each; the resources they belong to tick too
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'quick') FROM generate_series(1, 20)" >/dev/null
wait_for 30 "SELECT count(*) = 0 FROM toygun.task WHERE name = 'quick' AND state <> '__stop__'"
ok $? "the quick runs ended"
wait_for 10 "SELECT toygun.metrics() LIKE '%toygun_ticks_total{$L=\"quick\"} 20%'"
ok $? "toygun_ticks_total counts a tick per quick run"
is "$(sample "toygun_tick_duration_seconds_count{$L=\"quick\"}")" 20 "the histogram's count is the ticks'"
is "$(sample "toygun_tick_duration_seconds_bucket{$L=\"quick\",le=\"+Inf\"}")" 20 "and so is its +Inf bucket"
is "$(sample "toygun_tick_failures_total{$L=\"quick\"}")" 0 "no failure"

# a slow run: 60 ms, over the 0.05 bucket and under the 0.1 one
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'slow')" >/dev/null
wait_for 30 "SELECT toygun.metrics() LIKE '%toygun_ticks_total{$L=\"slow\"} 1%'"
ok $? "the slow run's tick is counted"
is "$(sample "toygun_tick_duration_seconds_bucket{$L=\"slow\",le=\"0.05\"}") $(sample "toygun_tick_duration_seconds_bucket{$L=\"slow\",le=\"0.1\"}")" \
	"0 1" "a 60 ms tick is in the le=0.1 bucket, not the le=0.05 one"

# a failing run beside quick ones in one batch: three failed attempts, then __panic__;
# the quick ones are ticked again after the batch rolls back, and counted once
q "SELECT toygun.pause_queue('default')" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'fails')" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'quick') FROM generate_series(1, 5)" >/dev/null
q "SELECT toygun.resume_queue('default')" >/dev/null
wait_for 30 "SELECT count(*) = 1 FROM toygun.task WHERE name = 'fails' AND state = '__panic__'"
ok $? "the failing run panicked after its attempts"
wait_for 10 "SELECT toygun.metrics() LIKE '%toygun_panics_total{$L=\"fails\"} 1%'"
ok $? "toygun_panics_total counts the panic of its last attempt"
is "$(sample "toygun_tick_failures_total{$L=\"fails\"}") $(sample "toygun_ticks_total{$L=\"fails\"}")" "3 3" \
	"its three failed ticks are failures, and ticks"
wait_for 10 "SELECT count(*) = 0 FROM toygun.task WHERE name = 'quick' AND state <> '__stop__'"
is "$(sample "toygun_ticks_total{$L=\"quick\"}")" 25 "the quick runs of the replayed batch count once"

# a handler returning panic()
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'gives_up')" >/dev/null
wait_for 30 "SELECT toygun.metrics() LIKE '%toygun_panics_total{$L=\"gives_up\"} 1%'"
ok $? "a tick that returns panic() counts as a panic, not a failure: $(sample "toygun_tick_failures_total{$L=\"gives_up\"}")"

# rights: the stranger sees no counter of svc
is "$(q "SET ROLE stranger; SELECT count(*) FROM regexp_split_to_table(toygun.metrics(), E'\n') l
          WHERE l LIKE '%svc%'")" 0 "a stranger sees none of another owner's counters"

# the overflow: 16 entries, and more types than that ticked
q "SELECT toygun.define_task('svc', 'q' || i, '{a}', 'quick(toygun.task)') FROM generate_series(1, 16) i" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'q' || i) FROM generate_series(1, 16) i" >/dev/null
wait_for 30 "SELECT count(*) = 0 FROM toygun.task WHERE name LIKE 'q%' AND state <> '__stop__'"
wait_for 10 "SELECT (SELECT count(*) FROM regexp_split_to_table(toygun.metrics(), E'\n') l
                      WHERE l LIKE 'toygun_ticks_total{%') = 16
                 AND toygun.metrics() ~ 'toygun_metrics_overflow_ticks_total [1-9]'"
ok $? "past toygun.metrics_types types, ticks go to toygun_metrics_overflow_ticks_total: $(sample toygun_metrics_overflow_ticks_total)"
