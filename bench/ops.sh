#!/usr/bin/env bash
# bench/ops.sh: the operator's tools at 1,000,000 runs (issue 18): what the
# SQL under the CLI and the dashboard costs a caller (toygun.list_runs,
# run_detail, ops_status, metrics), as the types' owner and as a reader of
# two rare types, in one backend of a temporary cluster that preloads the
# installed toygun with no worker (toygun.workers = 0: the due runs stay due).
#
#   bench/ops.sh     as root or postgres, once toygun is installed
#                    (bin/toygun bench --ops builds and installs it first)
#
# N (default 1000000) runs over 20 resource types written in bulk as the API
# would leave them: bench01 50% (two tasks, work 45% and audit 5%), bench02
# to bench18 about 2.9% each, bench19 0.1%, bench20 0.01%, in start order
# (UUIDv7 ids) interleaved at random, each with one history row. By run:
# 85% stopped (on a pool of 1000 resources per type), 0.1% panicked, 0.5%
# failing (two attempts, failure rows, retried in a minute), 10% due (a
# backlog up to an hour old), the rest (4.4%) sleeping a year ahead; a live
# run has a resource of its own. (The design's 90% stopped and 10% due cannot
# both hold with failing and sleeping runs beside them: the due backlog is kept
# whole and the stopped share gives.) Roles: ob_owner, who defined every type,
# and ob_reader, granted read on bench19 and bench20 (0.11% of the runs).
#
# Each case is called CALLS times (default 300, fewer if it takes more than
# CAP seconds, default 20) as each role, timed in the backend around the
# statement (client round trips not included): p50, p95 and max in ms.
# Then, when the HTTP server is in the tree (tools/server/src/main.mjs, its
# packages installed: npm ci in tools/server) and HTTP is not 0, the same
# lists through it, signed in as each role with a password (SCRAM), as JSON
# (GET /api/v1/runs) and as the page (GET /runs), and GET /metrics with HTTP
# Basic: bench/ops-http.mjs, timed by the client around each request; the
# server listens on 127.0.0.1:HTTP_PORT (default 8018). SQL=0 skips the SQL
# figures.
# DIR keeps the cluster there (made if it has no data yet, reused and left
# running otherwise) to measure again after a change; without it a temporary
# cluster is made and removed. PGBIN names another PostgreSQL 15 build,
# TG_PORT the port of its socket.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -un)" != postgres ]; then
	exec runuser -u postgres -- env CALLS="${CALLS:-}" CAP="${CAP:-}" N="${N:-}" DIR="${DIR:-}" \
		PGBIN="${PGBIN:-}" TG_PORT="${TG_PORT:-}" HTTP_PORT="${HTTP_PORT:-}" HTTP="${HTTP:-}" SQL="${SQL:-}" "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_PORT:-}" ] || unset TG_PORT
source "$ROOT/test/lib/cluster.sh"

CALLS=${CALLS:-300}
HTTP=${HTTP:-1}
HTTP_PORT=${HTTP_PORT:-8018}
CAP=${CAP:-20}
N=${N:-1000000}
if [ -n "${DIR:-}" ]; then
	KEEP=1
else
	KEEP=0
	DIR=$(mktemp -d /tmp/toygun-bench.XXXXXX)
	trap 'tg_stop "$DIR" immediate; rm -rf "$DIR"' EXIT
fi
if [ ! -d "$DIR/data" ]; then
	tg_init "$DIR" "cron.database_name = 'postgres'" "toygun.database_name = 'bench'" \
		"toygun.workers = 0" "shared_buffers = '1GB'" >/dev/null
	FRESH=1
else
	FRESH=0
fi
tg_psql "$DIR" postgres -c "SELECT 1" >/dev/null 2>&1 || tg_start "$DIR"

if [ "$FRESH" = 1 ]; then
	started=$SECONDS
	tg_psql "$DIR" postgres -c "CREATE DATABASE bench" >/dev/null
	tg_psql "$DIR" bench -q -v n="$N" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION toygun;
