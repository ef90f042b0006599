#!/usr/bin/env bash
# pg_dump of a database using toygun, restored with pg_restore into a new
# cluster: types, resources, runs in every state, histories, a periodic start,
# secrets and rights (grant_type) come back intact; every secret decrypts to the same value, as
# long as the keyring file travels with the dump; the restored due runs are
# ticked to the end by the new cluster's worker; sequences go on from where
# they were.
#
# The keyring file is not in the dump (keys never live in a table): copy it to
# the new cluster and name it in toygun.keyring_file, or nothing decrypts.
set -u
cd "$(dirname "$0")/../.."
source test/lib/cluster.sh
source test/lib/tap.sh

A=${TG_WORK:-/tmp/toygun-scenario}/dump-a
B=${TG_WORK:-/tmp/toygun-scenario}/dump-b
settings=("toygun.database_name = 'app'" "toygun.poll_interval = '1h'" "toygun.max_attempts = 2"
	"toygun.retry_backoff = '1s'" "cron.database_name = 'app'")
tg_init "$A" "${settings[@]}" "cron.host = '$A'" >/dev/null || bail "initdb A failed"
# B: no worker until the restore has been compared
tg_init "$B" "${settings[@]}" "cron.host = '$B'" "toygun.workers = 0" >/dev/null || bail "initdb B failed"
tg_start "$A" || bail "server A did not start"
trap 'tg_stop "$A" immediate; tg_stop "$B" immediate' EXIT
tg_start "$B" || bail "server B did not start"
qa() { tg_psql "$A" app -c "$1"; }
qb() { tg_psql "$B" app -c "$1"; }

plan 23

# --- cluster A: an application in a schema of its own, owned by app_owner ---------

tg_psql "$A" postgres -q -c "CREATE ROLE app_owner LOGIN" -c "CREATE ROLE app_reader" \
	-c "CREATE DATABASE app OWNER app_owner" >/dev/null || bail "roles"
