#!/usr/bin/env bash
# toygun.metrics()'s tick counters under real workers (issue 18): runs that
# tick and stop move toygun_ticks_total and the duration histogram; a
# handler that fails moves toygun_tick_failures_total, and its last attempt
# toygun_panics_total; a handler that returns panic() does too; a slow tick
# lands in the histogram's higher buckets. A stranger sees none of it. A
# failed tick in a batch with good ones rolls the batch back and replays it:
# the good ones are counted once. The overflow: with toygun.metrics_types
# entries taken, a further type's ticks go to the overflow counter, which
# only the extension's owner (here a superuser) sees.
# toygun.metrics_series(): the same ticks and failures, summed over the
# buckets of either window, in minute-aligned (and half-hour-aligned)
# buckets of the window; ticks of two minutes are two buckets, each with
# its own count; a stranger sees none of them, a role granted read
# sees the type's.
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

plan 28

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE ROLE stranger;
CREATE ROLE reader;
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

# metrics_series(): the same counts, summed over the buckets of each window
# (the ticks may straddle a bucket's end)
series() {
	q "SET ROLE ${3:-postgres}; SELECT COALESCE(sum(ticks), 0) || ' ' || COALESCE(sum(failures), 0)
	     FROM toygun.metrics_series('$1') WHERE resource_type = 'svc' AND task = '$2'"
}
is "$(series 1h quick)" "25 0" "metrics_series('1h'): the quick runs' ticks, summed over its minutes"
is "$(series 24h quick)" "25 0" "metrics_series('24h'): the same, over its half hours"
is "$(series 1h fails)" "3 3" "the failing run's three failed ticks are ticks and failures, in the last hour"
is "$(series 24h fails)" "3 3" "and in the last day"
is "$(q "SELECT count(*) FILTER (WHERE at <> date_trunc('minute', at)) || ' '
               || count(*) FILTER (WHERE at > now() OR at <= now() - interval '1 hour')
          FROM toygun.metrics_series('1h')")" "0 0" \
	"the '1h' buckets start on a minute, within the last hour"
is "$(q "SELECT count(*) FILTER (WHERE EXTRACT(epoch FROM at)::bigint % 1800 <> 0) || ' '
               || count(*) FILTER (WHERE at > now() OR at <= now() - interval '24 hours')
          FROM toygun.metrics_series('24h')")" "0 0" \
	"the '24h' buckets start on a half hour, within the last day"
is "$(q "SELECT count(*) FROM (SELECT at, resource_type, task FROM toygun.metrics_series('1h')
                                GROUP BY 1, 2, 3 HAVING count(*) > 1) d")" 0 "one row per bucket and type"
is "$(series 1h quick stranger)|$(series 24h quick stranger)|$(q "SET ROLE stranger;
          SELECT count(*) FROM toygun.metrics_series('1h')")" "0 0|0 0|0" \
	"a stranger sees no bucket of another owner's types"
q "SELECT toygun.grant_type('svc', 'reader', '{read}')" >/dev/null
is "$(series 1h quick reader)" "25 0" "a role granted read on the type sees its buckets"

# two minutes, two buckets: the second minute's bucket starts from zero
q "SELECT toygun.define_task('svc', 'minutes', '{a}', 'quick(toygun.task)')" >/dev/null
wait_for 15 "SELECT EXTRACT(second FROM clock_timestamp()) < 50"
M1=$(q "SELECT date_trunc('minute', clock_timestamp())")
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'minutes') FROM generate_series(1, 4)" >/dev/null
wait_for 10 "SELECT count(*) = 4 FROM toygun.task WHERE name = 'minutes' AND state = '__stop__'"
wait_for 65 "SELECT date_trunc('minute', clock_timestamp()) > '$M1'"
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'minutes') FROM generate_series(1, 6)" >/dev/null
wait_for 10 "SELECT count(*) = 10 FROM toygun.task WHERE name = 'minutes' AND state = '__stop__'"
is "$(q "SELECT string_agg((at - '$M1')::text || ' ' || ticks, ', ' ORDER BY at)
          FROM toygun.metrics_series('1h') WHERE task = 'minutes'")" "00:00:00 4, 00:01:00 6" \
	"ticks in two minutes: a bucket for each, at its minute's start, with its own ticks"
is "$(series 24h minutes)" "10 0" "and all ten in the '24h' window"

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
is "$(sample toygun_metrics_overflow_ticks_total reader)" 0 "which only the extension's owner sees: it mixes every owner's types"
wait_for 10 "SELECT sum(ticks) = $(sample toygun_metrics_overflow_ticks_total)
               FROM toygun.metrics_series('1h') WHERE resource_type IS NULL"
ok $? "metrics_series() counts the overflow's ticks as one type without a name: $(q "SELECT sum(ticks)
      FROM toygun.metrics_series('1h') WHERE resource_type IS NULL")"
is "$(q "SET ROLE reader; SELECT count(*) FROM toygun.metrics_series('1h') WHERE resource_type IS NULL")" 0 \
	"only for the extension's owner"
