#!/usr/bin/env bash
# bench/secrets.sh: how many values per second toygun.encrypt() and
# toygun.decrypt() handle, for 100-byte and 10 kB JSON values, in one backend
# of a temporary cluster that preloads the installed toygun.
#
#   bench/secrets.sh     as root or postgres, once toygun is installed
#                        (bin/toygun test installs it)
#
# ROUNDS (default 5) runs of N100 (default 200000) 100-byte values and N10K
# (default 20000) 10 kB values; the best round is reported. PGBIN names
# another PostgreSQL 15 build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -un)" != postgres ]; then
	exec runuser -u postgres -- env ROUNDS="${ROUNDS:-}" N100="${N100:-}" N10K="${N10K:-}" \
		PGBIN="${PGBIN:-}" TG_PORT="${TG_PORT:-}" "$0" "$@"
fi
[ -n "${PGBIN:-}" ] || unset PGBIN
[ -n "${TG_PORT:-}" ] || unset TG_PORT
source "$ROOT/test/lib/cluster.sh"

ROUNDS=${ROUNDS:-5}
N100=${N100:-200000}
N10K=${N10K:-20000}
DIR=$(mktemp -d /tmp/toygun-bench.XXXXXX)
trap 'tg_stop "$DIR" immediate; rm -rf "$DIR"' EXIT
tg_init "$DIR" "cron.database_name = 'postgres'" "toygun.database_name = 'postgres'" >/dev/null
tg_start "$DIR"
tg_psql "$DIR" postgres -c "CREATE DATABASE bench" >/dev/null

tg_psql "$DIR" bench -q <<'SQL'
CREATE EXTENSION toygun;
-- The best of `rounds` runs over n values whose JSON text is len bytes (a
-- string of len - 2 characters and its quotes).
CREATE FUNCTION bench(len int, n int, rounds int)
    RETURNS TABLE (op text, value_bytes int, n_values int, values_per_s bigint, mb_per_s numeric)
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    secs float8;
    best_enc float8 := 0;
    best_dec float8 := 0;
BEGIN
    DROP TABLE IF EXISTS vals, secs;
    CREATE TABLE vals AS SELECT i, to_jsonb(lpad(i::text, len - 2, 'x')) AS v FROM generate_series(1, n) i;
    CREATE TABLE secs AS SELECT i, toygun.encrypt(v) AS s FROM vals;
    FOR r IN 1..rounds LOOP
        t := clock_timestamp();
        PERFORM count(toygun.encrypt(v)) FROM vals;
        secs := extract(epoch FROM clock_timestamp() - t);
        best_enc := greatest(best_enc, n / secs);
        t := clock_timestamp();
        PERFORM count(toygun.decrypt(s)) FROM secs;
        secs := extract(epoch FROM clock_timestamp() - t);
        best_dec := greatest(best_dec, n / secs);
    END LOOP;
    RETURN QUERY VALUES
        ('encrypt', len, n, best_enc::bigint, round((best_enc * len / 1e6)::numeric, 1)),
        ('decrypt', len, n, best_dec::bigint, round((best_dec * len / 1e6)::numeric, 1));
END $$;
SQL

echo "toygun.encrypt / toygun.decrypt, one backend, best of $ROUNDS rounds ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
tg_psql "$DIR" bench -P format=aligned -P tuples_only=off -P footer=off -c "
    SET client_min_messages = warning;
    SELECT * FROM bench(100, $N100, $ROUNDS)
    UNION ALL SELECT * FROM bench(10240, $N10K, $ROUNDS)"
