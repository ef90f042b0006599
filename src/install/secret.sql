
-- Secrets: a jsonb value encrypted under a numbered key of the keyring file
-- (toygun.keyring_file), and encrypted fields of resources and tasks.

CREATE TYPE toygun.secret;
CREATE FUNCTION toygun.secret_in(cstring) RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_secret_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_out(toygun.secret) RETURNS cstring
    AS 'MODULE_PATHNAME', 'toygun_secret_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_recv(internal) RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_secret_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION toygun.secret_send(toygun.secret) RETURNS bytea
    AS 'MODULE_PATHNAME', 'toygun_secret_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- Ciphertext does not compress: store it out of line without trying.
CREATE TYPE toygun.secret (
    INPUT = toygun.secret_in,
    OUTPUT = toygun.secret_out,
    RECEIVE = toygun.secret_recv,
    SEND = toygun.secret_send,
    INTERNALLENGTH = VARIABLE,
    STORAGE = external
);
COMMENT ON TYPE toygun.secret IS 'a jsonb value encrypted with a key of the toygun keyring';

-- A new random nonce every time; the context is bound to the ciphertext.
CREATE FUNCTION toygun.encrypt(value jsonb, context text DEFAULT '') RETURNS toygun.secret
    AS 'MODULE_PATHNAME', 'toygun_encrypt' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION toygun.decrypt(secret toygun.secret, context text DEFAULT '') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_decrypt' LANGUAGE C STABLE PARALLEL SAFE;
-- The number of the key that encrypted a secret (not secret itself).
CREATE FUNCTION toygun.key_number(secret toygun.secret) RETURNS integer
    AS 'MODULE_PATHNAME', 'toygun_key_number' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- A field of a run or a resource, decrypted if its type declares it encrypted.
CREATE FUNCTION toygun.field(t toygun.task, name text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_field_task' LANGUAGE C STABLE STRICT;
CREATE FUNCTION toygun.field(r toygun.resource, name text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_field_resource' LANGUAGE C STABLE STRICT;

-- Administration: re-encrypt stored fields with the current key, and the
-- numbers (never the keys) of the keys this session has loaded.
CREATE FUNCTION toygun.rotate_secrets() RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_rotate_secrets' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.keyring() RETURNS TABLE (key_number integer, encrypts boolean)
    AS 'MODULE_PATHNAME', 'toygun_keyring' LANGUAGE C VOLATILE;

-- Anyone may encrypt, and read fields of the types they may act for
-- (field() checks); decrypting arbitrary secrets and the administration
-- functions are for the roles they are granted to.
REVOKE ALL ON FUNCTION toygun.decrypt(toygun.secret, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION toygun.rotate_secrets() FROM PUBLIC;
REVOKE ALL ON FUNCTION toygun.keyring() FROM PUBLIC;
