-- Secrets and encrypted fields: round trips, tampering, contexts, the text
-- and binary forms, fields sealed on every way into attrs, and who may
-- decrypt. The cluster's keyring holds one key (bin/toygun gives it one).
BEGIN;
\ir ../fixtures.sql
SELECT plan(83);

-- The bytes of a secret after its version byte, and a secret's text from
-- such bytes: key number (0-3), length (4-7), nonce (8-31), ciphertext.
CREATE FUNCTION pg_temp.bytes(s toygun.secret) RETURNS bytea LANGUAGE sql AS
    $$ SELECT decode(substr(s::text, 5), 'base64') $$;
CREATE FUNCTION pg_temp.text_of(b bytea) RETURNS text LANGUAGE sql AS
    $$ SELECT 'tg1:' || translate(encode(b, 'base64'), E'\n', '') $$;
CREATE FUNCTION pg_temp.flipped(s toygun.secret, i int) RETURNS text LANGUAGE sql AS
    $$ SELECT pg_temp.text_of(set_byte(pg_temp.bytes(s), i, get_byte(pg_temp.bytes(s), i) # 1)) $$;
CREATE FUNCTION pg_temp.with_key(s toygun.secret, k int) RETURNS text LANGUAGE sql AS
    $$ SELECT pg_temp.text_of(overlay(pg_temp.bytes(s) PLACING int4send(k) FROM 1 FOR 4)) $$;
CREATE FUNCTION pg_temp.truncated(s toygun.secret, n int) RETURNS text LANGUAGE sql AS
    $$ SELECT pg_temp.text_of(substr(pg_temp.bytes(s), 1, length(pg_temp.bytes(s)) - n)) $$;
CREATE FUNCTION pg_temp.round_trip(v jsonb, ctx text DEFAULT '') RETURNS jsonb LANGUAGE sql AS
    $$ SELECT toygun.decrypt(toygun.encrypt(v, ctx)::text::toygun.secret, ctx) $$;
-- What an error says to the client (message, detail, hint), or NULL.
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text;
    d text;
    h text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN concat_ws(' | ', m, d, h);
END $$;

-- Round trips of every kind of JSON value
SELECT is(pg_temp.round_trip('{"a": 1, "b": "two"}'), '{"a": 1, "b": "two"}', 'round trip: an object');
SELECT is(pg_temp.round_trip('[1, "x", null, true, 2.5]'), '[1, "x", null, true, 2.5]', 'round trip: an array');
SELECT is(pg_temp.round_trip('"hello, world"'), '"hello, world"', 'round trip: a string');
SELECT is(pg_temp.round_trip('3.14159265358979323846264338327950288419'),
          '3.14159265358979323846264338327950288419', 'round trip: a number, every digit');
SELECT is(pg_temp.round_trip('-0.5e-300'), '-0.5e-300', 'round trip: a tiny negative number');
SELECT is(pg_temp.round_trip('true'), 'true', 'round trip: true');
SELECT is(pg_temp.round_trip('false'), 'false', 'round trip: false');
SELECT is(pg_temp.round_trip('null'), 'null', 'round trip: JSON null');
SELECT is(pg_temp.round_trip('{"a": {"b": [1, {"c": [[], {}]}]}, "d": "é ✓ \"q\" \\ \n"}'),
          '{"a": {"b": [1, {"c": [[], {}]}]}, "d": "é ✓ \"q\" \\ \n"}', 'round trip: nested values and escapes');
SELECT is(pg_temp.round_trip('{}'), '{}', 'round trip: an empty object');
SELECT is(pg_temp.round_trip('[]'), '[]', 'round trip: an empty array');
SELECT is(pg_temp.round_trip('""'), '""', 'round trip: an empty string');
SELECT is(pg_temp.round_trip(jsonb_build_object('blob', repeat('x', 1100000), 'n', 1)),
          jsonb_build_object('blob', repeat('x', 1100000), 'n', 1), 'round trip: a value over 1 MB');
SELECT is(pg_temp.round_trip((SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 40000) i), 'big'),
          (SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 40000) i), 'round trip: a 1.4 MB array, with a context');
