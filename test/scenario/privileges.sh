#!/usr/bin/env bash
# Privileges on a real server: the extension is not installed into a schema
# toygun that someone else prepared; an ordinary role cannot change the
# worker's settings with ALTER SYSTEM; handlers the worker ticks run as their
# definer and cannot climb to the worker's superuser; and the worker's own
# statements never use objects that shadow toygun's on a definer's path.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/privileges
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 2" "toygun.max_attempts = 1" \
	"toygun.poll_interval = '1h'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT
q() { tg_psql "$DIR" tg -c "$1"; }
# fails DB SQL [psql options]: the SQLSTATE the statement fails with, or "ok"
fails() {
	local out db=$1 sql=$2
	shift 2
	if out=$(tg_psql "$DIR" "$db" -v VERBOSITY=verbose "$@" -c "$sql" 2>&1 >/dev/null); then
		echo ok
	else
		echo "$out" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -n 1
	fi
}

plan 14

# --- installing into a prepared schema -------------------------------------------

tg_psql "$DIR" postgres -q -c "CREATE DATABASE tg" -c "CREATE ROLE mallory LOGIN" \
	-c "GRANT CREATE ON DATABASE tg TO mallory" >/dev/null || bail "setup failed"
tg_psql "$DIR" tg -q -U mallory -c "CREATE SCHEMA toygun" >/dev/null 2>&1 ||
	tg_psql "$DIR" tg -q -c "SET ROLE mallory" -c "CREATE SCHEMA toygun" >/dev/null || bail "mallory's schema"
is "$(fails tg "CREATE EXTENSION toygun")" 42P06 "CREATE EXTENSION refuses a schema toygun that another role owns"
tg_psql "$DIR" tg -q -c "ALTER SCHEMA toygun OWNER TO postgres" \
	-c "CREATE FUNCTION toygun.start_task(resource uuid, name text, args json) RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'" \
	>/dev/null || bail "a function in the schema"
is "$(fails tg "CREATE EXTENSION toygun")" 42P06 "and one that holds objects already"
q "DROP SCHEMA toygun CASCADE" >/dev/null 2>&1
is "$(fails tg "CREATE EXTENSION toygun")" ok "into a schema of its own making, it installs"
is "$(q "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'toygun'")" postgres \
	"schema toygun belongs to the installing role"

# --- ALTER SYSTEM ------------------------------------------------------------------

AUTO_BEFORE=$(md5sum <"$DIR/data/postgresql.auto.conf")
tg_psql "$DIR" tg -q -c "CREATE ROLE ordinary LOGIN" >/dev/null
codes=""
# ALTER SYSTEM runs outside a transaction block: a session of its own as ordinary
for s in "SET toygun.paused = on" "SET toygun.workers = 0" "SET toygun.keyring_file = '/tmp/mallory.keys'" \
	"SET toygun.database_name = 'elsewhere'" "RESET ALL"; do
	codes="$codes $(fails tg "ALTER SYSTEM $s" -U ordinary)"
done
is "$codes" " 42501 42501 42501 42501 42501" "an ordinary role cannot ALTER SYSTEM any toygun setting"
[ "$(md5sum <"$DIR/data/postgresql.auto.conf")" = "$AUTO_BEFORE" ]
ok $? "postgresql.auto.conf is unchanged"

# --- handlers the worker ticks ---------------------------------------------------------

tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "handler setup failed"
CREATE TABLE public.seen (what text, usr text, sess text, authid boolean);
GRANT INSERT ON public.seen TO PUBLIC;
CREATE SCHEMA mallory AUTHORIZATION mallory;
SET ROLE mallory;
CREATE FUNCTION mallory.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen VALUES (t.attrs->>'try', current_user, session_user, has_table_privilege('pg_catalog.pg_authid', 'SELECT'));
    CASE t.attrs->>'try'
    WHEN 'set role' THEN SET ROLE postgres;
    WHEN 'session authorization' THEN SET SESSION AUTHORIZATION postgres;
    WHEN 'reset role' THEN RESET ROLE; PERFORM toygun.panic('still here as ' || current_user);
    WHEN 'pause' THEN PERFORM set_config('toygun.paused', 'on', false);
    WHEN 'read file' THEN PERFORM pg_read_file('postgresql.conf');
    WHEN 'program' THEN COPY (SELECT 1) TO PROGRAM 'touch /tmp/toygun-privileges-escaped';
    WHEN 'temp table' THEN CREATE TEMP TABLE sneaky (x int);
    WHEN 'reload' THEN PERFORM pg_reload_conf();
    WHEN 'superuser' THEN ALTER ROLE mallory SUPERUSER;
    ELSE NULL;
    END CASE;
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('mallorys');
SELECT toygun.define_task('mallorys', 'try', '{one}', 'mallory.h(toygun.task)');
SELECT toygun.start_task(toygun.create_resource('mallorys'), 'try', jsonb_build_object('try', w))
  FROM unnest(ARRAY['nothing', 'set role', 'session authorization', 'reset role', 'pause', 'read file', 'program',
                    'temp table', 'reload', 'superuser']) w;
