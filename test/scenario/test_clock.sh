#!/usr/bin/env bash
# The test clock (toygun.test_now) never changes what the workers do: set in
# postgresql.conf, for the database and for the workers' role, it still
# reads '' in a worker's handlers, a stay a worker applies waits from the
# real time, and a handler that sets it for its own tick changes nothing;
# a session's tick by hand in the same database reads it
# (test/sql/test_helpers.sql covers the helpers themselves).
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/test_clock
FUTURE='2100-01-01 00:00:00+00'
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" "toygun.test_now = '$FUTURE'" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 8

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE TABLE public.seen (run uuid, test_now text, at timestamptz DEFAULT clock_timestamp());
-- naps an hour, then stops; 'sneak' sets the clock for its own tick first
CREATE FUNCTION public.nap(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen (run, test_now) VALUES (t.id, current_setting('toygun.test_now'));
    IF t.state = 'sneak' THEN
        PERFORM set_config('toygun.test_now', '2100-01-01 00:00:00+00', true);
    END IF;
    IF t.attrs ? 'slept' THEN RETURN toygun.stop(); END IF;
    RETURN toygun.stay('{"slept": true}', wait => '1 hour');
END $$;
SELECT toygun.define_resource('bed');
SELECT toygun.define_task('bed', 'nap', '{nap}', 'nap(toygun.task)');
SELECT toygun.define_task('bed', 'sneak', '{sneak}', 'nap(toygun.task)');
SELECT toygun.define_task('bed', 'mark', '{mark}', 'nap(toygun.task)');
SQL
q "ALTER DATABASE tg SET toygun.test_now = '$FUTURE'" >/dev/null
q "ALTER ROLE postgres SET toygun.test_now = '$FUTURE'" >/dev/null
# new workers, which connect with the database's and the role's settings
tg_wait 30 "$DIR" tg "SELECT count(*) = 1 FROM toygun.worker_status()" || bail "no worker"
OLD=$(q "SELECT string_agg(pid::text, ',') FROM toygun.worker_status()")
q "SELECT pg_terminate_backend(pid) FROM toygun.worker_status()" >/dev/null
wait_for 30 "SELECT count(*) = 1 AND NOT bool_or(pid IN ($OLD)) FROM toygun.worker_status()"
ok $? "a worker starts with toygun.test_now set in postgresql.conf, for its database and for its role"
is "$(q "SELECT current_setting('toygun.test_now')::timestamptz = '$FUTURE'")" t \
	"an ordinary session of the database has the clock in 2100"

NAP=$(q "SELECT toygun.start_task(toygun.create_resource('bed'), 'nap')")
SNEAK=$(q "SELECT toygun.start_task(toygun.create_resource('bed'), 'sneak')")
wait_for 30 "SELECT count(DISTINCT run) = 2 FROM public.seen"
ok $? "the worker ticks both runs"
is "$(q "SELECT string_agg(DISTINCT test_now, ',') FROM public.seen")" "" \
	"in the worker's handlers toygun.test_now is empty"
is "$(q "SELECT count(*) FROM toygun.task WHERE id IN ('$NAP', '$SNEAK')
          AND run_at BETWEEN now() + interval '50 minutes' AND now() + interval '1 hour'")" 2 \
	"their stays wait an hour from the real time, also where the handler set the clock for its tick"
# a run started after them is ticked; the naps, due in an hour, are not ticked again
MARK=$(q "SELECT toygun.start_task(toygun.create_resource('bed'), 'mark')")
wait_for 30 "SELECT EXISTS (SELECT FROM public.seen WHERE run = '$MARK')"
is "$(q "SELECT count(*) FROM public.seen WHERE run IN ('$NAP', '$SNEAK')")" 2 \
	"and the worker does not tick them again before then"

# the same setting in a session's tick by hand: the nap is over
is "$(q "SELECT state FROM toygun.test_tick_until('$NAP')")" __stop__ \
	"a session's test_tick_until reads the clock and finishes the nap"
is "$(q "SELECT state FROM toygun.test_tick_until('$SNEAK')")" __stop__ \
	"and so it does for the run whose handler set the clock"