SELECT ok(length(toygun.encrypt(jsonb_build_object('blob', repeat('x', 1100000)))::text) > 1100000,
          'a value over 1 MB is stored whole, not truncated');
SELECT ok(toygun.encrypt(NULL) IS NULL AND toygun.decrypt(NULL) IS NULL, 'NULL encrypts and decrypts to NULL');

-- The text form
SELECT isnt(toygun.encrypt('"same"')::text, toygun.encrypt('"same"')::text,
            'two encryptions of the same value differ');
SELECT isnt(pg_temp.bytes(toygun.encrypt('"same"')), pg_temp.bytes(toygun.encrypt('"same"')),
            'two encryptions of the same value differ in their bytes');
SELECT matches(toygun.encrypt('"plaintext-marker"')::text, '^tg1:[A-Za-z0-9+/]+=*$',
               'the text form is a version prefix and base64');
SELECT ok(position('plaintext-marker' IN toygun.encrypt('"plaintext-marker"')::text) = 0
          AND position(encode('plaintext-marker', 'base64') IN toygun.encrypt('"plaintext-marker"')::text) = 0,
          'the text form does not contain the plaintext, nor its base64');
SELECT is(toygun.key_number(toygun.encrypt('1')), (SELECT key_number FROM toygun.keyring() WHERE encrypts),
          'the highest key of the keyring encrypts');
SELECT is((SELECT count(*) FROM toygun.keyring()), 1::bigint, 'the keyring lists its keys, by number');

-- Tampering, contexts and malformed values each fail with their own SQLSTATE
SELECT toygun.encrypt('{"pin": "plain-9137"}', 'ctx-4711') AS s \gset
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', pg_temp.flipped(:'s', 40), 'ctx-4711'), 'XX001',
                 'secret could not be decrypted', 'a flipped byte of the ciphertext fails to decrypt');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', pg_temp.flipped(:'s', length(pg_temp.bytes(:'s')) - 1), 'ctx-4711'),
                 'XX001', 'secret could not be decrypted', 'a flipped byte of the tag fails to decrypt');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', pg_temp.flipped(:'s', 10), 'ctx-4711'), 'XX001',
                 'secret could not be decrypted', 'a flipped byte of the nonce fails to decrypt');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', :'s', 'ctx-4712'), 'XX001',
                 'secret could not be decrypted', 'a wrong context fails to decrypt');
SELECT throws_ok(format('SELECT toygun.decrypt(%L)', :'s'), 'XX001',
                 'secret could not be decrypted', 'the empty context is a context too');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', pg_temp.truncated(:'s', 3), 'ctx-4711'), '22P02',
                 'invalid input syntax for type toygun.secret', 'a truncated value is malformed');
SELECT throws_ok(format('SELECT %L::toygun.secret', left(:'s', 12)), '22P02',
                 'invalid input syntax for type toygun.secret', 'a value cut short of its header is malformed');
SELECT throws_ok(format('SELECT %L::toygun.secret', pg_temp.text_of(pg_temp.bytes(:'s') || '\x00'::bytea)), '22P02',
                 'invalid input syntax for type toygun.secret', 'a value with bytes added is malformed');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', pg_temp.with_key(:'s', 99), 'ctx-4711'), '42704',
                 'key 99 is not in the keyring', 'a key number missing from the keyring is its own error');
SELECT throws_ok($$SELECT 'garbage'::toygun.secret$$, '22P02', 'invalid input syntax for type toygun.secret',
                 'text without the prefix is malformed');
SELECT throws_ok($$SELECT ''::toygun.secret$$, '22P02', 'invalid input syntax for type toygun.secret',
                 'the empty string is malformed');
SELECT throws_ok($$SELECT 'tg1:***'::toygun.secret$$, '22P02', 'invalid input syntax for type toygun.secret',
                 'text that is not base64 is malformed');
