#!/usr/bin/env bash
# The workers beside a DBA's tables that INHERIT from toygun's (test/sql/inherit.sql
# covers the API): due rows in them are never claimed, ticked, parked or
# waited for, and toygun's own runs finish as usual.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/inherit
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.poll_interval = '1h'" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }

plan 4

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE FUNCTION public.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'a' THEN toygun.go('b') ELSE toygun.stop() END
$$;
CREATE FUNCTION public.rh(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stay(wait => '1 hour')
$$;
SELECT toygun.define_resource('thing', handler => 'rh(toygun.resource)');
SELECT toygun.define_task('thing', 'chain', '{a,b}', 'h(toygun.task)');
-- whether the workers committed nothing of their own for that many seconds
CREATE FUNCTION public.quiet(seconds float) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    before numeric := (SELECT sum(transactions) FROM toygun.worker_status());
BEGIN
    PERFORM pg_sleep(seconds);
    RETURN before = (SELECT sum(transactions) FROM toygun.worker_status());
END $$;
CREATE TABLE public.task_archive () INHERITS (toygun.task);
CREATE TABLE public.resource_archive () INHERITS (toygun.resource);
-- archived rows, all due long ago and in states the workers would move
INSERT INTO public.resource_archive (id, type, state, run_at)
SELECT gen_random_uuid(), 'thing', s, now() - interval '1 day'
  FROM unnest(ARRAY['__new__', 'starting', '__stop__']) s;
INSERT INTO public.task_archive (id, resource_id, resource_type, name, state, run_at)
SELECT gen_random_uuid(), r.id, 'thing', 'chain', s, now() - interval '1 day'
  FROM public.resource_archive r, unnest(ARRAY['__new__', 'a', 'b', '__stop__', '__panic__']) s;
SQL
# every archived row, where it is and who locked it
ARCHIVE="SELECT (SELECT md5(string_agg(format('%s %s %s', a.ctid, a.xmax, to_jsonb(a)), ',' ORDER BY a.id))
                   FROM ONLY public.task_archive a)
            || (SELECT md5(string_agg(format('%s %s %s', a.ctid, a.xmax, to_jsonb(a)), ',' ORDER BY a.id))
                  FROM ONLY public.resource_archive a)"
BEFORE=$(q "$ARCHIVE")

# toygun's own runs, started after the archived ones were due
q "SELECT toygun.start_task(toygun.create_resource('thing'), 'chain') FROM generate_series(1, 20)" >/dev/null
tg_wait 30 "$DIR" tg "SELECT count(*) = 20 FROM ONLY toygun.task WHERE state = '__stop__'"
ok $? "toygun's 20 runs finish beside the archive"
is "$(q "SELECT count(*) FROM toygun.transition WHERE to_state = '__stop__'")" 20 \
	"each of them stopped once"
# the workers sleep: nothing of theirs is due, whatever the archive holds
tg_wait 20 "$DIR" tg "SELECT quiet(2)"
ok $? "the workers go to sleep: archived due rows are not work"
is "$(q "$ARCHIVE")" "$BEFORE" "no archived row was claimed, ticked, parked or locked"