SQL
rm -f /tmp/toygun-privileges-escaped
tg_wait 30 "$DIR" tg "SELECT count(*) = 10 FROM toygun.task WHERE state IN ('__stop__', '__panic__') AND (state = '__stop__' OR attempts > 0)"
ok $? "the worker ticked each of mallory's runs (max_attempts 1: a failure panics)"
# (is_superuser would say on: it describes the session's user, the worker's)
is "$(q "SELECT usr || ' ' || authid FROM seen WHERE what = 'nothing'")" "mallory false" \
	"a handler the worker ticks runs as its definer, not a superuser"
is "$(q "SELECT string_agg(attrs->>'try', ',' ORDER BY attrs->>'try') FROM toygun.task WHERE state <> '__panic__'")" \
	"nothing" "every attempt to climb failed its tick"
is "$(q "SELECT count(*) FROM toygun.task WHERE state = '__panic__' AND (last_error ~ '(permission denied|cannot (set|execute|create|be changed)|must be|not allowed|restricted)' OR attrs->>'panic_message' ~ 'still here as mallory')")" \
	9 "each failed for want of privileges, and RESET ROLE stayed mallory" ||
	q "SELECT attrs->>'try', state, last_error, attrs->>'panic_message' FROM toygun.task WHERE resource_type = 'mallorys'" | sed 's/^/# /'
is "$(q "SELECT current_setting('toygun.paused') || ' ' || (SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory')")" \
	"off false" "the worker is not paused and mallory is no superuser"
[ ! -e /tmp/toygun-privileges-escaped ]
ok $? "no program ran"

# --- the worker's statements and shadowing objects on a definer's path ---------------------

tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "shadow setup failed"
CREATE ROLE victim;
CREATE SCHEMA victim AUTHORIZATION victim;
GRANT USAGE ON SCHEMA mallory TO PUBLIC;
SET ROLE mallory;
CREATE SEQUENCE mallory.hits;
GRANT USAGE, UPDATE ON SEQUENCE mallory.hits TO PUBLIC;
CREATE FUNCTION mallory.hit() RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_catalog.nextval('mallory.hits');
    RETURN true;
END $$;
CREATE FUNCTION mallory.eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql AS 'SELECT mallory.hit()';
CREATE FUNCTION mallory.eq(a text, b text) RETURNS boolean LANGUAGE sql AS 'SELECT mallory.hit()';
CREATE FUNCTION mallory.eq(a bigint, b bigint) RETURNS boolean LANGUAGE sql AS 'SELECT mallory.hit()';
CREATE FUNCTION mallory.eq(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS 'SELECT mallory.hit()';
CREATE OPERATOR mallory.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = mallory.eq);
CREATE OPERATOR mallory.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory.eq);
CREATE OPERATOR mallory.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory.eq);
CREATE OPERATOR mallory.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mallory.eq);
CREATE OPERATOR mallory.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mallory.eq);
CREATE OPERATOR mallory.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mallory.eq);
CREATE FUNCTION mallory.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT CASE WHEN mallory.hit() THEN pg_catalog.now() END';
CREATE FUNCTION mallory.unnest(text[], text[], text[]) RETURNS SETOF record LANGUAGE sql
    AS 'SELECT NULL::text, NULL::text, NULL::text WHERE mallory.hit()';
CREATE VIEW mallory.task AS SELECT * FROM toygun.task WHERE mallory.hit();
CREATE VIEW mallory.resource AS SELECT * FROM toygun.resource WHERE mallory.hit();
GRANT SELECT ON ALL TABLES IN SCHEMA mallory TO PUBLIC;
RESET ROLE;
SET ROLE victim;
CREATE FUNCTION victim.h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RETURN CASE t.state WHEN 'one' THEN toygun.go('two') WHEN 'two' THEN toygun.stay(wait => '0') ELSE toygun.stop() END;
END $$;
-- defined with mallory's schema first: that is the path its handler would run with
SET search_path = mallory, pg_catalog, public;
SELECT toygun.define_resource('victims');
SELECT toygun.define_task('victims', 'job', '{one,two}', 'victim.h(toygun.task)');
RESET search_path;
SELECT toygun.start_task(toygun.create_resource('victims'), 'job') FROM generate_series(1, 50);
SQL
tg_wait 30 "$DIR" tg "SELECT count(*) = 50 FROM toygun.task WHERE resource_type = 'victims' AND state = 'two' AND step = 2"
ok $? "the worker ticks the victim's runs, defined with a shadowing schema first on the path"
is "$(q "SELECT is_called FROM mallory.hits")" f "and never uses the shadowing operators, functions or views"