CREATE ROLE ob_owner;
CREATE ROLE ob_reader;
GRANT USAGE ON SCHEMA public TO ob_owner;
CREATE FUNCTION h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
GRANT EXECUTE ON FUNCTION h TO PUBLIC;
SET ROLE ob_owner;
DO $$
BEGIN
    FOR k IN 1..20 LOOP
        PERFORM toygun.define_resource(format('bench%s', to_char(k, 'FM00')));
        PERFORM toygun.define_task(format('bench%s', to_char(k, 'FM00')), 'work', '{work}', 'h(toygun.task)');
    END LOOP;
    PERFORM toygun.define_task('bench01', 'audit', '{work}', 'h(toygun.task)');
    PERFORM toygun.grant_type('bench19', 'ob_reader', '{read}');
    PERFORM toygun.grant_type('bench20', 'ob_reader', '{read}');
END $$;
RESET ROLE;
-- each run's type (u: a hash of i, so the types interleave in start order) and fate (f)
CREATE TABLE plan AS
    SELECT i, CASE WHEN u < 1 THEN 'bench20' WHEN u < 11 THEN 'bench19' WHEN u < 5011 THEN 'bench01'
                   ELSE format('bench%s', to_char(2 + (u - 5011) % 17, 'FM00')) END AS type,
           CASE WHEN u BETWEEN 11 AND 510 THEN 'audit' ELSE 'work' END AS task,
           CASE WHEN f < 850 THEN 'stopped' WHEN f = 850 THEN 'panicked' WHEN f <= 855 THEN 'failing'
                WHEN f <= 955 THEN 'due' ELSE 'sleeping' END AS fate, u, f
      FROM (SELECT i, ((i::bigint * 2654435761) % 4294967296) % 10000 AS u, i % 1000 AS f
              FROM generate_series(1, :n) i) x;
ALTER TABLE plan ADD COLUMN rid uuid;
UPDATE plan SET rid = CASE WHEN fate = 'stopped' THEN md5('pool' || type || (i % 1000))::uuid
                           ELSE md5('live' || i)::uuid END;
INSERT INTO toygun.resource (id, type, state, step)
    SELECT DISTINCT rid, type, 'ready', 1 FROM plan;
INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step, run_at, attempts)
    SELECT toygun._new_id(), rid, type, task,
           CASE fate WHEN 'stopped' THEN '__stop__' WHEN 'panicked' THEN '__panic__' ELSE 'work' END,
           CASE fate WHEN 'stopped' THEN 2 ELSE 1 END,
           CASE fate WHEN 'failing' THEN now() + interval '1 day'
                     WHEN 'due' THEN now() - (f - 855) * interval '36 seconds'
                     WHEN 'sleeping' THEN now() + interval '1 year' END,
           CASE fate WHEN 'failing' THEN 2 WHEN 'panicked' THEN 3 ELSE 0 END
      FROM plan ORDER BY i;
INSERT INTO toygun.failure (object_id, failure_no, resource_type, attempt, at, duration, error)
    SELECT t.id, a, t.resource_type, a, now() - interval '1 minute', interval '3 ms', 'connection refused'
      FROM toygun.task t, generate_series(1, t.attempts) a WHERE t.attempts > 0;
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type)
    SELECT id, 0, '__new__', 'work', resource_type FROM toygun.task;
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type)
    SELECT id, 1, 'work', state, resource_type FROM toygun.task WHERE state IN ('__stop__', '__panic__');
DROP TABLE plan;
VACUUM ANALYZE toygun.resource, toygun.task, toygun.transition, toygun.failure;
CHECKPOINT;

-- p50, p95 and max (ms) of up to calls runs of q by the current role, as many as fit in cap seconds
CREATE FUNCTION public.bench_time(q text, calls int, cap float8)
    RETURNS TABLE (n int, p50 numeric, p95 numeric, max numeric, rows bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    began timestamptz := clock_timestamp();
    ms float8[] := '{}';
    c bigint;
BEGIN
    FOR k IN 1..calls LOOP
        t := clock_timestamp();
        EXECUTE 'SELECT count(x) FROM (' || q || ') x' INTO c;
        ms := ms || extract(epoch FROM clock_timestamp() - t) * 1000;
        EXIT WHEN k >= 10 AND extract(epoch FROM clock_timestamp() - began) > cap;
    END LOOP;
    RETURN QUERY
        SELECT cardinality(ms), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY v)::numeric, 1),
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY v)::numeric, 1),
               round(max(v)::numeric, 1), c
          FROM unnest(ms) v;
