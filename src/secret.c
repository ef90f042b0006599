/*
 * secret.c
 *		The toygun.secret type (a jsonb value encrypted with XChaCha20-Poly1305
 *		under a numbered key of the keyring), its text and binary forms, and
 *		toygun.encrypt() / toygun.decrypt().
 */
#include "postgres.h"

#include <sodium.h>

#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_secret_in);
PG_FUNCTION_INFO_V1(toygun_secret_out);
PG_FUNCTION_INFO_V1(toygun_secret_recv);
PG_FUNCTION_INFO_V1(toygun_secret_send);
PG_FUNCTION_INFO_V1(toygun_encrypt);
PG_FUNCTION_INFO_V1(toygun_decrypt);
PG_FUNCTION_INFO_V1(toygun_key_number);

/*
 * The bytes of a secret (the datum's data), format version 1, integers
 * big-endian:
 *
 *		version (1) | key number (4) | ciphertext length (4) | nonce (24) | ciphertext
 *
 * The ciphertext is the value's JSON text encrypted and authenticated with
 * the additional data version | key number | context domain | context. The
 * length is redundant with the datum's size, so that a truncated value is
 * recognised as malformed before any decryption is tried.
 */
#define SECRET_VERSION		1
#define OFF_KEY				1
#define OFF_LENGTH			5
#define OFF_NONCE			9
#define NONCE_BYTES			crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES			crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SECRET_HEADER		(OFF_NONCE + NONCE_BYTES)
/* the shortest JSON text is one byte */
#define SECRET_MIN_BYTES	(SECRET_HEADER + TAG_BYTES + 1)

/* The text form: this prefix, then the bytes after the version in base64. */
#define SECRET_PREFIX		"tg1:"
#define SECRET_PREFIX_LEN	4

/* Largest JSON text encrypted: its sealed text form must fit a jsonb string. */
#define SECRET_MAX_PLAINTEXT (128 * 1024 * 1024)

