#!/usr/bin/env bash
# Schema versions under the real workers: 100 live runs tick every 300 ms
# while the type goes to version 2 (a field renamed: count
# becomes ticks, with a handler that refuses attrs of version 1) and
# toygun.backfill() upgrades them in batches of 10, racing the workers'
# ticks, which upgrade the runs they reach first. Every run ends up at
# version 2, upgraded exactly once, the new handler never sees version 1's
# attrs, no tick fails, and the backfill loop ends. The direct writes stay
# in use on the tick path with the new column.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/backfill
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.poll_interval = '1h'" \
	>/dev/null || bail "initdb failed"
rm -f "$DIR/server.log"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 8

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
q "CREATE EXTENSION toygun" >/dev/null 2>&1
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
SELECT toygun.define_resource('bx');
-- version 1: counts its ticks in count, stays 300 ms between them, stops after 20
CREATE FUNCTION job1(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT CASE WHEN COALESCE((t.attrs->>'count')::int, 0) >= 20 THEN toygun.stop()
              ELSE toygun.stay(jsonb_build_object('count', COALESCE((t.attrs->>'count')::int, 0) + 1),
                               wait => '300 ms') END $$;
-- version 2: the same in ticks; attrs of version 1 are an error
CREATE FUNCTION job2(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  IF t.attrs ? 'count' OR t.version <> 2 THEN
    RAISE EXCEPTION 'version 1 attrs reached the version 2 handler: %', t.attrs;
  END IF;
  IF (t.attrs->>'ticks')::int >= 20 THEN RETURN toygun.stop(); END IF;
  RETURN toygun.stay(jsonb_build_object('ticks', (t.attrs->>'ticks')::int + 1), wait => '300 ms');
END $$;
CREATE FUNCTION up2(attrs jsonb, from_version integer) RETURNS jsonb LANGUAGE sql AS $$
  SELECT (attrs - 'count') || jsonb_build_object('ticks', COALESCE((attrs->>'count')::int, 0),
         'upgrades', COALESCE((attrs->>'upgrades')::int, 0) + 1) $$;
SELECT toygun.define_task('bx', 'job', '{one}', 'job1(toygun.task)');
CREATE TABLE bx (i int PRIMARY KEY, id uuid);
INSERT INTO bx SELECT i, toygun.start_task(toygun.create_resource('bx'), 'job') FROM generate_series(1, 100) i;
SQL

wait_for 60 "SELECT count(*) = 100 FROM ONLY toygun.task WHERE (attrs->>'count')::int >= 2"
ok $? "100 runs of version 1 are ticking"

# the new version, and backfill in batches of 10 while the workers tick
q "SELECT toygun.define_task('bx', 'job', '{one}', 'job2(toygun.task)', version => 2,
                             upgrade => 'up2(jsonb,integer)')" >/dev/null
calls=0
remaining=1
while [ "$remaining" != 0 ] && [ $calls -lt 200 ]; do
	remaining=$(q "SELECT toygun.backfill('bx', 'job', 10)" 2>/dev/null) || remaining=error
	calls=$((calls + 1))
done
is "$remaining" 0 "the backfill loop ends with nothing remaining"
note "backfill calls: $calls"
# (a run a tick holds is counted until the tick commits: a call or a few more than 10)
ok $([ $calls -ge 2 ] && [ $calls -le 50 ]; echo $?) "in batches of 10: more than one call, and a bounded loop ($calls)"

wait_for 30 "SELECT bool_and(version = 2) FROM ONLY toygun.task"
ok $? "every run is at version 2"
is "$(q "SELECT count(*) FILTER (WHERE (attrs->>'upgrades')::int = 1) FROM ONLY toygun.task")" 100 \
	"each upgraded exactly once, by backfill or by its tick"
wait_for 120 "SELECT bool_and(state = '__stop__') FROM ONLY toygun.task"
ok $? "every run goes on and stops"
is "$(q "SELECT count(*) FROM ONLY toygun.failure") $(q "SELECT count(*) FROM ONLY toygun.task WHERE last_error IS NOT NULL")" "0 0" \
	"no tick failed: the new handler never saw version 1's attrs"

# the tick path writes directly, version column and all
r=$(q "SELECT toygun.create_resource('bx')")
notes=$(tg_psql "$DIR" tg -c "SET client_min_messages = debug1" \
	-c "SELECT toygun.tick_task(toygun.start_task('$r', 'job'))" 2>&1 >/dev/null |
	grep -o "toygun\.[a-z]* is written through SQL: .*" | sort -u)
is "$notes" "" "ticks write the tables directly (no SQL fallback)"