END $$;
GRANT EXECUTE ON FUNCTION public.bench_time TO PUBLIC;
-- the cursor after page pages-1 of a list_runs call (its arguments as text)
CREATE FUNCTION public.bench_cursor(args text, pages int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c text;
BEGIN
    FOR k IN 1..pages - 1 LOOP
        EXECUTE format('SELECT next FROM toygun.list_runs(%s after => %L) WHERE next IS NOT NULL', args, c) INTO c;
        EXIT WHEN c IS NULL;
    END LOOP;
    RETURN c;
END $$;
GRANT EXECUTE ON FUNCTION public.bench_cursor TO PUBLIC;
SQL
	echo "made $(tg_psql "$DIR" bench -c "SELECT count(*) FROM toygun.task") runs in $((SECONDS - started)) s" >&2
fi

if [ "${SQL:-1}" != 0 ]; then
tg_psql "$DIR" bench -q -v calls="$CALLS" -v cap="$CAP" <<'SQL'
SET client_min_messages = warning;
CREATE TEMP TABLE result (role text, k int, name text, n int, p50 numeric, p95 numeric, max numeric, rows bigint);
GRANT ALL ON result TO PUBLIC;
SELECT id AS pool FROM toygun.resource WHERE type = 'bench01' AND id IN (
       SELECT resource_id FROM toygun.task WHERE state = '__stop__') LIMIT 1 \gset
SELECT id AS rare_pool FROM toygun.resource WHERE type = 'bench19' AND id IN (
       SELECT resource_id FROM toygun.task WHERE state = '__stop__') LIMIT 1 \gset
SELECT id AS failing FROM toygun.task WHERE resource_type = 'bench01' ORDER BY attempts = 2 DESC LIMIT 1 \gset
SELECT id AS rare_failing FROM toygun.task WHERE resource_type = 'bench19' ORDER BY attempts = 2 DESC LIMIT 1 \gset
SET ob.pool = :'pool';
SET ob.rare_pool = :'rare_pool';
SET ob.failing = :'failing';
SET ob.rare_failing = :'rare_failing';
SET ob.calls = :'calls';
SET ob.cap = :'cap';
CREATE TEMP TABLE cases (k int, name text, q text);
GRANT SELECT ON cases TO PUBLIC;
INSERT INTO cases VALUES
    (1, 'list_runs: no filter (page 1)', 'SELECT * FROM toygun.list_runs()'),
    (2, 'list_runs: no filter, page 5 by cursor', 'SELECT * FROM toygun.list_runs(after => %s)'),
    (3, 'list_runs: type bench01 (50%)', 'SELECT * FROM toygun.list_runs(type => ''bench01'')'),
    (4, 'list_runs: type bench02 (2.9%)', 'SELECT * FROM toygun.list_runs(type => ''bench02'')'),
    (5, 'list_runs: type bench19 (0.1%)', 'SELECT * FROM toygun.list_runs(type => ''bench19'')'),
    (6, 'list_runs: type bench19, page 5 by cursor', 'SELECT * FROM toygun.list_runs(type => ''bench19'', after => %s)'),
    (7, 'list_runs: type bench20 (0.01%)', 'SELECT * FROM toygun.list_runs(type => ''bench20'')'),
    (8, 'list_runs: task audit (5%)', 'SELECT * FROM toygun.list_runs(task => ''audit'')'),
    (9, 'list_runs: state work (live)', 'SELECT * FROM toygun.list_runs(state => ''work'')'),
    (10, 'list_runs: panicked', 'SELECT * FROM toygun.list_runs(panicked => true)'),
    (11, 'list_runs: failing', 'SELECT * FROM toygun.list_runs(failing => true)'),
    (12, 'list_runs: due', 'SELECT * FROM toygun.list_runs(due => true)'),
    (13, 'list_runs: a resource', 'SELECT * FROM toygun.list_runs(resource => %s)'),
    (14, 'run_detail', 'SELECT toygun.run_detail(%s)'),
    (15, 'ops_status', 'SELECT toygun.ops_status()'),
    (16, 'metrics', 'SELECT toygun.metrics()');
-- the owner and the reader, each with its own resource, failing run and cursors
DO $$
DECLARE
    c record;
    q text;
    arg text;
BEGIN
    FOR who IN 1..2 LOOP
        EXECUTE format('SET ROLE %s', CASE who WHEN 1 THEN 'ob_owner' ELSE 'ob_reader' END);
        FOR c IN SELECT * FROM cases ORDER BY k LOOP
            arg := CASE c.k WHEN 2 THEN quote_nullable(bench_cursor('', 5))
                            WHEN 6 THEN quote_nullable(bench_cursor('type => ''bench19'',', 5))
                            WHEN 13 THEN quote_literal(CASE who WHEN 1 THEN current_setting('ob.pool')
                                                               ELSE current_setting('ob.rare_pool') END) || '::uuid'
                            WHEN 14 THEN quote_literal(CASE who WHEN 1 THEN current_setting('ob.failing')
                                                               ELSE current_setting('ob.rare_failing') END) || '::uuid'
                       END;
            q := CASE WHEN arg IS NULL THEN c.q ELSE format(c.q, arg) END;
            INSERT INTO result SELECT current_user, c.k, c.name, b.* FROM bench_time(q, current_setting('ob.calls')::int,
                                                                           current_setting('ob.cap')::float8) b;
        END LOOP;
        RESET ROLE;
    END LOOP;
END $$;
SELECT format('%s runs stored (%s stopped, %s due now, %s failing, %s panicked); up to %s calls a case',
              count(*), count(*) FILTER (WHERE state = '__stop__'),
              count(*) FILTER (WHERE state <> '__stop__' AND run_at <= now()),
              count(*) FILTER (WHERE attempts > 0 AND state <> '__stop__'),
              count(*) FILTER (WHERE state = '__panic__'), :calls)
  FROM toygun.task;
SELECT format('%-9s  %-42s %5s %8s %8s %8s %5s', 'role', 'case', 'calls', 'p50 ms', 'p95 ms', 'max ms', 'rows');
SELECT format('%-9s  %-42s %5s %8s %8s %8s %5s', role, name, n, p50, p95, max, rows) FROM result ORDER BY role, k;
SQL
fi

# --- through the HTTP server -------------------------------------------------
NODE=$ROOT/tools/server/node_modules/.bin/node
if [ "$HTTP" = 0 ]; then
	exit 0
elif [ ! -f "$ROOT/tools/server/src/main.mjs" ]; then
	echo "(no tools/server/src/main.mjs in this tree: no HTTP figures)" >&2
	exit 0
elif [ ! -x "$NODE" ]; then
	echo "(tools/server's packages are not installed, npm ci --no-audit --no-fund in tools/server: no HTTP figures)" >&2
	exit 0
fi
PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
tg_psql "$DIR" bench -q -c "ALTER ROLE ob_owner LOGIN PASSWORD '$PASSWORD'" \
	-c "ALTER ROLE ob_reader LOGIN PASSWORD '$PASSWORD'" >/dev/null
if ! grep -q '^local bench ob_owner,ob_reader scram-sha-256' "$DIR/data/pg_hba.conf"; then
	{ echo "local bench ob_owner,ob_reader scram-sha-256"; cat "$DIR/data/pg_hba.conf"; } >"$DIR/pg_hba.new"
	mv "$DIR/pg_hba.new" "$DIR/data/pg_hba.conf"
	tg_psql "$DIR" postgres -c "SELECT pg_reload_conf()" >/dev/null
fi
"$NODE" "$ROOT/tools/server/src/main.mjs" --listen "127.0.0.1:$HTTP_PORT" --db-host "$DIR" \
	--db-port "$TG_PORT" --db-name bench --no-deliver >"$DIR/server.out" 2>"$DIR/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; [ "$KEEP" = 1 ] || { tg_stop "$DIR" immediate; rm -rf "$DIR"; }' EXIT
deadline=$((SECONDS + 30))
until grep -q 'listening on' "$DIR/server.out" 2>/dev/null; do
	if [ $SECONDS -ge $deadline ] || ! kill -0 $SERVER 2>/dev/null; then
		echo "the server did not start:" >&2; cat "$DIR/server.err" >&2; exit 1
	fi
	sleep 0.2
done
URL=$(sed -n 's/^toygun-server listening on //p' "$DIR/server.out" | head -n 1)
echo
echo "through the server at $URL (client round trips over loopback)"
"$NODE" "$ROOT/bench/ops-http.mjs" --url "$URL" --calls "$CALLS" --cap "$CAP" \
	--role "ob_owner:$PASSWORD" --role "ob_reader:$PASSWORD"
