#!/usr/bin/env bash
# Priorities and preemption with a real worker (issue 17): with one worker
# and the queue paused, 2,000 runs at 0 and 20 at 5 are started; resumed,
# every high run's tick comes before the 50th low one. Then, while a backlog
# of runs at 0 that stay due keeps the worker busy, 20 starts at 5 are all
# ticked before 200 more low ticks commit (counted from tick rows, not
# times): the batch under way is preempted.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/priorities
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.queues = 'default:1'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 6

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
-- every tick, in commit order of its batch (id from a sequence, taken in the tick)
CREATE TABLE tick_log (id bigserial, run uuid, priority smallint, at timestamptz);
CREATE FUNCTION public.once(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tick_log (run, priority, at) VALUES (t.id, t.priority, clock_timestamp());
    RETURN toygun.stop();
END $$;
-- due again at once, forever (until the table says stop); a little work per tick
CREATE TABLE go_on (yes boolean);
INSERT INTO go_on VALUES (true);
CREATE FUNCTION public.forever(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tick_log (run, priority, at) VALUES (t.id, t.priority, clock_timestamp());
    PERFORM pg_sleep(0.002);
    IF (SELECT yes FROM go_on) THEN
        RETURN toygun.stay(wait => '0');
    END IF;
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'once', '{working}', 'once(toygun.task)');
SELECT toygun.define_task('svc', 'forever', '{working}', 'forever(toygun.task)');
SQL

wait_for 30 "SELECT count(*) = 1 FROM toygun.worker_status()"
ok $? "one worker runs"

# order: all high before the 50th low
q "SELECT toygun.pause_queue('default')" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'once') FROM generate_series(1, 2000)" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'once', priority => 5) FROM generate_series(1, 20)" >/dev/null
q "SELECT toygun.resume_queue('default')" >/dev/null
wait_for 120 "SELECT count(*) = 2020 FROM tick_log"
ok $? "every run is ticked once resumed"
is "$(q "SELECT count(*) FROM tick_log h
          WHERE h.priority = 5
            AND h.id < (SELECT id FROM tick_log WHERE priority = 0 ORDER BY id OFFSET 49 LIMIT 1)")" 20 \
	"all 20 runs at priority 5 are ticked before the 50th at 0"

# preemption: a backlog at 0 that stays due keeps the worker's batches full
q "TRUNCATE tick_log" >/dev/null
q "SELECT toygun.start_task(toygun.create_resource('svc'), 'forever') FROM generate_series(1, 5000)" >/dev/null
wait_for 60 "SELECT count(*) > 5000 FROM tick_log"
ok $? "the low backlog ticks round and round"
# 20 starts at 5, each committed alone, each with the last tick id handed out before it
q "CREATE TABLE starts (before bigint, run uuid)" >/dev/null
for i in $(seq 1 20); do
	q "INSERT INTO starts SELECT (SELECT last_value FROM tick_log_id_seq),
	          toygun.start_task(toygun.create_resource('svc'), 'once', priority => 5)" >/dev/null
done
wait_for 60 "SELECT count(*) = 20 FROM tick_log h JOIN starts s ON s.run = h.run"
ok $? "the 20 high starts are ticked"
# low ticks that began after a start and before its run's tick: with
# preemption a few per start (the batch ends after 5 ms), without it the
# rest of a 100 ms batch (about 20 on average here)
LOW=$(q "SELECT sum((SELECT count(*) FROM tick_log l WHERE l.priority = 0 AND l.id > s.before AND l.id < h.id))
           FROM starts s JOIN tick_log h ON h.run = s.run")
[ "${LOW:-999999}" -lt 200 ]
ok $? "all 20 are ticked before 200 more low ticks ($LOW low ticks between the starts and their ticks)"
q "UPDATE go_on SET yes = false" >/dev/null
