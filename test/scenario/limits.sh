#!/usr/bin/env bash
# Concurrency limits with the workers (issue 17): the never-exceeded proof.
# Four workers tick 600 runs (two ticks each) of a type with max_per_key 2
# per tenant (6 tenants) and max_running 3. Each committed tick logs when
# it started; its commit time is pg_xact_commit_timestamp(xmin). A tick's
# interval [started, commit] lies inside the slot it held (taken before its
# claim, given back at its commit), so the most ticks whose intervals
# overlap bounds the slots held at once from below: at most 2 per tenant,
# 3 in all. 5% of ticks raise, one calls pg_terminate_backend() on its own
# worker, and a worker is killed with kill -9 halfway (a crash restart).
# Teeth: the same load of a type without limits overlaps above 2, or the
# proof proves nothing. Liveness: every run ends, and toygun.flow shows no
# slot held. Fairness, counted from the history, not timed: with 3,000 runs
# of tenant A due, 20 runs of tenant B due after them all (oldest due first
# would tick them last) end before A's 1,000th.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

[ -n "${TG_WORK:-}" ] || bail "TG_WORK is not set"
DIR=$TG_WORK/limits
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 4" "track_commit_timestamp = on" \
	"toygun.retry_backoff = '10ms'" "toygun.max_attempts = 20" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }

plan 11

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "setup failed"
CREATE EXTENSION toygun;
CREATE TABLE tick_log (run uuid, type text, tenant text, started timestamptz);
GRANT ALL ON tick_log TO PUBLIC;
CREATE SEQUENCE kills;
GRANT ALL ON kills TO PUBLIC;
CREATE FUNCTION public.work(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tick_log VALUES (t.id, t.name, t.attrs->>'tenant', clock_timestamp());
    IF t.attrs ? 'kill' AND nextval('kills') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    PERFORM pg_sleep(random() * 0.01);
    IF random() < 0.05 THEN
        RAISE EXCEPTION 'flaky';
    END IF;
    RETURN CASE t.state WHEN 'one' THEN toygun.go('two') ELSE toygun.stop() END;
END $$;
SELECT toygun.define_resource('svc');
SELECT toygun.define_task('svc', 'lim', '{one,two}', 'work(toygun.task)',
                          max_running => 3, concurrency_key => 'tenant', max_per_key => 2);
SELECT toygun.define_task('svc', 'free', '{one,two}', 'work(toygun.task)');
SELECT toygun.pause_queue('default');
SELECT toygun.start_task(toygun.create_resource('svc'), 'lim',
                         jsonb_build_object('tenant', 't' || (i % 6))
                         || CASE WHEN i = 300 THEN '{"kill": true}'::jsonb ELSE '{}'::jsonb END)
  FROM generate_series(1, 600) i;
SELECT toygun.resume_queue('default');
SQL

STOPPED="SELECT count(*) FROM toygun.task WHERE name = 'lim' AND state = '__stop__'"
# overlap of committed ticks' intervals, per tenant and in all, of a type: for
# each tick (by its row: two ticks can start in the same microsecond), how many
# ticks had started and not committed when it started
overlap() {
	local by=$1 type=$2
	q "WITH iv AS (SELECT ctid AS id, $by AS g, started AS s, pg_xact_commit_timestamp(xmin) AS e
                     FROM tick_log WHERE type = '$type')
       SELECT coalesce(max(n), 0) FROM (SELECT a.id, count(*) AS n FROM iv a JOIN iv b
                                          ON b.g = a.g AND b.s <= a.s AND a.s < b.e GROUP BY a.id) x"
}

# halfway, a worker dies with kill -9: the server restarts, shared memory and the lock table afresh
wait_for 60 "SELECT ($STOPPED) >= 300"
ok $? "half the runs end under the limits"
PID=$(q "SELECT pid FROM toygun.worker_status() WHERE NOT idle ORDER BY slot LIMIT 1")
[ -n "$PID" ] || PID=$(q "SELECT pid FROM toygun.worker_status() ORDER BY slot LIMIT 1")
[ -n "$PID" ] && kill -9 "$PID"
ok $? "a worker is killed with kill -9 (pid $PID)"

wait_for 120 "SELECT ($STOPPED) = 600"
ok $? "every run ends, after a pg_terminate_backend, failures and a crash"
is "$(q "SELECT last_value >= 1 FROM kills")" t "the run that ends its worker ran"
N=$(q "SELECT count(*) FROM tick_log WHERE type = 'lim'")
note "committed ticks: $N, failures: $(q "SELECT count(*) FROM toygun.failure")"
[ "$N" -ge 1200 ]
ok $? "every run's two ticks committed ($N)"

PER_KEY=$(overlap tenant lim)
ALL=$(overlap "''" lim)
note "most overlapping ticks: $PER_KEY of one tenant (max_per_key 2), $ALL in all (max_running 3)"
[ "$PER_KEY" -ge 1 ] && [ "$PER_KEY" -le 2 ]
ok $? "never more than max_per_key (2) ticks of one tenant at once ($PER_KEY)"
[ "$ALL" -ge 1 ] && [ "$ALL" -le 3 ]
ok $? "never more than max_running (3) ticks at once ($ALL)"
is "$(q "SELECT coalesce(sum(running), 0) FROM toygun.flow WHERE task = 'lim'")" 0 \
	"toygun.flow: no slot held once all ended (after the deaths and the crash)"

# teeth: the same load without limits overlaps above the limit
q "SELECT count(toygun.start_task(toygun.create_resource('svc'), 'free', jsonb_build_object('tenant', 't' || (i % 6))))
     FROM generate_series(1, 300) i" >/dev/null
wait_for 60 "SELECT count(*) = 300 FROM toygun.task WHERE name = 'free' AND state = '__stop__'"
FREE=$(overlap tenant free)
note "without limits: $FREE ticks of one tenant at once"
[ "$FREE" -gt 2 ]
ok $? "teeth: without limits the same load overlaps above 2 ($FREE), so the proof above can fail"

# fairness: tenant A floods, tenant B's runs started later are not held behind it
tg_psql "$DIR" tg -q <<'SQL' >/dev/null 2>&1 || bail "fairness setup failed"
CREATE FUNCTION public.quick(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_task('svc', 'fair', '{go}', 'quick(toygun.task)', concurrency_key => 'tenant', max_per_key => 2);
SELECT toygun.pause_queue('default');
SELECT count(toygun.start_task(toygun.create_resource('svc'), 'fair', '{"tenant": "A"}')) FROM generate_series(1, 3000);
SELECT count(toygun.start_task(toygun.create_resource('svc'), 'fair', '{"tenant": "B"}')) FROM generate_series(1, 20);
SELECT toygun.resume_queue('default');
SQL
wait_for 120 "SELECT count(*) = 3020 FROM toygun.task WHERE name = 'fair' AND state = '__stop__'"
ok $? "the flood and the late tenant all end"
BEFORE=$(q "WITH s AS (SELECT t.attrs->>'tenant' AS tenant, x.at FROM toygun.transition x JOIN toygun.task t ON t.id = x.object_id
                        WHERE t.name = 'fair' AND x.to_state = '__stop__')
            SELECT count(*) FROM s WHERE tenant = 'A' AND at < (SELECT max(at) FROM s WHERE tenant = 'B')")
note "A's runs ended before B's last: $BEFORE of 3,000"
[ "$BEFORE" -lt 1000 ]
ok $? "fairness: B's 20 runs, started after A's 3,000, all end before A's 1,000th ($BEFORE)"
