#!/usr/bin/env bash
# The toygun command (issue 18, tools/cli/toygun) on a real cluster with a
# worker, as an operator uses it: each command's output and exit code, --json
# that parses, a service file, a password file, rights (a role sees nothing of
# another's types), and paging with the cursor visiting every run once.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

ROOT=$PWD
DIR=${TG_WORK:-/tmp/toygun-scenario}/cli
tg_init "$DIR" "toygun.database_name = 'tg'" "toygun.workers = 1" "toygun.retry_backoff = '10ms'" \
	"cron.database_name = 'tg'" "cron.host = '$DIR'" >/dev/null || bail "initdb failed"
# one role signs in with a SCRAM password over the socket; the others are trusted
sed -i '1i local all pwuser scram-sha-256' "$DIR/data/pg_hba.conf"
tg_start "$DIR" || bail "server did not start"
trap 'tg_stop "$DIR" immediate' EXIT

# the command installed as users install it (the server, with its npm install, is
# test/tools/serve.test.mjs's)
make -s -C tools install-cli DESTDIR="$DIR/inst" PREFIX=/usr >/dev/null || bail "make -C tools install-cli failed"
TOYGUN=$DIR/inst/usr/bin/toygun
[ -x "$TOYGUN" ] || bail "no toygun in $DIR/inst/usr/bin"

q() { tg_psql "$DIR" tg -c "$1"; }
wait_for() { tg_wait "$1" "$DIR" tg "$2"; }
# tg ROLE ARGS...: the command as ROLE, by libpq's environment; stdout to $OUT, stderr to $ERR, exit code to $RC
OUT=$DIR/out ERR=$DIR/err
tg() {
	local role=$1; shift
	PGHOST=$DIR PGPORT=$TG_PORT PGDATABASE=tg PGUSER=$role "$TOYGUN" "$@" >"$OUT" 2>"$ERR"
	RC=$?
}
# json EXPR: evaluate a Python expression over the JSON in $OUT (as j)
json() { /usr/bin/python3 -c "import json,sys; j=json.load(open('$OUT')); print($1)"; }

plan 71

tg_psql "$DIR" postgres -c "CREATE DATABASE tg" -c "CREATE DATABASE plain" >/dev/null
tg_psql "$DIR" tg -q <<'SQL' >/dev/null || bail "setup failed"
CREATE EXTENSION pg_cron;
CREATE EXTENSION toygun;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE pwuser LOGIN PASSWORD 'right horse';
GRANT alice TO pwuser;
CREATE FUNCTION steps(t toygun.task) RETURNS toygun.next LANGUAGE sql
    AS $$ SELECT CASE t.state WHEN 'one' THEN toygun.go('two') ELSE toygun.stop() END $$;