SELECT throws_ok(format('SELECT %L::toygun.secret', 'tg2:' || substr(:'s', 5)), '22P02',
                 'invalid input syntax for type toygun.secret', 'an unknown format version is malformed');
SELECT throws_ok($$SELECT toygun.encrypt('1', NULL)$$, '22004', 'context must not be null', 'encrypt: a NULL context');
SELECT throws_ok($$SELECT toygun.decrypt(toygun.encrypt('1'), NULL)$$, '22004', 'context must not be null',
                 'decrypt: a NULL context');
SELECT ok(NOT EXISTS (
    SELECT FROM unnest(ARRAY[
        pg_temp.error_of(format('SELECT toygun.decrypt(%L, %L)', pg_temp.flipped(:'s', 40), 'ctx-4711')),
        pg_temp.error_of(format('SELECT toygun.decrypt(%L, %L)', :'s', 'ctx-4712')),
        pg_temp.error_of(format('SELECT toygun.decrypt(%L, %L)', pg_temp.truncated(:'s', 3), 'ctx-4711')),
        pg_temp.error_of(format('SELECT toygun.decrypt(%L, %L)', pg_temp.with_key(:'s', 99), 'ctx-4711'))]) e
     WHERE e IS NULL OR e ~ '(plain-9137|ctx-471|tg1:)' OR position(substr(:'s', 45, 16) IN e) > 0),
          'the errors say nothing of the plaintext, the context or the ciphertext');

-- Binary COPY keeps secrets byte for byte; bad bytes are refused
CREATE TEMP TABLE sec (n int, v toygun.secret);
INSERT INTO sec SELECT n, toygun.encrypt(jsonb_build_object('n', n, 'pad', repeat('p', n * 1000)), 'copy')
  FROM generate_series(1, 5) n;
SELECT current_setting('data_directory') || '/pgtap_secrets.copy' AS copyfile \gset
COPY sec TO :'copyfile' (FORMAT binary);
CREATE TEMP TABLE sec2 (LIKE sec);
COPY sec2 FROM :'copyfile' (FORMAT binary);
SELECT results_eq($$SELECT n, v::text FROM sec2 ORDER BY n$$, $$SELECT n, v::text FROM sec ORDER BY n$$,
                  'a binary COPY round trip keeps every secret');
SELECT is((SELECT count(*) FROM sec2 WHERE toygun.decrypt(v, 'copy')->'n' = to_jsonb(n)), 5::bigint,
          'secrets copied in binary still decrypt');
CREATE TEMP TABLE raw (v bytea);
INSERT INTO raw VALUES ('\x0100000001000000100102'::bytea);
COPY raw TO :'copyfile' (FORMAT binary);
SELECT throws_ok(format('COPY sec2 (v) FROM %L (FORMAT binary)', :'copyfile'), '22P03',
                 'invalid binary representation for type toygun.secret', 'binary COPY refuses a malformed secret');

