#!/usr/bin/env bash
# Triggers with the workers: a resource's first tick by a worker moves it
# through starting into running, which starts a task, which a worker ticks to
# its end; a resource panicking in a worker's tick starts its __panic__ task.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/triggers
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 3

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE FUNCTION public.machine(r toygun.resource) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    IF r.attrs ? 'broken' THEN RETURN toygun.panic('broken'); END IF;
    IF r.state = 'starting' THEN RETURN toygun.go('running'); END IF;
    RETURN toygun.stay(wait => '1 hour');
END $$;
CREATE FUNCTION public.job(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT toygun.stop(jsonb_build_object('done', true)) $$;
SELECT toygun.define_resource('machine', '{starting,running}', 'machine(toygun.resource)');
SELECT toygun.define_task('machine', 'provision', '{work}', 'job(toygun.task)');
SELECT toygun.define_task('machine', 'page', '{work}', 'job(toygun.task)');
SELECT toygun.define_trigger('machine', 'running', 'provision', '{"size": 3}');
SELECT toygun.define_trigger('machine', '__panic__', 'page');
SQL

R=$(q "SELECT toygun.create_resource('machine')")
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE resource_id = '$R' AND name = 'provision'"
ok $? "a worker's tick moves the resource into running, and the run its trigger started ends"
is "$(q "SELECT attrs->>'size' || ' ' || (attrs->>'done') || ' ' || (SELECT state FROM toygun.resource WHERE id = '$R')
           FROM toygun.task WHERE resource_id = '$R' AND name = 'provision'")" "3 true running" \
	"with the trigger's args, one run, the resource still running"
B=$(q "SELECT toygun.create_resource('machine', '{\"broken\": true}')")
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE resource_id = '$B' AND name = 'page'"
ok $? "a resource that panics in a worker's tick starts its __panic__ task"
