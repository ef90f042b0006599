#!/usr/bin/env bash
# Waiting for children with the workers: a run fans out, stays an hour, and
# is woken by each child's end; a parent that a session holds locked when
# its child ends is woken once the session lets it go.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/children
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.poll_interval = '1h'" \
	>/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
HOLDER=
trap '[ -n "$HOLDER" ] && kill $HOLDER 2>/dev/null; tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 5

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
-- the parent starts five children on five resources, then waits an hour for them
CREATE FUNCTION public.parent(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    ended int := coalesce((t.attrs->>'ended')::int, 0) + (SELECT count(*) FROM toygun.receive(t));
BEGIN
    IF t.state = 'fanning' THEN
        PERFORM toygun.start_task(toygun.create_resource('box'), 'child', t.attrs - 'n')
           FROM generate_series(1, (t.attrs->>'n')::int);
        RETURN toygun.go('waiting');
    END IF;
    IF ended >= (t.attrs->>'n')::int THEN
        RETURN toygun.stop(jsonb_build_object('ended', ended));
    END IF;
    RETURN toygun.stay(jsonb_build_object('ended', ended), '1 hour');
END $$;
CREATE FUNCTION public.child(t toygun.task) RETURNS toygun.next LANGUAGE sql AS
    $$ SELECT CASE WHEN t.attrs ? 'hold' THEN toygun.stay(wait => '1 hour') ELSE toygun.stop() END $$;
SELECT toygun.define_resource('box');
SELECT toygun.define_task('box', 'parent', '{fanning,waiting}', 'parent(toygun.task)');
SELECT toygun.define_task('box', 'child', '{working}', 'child(toygun.task)');
SQL

# fan-out and fan-in: the parent ends long before its hour, woken by its children
P=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'parent', '{\"n\": 5}')")
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$P'"
ok $? "a parent that waits an hour for five children ends as soon as they have"
is "$(q "SELECT (attrs->>'ended')::int || ' ' || (SELECT count(*) FROM toygun.task WHERE parent_run = '$P' AND state = '__stop__')
           FROM toygun.task WHERE id = '$P'")" "5 5" "it received the end of each of its five children"

# a parent held locked by a session when its child ends: woken once let go
P2=$(q "SELECT toygun.start_task(toygun.create_resource('box'), 'parent', '{\"n\": 1, \"hold\": true}')")
wait_for 30 "SELECT state = 'waiting' AND run_at > now() + interval '50 minutes' FROM toygun.task WHERE id = '$P2'
              AND (SELECT run_at > now() + interval '50 minutes' FROM toygun.task WHERE parent_run = '$P2')"
ok $? "a second parent fans out, and it and its child wait an hour"
C2=$(q "SELECT id FROM toygun.task WHERE parent_run = '$P2'")
FIFO=$DIR/holder.fifo
rm -f "$FIFO"; mkfifo "$FIFO"
# the session: lock the parent, and keep the transaction open until told
(tg_psql "$DIR" tg -c "BEGIN" -c "SELECT FROM toygun.task WHERE id = '$P2' FOR UPDATE" -c "\\! cat $FIFO" -c "COMMIT" \
	>/dev/null 2>&1) &
HOLDER=$!
wait_for 10 "SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE a.query LIKE '%FOR UPDATE%' AND l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock'
                AND a.pid <> pg_backend_pid()"
q "SELECT toygun.stop_task('$C2')" >/dev/null
is "$(q "SELECT swept FROM toygun.message WHERE run_id = '$P2'")" f \
	"a child that ends while its parent is held leaves its message for the workers"
echo done >"$FIFO"
wait $HOLDER 2>/dev/null; HOLDER=
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$P2'"
ok $? "once the session lets the parent go, a worker wakes it and it ends"