-- Encrypted fields, defined by an ordinary role
CREATE ROLE tg_vault;
CREATE ROLE tg_mallory;
CREATE ROLE tg_member IN ROLE tg_vault;
CREATE SCHEMA vault AUTHORIZATION tg_vault;
SET ROLE tg_vault;
CREATE FUNCTION vault.open(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'one' THEN
        RETURN toygun.go('two', jsonb_build_object('length', length(toygun.field(t, 'password')#>>'{}'),
                                                   'password', (toygun.field(t, 'password')#>>'{}') || '-next'));
    WHEN 'two' THEN
        RETURN toygun.stop(jsonb_build_object('note', md5(toygun.field(t, 'password')#>>'{}')));
    END CASE;
END $$;
SELECT toygun.define_resource('safe', fields => '{label}', encrypted_fields => '{token,spare}');
SELECT toygun.define_task('safe', 'open', '{one,two}', 'vault.open(toygun.task)',
                          fields => '{length,note}', encrypted_fields => '{password}');
SELECT toygun.create_resource('safe', '{"label": "a", "token": "tok-marker-1"}') AS r \gset
SELECT toygun.create_resource('safe', '{"label": "b", "token": "tok-marker-2"}') AS r2 \gset
SELECT toygun.start_task(:'r', 'open', '{"password": "pw-marker"}') AS t \gset
RESET ROLE;

SELECT ok((SELECT attrs->'token' ? '$secret' AND attrs->>'label' = 'a' FROM toygun.resource WHERE id = :'r'),
          'create_resource seals an encrypted field and leaves a plain one');
SELECT ok((SELECT attrs->'password' ? '$secret' FROM toygun.task WHERE id = :'t'), 'start_task seals an encrypted arg');
SELECT is((SELECT toygun.field(r, 'token') FROM toygun.resource r WHERE id = :'r'), '"tok-marker-1"',
          'field() decrypts a resource''s encrypted field');
SELECT is((SELECT toygun.field(r, 'label') FROM toygun.resource r WHERE id = :'r'), '"a"',
          'field() reads a plain field as it is');
SELECT ok((SELECT toygun.field(r, 'spare') IS NULL FROM toygun.resource r WHERE id = :'r'),
          'field() of a field that is not set is NULL');
SELECT is((SELECT toygun.field(t, 'password') FROM toygun.task t WHERE id = :'t'), '"pw-marker"',
          'field() decrypts a run''s encrypted field');

-- the handler runs as tg_vault and reads its own field, and its outcome attrs are sealed
SELECT is((toygun.tick_task(:'t')).state, 'two', 'the handler reads its encrypted field');
SELECT is((SELECT attrs->'length' FROM toygun.task WHERE id = :'t'), '9', 'what it read was the decrypted value');
SELECT ok((SELECT attrs->'password' ? '$secret' FROM toygun.task WHERE id = :'t'), 'outcome attrs are sealed');
SELECT is((toygun.tick_task(:'t')).state, '__stop__', 'the handler reads the field it wrote in the last tick');
SELECT is((SELECT attrs->>'note' FROM toygun.task WHERE id = :'t'), md5('pw-marker-next'),
          'the sealed outcome decrypts to what the handler wrote');

-- transitions by hand seal too
SELECT toygun.start_task(:'r', 'open', '{"password": "pw2-marker"}') AS t2 \gset
SELECT (toygun.transition_task(:'t2', 'two', '{"password": "manual-marker"}')).state AS moved \gset
SELECT is((SELECT toygun.field(t, 'password') FROM toygun.task t WHERE id = :'t2'), '"manual-marker"',
          'transition_task seals its attrs');
SELECT (toygun.transition_resource(:'r2', 'running', '{"token": "res-marker-3", "spare": [1, {"x": "spare-marker"}]}')).state AS moved \gset
SELECT is((SELECT toygun.field(r, 'spare') FROM toygun.resource r WHERE id = :'r2'), '[1, {"x": "spare-marker"}]',
          'transition_resource seals its attrs, nested values included');
SELECT is((SELECT count(*) FROM toygun.resource WHERE attrs ? 'token' AND NOT attrs->'token' ? '$secret'), 0::bigint,
          'no resource keeps an encrypted field in plaintext');
SELECT ok(NOT EXISTS (SELECT FROM toygun.task WHERE attrs::text ~ 'marker')
          AND NOT EXISTS (SELECT FROM toygun.resource WHERE attrs::text ~ 'marker')
          AND NOT EXISTS (SELECT FROM toygun.transition WHERE note ~ 'marker'),
          'the stored attrs and history never contain the plaintext of an encrypted field');

-- a value that looks sealed is sealed again: nobody plants a ciphertext
SELECT (SELECT attrs->'token' FROM toygun.resource WHERE id = :'r') AS sealed_token \gset
SELECT toygun.create_resource('safe', jsonb_build_object('token', :'sealed_token'::jsonb)) AS r3 \gset
SELECT is((SELECT toygun.field(r, 'token') FROM toygun.resource r WHERE id = :'r3'), :'sealed_token'::jsonb,
          'a sealed-looking value given as input is stored as a value, not as a ciphertext');

-- ciphertexts copied to another row or field do not decrypt (written behind the API, as a superuser)
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{token}', :'sealed_token'::jsonb) WHERE id = :'r2';
SELECT throws_ok(format($$SELECT toygun.field(r, 'token') FROM toygun.resource r WHERE id = %L$$, :'r2'), 'XX001',
                 'secret could not be decrypted', 'a field copied to another resource does not decrypt');
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{spare}', :'sealed_token'::jsonb) WHERE id = :'r';
SELECT throws_ok(format($$SELECT toygun.field(r, 'spare') FROM toygun.resource r WHERE id = %L$$, :'r'), 'XX001',
                 'secret could not be decrypted', 'a field copied to another field of the same row does not decrypt');
UPDATE toygun.task SET attrs = jsonb_set(attrs, '{password}', (SELECT attrs->'password' FROM toygun.task WHERE id = :'t'))
 WHERE id = :'t2';
SELECT throws_ok(format($$SELECT toygun.field(t, 'password') FROM toygun.task t WHERE id = %L$$, :'t2'), 'XX001',
                 'secret could not be decrypted', 'a field copied to another run does not decrypt');
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{spare}',
       jsonb_build_object('$secret', pg_temp.with_key((attrs->'token'->>'$secret')::toygun.secret, 99))) WHERE id = :'r';
SELECT throws_ok(format($$SELECT toygun.field(r, 'spare') FROM toygun.resource r WHERE id = %L$$, :'r'), '42704',
                 'key 99 is not in the keyring', 'a stored field under a missing key number');
UPDATE toygun.resource SET attrs = jsonb_set(attrs, '{spare}',
       jsonb_build_object('$secret', pg_temp.truncated((attrs->'token'->>'$secret')::toygun.secret, 3))) WHERE id = :'r';
SELECT throws_ok(format($$SELECT toygun.field(r, 'spare') FROM toygun.resource r WHERE id = %L$$, :'r'), '22P02',
                 'invalid input syntax for type toygun.secret', 'a truncated stored field');
SELECT throws_ok(format($$SELECT toygun.field(t, 'password') FROM toygun.task t WHERE id = %L$$, :'t2'), 'XX001',
                 NULL, 'the run still refuses the copied field');
SELECT throws_ok(format($$SELECT toygun.field(ROW(%L, %L, 'safe', 'open', 'x', %L, 0, NULL, 0, NULL, now(), now(), 0, NULL, 1, 0, 0, NULL)::toygun.task, 'password')$$,
                        gen_random_uuid(), :'r', jsonb_build_object('password', :'sealed_token'::jsonb)),
                 'P0002', NULL, 'field() of a made-up run that is not stored is refused');

-- declared fields are enforced; encrypted fields count as declared
SELECT throws_ok($$SELECT toygun.create_resource('safe', '{"colour": "red"}')$$, '42703',
                 'field "colour" is not declared by resource type "safe"', 'an undeclared field is refused');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'open', '{"pin": 1}')$$, :'r'), '42703', NULL,
                 'an undeclared arg is refused');

-- Who may decrypt: a role that may read the type's rows, but not its secrets
SELECT toygun.grant_type('safe', 'tg_mallory', '{read}');
SET ROLE tg_mallory;
SELECT throws_ok(format($$SELECT toygun.field(ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step, t.run_at, t.attempts, NULL, t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id, t.flow_key)::toygun.task, 'password') FROM toygun.task t WHERE id = %L$$, :'t'), '42501',
                 'permission denied to read encrypted field "password" of task type "safe.open": it needs right "read_secrets" on resource type "safe"',
                 'a role without right read_secrets on the type cannot read its encrypted fields');
SELECT throws_ok(format($$SELECT toygun.field(ROW(%L, %L, 'safe', 'open', 'x', '{"password": {"$secret": "x"}}', 0, NULL, 0, NULL, now(), now(), 0, NULL, 1, 0, 0, NULL)::toygun.task, 'password')$$,
                        :'t', :'r'),
                 '42501', NULL, 'nor through a row it made up');
SELECT is((SELECT toygun.field(ROW(r.id, r.type, r.parent_id, r.state, r.attrs, r.step, r.run_at, r.attempts, NULL, r.created_at, r.updated_at, r.version, r.queue_id)::toygun.resource, 'label')
             FROM toygun.resource r WHERE id = :'r'), '"a"',
          'a role with read reads a plain field, as it reads the table');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', :'s', 'ctx-4711'), '42501',
                 'permission denied for function decrypt', 'decrypt is not granted to PUBLIC');
SELECT lives_ok($$SELECT toygun.encrypt('"anyone"', 'x')$$, 'anyone may encrypt');
SELECT throws_ok($$SELECT toygun.rotate_secrets()$$, '42501', 'permission denied for function rotate_secrets',
                 'rotate_secrets is not granted to PUBLIC');
SELECT throws_ok($$SELECT * FROM toygun.keyring()$$, '42501', 'permission denied for function keyring',
                 'keyring() is not granted to PUBLIC');
SELECT throws_ok($$SHOW toygun.keyring_file$$, '42501', NULL, 'only superusers see the keyring setting');
RESET ROLE;
SET ROLE tg_member;
SELECT is((SELECT toygun.field(ROW(t.id, t.resource_id, t.resource_type, t.name, t.state, t.attrs, t.step, t.run_at, t.attempts, NULL, t.created_at, t.updated_at, t.seq, t.parent_run, t.version, t.priority, t.queue_id, t.flow_key)::toygun.task, 'password')
             FROM toygun.task t WHERE id = :'t'), '"pw-marker-next"',
          'a member of the defining role reads its encrypted fields');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', :'s', 'ctx-4711'), '42501', NULL,
                 'reading fields does not give decrypt');
RESET ROLE;
GRANT EXECUTE ON FUNCTION toygun.decrypt(toygun.secret, text) TO tg_vault;
SET ROLE tg_member;
SELECT is(toygun.decrypt(:'s', 'ctx-4711'), '{"pin": "plain-9137"}', 'decrypt works once granted');
SELECT throws_ok(format('SELECT toygun.decrypt(%L, %L)', (SELECT attrs->'password'->>'$secret' FROM toygun.task WHERE id = :'t'),
                        ''), 'XX001', NULL, 'decrypt cannot open a field''s secret, whatever the context');
RESET ROLE;

-- A field declared encrypted after it was written: read as it is, sealed by rotate_secrets()
SET ROLE tg_vault;
SELECT toygun.define_resource('late', fields => '{x}');
SELECT toygun.create_resource('late', '{"x": "late-value"}') AS r4 \gset
SELECT toygun.define_resource('late', encrypted_fields => '{x}');
RESET ROLE;
SELECT is((SELECT toygun.field(r, 'x') FROM toygun.resource r WHERE id = :'r4'), '"late-value"',
          'a value stored before its field was encrypted reads as it is');
-- (the truncated value planted above would stop it)
UPDATE toygun.resource SET attrs = attrs - 'spare' WHERE id = :'r';
SELECT is(toygun.rotate_secrets(), 1::bigint, 'rotate_secrets seals it (the others already use the current key)');
SELECT ok((SELECT attrs->'x' ? '$secret' FROM toygun.resource WHERE id = :'r4'), 'it is sealed now');
SELECT is((SELECT toygun.field(r, 'x') FROM toygun.resource r WHERE id = :'r4'), '"late-value"', 'and reads the same');
SELECT is(toygun.rotate_secrets(), 0::bigint, 'a second rotation has nothing to do');

SELECT * FROM finish();
ROLLBACK;
