#!/usr/bin/env bash
# Flow control (issue 17) under attack, with a real worker: a pause_queue()
# in a savepoint rolled back, in a transaction that commits, leaves the
# queue running (the shared flag once said paused while toygun.queue said
# not: nothing was claimed, and queue_status() showed nothing wrong).
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/flow_attack
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.queues = 'default:1'" >/dev/null ||
	bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 4

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE FUNCTION public.quick(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'job', '{working}', 'quick(toygun.task)');
CREATE TABLE ids (name text, id uuid);
INSERT INTO ids SELECT 'r', toygun.create_resource('svc');
SQL

wait_for 30 "SELECT count(*) = 1 FROM toygun.worker_status()"
ok $? "a worker runs"
q "INSERT INTO ids SELECT 'first', toygun.start_task((SELECT id FROM ids WHERE name = 'r'), 'job')" >/dev/null
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = (SELECT id FROM ids WHERE name = 'first')"
ok $? "the worker ticks the default queue (its paused flag is loaded)"

tg_psql "$DIR" tg >/dev/null 2>&1 <<'SQL'
BEGIN;
SAVEPOINT s;
SELECT toygun.pause_queue('default');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SQL
is "$(q "SELECT paused FROM toygun.queue_status() WHERE queue = 'default'")" "f" \
	"a pause rolled back to its savepoint leaves the queue unpaused in toygun.queue"
q "INSERT INTO ids SELECT 'second', toygun.start_task((SELECT id FROM ids WHERE name = 'r'), 'job')" >/dev/null
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = (SELECT id FROM ids WHERE name = 'second')"
ok $? "and its worker goes on claiming: a run started after is ticked"
