#!/usr/bin/env bash
# One real firing by pg_cron's own scheduler: a '* * * * *' periodic start in
# a cluster whose cron.database_name is the toygun database starts the task on
# every live resource of the type at the next minute, once.
cd "$(dirname "$0")/../.." || exit 1
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/cron
DB=crontest
plan 9

# pg_cron runs each job over libpq: through this cluster's socket, as it has no TCP listener.
tg_init "$DIR" "cron.database_name = '$DB'" "cron.host = '$DIR'" "toygun.database_name = '$DB'" ||
	bail "could not create the cluster"
tg_start "$DIR" || bail "could not start the cluster"
trap 'tg_stop "$DIR" immediate' EXIT
tg_psql "$DIR" postgres -c "CREATE DATABASE $DB" || bail "could not create database $DB"
tg_psql "$DIR" "$DB" -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION toygun" ||
	bail "could not create the extensions"
# a fresh start, so pg_cron's scheduler finds its database and extension at once
tg_stop "$DIR"
tg_start "$DIR" || bail "could not restart the cluster"

tg_psql "$DIR" "$DB" >/dev/null <<'SQL' || bail "could not set up the resources"
CREATE FUNCTION public.nightly(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('site');
SELECT toygun.define_task('site', 'nightly', '{check}', 'public.nightly(toygun.task)');
SELECT toygun.create_resource('site', jsonb_build_object('n', i)) FROM generate_series(1, 3) i;
SELECT toygun.stop_resource(toygun.create_resource('site', '{"n": "stopped"}'));
SQL

job=$(tg_psql "$DIR" "$DB" -c "SELECT toygun.start_every('site', 'nightly', '* * * * *', '{\"by\": \"cron\"}')")
is "$(tg_psql "$DIR" "$DB" -c "SELECT jobname || ' ' || schedule FROM cron.job WHERE jobid = '$job'")" \
	"toygun:site.nightly * * * * *" "start_every made a '* * * * *' pg_cron job"

note "waiting for pg_cron's scheduler to fire it at the next minute"
start=$SECONDS
tg_wait 70 "$DIR" "$DB" "SELECT last_bucket IS NOT NULL FROM toygun.schedule"
ok $? "pg_cron fired the job within 70 seconds"
note "fired after $((SECONDS - start)) s"

# read what the firing did, then remove the schedule before the next minute
fired=$(tg_psql "$DIR" "$DB" -c "SELECT last_started || ' ' || (date_trunc('minute', last_bucket) = last_bucket)
                                      FROM toygun.schedule")
stopped=$(tg_psql "$DIR" "$DB" -c "SELECT toygun.stop_every('site', 'nightly')")
is "$fired" "3 true" "the firing started 3 runs in a whole-minute bucket"
is "$(tg_psql "$DIR" "$DB" -c "SELECT count(*) FROM toygun.task t JOIN toygun.resource r ON r.id = t.resource_id
                                WHERE t.name = 'nightly' AND r.state <> '__stop__'")" \
	3 "each live resource has one run"
is "$(tg_psql "$DIR" "$DB" -c "SELECT count(DISTINCT resource_id) FROM toygun.task WHERE name = 'nightly'")" \
	3 "on three different resources"
is "$(tg_psql "$DIR" "$DB" -c "SELECT count(*) FROM toygun.task t JOIN toygun.resource r ON r.id = t.resource_id
                                WHERE t.name = 'nightly' AND r.state = '__stop__'")" \
	0 "the stopped resource has none"
is "$(tg_psql "$DIR" "$DB" -c "SELECT DISTINCT attrs->>'by' FROM toygun.task WHERE name = 'nightly'")" \
	cron "the runs started with the schedule's args"
tg_wait 10 "$DIR" "$DB" "SELECT EXISTS (SELECT FROM cron.job_run_details WHERE jobid = '$job' AND status = 'succeeded')"
ok $? "cron.job_run_details records the run as succeeded"
is "$stopped/$(tg_psql "$DIR" "$DB" -c "SELECT count(*) FROM cron.job")" "t/0" "stop_every removed the job"

exit $((TAP_FAILED > 0))