tg_psql "$A" app -q -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION toygun" >/dev/null 2>&1 || bail "extensions"
tg_psql "$A" app -q -U app_owner <<'SQL' >/dev/null || bail "application setup failed"
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO app_reader;
-- the task's behaviour is chosen by its start args
CREATE FUNCTION app.job(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  CASE t.attrs->>'mode'
  WHEN 'panic' THEN RETURN toygun.panic('on purpose');
  WHEN 'wait' THEN
    IF t.state = 'one' THEN RETURN toygun.go('two', '{"note": "waiting"}'); END IF;
    RETURN toygun.stay('{"waited": true}', '900 years');
  ELSE
    IF t.state = 'one' THEN RETURN toygun.go('two', jsonb_build_object('seen', toygun.field(t, 'password'))); END IF;
    RETURN toygun.stop('{"done": true}');
  END CASE;
END $$;
CREATE FUNCTION app.acct(r toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT CASE r.state WHEN 'opening' THEN toygun.go('open') ELSE NULL END
$$;
SELECT toygun.define_resource('acct', '{opening,open}', 'app.acct(toygun.resource)',
                              fields => '{name,token,tier}', encrypted_fields => '{token}');
SELECT toygun.define_resource('plain');
SELECT toygun.define_task('acct', 'job', '{one,two}', 'app.job(toygun.task)',
                          encrypted_fields => '{password}');
-- rights, to a role and to PUBLIC
SELECT toygun.grant_type('acct', 'app_reader', '{read,read_secrets}');
SELECT toygun.grant_type('plain', 'public', '{start}');
CREATE TABLE app.ids (n int PRIMARY KEY, r uuid);
INSERT INTO app.ids SELECT n, toygun.create_resource('acct',
    jsonb_build_object('name', 'acct-' || n, 'token', jsonb_build_object('t', 'tok-' || n, 'n', n), 'tier', n % 2))
  FROM generate_series(1, 6) n;
INSERT INTO app.ids SELECT 10, toygun.create_resource('plain', '{"any": ["thing", 1]}', (SELECT r FROM app.ids WHERE n = 1));
-- secrets of the application's own
CREATE TABLE app.vault (n int PRIMARY KEY, s toygun.secret);
INSERT INTO app.vault SELECT n, toygun.encrypt(jsonb_build_object('own', n, 'ü', repeat('x', n * 100)), 'vault')
  FROM generate_series(1, 3) n;
GRANT SELECT ON app.vault TO app_reader;
-- runs the worker takes to their end, to __panic__, and to a wait of 900 years
SELECT toygun.start_task(r, 'job', jsonb_build_object('mode', 'stop', 'password', 'pw-' || n)) FROM app.ids WHERE n IN (1, 2);
SELECT toygun.start_task(r, 'job', '{"mode": "panic"}') FROM app.ids WHERE n = 3;
SELECT toygun.start_task(r, 'job', '{"mode": "wait", "password": "pw-wait"}') FROM app.ids WHERE n = 4;
SQL
job=$(tg_psql "$A" app -U app_owner -c "SELECT toygun.start_every('acct', 'job', '0 3 1 1 *', '{\"mode\": \"stop\"}')" 2>&1) ||
	bail "start_every failed: $job"
tg_wait 30 "$A" app "SELECT (SELECT count(*) FROM toygun.resource WHERE state = 'open') = 6
                        AND (SELECT string_agg(state, ',' ORDER BY seq) FROM toygun.task) = '__stop__,__stop__,__panic__,two'
                        AND (SELECT attrs ? 'waited' FROM toygun.task WHERE state = 'two')"
ok $? "A's worker opened the accounts and took the runs to __stop__, __panic__ and a wait of 900 years"

# no more background ticks in A: the runs started now stay due
tg_psql "$A" postgres -q -c "ALTER SYSTEM SET toygun.workers = 0" -c "SELECT pg_reload_conf()" >/dev/null
tg_wait 30 "$A" app "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'toygun worker'"
ok $? "A's workers stop when toygun.workers is 0"
tg_psql "$A" app -q -U app_owner <<'SQL' >/dev/null || bail "due runs"
-- due: one new, one ticked by hand into its second state, one on a resource still __new__
SELECT toygun.start_task(r, 'job', jsonb_build_object('mode', 'stop', 'password', 'pw-due-' || n)) FROM app.ids WHERE n = 5;
BEGIN;
SELECT toygun.tick_task(toygun.start_task(r, 'job', '{"mode": "stop", "password": "pw-ticked"}')) FROM app.ids WHERE n = 6;
COMMIT;
INSERT INTO app.ids SELECT 7, toygun.create_resource('acct', '{"name": "late", "token": "tok-late"}');
SELECT toygun.start_task(r, 'job', '{"mode": "stop", "password": "pw-late"}') FROM app.ids WHERE n = 7;
SQL
# history in time partitions (retention): a type that keeps it 100 years, moved by hand
# before maintain() made the partitions, and after (with a keep a day longer: the
# partitions are made past the range rows of the keep of the time are being written to);
# and a row no partition takes (default)
tg_psql "$A" app -q <<'SQL' >/dev/null || bail "retention"
SELECT toygun.define_resource('kept', '{a,b}', keep => '100 years');
SELECT toygun.transition_resource(toygun.create_resource('kept'), 'a');
SELECT toygun.maintain();
SELECT toygun.define_resource('kept', '{a,b}', keep => '100 years 1 day');
SELECT toygun.transition_resource(toygun.create_resource('kept'), 'b');
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, expires_at)
VALUES (gen_random_uuid(), 0, '__new__', 'a', 'kept', '2400-01-01');
SQL
# flow control (issue 17): a queue, paused, and a rate limit a task type names
tg_psql "$A" app -q <<'SQL' >/dev/null || bail "flow control"
SET client_min_messages = error;
SELECT toygun.define_rate_limit('kept_api', 5, '1 second', 2);
SELECT toygun.define_task('kept', 'paced', '{x}', 'app.job(toygun.task)', queue => 'kept_q', rate_limit => 'kept_api');
SELECT toygun.pause_queue('kept_q');
SQL
is "$(qa "SELECT string_agg(DISTINCT CASE WHEN tableoid::regclass::text ~ '_[0-9]' THEN 'time' ELSE tableoid::regclass::text END, ' ')
            FROM toygun.transition")" "time toygun.transition_default toygun.transition_forever" \
	"A's history is in time partitions, in transition_forever and in transition_default"
is "$(qa "SELECT string_agg(state, ',' ORDER BY seq) FROM toygun.task WHERE run_at <= now()")" "__new__,two,__new__" \
	"three due runs wait in A"

# --- what must come back ---------------------------------------------------------

# every table toygun keeps in dumps, with row count and md5 of its rows in
# primary key order; and the application's own tables
FINGERPRINT="SET TimeZone = 'UTC';
SELECT t || ' ' || (xpath('/row/x/text()', query_to_xml(format(
         'SELECT count(*) || '' '' || md5(coalesce(string_agg(x::text, E''\n'' ORDER BY %s), '''')) AS x FROM %s x',
         (SELECT string_agg('x.' || quote_ident(a.attname), ', ' ORDER BY k.i)
            FROM pg_index ix, unnest(ix.indkey) WITH ORDINALITY k(attnum, i), pg_attribute a
           WHERE ix.indrelid = t AND ix.indisprimary AND a.attrelid = t AND a.attnum = k.attnum), t),
       false, true, '')))[1]::text
  FROM (SELECT unnest(extconfig)::regclass AS t FROM pg_extension WHERE extname = 'toygun'
        UNION ALL VALUES ('app.ids'::regclass), ('app.vault'::regclass)
        UNION SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'toygun.transition'::regclass) c
 WHERE (SELECT relkind FROM pg_class WHERE oid = t) = 'r'
 ORDER BY t::text"
SECRETS="SELECT count(*) || ' ' || string_agg(v, ' ' ORDER BY v) FROM (
  SELECT 'r:' || id || '=' || toygun.field(r, 'token')::text AS v FROM toygun.resource r WHERE attrs ? 'token'
  UNION ALL SELECT 't:' || id || '=' || toygun.field(t, 'password')::text FROM toygun.task t WHERE attrs ? 'password'
  UNION ALL SELECT 'v:' || n || '=' || md5(toygun.decrypt(s, 'vault')::text) FROM app.vault) s"
SEQS="SELECT string_agg(sequencename || '=' || coalesce(last_value, 0), ' ' ORDER BY sequencename)
        FROM pg_sequences WHERE schemaname = 'toygun'"
CRON="SELECT string_agg(jobid || ' ' || schedule || ' ' || command || ' ' || jobname, ',') FROM cron.job"
FP_A=$(qa "$FINGERPRINT")
SECRETS_A=$(qa "$SECRETS")
SEQS_A=$(qa "$SEQS")
CRON_A=$(qa "$CRON")
is "$(qa "SELECT string_agg(c::regclass::text, ' ' ORDER BY c::regclass::text) FROM pg_extension, unnest(extconfig) c WHERE extname = 'toygun'")" \
	"toygun.alarm toygun.channel toygun.failure toygun.message toygun.message_seq toygun.outbox toygun.outbox_seq toygun.queue toygun.rate_limit toygun.rename toygun.rename_seq toygun.resource toygun.resource_type toygun.route toygun.schedule toygun.schedule_seq toygun.schedule_start toygun.task toygun.task_seq toygun.task_type toygun.transition_default toygun.transition_forever toygun.trigger toygun.type_grant" \
	"every toygun table and sequence is marked with pg_extension_config_dump (toygun.breaker, runtime state, on purpose not)"
is "${SECRETS_A%% *}" 16 "A holds 16 secrets: 7 tokens, 6 passwords, 3 of the application's own"

# --- dump, roles, restore --------------------------------------------------------

"$PGBIN/pg_dump" -h "$A" -p "$TG_PORT" -U postgres -Fc -f "$A/app.dump" app 2>"$A/dump.err"
ok $? "pg_dump -Fc of A's database"
is "$(qa "$FINGERPRINT")" "$FP_A" "A did not change while it was dumped"
# the keyring travels with the dump
cp "$A/keyring" "$B/keyring" && chmod 600 "$B/keyring"
"$PGBIN/pg_dumpall" -h "$A" -p "$TG_PORT" -U postgres --roles-only 2>"$A/roles.err" |
	grep -v -e '^CREATE ROLE postgres;' -e '^ALTER ROLE postgres ' | tg_psql "$B" postgres >/dev/null
ok $? "the roles, from pg_dumpall --roles-only, are created in B"
"$PGBIN/pg_restore" -h "$B" -p "$TG_PORT" -U postgres --exit-on-error --create -d postgres "$A/app.dump" \
	>"$B/restore.out" 2>&1
status=$?
[ $status -eq 0 ] || sed 's/^/#   /' "$B/restore.out" | tail -n 20
ok $status "pg_restore --create --exit-on-error into B succeeds"
[ ! -s "$B/restore.out" ] || { sed 's/^/#   /' "$B/restore.out" | head -n 20; false; }
ok $? "and prints nothing (no warning, no error)"

# --- B has it all ----------------------------------------------------------------

FP_B=$(qb "$FINGERPRINT")
is "$FP_B" "$FP_A" "every toygun table (and the application's) has the same rows in B: count and md5"
echo "$FP_B" | sed 's/^/# /'
is "$(qb "$SECRETS")" "$SECRETS_A" "every secret decrypts in B to the same value as in A"
is "$(qb "$SEQS")" "$SEQS_A" "toygun's sequences are where they were: $SEQS_A"
is "$(qb "$CRON")" "$CRON_A" "the periodic start's pg_cron job is restored with its id"
is "$(qb "SELECT string_agg(toygun_owner || '/' || p.proowner::regrole, ' ' ORDER BY t.name) FROM
            (SELECT name, owner::text AS toygun_owner, handler FROM toygun.task_type WHERE resource_type = 'acct') t,
            pg_proc p WHERE p.oid = t.handler::regprocedure")" "app_owner/app_owner" \
	"the handler resolves in B, owned by the type's owner"
is "$(qb "SELECT string_agg(resource_type || ' ' || grantee || ' ' || right_name || ' by ' || granted_by, ', '
                            ORDER BY resource_type, grantee, right_name) FROM toygun.type_grants")" \
	"acct app_reader read by app_owner, acct app_reader read_secrets by app_owner, plain public start by app_owner" \
	"the rights granted in A hold in B, to the same roles by name, and to public"

# --- B's worker takes over -------------------------------------------------------

tg_psql "$B" postgres -q -c "ALTER SYSTEM SET toygun.workers = 2" -c "SELECT pg_reload_conf()" >/dev/null
tg_wait 30 "$B" app "SELECT (SELECT count(*) FROM toygun.task WHERE run_at <= now() AND state NOT IN ('__stop__', '__panic__')) = 0
                       AND (SELECT count(*) FROM toygun.resource WHERE state = 'open') = 7"
ok $? "B's worker ticks the three restored due runs (and the new resource) to the end"
is "$(qb "SELECT string_agg(state, ',' ORDER BY seq) FROM toygun.task")" "__stop__,__stop__,__panic__,two,__stop__,__stop__,__stop__" \
	"the stopped, panicked and waiting runs are as they were"
is "$(qb "SELECT count(*) FROM toygun.resource o
           WHERE (SELECT count(*) || '/' || coalesce(max(step), -1) FROM toygun.transition h WHERE h.object_id = o.id)
                 <> o.step || '/' || (o.step - 1)") $(qb "SELECT count(*) FROM toygun.task o
           WHERE (SELECT count(*) || '/' || coalesce(max(step), -1) FROM toygun.transition h WHERE h.object_id = o.id)
                 <> o.step || '/' || (o.step - 1)")" "0 0" "every history in B is gapless, from step 0"

is "$(qb "SELECT string_agg(name || ':' || paused, ' ' ORDER BY id) || ' / ' ||
               (SELECT string_agg(r.name || ' ' || r.rate || '/' || r.per || ' ' || r.burst || ' ' || d.name, ' ')
                  FROM toygun.rate_limit r JOIN toygun.task_type d ON d.rate_limit = r.name)
          FROM toygun.queue")" "default:false kept_q:true / kept_api 5/00:00:01 2 paced" \
	"queues (a pause too) and rate limits are restored; default is installed running"

# a new run in B: its seq follows the restored ones, its secret decrypts
NEW=$(tg_psql "$B" app -U app_owner -c "SELECT toygun.start_task(r, 'job', '{\"mode\": \"stop\", \"password\": \"pw-b\"}')
                                         FROM app.ids WHERE n = 1")
tg_wait 30 "$B" app "SELECT state = '__stop__' AND attrs->>'seen' = 'pw-b' FROM toygun.task WHERE id = '$NEW'"
ok $? "a new start_task in B runs to __stop__ and reads its encrypted field"
is "$(qb "SELECT seq > (SELECT max(seq) FROM toygun.task WHERE id <> '$NEW') FROM toygun.task WHERE id = '$NEW'")" t \
	"its seq comes after every restored run's"
