#!/usr/bin/env bash
# Circuit breakers with the workers: runs of a task type whose handler fails
# while a table says the downstream is down open its breaker after three
# failed ticks (an alarm of kind 'breaker'); the runs are held (run_at at
# open_until, no handler call); after the cooldown one run is the trial,
# fails, and opens the breaker again; once the downstream is up, the next
# trial succeeds, the breaker closes with its alarm, and every run ends.
# Failures further apart than the window never open a breaker.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/breakers
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.retry_backoff = '50ms'" \
	"toygun.max_attempts = 100" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 14

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE TABLE downstream (up boolean NOT NULL);
INSERT INTO downstream VALUES (false);
-- counts every handler call, even of a tick that fails and is rolled back
CREATE SEQUENCE calls;
CREATE FUNCTION public.call(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('calls');
    IF NOT (SELECT up FROM downstream) THEN
        RAISE EXCEPTION 'the downstream is down';
    END IF;
    RETURN toygun.stop();
END $$;
CREATE FUNCTION public.always_fails(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'always';
END $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'call', '{calling}', 'call(toygun.task)',
                          breaker => '{"failures": 3, "within": "1 minute", "cooldown": "3 s"}');
SELECT toygun.define_task('svc', 'slow', '{calling}', 'always_fails(toygun.task)',
                          max_attempts => 3, retry_backoff => '400 ms',
                          breaker => '{"failures": 2, "within": "100 ms", "cooldown": "1 minute"}');
SELECT toygun.start_task(toygun.create_resource('svc'), 'call') FROM generate_series(1, 5);
SQL

calls() { q "SELECT last_value FROM calls"; }
LIVE="FROM toygun.task WHERE name = 'call' AND state <> '__stop__'"

wait_for 30 "SELECT state = 'open' FROM toygun.breaker WHERE task = 'call'"
ok $? "three failed ticks open the breaker"
is "$(q "SELECT failures_at_open || ' ' || opens FROM toygun.breaker WHERE task = 'call'")" "3 1" \
	"after three failures, its first opening"
is "$(q "SELECT count(*) FROM toygun.alarms a JOIN toygun.breaker b ON a.object_id = b.alarm_run
          WHERE a.kind = 'breaker' AND a.state = 'active' AND a.task = 'call'")" 1 \
	"an alarm of kind breaker is raised on the run whose failure opened it"

wait_for 20 "SELECT count(*) = 5 AND bool_and(t.run_at = b.open_until)
               FROM toygun.task t JOIN toygun.breaker b ON b.task = t.name
              WHERE t.name = 'call' AND t.state <> '__stop__'"
ok $? "every run is held until the breaker's open_until"
HELD_CALLS=$(calls)
HELD_STEPS=$(q "SELECT sum(step) $LIVE")

wait_for 30 "SELECT opens = 2 AND state = 'open' FROM toygun.breaker WHERE task = 'call'"
ok $? "after the cooldown, the trial fails, and the breaker opens again"
# the trial's call; a second one only if another worker took the failed trial
# before its failure was recorded (as it may any failed run); held runs none
TRIAL_CALLS=$(($(calls) - HELD_CALLS))
[ "$TRIAL_CALLS" -ge 1 ] && [ "$TRIAL_CALLS" -le 2 ]
ok $? "the trial called the handler, the held runs did not (calls: $TRIAL_CALLS)"
is "$(q "SELECT count FROM toygun.alarms WHERE kind = 'breaker' AND state = 'active'")" 2 \
	"the breaker's alarm is raised again"
# a run held during the trial waits until the trial's time, and then until the new open_until
wait_for 10 "SELECT b.opens = 2 AND count(*) = 5 AND bool_and(t.run_at > b.open_until - interval '1 s')
               FROM toygun.task t JOIN toygun.breaker b ON b.task = t.name
              WHERE t.name = 'call' AND t.state <> '__stop__' GROUP BY b.opens"
ok $? "the runs are held again"
is "$(q "SELECT sum(step) $LIVE")" "$HELD_STEPS" "held runs made no history"

q "UPDATE downstream SET up = true" >/dev/null
wait_for 30 "SELECT state = 'closed' FROM toygun.breaker WHERE task = 'call'"
ok $? "the downstream up, the next trial succeeds and closes the breaker"
wait_for 30 "SELECT count(*) = 0 $LIVE"
ok $? "and every held run is ticked and ends"
is "$(q "SELECT max(h.at) < (SELECT closed_at + interval '2 s' FROM toygun.breaker WHERE task = 'call')
          FROM toygun.transition h JOIN toygun.task t ON t.id = h.object_id
         WHERE t.name = 'call' AND h.to_state = '__stop__'")" t \
	"at once: the trial's success released them (not their held time, a cooldown later)"
is "$(q "SELECT count(*) FROM toygun.alarms WHERE kind = 'breaker' AND state = 'closed'
          AND closed_reason LIKE 'the circuit breaker closed: trial run % succeeded'")" 1 \
	"its alarm is closed by the trial's success"

# failures 400 ms and more apart never make two within 100 ms
T=$(q "SELECT toygun.start_task(toygun.create_resource('svc'), 'slow')")
wait_for 30 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$T'"
is "$(q "SELECT state || ' ' || cardinality(recent_failures) FROM toygun.breaker WHERE task = 'slow'")" "closed 1" \
	"failures further apart than within never open the breaker (the run panics after its attempts)"