CREATE FUNCTION boom(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'boom in %', t.state;
END $$;
CREATE FUNCTION idle(t toygun.task) RETURNS toygun.next LANGUAGE sql
    AS $$ SELECT toygun.stay(wait => '1 hour') $$;
SELECT toygun.define_resource('box', owner => 'alice');
SELECT toygun.define_task('box', 'steps', '{one,two}', 'steps(toygun.task)', owner => 'alice');
SELECT toygun.define_task('box', 'boom', '{one}', 'boom(toygun.task)', max_attempts => 2, owner => 'alice');
SELECT toygun.define_task('box', 'idle', '{one,two}', 'idle(toygun.task)', owner => 'alice',
                          fields => '{token,n}', encrypted_fields => '{token}');
SELECT toygun.define_resource('crate', owner => 'bob');
SELECT toygun.define_task('crate', 'idle', '{one}', 'idle(toygun.task)', owner => 'bob');
SELECT toygun.grant_type('box', 'bob', '{read}');
SQL

box=$(q "SET ROLE alice; SELECT toygun.create_resource('box')" | tail -n 1)
crate=$(q "SET ROLE bob; SELECT toygun.create_resource('crate')" | tail -n 1)

# --- usage (2) before connecting
PGHOST=/nonexistent "$TOYGUN" panic 00000000-0000-0000-0000-000000000000 >"$OUT" 2>"$ERR"
is "$?" 2 "panic without --reason is a usage error (2), caught before connecting"
grep -q "required: --reason" "$ERR"; ok $? "and says --reason is required"
PGHOST=/nonexistent "$TOYGUN" runs --limit 0 >"$OUT" 2>"$ERR"
is "$?" 2 "runs --limit 0 is a usage error (2)"

# --- start, and runs/show as the owner
tg alice start "$box" steps
steps=$(cat "$OUT")
is "$RC" 0 "start prints the new run's id and exits 0"
wait_for 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$steps'"
ok $? "the worker ran it to its end"
tg alice --json start "$box" boom
boom=$(json "j['id']")
wait_for 30 "SELECT state = '__panic__' FROM toygun.task WHERE id = '$boom'"
ok $? "start --json gives the id; the failing run panicked in the worker"
tg alice start "$box" idle --args '{"token": "s3cret-value", "n": 1}'
idle=$(cat "$OUT")

tg alice status
is "$RC" 0 "status exits 0"
grep -Eq '^panicked: +1$' "$OUT" && grep -Eq '^workers: +1 running' "$OUT"; ok $? "status shows the panicked run and the worker"
tg alice --json status
is "$(json "j['panicked'], j['live'], j['workers']['running'], j['open_alarms']")" "1 2 1 1" \
	"status --json: panicked, live, workers and open alarms"

tg alice runs --panicked --type box
is "$RC" 0 "runs --panicked exits 0"
[ "$(grep -c "$boom" "$OUT")" = 1 ] && [ "$(wc -l <"$OUT")" = 2 ]; ok $? "runs --panicked lists exactly the panicked run (full id off a tty)"
tg alice --json runs
is "$(json "len(j['runs']), j['next'], sorted(r['task'] for r in j['runs'])")" "3 None ['boom', 'idle', 'steps']" \
	"runs --json: every run of the owner, no next cursor"
tg alice runs --task nosuch --type box
is "$RC" 4 "runs of an unknown task type: not found (4)"
grep -q 'task type "box.nosuch" does not exist' "$ERR" && grep -q '^hint: ' "$ERR" && grep -q '(SQLSTATE 42704)' "$ERR"
ok $? "the server's message, hint and SQLSTATE on stderr"
tg alice runs --after bogus
is "$RC" 7 "a malformed cursor is an invalid value (7)"

tg alice show "$boom"
is "$RC" 0 "show exits 0"
grep -q "boom in one" "$OUT" && grep -q "__panic__" "$OUT"; ok $? "show has the failures and the panic in the history"
tg alice --json show "$idle"
is "$(json "j['attrs']['token'], j['attrs']['n'], j['may']")" "s3cret-value 1 {'operate': True, 'read_secrets': True}" \
	"show --json as the owner: the secret decrypted"
tg bob --json show "$idle"
is "$(json "j['attrs']['token'], j['may']['operate']")" "{'\$sealed': True} False" \
	"show as a reader without read_secrets: the secret sealed"
grep -q "s3cret-value" "$OUT"; is "$?" 1 "and the secret's text is nowhere in the output"

# --- rights: another role sees nothing of a type it may not read
crate_run=$(q "SET ROLE bob; SELECT toygun.start_task('$crate', 'idle')" | tail -n 1)
tg bob --json runs --type crate
[ "$(json "len(j['runs'])")" = 1 ]; ok $? "bob sees his own crate run"
tg alice --json runs
grep -q crate "$OUT"; is "$?" 1 "alice sees nothing of bob's crate runs"
tg alice show "$crate_run"
is "$RC" 4 "show of a run of a type alice may not read: not found (4), as an unknown id"
tg alice --json status
is "$(json "j['live']")" 2 "alice's status counts none of bob's runs"
tg bob stop "$boom" --reason "not mine"
is "$RC" 5 "bob, a reader, stopping alice's run: permission denied (5)"

# --- repairs
tg alice --json alarms
is "$(json "len(j), j[0]['kind'], j[0]['object_id'] == '$boom'")" "1 panic True" "alarms --json: the panic's alarm"
alarm=$(json "j[0]['id']")
tg alice alarms snooze "$alarm" +2h
is "$RC" 0 "alarms snooze +2h exits 0"
is "$(q "SELECT state || ' ' || (snoozed_until > now() + interval '119 minutes') FROM toygun.alarms WHERE id = '$alarm'")" \
	"snoozed true" "the alarm is snoozed two hours"
tg alice alarms snooze "$alarm" +soon
is "$RC" 7 "snooze +soon: invalid value (7)"
tg alice retry "$boom" --reason "looked at it"
is "$RC" 0 "retry exits 0"
is "$(q "SELECT state || ' ' || closed_reason FROM toygun.alarms WHERE id = '$alarm'")" \
	"closed retry_task: looked at it" "retry closed the alarm with the reason"
wait_for 30 "SELECT state = '__panic__' AND EXISTS (SELECT FROM toygun.alarms WHERE object_id = '$boom' AND state = 'active') FROM toygun.task WHERE id = '$boom'"
tg alice alarms --type box
alarm2=$(q "SELECT id FROM toygun.alarms WHERE object_id = '$boom' AND state = 'active'")
tg alice alarms close "$alarm2" --reason "known"
is "$RC" 0 "alarms close exits 0"
tg alice --json alarms --all
is "$(json "sorted(a['state'] for a in j)")" "['closed', 'closed']" "alarms --all lists both, closed"
tg alice alarms --all --limit 2
grep -q "next page" "$ERR"; is "$?" 1 "alarms: a full page with no alarm after it prints no next cursor"
tg alice alarms --all --limit 1
grep -q "next page: --after $(q "SELECT id FROM toygun.alarms ORDER BY id DESC LIMIT 1")" "$ERR"; ok $? "one with an alarm after it does"

# --- the outbox (the extension owner's: here the superuser's)
q "SELECT toygun.define_channel('hook', 'webhook', '{\"url\": \"https://hooks.example.com/x\"}');
   SELECT toygun.define_route('kind:disk', 'hook');
   SELECT toygun.raise_alarm(toygun.create_resource('box'), 'disk', 'full ' || i) FROM generate_series(1, 3) i" >/dev/null
read -r ob1 ob2 ob3 <<<"$(q "SELECT string_agg(id::text, ' ' ORDER BY id) FROM toygun.outbox")"
q "UPDATE toygun.outbox SET attempts = 10, last_error = '404 from hooks.example.com' WHERE id = $ob1;
   UPDATE toygun.outbox SET attempts = 1, delivered_at = now() WHERE id = $ob2" >/dev/null
tg postgres outbox
is "$RC/$(grep -c hook "$OUT")" "0/1" "outbox: the pending rows"
tg postgres --json outbox --failed
is "$(json "len(j['outbox']), j['outbox'][0]['id'], j['outbox'][0]['state'], j['outbox'][0]['last_error'], j['next']")" \
	"1 $ob1 failed 404 from hooks.example.com None" "outbox --failed --json: the failed row, its error"
tg postgres outbox --all --limit 2
grep -q "next page: --after $ob2" "$ERR"; ok $? "outbox --all --limit 2: a next cursor, as a row follows"
tg postgres outbox redeliver "$ob1"
is "$RC/$(q "SELECT attempts || coalesce(last_error, '-') FROM toygun.outbox WHERE id = $ob1")" "0/0-" \
	"outbox redeliver: the failed row is pending again"
tg postgres outbox redeliver "$ob2"
is "$RC" 6 "outbox redeliver of a delivered row: refused by state (6)"
tg postgres outbox redeliver 999999
is "$RC" 4 "outbox redeliver of no row: not found (4)"
tg alice outbox
is "$RC" 5 "outbox as a role that does not own the extension: permission denied (5)"
grep -q "permission denied to read the toygun outbox" "$ERR"; ok $? "saying so"

tg alice --json transition "$idle" two --expect one --reason "moved by hand"
is "$(json "j['state']")" two "transition --expect moves the run and prints its row"
tg alice transition "$idle" one --expect one
is "$RC" 6 "transition with a stale --expect: refused by state (6)"
tg alice rewind "$idle" --reason "back"
is "$(q "SELECT state FROM toygun.task WHERE id = '$idle'")" one "rewind sent it back a step"
tg alice panic "$idle" --reason "stuck on the vendor"
is "$(q "SELECT state || ' ' || (SELECT reason FROM toygun.history('$idle') ORDER BY step DESC LIMIT 1) FROM toygun.task WHERE id = '$idle'")" \
	"__panic__ stuck on the vendor" "panic --reason panics it with the reason in the history"
tg alice stop "$idle" --reason done
is "$RC/$(q "SELECT state FROM toygun.task WHERE id = '$idle'")" "0/__stop__" "stop stops it"
tg alice retry "$idle"
is "$RC" 6 "retry of a stopped run: refused by state (6)"
grep -q '^hint: \|^toygun: ' "$ERR"; ok $? "with the server's message"
tg alice --json retry 00000000-0000-7000-8000-000000000000
is "$(RC=$RC; /usr/bin/python3 -c "import json; e=json.load(open('$ERR'))['error']; print($RC, e['sqlstate'])")" \
	"4 P0002" "retry of an unknown run: not found (4); --json puts the error as JSON on stderr"

# --- schedules
q "SET ROLE alice; SELECT toygun.start_every('box', 'steps', '0 3 * * *')" >/dev/null
tg alice --json schedules
is "$(json "[(s['resource_type'], s['task'], s['schedule']) for s in j]")" "[('box', 'steps', '0 3 * * *')]" \
	"schedules --json lists the periodic start"
tg bob --json schedules --type crate
is "$(json "len(j)")" 0 "schedules of another type: none"

# --- paging with the cursor visits every run once
q "SET ROLE alice; SELECT toygun.start_task(toygun.create_resource('box'), 'idle') FROM generate_series(1, 23)" >/dev/null
want=$(q "SELECT count(*) FROM toygun.task WHERE resource_type = 'box'")
seen=$DIR/seen; : >"$seen"
after=(); pages=0
while :; do
	tg alice --json runs --type box --limit 5 "${after[@]}"
	[ "$RC" = 0 ] || break
	json "'\n'.join(r['id'] for r in j['runs'])" >>"$seen"
	pages=$((pages + 1))
	next=$(json "j['next'] or ''")
	[ -n "$next" ] && [ $pages -lt 20 ] || break
	after=(--after "$next")
done
is "$(wc -l <"$seen")/$(sort -u "$seen" | wc -l)/$pages" "$want/$want/$(( (want + 4) / 5 ))" \
	"pages of 5 with --after visit all $want runs once each"
tg alice runs --type box --limit 5
grep -q '^next page: --after r1:' "$ERR"; ok $? "a full page prints its cursor on stderr"

# --- top
tg alice top --once
is "$RC" 0 "top --once exits 0"
grep -q "^toygun top" "$OUT" && grep -Eq '^box +idle' "$OUT"; ok $? "top shows the status line and the busiest task types"
timeout 10 env PGHOST=$DIR PGPORT=$TG_PORT PGDATABASE=tg PGUSER=alice "$TOYGUN" top --interval 0.5 --frames 2 >"$OUT" 2>"$ERR"
is "$?/$(grep -c '^toygun top' "$OUT")" "0/2" "top without a tty redraws: two frames"

# --- connection: service file, password file, wrong password, no toygun
printf '[ops]\nhost=%s\nport=%s\ndbname=tg\nuser=alice\n' "$DIR" "$TG_PORT" >"$DIR/services.conf"
PGSERVICEFILE=$DIR/services.conf PGSERVICE=ops "$TOYGUN" --json status >"$OUT" 2>"$ERR"
is "$?/$(json "j['live'] > 0")" "0/True" "a service file (PGSERVICEFILE, PGSERVICE) connects"
PGSERVICEFILE=$DIR/services.conf "$TOYGUN" --dsn service=ops --json runs --type box --limit 1 >"$OUT" 2>"$ERR"
is "$?" 0 "--dsn service=NAME too"
(umask 077; printf '%s:%s:tg:pwuser:right horse\n' "$DIR" "$TG_PORT" >"$DIR/pgpass")
PGPASSFILE=$DIR/pgpass tg pwuser -w status
is "$RC" 0 "a SCRAM password from PGPASSFILE"
(umask 077; printf '%s:%s:tg:pwuser:wrong horse\n' "$DIR" "$TG_PORT" >"$DIR/pgpass")
PGPASSFILE=$DIR/pgpass tg pwuser -w status
is "$RC" 3 "a wrong password: could not connect (3)"
grep -q "could not connect to database tg on $DIR port $TG_PORT" "$ERR"; ok $? "naming the database, host and port"
PGHOST=$DIR PGPORT=$TG_PORT PGUSER=alice "$TOYGUN" -d plain status >"$OUT" 2>"$ERR"
is "$?" 8 "a database without toygun: 8"
grep -q "toygun 0.4 is not installed in database plain" "$ERR" && grep -q "ALTER EXTENSION toygun UPDATE" "$ERR"
ok $? "saying so, with the hint"

# --- counts that stop at their cap (ops_status: live stops at 5,000 unless the caller's runs are few)
q "WITH r AS (INSERT INTO toygun.resource (id, type, state, step)
                  SELECT gen_random_uuid(), 'box', 'ready', 1 FROM generate_series(1, 5000) RETURNING id)
   INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step, run_at)
       SELECT toygun._new_id(), r.id, 'box', 'idle', 'one', 1, now() + interval '1 year' FROM r" >/dev/null
