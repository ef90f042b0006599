#!/usr/bin/env bash
# The keyring on a real server: a missing, unreadable, open or malformed
# keyring file is a clear error with a hint; a reload brings a new key into a
# running session; rotate_secrets() re-encrypts every stored field and old-key
# data decrypts until then; pg_dump and restore keep secrets; no key reaches
# the server log.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

DIR=${TG_WORK:-/tmp/toygun-scenario}/keyring
# no keyring at first; the worker, if any, in another database than ours
tg_init "$DIR" "toygun.keyring_file = ''" "toygun.database_name = 'postgres'" \
	"cron.database_name = 'postgres'" >/dev/null || bail "initdb failed"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT

q() { tg_psql "$DIR" tg -c "$1"; }
# fails SQL: what psql says of the error (verbose, with the SQLSTATE); empty if none
fails() { tg_psql "$DIR" tg -v VERBOSITY=verbose -c "$1" 2>&1 >/dev/null; }
# has TEXT PATTERN...: TEXT contains every fixed string
has() {
	local text=$1 p; shift
	for p in "$@"; do
		case "$text" in *"$p"*) ;; *) echo "#   missing: $p"; echo "$text" | sed 's/^/#   /'; return 1 ;; esac
	done
}
# use_keyring FILE: name the keyring file, reload, and wait until new sessions see it
use_keyring() {
	tg_psql "$DIR" postgres -c "ALTER SYSTEM SET toygun.keyring_file = '$1'" -c "SELECT pg_reload_conf()" >/dev/null &&
		tg_wait 10 "$DIR" postgres "SELECT current_setting('toygun.keyring_file') = '$1'"
}
newkey() { head -c 32 /dev/urandom | base64; }
KEY1=$(newkey)
KEY2=$(newkey)
BADKEY=$(printf 'short-key-material' | base64)

plan 27

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" >/dev/null
q "CREATE EXTENSION toygun" >/dev/null || bail "CREATE EXTENSION failed"

# --- a keyring that is missing, open to others, unreadable or malformed --------

e=$(fails "SELECT toygun.encrypt('1')")
has "$e" 'ERROR:  F0000: no keyring is configured' 'HINT:  Set toygun.keyring_file'
ok $? "without a keyring, encrypting is a clear error with a hint"

use_keyring "$DIR/missing.keys" || bail "reload not seen"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: could not open keyring file \"$DIR/missing.keys\": No such file or directory" \
	'HINT:  Set toygun.keyring_file'
ok $? "a missing keyring file is a clear error with a hint"

printf '1 %s\n' "$KEY1" >"$DIR/ring.keys"
chmod 644 "$DIR/ring.keys"
use_keyring "$DIR/ring.keys" || bail "reload not seen"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: keyring file \"$DIR/ring.keys\" has group or world access" \
	'DETAIL:  It must have permissions u=rw (0600) or less' 'HINT:  Make it readable only by'
ok $? "a keyring file others may read is refused, with a hint"

chmod 000 "$DIR/ring.keys"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: could not open keyring file \"$DIR/ring.keys\": Permission denied" 'HINT:  '
ok $? "an unreadable keyring file is a clear error with a hint"

chmod 600 "$DIR/ring.keys"
printf '# two keys, the second one too short\n1 %s\n2 %s\n' "$KEY1" "$BADKEY" >"$DIR/ring.keys"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: invalid line 3 in keyring file \"$DIR/ring.keys\"" 'base64-encoded 32-byte key' \
	'HINT:  Generate a key with: openssl rand -base64 32'
ok $? "a malformed line is named by its number, with the expected format"
case "$e" in *"$BADKEY"* | *"$KEY1"* | *short-key*) ok 1 "the error shows no key" ;; *) ok 0 "the error shows no key" ;; esac

printf '1 %s\n1 %s\n' "$KEY1" "$KEY2" >"$DIR/ring.keys"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: key 1 is listed twice in keyring file"
ok $? "a key number listed twice is refused"

printf '# nothing but comments\n\n' >"$DIR/ring.keys"
e=$(fails "SELECT toygun.encrypt('1')")
has "$e" "ERROR:  F0000: keyring file \"$DIR/ring.keys\" has no keys" 'HINT:  Add a line'
ok $? "a keyring without keys is refused"

# --- data under key 1 ------------------------------------------------------------

printf '# toygun keyring\n1 %s\n' "$KEY1" >"$DIR/ring.keys"
is "$(q "SELECT toygun.key_number(toygun.encrypt('1'))")" 1 "a new session reads the fixed file: key 1 encrypts"

tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE FUNCTION public.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
SELECT toygun.define_resource('acct', fields => '{name}', encrypted_fields => '{token}');
SELECT toygun.define_task('acct', 'job', '{one}', 'public.h(toygun.task)', encrypted_fields => '{password}');
CREATE TABLE ids (n int, r uuid);
INSERT INTO ids SELECT n, toygun.create_resource('acct', jsonb_build_object('name', 'n' || n, 'token', 'token-' || n))
  FROM generate_series(1, 3) n;
