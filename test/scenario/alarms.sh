#!/usr/bin/env bash
# Alarms under the real worker (issue 15): a run whose attempts run out
# panics in the worker's failure path, and that panic raises an alarm of
# kind 'panic' in the same transaction, offered to its resource type's
# alarm handler (which runs as the type's owner in the worker); a handler's
# panic() in a worker's tick does the same; retry_task closes it.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/alarms
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" "toygun.retry_backoff = '10ms'" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 7

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
CREATE ROLE alarm_owner;
CREATE TABLE offers (kind text, made_by text);
GRANT INSERT ON offers TO alarm_owner;
CREATE FUNCTION take(a toygun.alarm) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.offers VALUES (a.kind, current_user);
  RETURN 'handled';
END $$;
SELECT toygun.define_resource('box', alarm_handler => 'take(toygun.alarm)', owner => 'alarm_owner');
CREATE FUNCTION fail(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'boom';
END $$;
CREATE FUNCTION give_up(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.panic('gave up') $$;
SELECT toygun.define_task('box', 'fail', '{one}', 'fail(toygun.task)', max_attempts => 2, owner => 'alarm_owner');
SELECT toygun.define_task('box', 'give_up', '{one}', 'give_up(toygun.task)', owner => 'alarm_owner');
SQL

box=$(q "SELECT toygun.create_resource('box')")
failing=$(q "SELECT toygun.start_task('$box', 'fail')")
wait_for 30 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$failing'"
ok $? "a run whose attempts ran out panics in the worker"
is "$(q "SELECT kind || ' ' || state || ' ' || message FROM toygun.alarm WHERE object_id = '$failing'")" \
	"panic active panicked after 2 failed ticks" \
	"its panic raised an alarm of kind panic, with the panic's note (not the error text)"
is "$(q "SELECT handled_by || ' ' || (escalation->0->>'result') FROM toygun.alarm WHERE object_id = '$failing'")" \
	"box handled" "the worker offered it to the type's alarm handler, which took it"
is "$(q "SELECT string_agg(kind || ':' || made_by, ',') FROM offers")" "panic:alarm_owner" \
	"the alarm handler ran once, as the type's owner"
panicky=$(q "SELECT toygun.start_task('$box', 'give_up')")
wait_for 30 "SELECT EXISTS (SELECT FROM toygun.alarm WHERE object_id = '$panicky' AND state = 'active')"
ok $? "a handler's panic() in a worker's tick raises an alarm too"
q "SELECT toygun.retry_task('$failing', 'looked at it')" >/dev/null
is "$(q "SELECT state || ' ' || closed_reason FROM toygun.alarm WHERE object_id = '$failing'")" \
	"closed retry_task: looked at it" "retry_task closed it"
wait_for 30 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$failing'"
is "$(q "SELECT count(*) FILTER (WHERE state = 'active') || '/' || count(*) FROM toygun.alarm WHERE object_id = '$failing'")" \
	"1/2" "its next panic opened a new alarm beside the closed one"

exit $((TAP_FAILED > 0))
