#!/usr/bin/env bash
# Hostile review of issue 15 under the real worker: the panic of a run whose
# attempts ran out runs its owner's code (the __panic__ triggers' starts,
# should_start among them, and the panic alarm's handlers) in the worker's
# failure path. That code is bounded like a tick: a handler that sleeps is
# cancelled by the tick timeout, a start that fails does not lose the
# failure; either way the failure is recorded without the panic, and the
# worker goes on ticking everybody else. And an alarm handler's error text
# stays in the server log: the session that raised the alarm is not told.
# A tick that ends its worker is charged by the next worker outside any
# tick, so the panic that charge makes runs no tenant's code: its alarm is
# raised but offered to no handler, and the worker goes on.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/framework_attack
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" "toygun.retry_backoff = '10ms'" \
	"toygun.tick_timeout = 1000" "toygun.tick_grace = 1000" "toygun.max_attempts = 1" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
# like HAVE PATTERN NAME (a shell pattern), unlike the same
like() { case "$1" in $2) ok 0 "$3" ;; *) echo "# have: $1"; ok 1 "$3" ;; esac; }
unlike() { case "$1" in $2) echo "# have: $1"; ok 1 "$3" ;; *) ok 0 "$3" ;; esac; }

plan 13

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
CREATE FUNCTION fail(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'boom'; END $$;
CREATE FUNCTION count_up(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT toygun.stay(jsonb_build_object('n', coalesce((t.attrs->>'n')::int, 0) + 1), interval '20 ms') $$;
-- an alarm handler that never returns
CREATE FUNCTION sleepy(a toygun.alarm) RETURNS text LANGUAGE sql AS $$ SELECT pg_sleep(3600)::text $$;
SELECT toygun.define_resource('sleepy', alarm_handler => 'sleepy(toygun.alarm)');
SELECT toygun.define_task('sleepy', 'fail', '{one}', 'fail(toygun.task)', max_attempts => 1);
-- a __panic__ trigger whose start always fails
CREATE FUNCTION refuse(r toygun.resource, args jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'should_start refuses'; END $$;
CREATE FUNCTION idle(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
CREATE FUNCTION rfail(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'boom'; END $$;
SELECT toygun.define_resource('broken', '{running}', 'rfail(toygun.resource)');
SELECT toygun.define_task('broken', 'repair', '{one}', 'idle(toygun.task)',
                          should_start => 'refuse(toygun.resource,jsonb)');
-- a healthy run of somebody else's
SELECT toygun.define_resource('healthy');
SELECT toygun.define_task('healthy', 'count', '{one}', 'count_up(toygun.task)');
-- an alarm handler whose error says what it read
CREATE FUNCTION tell(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the secret is 4242'; END $$;
SELECT toygun.define_resource('teller', alarm_handler => 'tell(toygun.alarm)');
SQL
q "SELECT toygun.define_trigger('broken', '__panic__', 'repair', '{}')" >/dev/null

healthy=$(q "SELECT toygun.start_task(toygun.create_resource('healthy'), 'count')")
wait_for 30 "SELECT (attrs->>'n')::int > 3 FROM toygun.task WHERE id = '$healthy'"
ok $? "a healthy run ticks"

sleepy=$(q "SELECT toygun.start_task(toygun.create_resource('sleepy'), 'fail')")
wait_for 30 "SELECT attempts >= 1 AND last_error LIKE 'boom%' FROM toygun.task WHERE id = '$sleepy'"
ok $? "a run whose panic's alarm handler sleeps has its failure recorded"
n=$(q "SELECT attrs->>'n' FROM toygun.task WHERE id = '$healthy'")
wait_for 30 "SELECT (attrs->>'n')::int > $n + 3 FROM toygun.task WHERE id = '$healthy'"
ok $? "and the worker goes on ticking the others"
like "$(q "SELECT state || ' ' || last_error FROM toygun.task WHERE id = '$sleepy'")" \
	"__new__ boom (its panic failed: tick cancelled after toygun.tick_timeout (1000 ms))*" \
	"it is not panicked: its last_error says the panic was cancelled"

broken=$(q "SELECT toygun.create_resource('broken')")
wait_for 30 "SELECT attempts >= 1 FROM toygun.resource WHERE id = '$broken'"
ok $? "a resource whose __panic__ trigger fails has its failure recorded"
like "$(q "SELECT state || ' ' || last_error FROM toygun.resource WHERE id = '$broken'")" \
	"__new__ boom (its panic failed: should_start refuses)*" "it is not panicked: its last_error says why"

teller=$(q "SELECT toygun.create_resource('teller')")
out=$(tg_psql "$DIR" tg -c "SET client_min_messages = debug5" \
	-c "SELECT toygun.raise_alarm('$teller', 'disk', 'full')" 2>&1)
unlike "$out" "*4242*" "an alarm handler's error text is not sent to the session that raised the alarm"

# a tick that ends its worker (it catches its cancel: the grace ends the
# process), on a type whose alarm handler never returns
q "CREATE FUNCTION undying(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS \$\$
   BEGIN LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END \$\$" >/dev/null
q "SELECT toygun.define_task('sleepy', 'undying', '{one}', 'undying(toygun.task)', max_attempts => 1)" >/dev/null
undying=$(q "SELECT toygun.start_task(toygun.create_resource('sleepy'), 'undying')")
wait_for 60 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$undying'"
ok $? "a tick that ends its worker is charged by the next one: attempts ran out, it panics"
is "$(q "SELECT state || ' ' || escalation::text || ' ' || (handled_by IS NULL) FROM toygun.alarm
          WHERE object_id = '$undying' AND kind = 'panic'")" "active [] true" \
	"its panic alarm is raised and offered to no alarm handler (the charge is no tick)"
n=$(q "SELECT attrs->>'n' FROM toygun.task WHERE id = '$healthy'")
wait_for 30 "SELECT (attrs->>'n')::int > $n + 3 FROM toygun.task WHERE id = '$healthy'"
ok $? "the worker that charged it goes on ticking the others, not held by the alarm handler"

# a failure whose panic's alarm handler catches its cancel and goes on: the
# grace ends the worker in the failure path, and the next worker charges it
q "CREATE FUNCTION deaf(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS \$\$
   BEGIN LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END \$\$" >/dev/null
q "SELECT toygun.define_resource('deaf', alarm_handler => 'deaf(toygun.alarm)')" >/dev/null
q "SELECT toygun.define_task('deaf', 'fail', '{one}', 'fail(toygun.task)', max_attempts => 1)" >/dev/null
deaf=$(q "SELECT toygun.start_task(toygun.create_resource('deaf'), 'fail')")
wait_for 60 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$deaf'"
ok $? "a failure whose panic's alarm handler catches its cancel ends its worker once, and the next worker's charge panics it"
like "$(q "SELECT last_error FROM toygun.task WHERE id = '$deaf'")" "the worker was ended*" \
	"its last_error says the worker was ended"
n=$(q "SELECT attrs->>'n' FROM toygun.task WHERE id = '$healthy'")
wait_for 30 "SELECT (attrs->>'n')::int > $n + 3 FROM toygun.task WHERE id = '$healthy'"
ok $? "and the others are ticked"

exit $((TAP_FAILED > 0))
