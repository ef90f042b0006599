-- Secrets: the shape of their API and the exact text of their errors. The
-- instance's keyring holds one key, numbered 1 (bin/toygun test makes it).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS toygun;
RESET client_min_messages;
-- error context lines would name random ids
\set SHOW_CONTEXT never

SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS result, p.provolatile, p.proisstrict,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'toygun'::regnamespace
   AND p.proname IN ('encrypt', 'decrypt', 'key_number', 'field', 'rotate_secrets', 'keyring')
 ORDER BY 1::text;
SELECT typname, typlen, typstorage FROM pg_type WHERE oid = 'toygun.secret'::regtype;

-- the text form: a version prefix and base64 of 32 header bytes, the JSON
-- text and a 16-byte tag
SELECT s::text ~ '^tg1:[A-Za-z0-9+/]+=*$' AS opaque, length(s::text) AS length, toygun.key_number(s),
       toygun.decrypt(s) AS value
  FROM (SELECT toygun.encrypt('"x"') AS s) e;
SELECT toygun.encrypt('[1, 2]')::text = toygun.encrypt('[1, 2]')::text AS same_text;
SELECT * FROM toygun.keyring();

-- tampering and malformed values
CREATE FUNCTION pg_temp.bytes(s toygun.secret) RETURNS bytea LANGUAGE sql AS
    $$ SELECT decode(substr(s::text, 5), 'base64') $$;
CREATE FUNCTION pg_temp.text_of(b bytea) RETURNS text LANGUAGE sql AS
    $$ SELECT 'tg1:' || translate(encode(b, 'base64'), E'\n', '') $$;
SELECT toygun.encrypt('{"pin": 1234}', 'account 7') AS s \gset
SELECT toygun.decrypt(:'s', 'account 7');
SELECT toygun.decrypt(:'s', 'account 8');
SELECT toygun.decrypt(:'s');
-- a flipped byte, a byte cut off, bytes added, a key number not in the
-- keyring, a key number out of range
SELECT toygun.decrypt(pg_temp.text_of(set_byte(pg_temp.bytes(:'s'), 40, get_byte(pg_temp.bytes(:'s'), 40) # 1))::toygun.secret,
                      'account 7');
SELECT toygun.decrypt(pg_temp.text_of(substr(pg_temp.bytes(:'s'), 1, length(pg_temp.bytes(:'s')) - 1))::toygun.secret,
                      'account 7');
SELECT toygun.decrypt(pg_temp.text_of(pg_temp.bytes(:'s') || '\x0000'::bytea)::toygun.secret, 'account 7');
SELECT toygun.decrypt(pg_temp.text_of(overlay(pg_temp.bytes(:'s') PLACING int4send(7) FROM 1 FOR 4))::toygun.secret,
                      'account 7');
SELECT toygun.decrypt(pg_temp.text_of(overlay(pg_temp.bytes(:'s') PLACING int4send(-1) FROM 1 FOR 4))::toygun.secret,
                      'account 7');
SELECT 'garbage'::toygun.secret;
SELECT 'tg1:@@@@'::toygun.secret;
SELECT 'tg1:AAAA'::toygun.secret;
SELECT 'tg2:AAAA'::toygun.secret;
SELECT toygun.encrypt('1', NULL);
SELECT toygun.decrypt(NULL) IS NULL AS null_in_null_out;

-- encrypted fields
SELECT toygun.define_resource('locker', fields => '{label}', encrypted_fields => '{code}');
SELECT toygun.create_resource('locker', '{"label": "front", "code": 1234}') AS r \gset
SELECT toygun.create_resource('locker', '{"label": "back", "code": 5678}') AS r2 \gset
SELECT a.key, jsonb_typeof(a.value) AS stored_as
  FROM toygun.resource r, jsonb_each(r.attrs) a WHERE r.id = :'r' ORDER BY 1;
SELECT attrs->'code' ? '$secret' AS sealed, attrs::text ~ '1234' AS shows_plaintext
  FROM toygun.resource WHERE id = :'r';
SELECT toygun.field(r, 'code') AS code, toygun.field(r, 'label') AS label, toygun.field(r, 'none') AS none
  FROM toygun.resource r WHERE id = :'r';
SELECT toygun.create_resource('locker', '{"colour": "red"}');
-- a ciphertext copied to another row
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{code}', (SELECT attrs->'code' FROM toygun.resource WHERE id = :'r'))
 WHERE id = :'r2';
SELECT toygun.field(r, 'code') FROM toygun.resource r WHERE id = :'r2';
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{code}', '{"$secret": "tg1:AAAA"}') WHERE id = :'r2';
SELECT toygun.field(r, 'code') FROM toygun.resource r WHERE id = :'r2';
UPDATE toygun.resource SET attrs = attrs - 'code' WHERE id = :'r2';

-- who may decrypt
CREATE ROLE regress_secret_nobody;
-- it may read the type's rows (issue 13's right read), not its secrets
SELECT toygun.grant_type('locker', 'regress_secret_nobody', '{read}');
SET ROLE regress_secret_nobody;
-- last_error is not theirs to read: they name the other columns of the row
SELECT toygun.field(r, 'code') FROM toygun.resource r WHERE id = :'r';
SELECT toygun.field(ROW(r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, NULL, r.created_at, r.updated_at, r.version, r.queue_id)::toygun.resource, 'code') FROM toygun.resource r WHERE id = :'r';
SELECT toygun.field(ROW(r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, NULL, r.created_at, r.updated_at, r.version, r.queue_id)::toygun.resource, 'label') FROM toygun.resource r WHERE id = :'r';
SELECT toygun.decrypt(:'s', 'account 7');
SELECT toygun.rotate_secrets();
SHOW toygun.keyring_file;
SELECT toygun.key_number(toygun.encrypt('"anyone may encrypt"'));
RESET ROLE;
DROP ROLE regress_secret_nobody;

-- rotation with a single key has nothing to re-encrypt
SELECT toygun.rotate_secrets();
SET client_min_messages = warning;
DROP EXTENSION toygun CASCADE;
