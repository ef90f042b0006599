#!/usr/bin/env bash
# Retention under the real workers (issue 16): a type that keeps its stopped
# runs and history 2 s, history partitions 1 s wide, maintenance at least
# every 500 ms. While a run ticks every 100 ms, the workers make the
# partitions ahead and drop the expired ones, and remove the stopped runs in
# batches of 10 with the partitions of their stop rows, but not a run
# brought back by hand nor one stopped while its type kept forever. A held snapshot (a REPEATABLE READ transaction that read the
# history) delays the drops without stalling the ticks; once it is released
# the expired partitions go.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/retention
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.poll_interval = '1h'" \
	"toygun.history_partition = '1s'" "toygun.maintain_interval = '500ms'" "toygun.prune_batch = 10" \
	"toygun.tick_timeout = '2s'" "toygun.tick_grace = '1s'" \
	>/dev/null || bail "initdb failed"
rm -f "$DIR/server.log"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 16

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
q "CREATE EXTENSION toygun" >/dev/null 2>&1
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
SELECT toygun.define_resource('rt', keep => '2 s');
-- ticker: moves between a and b, waiting 100 ms every other tick, forever;
-- short: stops at its second tick
CREATE FUNCTION ticker(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT CASE WHEN t.state = 'a' THEN toygun.go('b', jsonb_build_object('n', n + 1))
              WHEN n % 2 = 0 THEN toygun.stay(jsonb_build_object('n', n + 1), wait => '100 ms')
              ELSE toygun.go('a', jsonb_build_object('n', n + 1)) END
    FROM (SELECT COALESCE((t.attrs->>'n')::int, 0) AS n) s $$;
CREATE FUNCTION short(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT CASE t.state WHEN 'a' THEN toygun.go('b') ELSE toygun.stop() END $$;
SELECT toygun.define_task('rt', 'ticker', '{a,b}', 'ticker(toygun.task)', keep => '2 s');
SELECT toygun.define_task('rt', 'short', '{a,b}', 'short(toygun.task)', keep => '2 s');
-- idle: stays an hour; back is stopped and brought back by hand, fv stopped
-- while its type kept forever, then given a keep
CREATE FUNCTION idle(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT toygun.stay(wait => '1 hour') $$;
SELECT toygun.define_task('rt', 'idle', '{a}', 'idle(toygun.task)', keep => '2 s');
SELECT toygun.define_task('rt', 'fv', '{a}', 'idle(toygun.task)', keep => NULL);
CREATE TABLE kept AS
  SELECT 'back' AS what, (toygun.stop_task(toygun.start_task(toygun.create_resource('rt'), 'idle'))).id
  UNION ALL
  SELECT 'fv', (toygun.stop_task(toygun.start_task(toygun.create_resource('rt'), 'fv'))).id;
SELECT toygun.transition_task((SELECT id FROM kept WHERE what = 'back'), 'a', reason => 'brought back');
SELECT toygun.define_task('rt', 'fv', '{a}', 'idle(toygun.task)', keep => '2 s');
SELECT toygun.start_task(toygun.create_resource('rt'), 'ticker');
SELECT toygun.start_task(toygun.create_resource('rt'), 'short') FROM generate_series(1, 50);
-- the time partitions, by lower bound
CREATE VIEW parts AS
  SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'toygun.transition'::regclass AND c.relname ~ '^transition_[0-9]';
SQL
STEP="SELECT step FROM toygun.task WHERE name = 'ticker'"

# the workers make partitions ahead and drop the expired ones
wait_for 30 "SELECT count(*) > 0 FROM parts"
ok $? "the workers make time partitions of the history"
FIRST=$(q "SELECT min(relname) FROM parts")
wait_for 30 "SELECT NOT EXISTS (SELECT FROM parts WHERE relname = '$FIRST')"
ok $? "and drop them once their rows have expired ($FIRST)"
wait_for 30 "SELECT count(*) = 0 FROM toygun.task WHERE name = 'short'"
ok $? "the 50 stopped runs are removed with the partitions of their stop rows, in batches of 10"
is "$(q "SELECT count(*) FROM toygun.resource r WHERE NOT EXISTS (SELECT FROM toygun.task t WHERE t.resource_id = r.id)")" 50 \
	"their resources, still live, stay"
wait_for 30 "SELECT NOT EXISTS (SELECT FROM toygun.transition WHERE object_id = (SELECT id FROM kept WHERE what = 'back') AND to_state = '__stop__')"
ok $? "the stop row of a run brought back by hand expires"
is "$(q "SELECT state FROM toygun.task WHERE id = (SELECT id FROM kept WHERE what = 'back')")" a \
	"and the run, live again, stays"
is "$(q "SELECT state FROM toygun.task WHERE id = (SELECT id FROM kept WHERE what = 'fv')")" __stop__ \
	"a run stopped while its type kept forever stays when the type is given a keep"
wait_for 30 "SELECT count(*) = 0 FROM toygun.transition WHERE expires_at < now() - interval '3 s'"
ok $? "no history row outlives its expiry by more than a partition width and a round"

# a held snapshot: the drops wait, the ticks do not
psql -X -q -h "$DIR" -p "$TG_PORT" -U postgres -d tg >/dev/null 2>&1 <<'SQL' &
SET application_name = 'holder';
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM toygun.transition;
SELECT pg_sleep(120);
SQL
wait_for 10 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'holder' AND state = 'active' AND backend_xmin IS NOT NULL)"
ok $? "a session holds a snapshot that read the history"
HELD=$(q "SELECT min(relname) FROM parts")
BEFORE=$(q "$STEP")
wait_for 20 "SELECT ($STEP) >= $BEFORE + 20"
ok $? "the run ticks on while the snapshot is held"
wait_for 20 "SELECT to_timestamp(substr('$HELD', 12), 'YYYYMMDD_HH24MISS') < now() - interval '3 s'"
is "$(q "SELECT count(*) FROM parts WHERE relname = '$HELD'")" 1 \
	"the expired partition $HELD is not dropped while the snapshot holds the history"
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'" >/dev/null
wait
wait_for 30 "SELECT NOT EXISTS (SELECT FROM parts WHERE relname <= '$HELD')"
ok $? "once it is released, the expired partitions go"
wait_for 30 "SELECT count(*) = 0 FROM toygun.transition WHERE expires_at < now() - interval '3 s'"
ok $? "and the history is back within its expiry"
# partitions are made only past the ranges being written: no row is routed
# to the default partition across an ATTACH, which would fail its tick
is "$(q "SELECT count(*) FROM toygun.failure")" 0 "no tick failed while partitions came and went"

# the setting toygun.keep: checked, and the keep of types defined without one
err=$(tg_psql "$DIR" tg -c "ALTER SYSTEM SET toygun.keep = '-1 day'" 2>&1)
is "$(echo "$err" | head -1)" "ERROR:  invalid value for parameter \"toygun.keep\": \"-1 day\"" \
	"toygun.keep refuses a negative interval ($(echo "$err" | sed -n 2p))"
q "ALTER SYSTEM SET toygun.keep = '3 days'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for 10 "SELECT current_setting('toygun.keep') = '3 days'"
q "SELECT toygun.define_task('rt', 'later', '{a}', 'short(toygun.task)')" >/dev/null
is "$(q "SELECT keep FROM toygun.task_type WHERE name = 'later'")" "3 days" \
	"a type defined without keep takes toygun.keep's"
