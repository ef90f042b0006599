#!/usr/bin/env bash
# Without shared_preload_libraries: CREATE EXTENSION warns, runs can still be
# ticked by hand, and what needs the worker says what to do.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/nopreload
tg_init "$DIR" "shared_preload_libraries = ''" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT

plan 8

OUT=$(tg_psql "$DIR" postgres -c "CREATE EXTENSION toygun" 2>&1)
echo "$OUT" | grep -q "WARNING:  toygun is not in shared_preload_libraries, so no worker will tick runs"
ok $? "CREATE EXTENSION warns that no worker will tick runs"
echo "$OUT" | grep -q "HINT:  Add toygun to shared_preload_libraries"
ok $? "and hints at shared_preload_libraries"

STATE=$(tg_psql "$DIR" postgres <<'SQL'
CREATE FUNCTION h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('thing');
SELECT toygun.define_task('thing', 'job', '{one}', 'h(toygun.task)');
SELECT state FROM toygun.tick_task(toygun.start_task(toygun.create_resource('thing'), 'job'));
SQL
)
is "$(echo "$STATE" | tail -n 1)" __stop__ "runs can be ticked by hand"

ERR=$(tg_psql "$DIR" postgres -c "SELECT * FROM toygun.worker_status()" 2>&1)
echo "$ERR" | grep -q "ERROR:  toygun.worker_status() needs toygun in shared_preload_libraries"
ok $? "worker_status() fails clearly"
echo "$ERR" | grep -q "HINT:  Add toygun to shared_preload_libraries in postgresql.conf and restart the server."
ok $? "with a hint"

ERR=$(tg_psql "$DIR" postgres -c "SELECT * FROM toygun.wait('00000000-0000-0000-0000-000000000001')" 2>&1)
echo "$ERR" | grep -q "ERROR:  toygun.wait() needs toygun in shared_preload_libraries"
ok $? "wait() fails clearly"

ERR=$(tg_psql "$DIR" postgres -c "SELECT toygun.metrics()" 2>&1)
echo "$ERR" | grep -q "ERROR:  toygun._tick_metrics() needs toygun in shared_preload_libraries"
ok $? "metrics() fails clearly"
ERR=$(tg_psql "$DIR" postgres -c "SELECT * FROM toygun.metrics_series('24h')" 2>&1)
echo "$ERR" | grep -q "ERROR:  toygun.metrics_series() needs toygun in shared_preload_libraries"
ok $? "and so does metrics_series()"