tg alice status
grep -Eq '^live runs: +5000\+$' "$OUT"; ok $? "status marks a count that stopped at its cap with +"
tg alice --json status
is "$(json "j['live'], j['live_capped']")" "5000 True" "status --json: live and live_capped"

# --- a tenant's text cannot drive the operator's terminal: control characters
# (ESC sequences that clear the screen, set the title or write the clipboard)
# in messages, reasons and errors are shown escaped, never sent raw
tg alice start "$box" idle
esc=$(cat "$OUT")
wait_for 30 "SELECT state = 'one' FROM toygun.task WHERE id = '$esc'"
tg alice panic "$esc" --reason $'fine\e]52;c;ZXZpbA==\a\e[2J\rforged' --message $'boom\e[2J\u009b31m'
tg alice show "$esc"
! grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$OUT" && grep -q 'fine\\x1b\]52' "$OUT"
ok $? "show: control characters of a tenant's reason and message shown as \\xNN"
tg alice alarms
! grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$OUT" && ! grep -q $'\xc2\x9b' "$OUT"
ok $? "alarms: the same (C1 controls too)"
tg alice transition "$esc" $'no\e[2Jstate' --reason r
[ "$RC" != 0 ] && ! grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$ERR"
ok $? "an error message echoing a tenant's text: escaped on stderr too"
tg alice --json show "$esc"
json "j['history'][-1]['reason']" | grep -q $'fine\e]52'
ok $? "--json keeps the exact text (JSON escapes it)"

exit $((TAP_FAILED > 0))