static uint32
get32(const unsigned char *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static void
put32(unsigned char *p, uint32 v)
{
	p[0] = (v >> 24) & 0xff;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/*
 * What is wrong with the bytes of a would-be secret, as a detail sentence,
 * or NULL if they are well formed. Never mentions the bytes themselves.
 */
static const char *
secret_problem(const unsigned char *b, size_t len)
{
	if (len < 1 || b[0] != SECRET_VERSION)
		return "Its format version is not supported.";
	if (len < SECRET_MIN_BYTES)
		return "It is shorter than the smallest secret: it was truncated.";
	if (get32(b + OFF_KEY) > PG_INT32_MAX)
		return "Its key number is out of range.";
	if (get32(b + OFF_LENGTH) > len - SECRET_HEADER)
		return "It is shorter than its header says: it was truncated.";
	if (get32(b + OFF_LENGTH) < len - SECRET_HEADER)
		return "It is longer than its header says.";
	return NULL;
}

/* The bytes of a secret datum, detoasted. */
static const unsigned char *
secret_bytes(ToygunSecret *s, size_t *len)
{
	*len = VARSIZE_ANY_EXHDR(s);
	return (const unsigned char *) VARDATA_ANY(s);
}

uint32
toygun_secret_key(ToygunSecret *s)
{
	size_t		len;
	const unsigned char *b = secret_bytes(s, &len);

	return get32(b + OFF_KEY);
}

/*
 * Parse the text form (len bytes, not necessarily terminated). Returns NULL
 * and sets *problem to a detail sentence if it is malformed.
 */
ToygunSecret *
toygun_secret_parse(const char *s, size_t len, const char **problem)
{
	size_t		b64len;
	size_t		maxbytes;
	size_t		binlen = 0;
	ToygunSecret *out;
	unsigned char *b;

	if (len < SECRET_PREFIX_LEN || memcmp(s, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0)
	{
		*problem = "A secret's text form starts with \"" SECRET_PREFIX "\".";
		return NULL;
	}
	b64len = len - SECRET_PREFIX_LEN;
	maxbytes = b64len / 4 * 3 + 3;
	if (maxbytes > MaxAllocSize - VARHDRSZ - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("toygun.secret value is too large")));
	out = palloc(VARHDRSZ + 1 + maxbytes);
	b = (unsigned char *) VARDATA(out);
	b[0] = SECRET_VERSION;
	if (sodium_base642bin(b + 1, maxbytes, s + SECRET_PREFIX_LEN, b64len, NULL,
						  &binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
	{
		pfree(out);
		*problem = "It is not valid base64 after \"" SECRET_PREFIX "\".";
		return NULL;
	}
	*problem = secret_problem(b, binlen + 1);
	if (*problem != NULL)
	{
		pfree(out);
		return NULL;
	}
	SET_VARSIZE(out, VARHDRSZ + 1 + binlen);
	return out;
}

/* Parse the text form; a malformed one is an error. */
ToygunSecret *
toygun_secret_from_text(const char *s, size_t len)
{
	const char *problem;
	ToygunSecret *out = toygun_secret_parse(s, len, &problem);

	if (out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type toygun.secret"),
				 errdetail_internal("%s", problem)));
	return out;
}

/* The text form: "tg1:" and base64, a NUL-terminated palloc'd string. */
char *
toygun_secret_to_text(ToygunSecret *s)
{
	size_t		len;
	const unsigned char *b = secret_bytes(s, &len);
	size_t		enclen = sodium_base64_ENCODED_LEN(len - 1, sodium_base64_VARIANT_ORIGINAL);
	char	   *out = palloc(SECRET_PREFIX_LEN + enclen);

	memcpy(out, SECRET_PREFIX, SECRET_PREFIX_LEN);
	sodium_bin2base64(out + SECRET_PREFIX_LEN, enclen, b + 1, len - 1,
					  sodium_base64_VARIANT_ORIGINAL);
	return out;
}

/* The additional data: version, key number and the context, with its domain. */
static unsigned char *
additional_data(uint32 key, ToygunContext *ctx, size_t *len)
{
	unsigned char *ad = palloc(6 + ctx->len);

	ad[0] = SECRET_VERSION;
	put32(ad + 1, key);
	ad[5] = (unsigned char) ctx->domain;
	if (ctx->len > 0)
		memcpy(ad + 6, ctx->data, ctx->len);
	*len = 6 + ctx->len;
	return ad;
}

/*
 * Encrypt a jsonb value with the current key, bound to ctx. The JSON text is
 * written into a buffer sized up front, so that it is not copied while it
 * grows, and wiped once encrypted.
 */
ToygunSecret *
toygun_encrypt_value(Jsonb *value, ToygunContext *ctx)
{
	uint32		key_number;
	const unsigned char *key = toygun_keyring_current(&key_number);
	StringInfoData plain;
	size_t		estimate = (size_t) VARSIZE(value) + VARSIZE(value) / 4 + 64;
	size_t		ctlen;
	unsigned long long written;
	ToygunSecret *out;
	unsigned char *b;
	unsigned char *ad;
	size_t		adlen;

	if (estimate > SECRET_MAX_PLAINTEXT + 1024)
		estimate = SECRET_MAX_PLAINTEXT + 1024;
	plain.data = palloc(estimate + 1);
	plain.maxlen = estimate + 1;
	plain.len = 0;
	plain.cursor = 0;
	plain.data[0] = '\0';
	(void) JsonbToCString(&plain, &value->root, (int) estimate);
	if (plain.len > SECRET_MAX_PLAINTEXT)
	{
		sodium_memzero(plain.data, plain.maxlen);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt"),
				 errdetail("Its JSON text is %d bytes long; the limit is %d bytes.",
						   plain.len, SECRET_MAX_PLAINTEXT)));
	}

	ctlen = plain.len + TAG_BYTES;
	out = palloc(VARHDRSZ + SECRET_HEADER + ctlen);
	SET_VARSIZE(out, VARHDRSZ + SECRET_HEADER + ctlen);
	b = (unsigned char *) VARDATA(out);
	b[0] = SECRET_VERSION;
	put32(b + OFF_KEY, key_number);
	put32(b + OFF_LENGTH, (uint32) ctlen);
	randombytes_buf(b + OFF_NONCE, NONCE_BYTES);
	ad = additional_data(key_number, ctx, &adlen);
	crypto_aead_xchacha20poly1305_ietf_encrypt(b + SECRET_HEADER, &written,
											   (const unsigned char *) plain.data, plain.len,
											   ad, adlen, NULL, b + OFF_NONCE, key);
	sodium_memzero(plain.data, plain.maxlen);
	pfree(plain.data);
	pfree(ad);
	Assert(written == ctlen);
	return out;
}

/* Why a secret did not decrypt. */
typedef enum DecryptFailure
{
	DECRYPT_MALFORMED,
	DECRYPT_NO_KEY,
	DECRYPT_NOT_AUTHENTIC
} DecryptFailure;

#define NOT_AUTHENTIC_DETAIL "It was altered, or it was encrypted for another context (an encrypted field's context is its object and field name)."

/*
 * Decrypt a secret bound to ctx back into its jsonb value, or return NULL
 * and say why in *failure (and, if malformed, *problem). The plaintext is
 * wiped once parsed. Nothing said about a failure reveals what the secret
 * holds.
 */
static Jsonb *
decrypt_value(ToygunSecret *s, ToygunContext *ctx, DecryptFailure *failure,
			  const char **problem)
{
	size_t		len;
	const unsigned char *b = secret_bytes(s, &len);
	uint32		key_number;
	const unsigned char *key;
	size_t		ctlen;
	unsigned char *plain;
	unsigned long long plen;
	unsigned char *ad;
	size_t		adlen;
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	*problem = secret_problem(b, len);
	if (*problem != NULL)
	{
		*failure = DECRYPT_MALFORMED;
		return NULL;
	}
	key_number = get32(b + OFF_KEY);
	key = toygun_keyring_key(key_number);
	if (key == NULL)
	{
		*failure = DECRYPT_NO_KEY;
		return NULL;
	}

	ctlen = len - SECRET_HEADER;
	plain = palloc(ctlen - TAG_BYTES + 1);
	ad = additional_data(key_number, ctx, &adlen);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, b + SECRET_HEADER, ctlen,
												   ad, adlen, b + OFF_NONCE, key) != 0)
	{
		pfree(plain);
		pfree(ad);
		*failure = DECRYPT_NOT_AUTHENTIC;
		return NULL;
	}
	pfree(ad);
	plain[plen] = '\0';

	/*
	 * Authentic text is JSON we wrote; if not, do not let the parser quote
	 * it. Other errors (a value nested too deeply for this stack, a cancel,
	 * running out of memory) quote nothing and are not corruption: they go
	 * on as they are.
	 */
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum((char *) plain)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		sodium_memzero(plain, plen);
		if (ERRCODE_TO_CATEGORY(geterrcode()) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("decrypted secret is not valid JSON")));
	}
	PG_END_TRY();
	sodium_memzero(plain, plen);
	pfree(plain);
	return result;
}

