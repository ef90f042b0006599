#!/usr/bin/env bash
# The claim floor does not starve a run. While the workers find full batches
# they start each claim past the rows they claimed before, not at the low
# end of the index on run_at. A run that became due behind that point (its
# change committed late, after the workers had moved on) must still be
# ticked within about a second (CLAIM_FLOOR_MS), not only once the backlog
# is gone. Here a session makes one run due and holds its commit while a
# backlog of 40,000 runs starts; each tick of the backlog sleeps 0.1 ms, so
# the backlog takes at least 2 s on any machine. The late run must stop while
# at least a tenth of the backlog is still to run.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/claim_floor
# small batches, each ticked to its end well within the 100 ms cut
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.batch_size = 100" \
	"toygun.poll_interval = '1h'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
HOLDER=
trap '[ -n "$HOLDER" ] && kill $HOLDER 2>/dev/null; tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 4

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION toygun;
-- the late run: holds an hour, or stops once attrs say go
CREATE FUNCTION public.late(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN coalesce((t.attrs->>'go')::boolean, false) THEN toygun.stop()
                ELSE toygun.stay(NULL, '1 hour') END
$$;
-- the backlog: a short sleep, then stop
CREATE FUNCTION public.work(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT pg_sleep(0.0001); SELECT toygun.stop()
$$;
SELECT toygun.define_resource('b');
SELECT toygun.define_task('b', 'late', '{hold}', 'public.late(toygun.task)');
SELECT toygun.define_task('b', 'work', '{only}', 'public.work(toygun.task)');
CREATE TABLE backlog AS SELECT toygun.create_resource('b') AS id FROM generate_series(1, 40000);
CREATE TABLE late AS SELECT toygun.start_task(toygun.create_resource('b'), 'late') AS id;
SQL
R=$(q "SELECT id FROM late")
wait_for 60 "SELECT state = 'hold' FROM toygun.task WHERE id = '$R'" || bail "the late run did not reach hold"

# the session: make the late run due now, and hold that change uncommitted
FIFO=$DIR/holder.fifo
rm -f "$FIFO"; mkfifo "$FIFO"
(tg_psql "$DIR" tg -c "BEGIN" -c "SELECT toygun.update_task('$R', '{\"go\": true}')" \
	-c "SELECT toygun.retry_task('$R')" -c "\\! cat $FIFO" -c "COMMIT" >/dev/null 2>&1) &
HOLDER=$!
wait_for 10 "SELECT count(*) = 1 FROM pg_stat_activity
              WHERE state = 'idle in transaction' AND query LIKE '%retry_task%'"
ok $? "a session has made the late run due and holds the change"

q "SELECT count(toygun.start_task(id, 'work')) FROM backlog" >/dev/null
wait_for 30 "SELECT count(*) >= 1000 FROM toygun.task WHERE name = 'work' AND state = '__stop__'"
ok $? "the workers are draining the backlog, past the late run's run_at"
echo done >"$FIFO"
wait $HOLDER 2>/dev/null; HOLDER=

wait_for 120 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$R'"
ok $? "the late run stops"
wait_for 120 "SELECT NOT EXISTS (SELECT FROM toygun.task WHERE name = 'work' AND state <> '__stop__')" ||
	bail "the backlog did not drain"
left=$(q "SELECT count(*) FROM toygun.transition x JOIN toygun.task t ON t.id = x.object_id
           WHERE t.name = 'work' AND x.to_state = '__stop__'
             AND x.at > (SELECT at FROM toygun.transition WHERE object_id = '$R' AND to_state = '__stop__')")
[ "$left" -ge 4000 ]
ok $? "it stopped while the workers still had $left of the 40000 runs of the backlog to tick (at least 4000)"
