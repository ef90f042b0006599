#!/usr/bin/env bash
# bench/rls.sh: what private rows (row-level security on toygun.task and
# toygun.transition) cost a SELECT, in one backend of a temporary cluster that
# preloads the installed toygun.
#
#   bench/rls.sh     as root or postgres, once toygun is installed
#                    (bin/toygun test installs it)
#
# N (default 1000000) runs, 90% of type bench and 10% of type other, with
# one history row each; the best of ROUNDS (default 5) full scans
# (count(*), max(updated_at)) is reported for: the runs as a superuser
# (policies bypassed), as a role granted read on bench (the policies), as a
# role that may read nothing, and as the reader with row-level security
# disabled (the cost without private rows); then the same for the history.
# PGBIN names another PostgreSQL 15 build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -un)" != postgres ]; then
	exec runuser -u postgres -- env ROUNDS="${ROUNDS:-}" N="${N:-}" \
		PGBIN="${PGBIN:-}" TG_PORT="${TG_PORT:-}" "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_PORT:-}" ] || unset TG_PORT
source "$ROOT/test/lib/cluster.sh"

ROUNDS=${ROUNDS:-5}
N=${N:-1000000}
DIR=$(mktemp -d /tmp/toygun-bench.XXXXXX)
trap 'tg_stop "$DIR" immediate; rm -rf "$DIR"' EXIT
tg_init "$DIR" "cron.database_name = 'postgres'" "toygun.database_name = 'bench'" \
	"toygun.workers = 0" "shared_buffers = '1GB'" >/dev/null
tg_start "$DIR"
tg_psql "$DIR" postgres -c "CREATE DATABASE bench" >/dev/null

tg_psql "$DIR" bench -q -v n="$N" -v rounds="$ROUNDS" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION toygun;
CREATE ROLE rb_reader;
CREATE ROLE rb_nobody;
CREATE FUNCTION h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
DO $$
BEGIN
    PERFORM toygun.define_resource('bench'), toygun.define_resource('other');
    PERFORM toygun.define_task('bench', 't', '{a}', 'h(toygun.task)'),
            toygun.define_task('other', 't', '{a}', 'h(toygun.task)');
    PERFORM toygun.grant_type('bench', 'rb_reader', '{read}');
END $$;
-- rows as the API would leave them (finished runs: one live run per resource and task), written in bulk
INSERT INTO toygun.resource (id, type, state, step)
    SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN 'other' ELSE 'bench' END, 'ready', 1
      FROM generate_series(1, 1000) i;
INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step)
    SELECT gen_random_uuid(), r.id, r.type, 't', '__stop__', 2
      FROM (SELECT id, type, row_number() OVER () AS k FROM toygun.resource) r,
           generate_series(1, (:n / 1000)::int) i
     WHERE r.type IN ('bench', 'other');
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type)
    SELECT id, 0, '__new__', 'a', resource_type FROM toygun.task;
VACUUM ANALYZE toygun.resource, toygun.task, toygun.transition;
GRANT SELECT ON toygun.task, toygun.transition TO rb_reader;  -- for the run without RLS

-- The best of rounds runs of q as role, in ms.
CREATE FUNCTION best(role text, q text, rounds int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    best float8;
BEGIN
    FOR r IN 1..rounds LOOP
        EXECUTE format('SET LOCAL ROLE %I', role);
        t := clock_timestamp();
        EXECUTE q;
        best := least(best, extract(epoch FROM clock_timestamp() - t) * 1000);
        RESET ROLE;
    END LOOP;
    RETURN round(best::numeric, 1);
END $$;
GRANT EXECUTE ON FUNCTION best TO PUBLIC;

CREATE TEMP TABLE result (tbl text, reader text, ms numeric);
INSERT INTO result
    SELECT tbl, reader, best(role, q, :rounds)
      FROM (VALUES ('toygun.task', 'SELECT count(*), max(updated_at) FROM toygun.task'),
                   ('toygun.transition', 'SELECT count(*), max(at) FROM toygun.transition')) AS t(tbl, q),
           (VALUES ('superuser (bypasses the policies)', 'postgres'),
                   ('a role granted read on bench (90%)', 'rb_reader'),
                   ('a role that may read nothing', 'rb_nobody')) AS w(reader, role);
ALTER TABLE toygun.task DISABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.transition DISABLE ROW LEVEL SECURITY;
INSERT INTO result
    SELECT tbl, 'the same role, row-level security disabled', best('rb_reader', q, :rounds)
      FROM (VALUES ('toygun.task', 'SELECT count(*), max(updated_at) FROM toygun.task'),
                   ('toygun.transition', 'SELECT count(*), max(at) FROM toygun.transition')) AS t(tbl, q);
SELECT format('%s runs, best of %s full scans', (SELECT count(*) FROM toygun.task), :rounds);
SELECT format('%-18s %-44s %8s ms', tbl, reader, ms) FROM result ORDER BY tbl, reader;
SQL