/*
 * Decrypt a secret bound to ctx back into its jsonb value. Errors say which
 * check failed, never what the secret holds.
 */
Jsonb *
toygun_decrypt_value(ToygunSecret *s, ToygunContext *ctx)
{
	DecryptFailure failure;
	const char *problem;
	Jsonb	   *result = decrypt_value(s, ctx, &failure, &problem);
	uint32		key_number;

	if (result != NULL)
		return result;
	switch (failure)
	{
		case DECRYPT_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("toygun.secret value is corrupted"),
					 errdetail_internal("%s", problem)));
			break;
		case DECRYPT_NO_KEY:
			key_number = toygun_secret_key(s);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("key %u is not in the keyring", key_number),
					 errhint("Add key %u back to the keyring file and reload the configuration.",
							 key_number)));
			break;
		case DECRYPT_NOT_AUTHENTIC:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("secret could not be decrypted"),
					 errdetail(NOT_AUTHENTIC_DETAIL)));
			break;
	}
	return NULL;				/* not reached */
}

/*
 * Decrypt a secret bound to ctx, or return NULL with a detail sentence in
 * *why if it is malformed, under a key not in the keyring, or not authentic.
 */
Jsonb *
toygun_decrypt_quietly(ToygunSecret *s, ToygunContext *ctx, const char **why)
{
	DecryptFailure failure;
	const char *problem;
	Jsonb	   *result = decrypt_value(s, ctx, &failure, &problem);

	if (result != NULL)
		return result;
	switch (failure)
	{
		case DECRYPT_MALFORMED:
			*why = problem;
			break;
		case DECRYPT_NO_KEY:
			*why = psprintf("Its key, number %u, is not in the keyring.", toygun_secret_key(s));
			break;
		case DECRYPT_NOT_AUTHENTIC:
			*why = NOT_AUTHENTIC_DETAIL;
			break;
	}
	return NULL;
}

Datum
toygun_secret_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);

	PG_RETURN_POINTER(toygun_secret_from_text(s, strlen(s)));
}

Datum
toygun_secret_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(toygun_secret_to_text((ToygunSecret *) PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0))));
}

/* The binary form is the bytes as they are, version first. */
Datum
toygun_secret_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	const char *bytes = pq_getmsgbytes(buf, len);
	const char *problem = secret_problem((const unsigned char *) bytes, len);
	ToygunSecret *out;

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary representation for type toygun.secret"),
				 errdetail_internal("%s", problem)));
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), bytes, len);
	PG_RETURN_POINTER(out);
}

Datum
toygun_secret_send(PG_FUNCTION_ARGS)
{
	ToygunSecret *s = (ToygunSecret *) PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(s), VARSIZE_ANY_EXHDR(s));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* A caller's context: the text given to encrypt() and decrypt(). */
static void
user_context(FunctionCallInfo fcinfo, int argno, ToygunContext *ctx)
{
	text	   *t;

	toygun_check_not_null(fcinfo, argno, "context");
	t = PG_GETARG_TEXT_PP(argno);
	ctx->domain = TOYGUN_CONTEXT_USER;
	ctx->data = VARDATA_ANY(t);
	ctx->len = VARSIZE_ANY_EXHDR(t);
}

/* encrypt(value, context): NULL for NULL, a new nonce every time. */
Datum
toygun_encrypt(PG_FUNCTION_ARGS)
{
	ToygunContext ctx;

	user_context(fcinfo, 1, &ctx);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_POINTER(toygun_encrypt_value(PG_GETARG_JSONB_P(0), &ctx));
}

/* decrypt(secret, context): NULL for NULL. */
Datum
toygun_decrypt(PG_FUNCTION_ARGS)
{
	ToygunContext ctx;

	user_context(fcinfo, 1, &ctx);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(toygun_decrypt_value((ToygunSecret *) PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0)),
										   &ctx));
}

/* key_number(secret): the number of the key that encrypted it. */
Datum
toygun_key_number(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) toygun_secret_key((ToygunSecret *) PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0))));
}
