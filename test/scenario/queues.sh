#!/usr/bin/env bash
# Queues with the workers (issue 17): with toygun.queues = 'default:1,
# reports:1', a slow reports handler does not hold up default runs (they all
# commit before its next tick begins); pause_queue leaves the queue's runs
# unticked while a default run makes progress, and resume_queue ticks them;
# a reload to 'default:2' gives the reports worker's slot to default; a
# reload to a bad value logs "invalid value" and changes nothing.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/queues
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.queues = 'default:1, reports:1'" >/dev/null ||
	bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 12

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
-- each tick's start, by the clock (committed with the tick)
CREATE TABLE tick_log (id bigserial, task text, at timestamptz);
CREATE FUNCTION public.slow(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tick_log (task, at) VALUES (t.name, clock_timestamp());
    PERFORM pg_sleep(2);
    RETURN toygun.stop();
END $$;
CREATE FUNCTION public.quick(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tick_log (task, at) VALUES (t.name, clock_timestamp());
    RETURN toygun.stop();
END $$;
-- ticks 20 times, 20 ms apart
CREATE FUNCTION public.counter(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    n int := COALESCE((t.attrs->>'n')::int, 0) + 1;
BEGIN
    IF n >= 20 THEN
        RETURN toygun.stop();
    END IF;
    RETURN toygun.stay(jsonb_build_object('n', n), wait => '20 ms');
END $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'report', '{working}', 'slow(toygun.task)', queue => 'reports');
SELECT toygun.define_task('svc', 'quick_report', '{working}', 'quick(toygun.task)', queue => 'reports');
SELECT toygun.define_task('svc', 'job', '{working}', 'quick(toygun.task)');
SELECT toygun.define_task('svc', 'counter', '{counting}', 'counter(toygun.task)');
SQL

wait_for 30 "SELECT count(*) = 2 FROM toygun.worker_status()"
ok $? "two workers run"
is "$(q "SELECT string_agg(queue, ',' ORDER BY slot) FROM toygun.worker_status()")" "default,reports" \
	"slot 0 serves default, slot 1 reports, by position"

# a slow reports queue does not hold up default
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'report') FROM generate_series(1, 3)" >/dev/null
wait_for 30 "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'tick task % (svc.report)%'"
ok $? "the reports worker ticks a slow run"
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'job') FROM generate_series(1, 50)" >/dev/null
wait_for 60 "SELECT count(*) = 3 FROM tick_log WHERE task = 'report'"
ok $? "the slow runs are ticked one after another"
is "$(q "SELECT count(*) FROM tick_log j
          WHERE j.task = 'job'
            AND j.at < (SELECT at FROM tick_log WHERE task = 'report' ORDER BY at OFFSET 1 LIMIT 1)")" 50 \
	"all 50 default runs were ticked before the second slow tick began"

# pause: the queue's runs wait while default goes on
q "SELECT toygun.pause_queue('reports')" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'quick_report') FROM generate_series(1, 5)" >/dev/null
C=$(q "SELECT toygun.start_task(toygun.create_resource('svc'), 'counter')")
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$C'"
ok $? "a default run ticks 20 times meanwhile"
is "$(q "SELECT count(*) FROM toygun.task WHERE name = 'quick_report' AND step = 0 AND state = '__new__'")" 5 \
	"while the reports queue is paused, its runs are not ticked"
is "$(q "SELECT paused FROM toygun.queue_status() WHERE queue = 'reports'")" t "queue_status() says it is paused"
q "SELECT toygun.resume_queue('reports')" >/dev/null
wait_for 30 "SELECT count(*) = 5 FROM toygun.task WHERE name = 'quick_report' AND state = '__stop__'"
ok $? "resume_queue: they are ticked"

# reload to default:2: the reports worker's slot serves default
q "ALTER SYSTEM SET toygun.queues = 'default:2'" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for 30 "SELECT count(*) = 2 AND bool_and(queue = 'default') FROM toygun.worker_status()"
ok $? "a reload to 'default:2' leaves no worker on reports"
wait_for 30 "SELECT running = 0 FROM toygun.queue_status() WHERE queue = 'reports'"
ok $? "queue_status() shows reports without a running worker"

# a bad value: logged, nothing changes
echo "toygun.queues = 'bad:'" >>"$DIR/data/postgresql.auto.conf"
q "SELECT pg_reload_conf()" >/dev/null
tg_wait 30 "$DIR" tg "SELECT pg_read_file('$DIR/server.log') LIKE '%invalid value for parameter \"toygun.queues\"%'"
ok $? "a reload to a bad value logs \"invalid value\", and the setting keeps 'default:2' ($(q "SHOW toygun.queues"))"