-- r1: a stopped run and a live one; r2: one run; r3: none
SELECT toygun.stop_task(toygun.start_task(r, 'job', '{"password": "pw-1a"}')) FROM ids WHERE n = 1;
SELECT toygun.start_task(r, 'job', jsonb_build_object('password', 'pw-' || n)) FROM ids WHERE n <= 2;
-- secrets of our own, outside toygun's tables: rotate_secrets() leaves them alone
CREATE TABLE vault (n int, s toygun.secret);
INSERT INTO vault SELECT n, toygun.encrypt(to_jsonb('own-' || n), 'vault') FROM generate_series(1, 2) n;
SQL
FIELDS="SELECT string_agg(v, ',' ORDER BY v) FROM (
          SELECT toygun.field(r, 'token')::text AS v FROM toygun.resource r
          UNION ALL SELECT toygun.field(t, 'password')::text FROM toygun.task t) f"
KEYS="SELECT string_agg(DISTINCT toygun.key_number(s)::text, ',') FROM (
        SELECT (attrs->'token'->>'\$secret')::toygun.secret AS s FROM toygun.resource
        UNION ALL SELECT (attrs->'password'->>'\$secret')::toygun.secret FROM toygun.task) k"
SHAPE="SELECT count(*) || ' ' || md5(string_agg(x, ',' ORDER BY x)) FROM (
         SELECT concat_ws('/', id, state, step, updated_at) AS x FROM toygun.resource
         UNION ALL SELECT concat_ws('/', id, state, step, updated_at) FROM toygun.task
         UNION ALL SELECT concat_ws('/', object_id, step, to_state, at) FROM toygun.transition) s"
VALUES_BEFORE=$(q "$FIELDS")
SHAPE_BEFORE=$(q "$SHAPE")
[ -n "$SHAPE_BEFORE" ] || bail "could not read the shape of the objects"
is "$VALUES_BEFORE" '"pw-1","pw-1a","pw-2","token-1","token-2","token-3"' "six encrypted fields are stored"
is "$(q "$KEYS")" 1 "all under key 1"

# --- key 2: a reload brings it into a running session ----------------------------

out=$({
	echo "\\set done false"
	echo "SELECT max(key_number) AS before FROM toygun.keyring();"
	echo "\\! printf '2 %s\\n' '$KEY2' >>'$DIR/ring.keys'"
	echo "SELECT max(key_number) AS unreloaded FROM toygun.keyring();"
	echo "SELECT pg_reload_conf() AS reloaded \\gset"
	for _ in $(seq 1 200); do
		echo "\\if :done"
		echo "\\else"
		echo "SELECT pg_sleep(0.05) AS slept \\gset"
		echo "SELECT max(key_number) = 2 AS done FROM toygun.keyring() \\gset"
		echo "\\endif"
	done
	echo "SELECT max(key_number) AS after FROM toygun.keyring();"
} | tg_psql "$DIR" tg 2>&1)
is "$(echo $out)" "1 1 2" "an open session keeps its keys until a reload, then has key 2"

is "$(q "SELECT toygun.key_number(toygun.encrypt('1'))")" 2 "key 2, the highest, encrypts new secrets"
is "$(q "$FIELDS")" "$VALUES_BEFORE" "data under key 1 still decrypts before rotation"

# --- rotation --------------------------------------------------------------------

is "$(q "SELECT toygun.rotate_secrets()")" 6 "rotate_secrets() re-encrypts the six stored fields"
is "$(q "$KEYS")" 2 "every stored field is under key 2 now"
is "$(q "$FIELDS")" "$VALUES_BEFORE" "and decrypts to the same values"
is "$(q "$SHAPE")" "$SHAPE_BEFORE" "states, steps, update times and history are untouched"
is "$(q "SELECT toygun.rotate_secrets()")" 0 "a second rotation has nothing to do"
is "$(q "SELECT string_agg(toygun.key_number(s)::text, ',') FROM vault")" "1,1" "secrets outside toygun's tables keep their key"

# --- pg_dump and restore ---------------------------------------------------------

"$PGBIN/pg_dump" -h "$DIR" -p "$TG_PORT" -U postgres -Fc -f "$DIR/tg.dump" tg &&
	tg_psql "$DIR" postgres -c "CREATE DATABASE tg2" >/dev/null &&
	"$PGBIN/pg_restore" -h "$DIR" -p "$TG_PORT" -U postgres --exit-on-error -d tg2 "$DIR/tg.dump"
ok $? "pg_dump and pg_restore of a database with secrets"
is "$(tg_psql "$DIR" tg2 -c "$FIELDS")" "$VALUES_BEFORE" "the restored fields decrypt to the same values"
VAULT="SELECT string_agg(s::text || toygun.decrypt(s, 'vault')::text, ',' ORDER BY n) FROM vault"
is "$(tg_psql "$DIR" tg2 -c "$VAULT")" "$(q "$VAULT")" "a restored toygun.secret column is the same, and decrypts"

# --- key 1 removed ---------------------------------------------------------------

printf '# key 1 retired\n2 %s\n' "$KEY2" >"$DIR/ring.keys"
q "SELECT pg_reload_conf()" >/dev/null
tg_wait 10 "$DIR" tg "SELECT count(*) = 1 FROM toygun.keyring()"
ok $? "a reload drops key 1"
is "$(q "$FIELDS")" "$VALUES_BEFORE" "rotated fields decrypt without key 1"
e=$(fails "SELECT toygun.decrypt(s, 'vault') FROM vault")
has "$e" 'ERROR:  42704: key 1 is not in the keyring' 'HINT:  Add key 1 back to the keyring file'
ok $? "a secret under the removed key fails with its own error"

# --- the log ---------------------------------------------------------------------

! grep -qF -e "$KEY1" -e "$KEY2" -e "$BADKEY" "$DIR/server.log"
ok $? "no key ever reaches the server log"
