#!/usr/bin/env bash
# Notifications under the real worker (issue 15): a run whose handler
# panics in a worker's tick opens a panic alarm, routed to a channel: the
# worker's transaction writes the outbox row, and a session listening on
# toygun_outbox hears its id once the worker commits.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/outbox
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 3

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
SELECT toygun.define_resource('box');
CREATE FUNCTION give_up(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.panic('gave up') $$;
SELECT toygun.define_task('box', 'give_up', '{one}', 'give_up(toygun.task)');
SELECT toygun.define_channel('oncall', 'pagerduty', '{"routing_key": "K"}');
SELECT toygun.define_route('kind:panic', 'oncall');
SQL

# a listening session: psql prints a notification after the command it came before
coproc LISTENER { tg_psql "$DIR" tg 2>&1; }
echo "LISTEN toygun_outbox;" >&"${LISTENER[1]}"
box=$(q "SELECT toygun.create_resource('box')")
run=$(q "SELECT toygun.start_task('$box', 'give_up')")
wait_for 30 "SELECT EXISTS (SELECT FROM toygun.outbox o JOIN toygun.alarm a ON a.id = o.alarm_id WHERE a.object_id = '$run')"
ok $? "a handler's panic() in a worker's tick writes the panic alarm's outbox row"
id=$(q "SELECT o.id FROM toygun.outbox o JOIN toygun.alarm a ON a.id = o.alarm_id WHERE a.object_id = '$run'")
is "$(q "SELECT event || ' ' || (payload->>'event_action') || ' ' || (payload->>'dedup_key' = alarm_id::text) FROM toygun.outbox WHERE id = $id")" \
	"open trigger true" "shaped as a PagerDuty trigger, deduplicated by the alarm"
heard=1
for i in $(seq 1 100); do
	echo "SELECT 1;" >&"${LISTENER[1]}"
	while IFS= read -r -t 1 line <&"${LISTENER[0]}"; do
		case "$line" in
		*'notification "toygun_outbox" with payload "'$id'"'*) heard=0 ;;
		esac
		[ "$line" = 1 ] && break
	done
	[ $heard = 0 ] && break
done
ok $heard "a listener heard toygun_outbox with the row's id from the worker's commit"
echo '\q' >&"${LISTENER[1]}"

exit $((TAP_FAILED > 0))
