/*
 * field.c
 *		Fields: attrs may write only a type's declared fields, and args
 *		stored for later starts no encrypted one. The values of a type's
 *		encrypted_fields are sealed on their way into attrs, bound to their
 *		object's id and the field name; toygun.field() reads one back,
 *		rotate_secrets() re-encrypts them all.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_field_task);
PG_FUNCTION_INFO_V1(toygun_field_resource);
PG_FUNCTION_INFO_V1(toygun_rotate_secrets);

static SPIPlanPtr task_type_plan;
static SPIPlanPtr resource_type_plan;
static SPIPlanPtr task_candidates_plan;
static SPIPlanPtr resource_candidates_plan;
static SPIPlanPtr lock_task_attrs_plan;
static SPIPlanPtr lock_resource_attrs_plan;
static SPIPlanPtr update_task_attrs_plan;
static SPIPlanPtr update_resource_attrs_plan;

/*
 * When fields are declared, attrs may only write those keys (and
 * panic_message); a typed field is a declared one. The value of a typed
 * field must be of its type (fieldtype.c), checked before it is sealed.
 */
void
toygun_check_fields(ToygunDef *def, Jsonb *attrs)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!def->has_fields && def->field_types == NULL)
		return;
	it = JsonbIteratorInit(&attrs->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		ToygunFieldType *t;

		if (tok != WJB_KEY)
			continue;
		CHECK_FOR_INTERRUPTS();
		key = pnstrdup(v.val.string.val, v.val.string.len);
		t = toygun_field_type_of(def->field_types, key, v.val.string.len);
		if (def->has_fields && t == NULL &&
			strcmp(key, TOYGUN_PANIC_MESSAGE) != 0 &&
			!toygun_in_list(key, def->fields, def->nfields) &&
			!toygun_in_list(key, def->encrypted, def->nencrypted))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("field \"%s\" is not declared by %s", key, toygun_def_label(def)),
					 errhint("Declare it in the fields of toygun.define_%s().",
							 def->kind == TOYGUN_TASK ? "task" : "resource")));
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (t != NULL)
			toygun_check_field_type(def, t, key, strlen(key), &v,
									toygun_in_list(key, def->encrypted, def->nencrypted));
	}
}

/*
 * Args stored in a table that every role that may read the type can read
 * (a periodic start's, a trigger's) may not hold an encrypted field.
 */
void
toygun_check_stored_args(ToygunDef *def, Jsonb *args, const char *plural, const char *one,
						 const char *table)
{
	int			i;

	for (i = 0; i < def->nencrypted; i++)
		if (getKeyJsonValueFromContainer(&args->root, def->encrypted[i],
										 strlen(def->encrypted[i]), NULL) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s cannot pass encrypted field \"%s\"", plural, def->encrypted[i]),
					 errdetail("The args of %s are stored in %s, which every role that may read the type can read.",
							   one, table),
					 errhint("Keep the value in an encrypted field of the resource, or start the task with toygun.start_task().")));
}

/* Replace a field's value (push its replacement, return true) or keep it. */
typedef bool (*FieldRewrite) (JsonbParseState **state, JsonbValue *value,
							  ToygunContext *ctx, void *arg);

/* rotate_secrets(): the key to re-encrypt with, and how many were. */
#define MAX_SKIP_WARNINGS 10

typedef struct Rotation
{
	uint32		current;
	int64		count;
	int64		skipped;		/* sealed values that do not decrypt */
} Rotation;

typedef struct FieldErrorContext
{
	const char *what;
	ToygunKind	kind;
	pg_uuid_t  *id;
} FieldErrorContext;

static void
field_error_context(void *arg)
{
	FieldErrorContext *fc = (FieldErrorContext *) arg;

	errcontext("%s of %s %s", fc->what, toygun_kind_name(fc->kind), toygun_uuid_text(fc->id));
}

/*
 * A field's context: the object's kind and id, then the field name (the id
 * has a fixed length, so no name can pass for another object's).
 */
static void
field_context(ToygunContext *ctx, ToygunKind kind, pg_uuid_t *id, const char *name, int len)
{
	char	   *data = palloc(UUID_LEN + len);

	memcpy(data, id->data, UUID_LEN);
	memcpy(data + UUID_LEN, name, len);
	ctx->domain = kind == TOYGUN_TASK ? TOYGUN_CONTEXT_TASK : TOYGUN_CONTEXT_RESOURCE;
	ctx->data = data;
	ctx->len = UUID_LEN + len;
}

/* If value is sealed, {"$secret": "<secret text>"}, set *text to the string. */
static bool
sealed_text(JsonbValue *value, JsonbValue *text)
{
	JsonbContainer *c;

	if (value->type != jbvBinary)
		return false;
	c = value->val.binary.data;
	if (!JsonContainerIsObject(c) || JsonContainerSize(c) != 1)
		return false;
	if (getKeyJsonValueFromContainer(c, TOYGUN_SEALED_KEY, strlen(TOYGUN_SEALED_KEY), text) == NULL)
		return false;
	return text->type == jbvString;
}

/* Push {"$secret": "<value encrypted for ctx>"}. */
static void
push_sealed(JsonbParseState **state, Jsonb *value, ToygunContext *ctx)
{
	char	   *text = toygun_secret_to_text(toygun_encrypt_value(value, ctx));
	JsonbValue	k,
				v;

	(void) pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = TOYGUN_SEALED_KEY;
	k.val.string.len = strlen(TOYGUN_SEALED_KEY);
	(void) pushJsonbValue(state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = text;
	v.val.string.len = strlen(text);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
	(void) pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

static bool
listed(const char *key, int len, char **names, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strlen(names[i]) == (size_t) len && memcmp(names[i], key, len) == 0)
			return true;
	return false;
}

/* Whether the attrs object has any of the keys. */
static bool
holds_any(Jsonb *attrs, char **names, int n)
{
	JsonbValue	v;
	int			i;

	for (i = 0; i < n; i++)
		if (getKeyJsonValueFromContainer(&attrs->root, names[i], strlen(names[i]), &v) != NULL)
			return true;
	return false;
}

/* The attrs object with the values of the named fields passed to rewrite. */
static Jsonb *
rewrite_fields(Jsonb *attrs, ToygunKind kind, pg_uuid_t *id, char **names, int n,
			   FieldRewrite rewrite, void *arg, bool *changed)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it = JsonbIteratorInit(&attrs->root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue *res = NULL;

	*changed = false;
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			if (listed(v.val.string.val, v.val.string.len, names, n))
			{
				ToygunContext ctx;

				field_context(&ctx, kind, id, v.val.string.val, v.val.string.len);
				res = pushJsonbValue(&state, tok, &v);
				tok = JsonbIteratorNext(&it, &v, true);
				Assert(tok == WJB_VALUE);
				if (rewrite(&state, &v, &ctx, arg))
					*changed = true;
				else
					res = pushJsonbValue(&state, tok, &v);
				continue;
			}
		}
		res = pushJsonbValue(&state, tok,
							 (tok == WJB_BEGIN_OBJECT || tok == WJB_END_OBJECT) ? NULL : &v);
	}
	return JsonbValueToJsonb(res);
}

static bool
seal_one(JsonbParseState **state, JsonbValue *value, ToygunContext *ctx, void *arg)
{
	push_sealed(state, JsonbValueToJsonb(value), ctx);
	return true;
}

/*
 * Seal the values of the type's encrypted fields in attrs (a JSON object)
 * for the object id. Every value is sealed, even one that looks sealed: a
 * caller cannot plant a ciphertext in an encrypted field.
 */
Jsonb *
toygun_seal_attrs(ToygunDef *def, pg_uuid_t *id, Jsonb *attrs)
{
	bool		changed;

	if (def->nencrypted <= 0 || !holds_any(attrs, def->encrypted, def->nencrypted))
		return attrs;
	return rewrite_fields(attrs, def->kind, id, def->encrypted, def->nencrypted,
						  seal_one, NULL, &changed);
}

/*
 * Whether the stored object's type declares the field encrypted; if so, the
 * caller must have right read_secrets on it (rights.c). The type
 * is the stored object's, not the row's that was passed in, so that a row
 * made up by the caller cannot borrow another type's permission.
 */
static bool
field_is_encrypted(ToygunKind kind, pg_uuid_t *id, const char *name)
{
	ToygunCall	call;
	ToygunDef  *def;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	char	   *type;
	char	   *task;
	bool		encrypted;

	toygun_begin_call(&call);
	values[0] = UUIDPGetDatum(id);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&task_type_plan,
							   "SELECT r.type, t.name FROM ONLY toygun.task t"
							   "  JOIN ONLY toygun.resource r ON r.id = t.resource_id WHERE t.id = $1",
							   1, argtypes),
				   values, NULL, 1);
	else
		toygun_run(toygun_plan(&resource_type_plan,
							   "SELECT r.type, NULL::pg_catalog.text FROM ONLY toygun.resource r WHERE r.id = $1",
							   1, argtypes),
				   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s %s does not exist", toygun_kind_name(kind), toygun_uuid_text(id))));
	type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	task = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	def = toygun_find_def(kind, type, task, false);
	encrypted = toygun_in_list(name, def->encrypted, def->nencrypted);
	if (encrypted && !toygun_has_right(def, call.caller, TOYGUN_RIGHT_READ_SECRETS))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read encrypted field \"%s\" of %s: it needs right \"read_secrets\"%s",
						name, toygun_def_label(def),
						def->kind == TOYGUN_TASK ? psprintf(" on resource type \"%s\"", def->resource_type) : ""),
				 errdetail("Role \"%s\" has neither that right nor the privileges of role \"%s\", which defined it.",
						   toygun_role_name(call.caller), toygun_role_name(def->owner)),
				 errhint("The owner of resource type \"%s\" can grant it with toygun.grant_type().",
						 def->resource_type)));
	toygun_end_call(&call);
	return encrypted;
}

/*
 * field(row, name): the field's value, decrypted if the type declares it
 * encrypted; NULL if attrs has no such key. A value stored before its field
 * was declared encrypted is returned as it is.
 */
static Datum
field_of(FunctionCallInfo fcinfo, ToygunKind kind)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	text	   *name = PG_GETARG_TEXT_PP(1);
	Datum		d;
	bool		isnull;
	Jsonb	   *attrs;
	JsonbValue	value;
	JsonbValue	sealed;
	pg_uuid_t	id;
	char	   *fname;
	ToygunContext ctx;
	ErrorContextCallback errcb;
	FieldErrorContext fc;
	Jsonb	   *result;

	d = GetAttributeByName(row, "attrs", &isnull);
	if (isnull)
		PG_RETURN_NULL();
	attrs = DatumGetJsonbP(d);
	if (!JB_ROOT_IS_OBJECT(attrs) ||
		getKeyJsonValueFromContainer(&attrs->root, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
									 &value) == NULL)
		PG_RETURN_NULL();
	if (!sealed_text(&value, &sealed))
		PG_RETURN_JSONB_P(JsonbValueToJsonb(&value));

	d = GetAttributeByName(row, "id", &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s id must not be null", toygun_kind_name(kind))));
	id = *DatumGetUUIDP(d);
	fname = text_to_cstring(name);
	if (!field_is_encrypted(kind, &id, fname))
		PG_RETURN_JSONB_P(JsonbValueToJsonb(&value));

	fc.what = psprintf("reading field \"%s\"", fname);
	fc.kind = kind;
	fc.id = &id;
	errcb.callback = field_error_context;
	errcb.arg = &fc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	field_context(&ctx, kind, &id, fname, strlen(fname));
	result = toygun_decrypt_value(toygun_secret_from_text(sealed.val.string.val,
														  sealed.val.string.len),
								  &ctx);
	error_context_stack = errcb.previous;
	PG_RETURN_JSONB_P(result);
}

Datum
toygun_field_task(PG_FUNCTION_ARGS)
{
	return field_of(fcinfo, TOYGUN_TASK);
}

Datum
toygun_field_resource(PG_FUNCTION_ARGS)
{
	return field_of(fcinfo, TOYGUN_RESOURCE);
}

/*
 * Re-encrypt one field value with the current key, unless it already is;
 * seal a value stored in plaintext before its field was declared encrypted.
 * A sealed value that does not decrypt (malformed, altered, copied from
 * another object, or under a key no longer in the keyring) is left as it
 * is, with a warning: whoever can write a type's attrs could otherwise
 * plant one and stop every rotation.
 */
static bool
reseal_one(JsonbParseState **state, JsonbValue *value, ToygunContext *ctx, void *arg)
{
	Rotation   *rot = (Rotation *) arg;
	JsonbValue	text;

	if (sealed_text(value, &text))
	{
		const char *why;
		ToygunSecret *s = toygun_secret_parse(text.val.string.val, text.val.string.len, &why);
		Jsonb	   *plain;

		if (s != NULL && toygun_secret_key(s) == rot->current)
			return false;
		plain = s != NULL ? toygun_decrypt_quietly(s, ctx, &why) : NULL;
		if (plain == NULL)
		{
			if (++rot->skipped <= MAX_SKIP_WARNINGS)
				ereport(WARNING,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("encrypted field \"%.*s\" does not decrypt, and was left as it is",
								(int) (ctx->len - UUID_LEN), ctx->data + UUID_LEN),
						 errdetail_internal("%s", why)));
			return false;
		}
		push_sealed(state, plain, ctx);
	}
	else
		push_sealed(state, JsonbValueToJsonb(value), ctx);
	rot->count++;
	return true;
}

/*
 * Lock one object's row, re-encrypt its encrypted fields and write its
 * attrs back, leaving state, step and history alone. The row lock orders
 * this with a concurrent tick, which holds the same lock from read to write.
 */
static void
rotate_object(ToygunKind kind, pg_uuid_t *id, char **names, int n, Rotation *rot)
{
	Oid			argtypes[2] = {UUIDOID, JSONBOID};
	Datum		values[2];
	Jsonb	   *attrs;
	Jsonb	   *resealed;
	bool		isnull;
	bool		changed;
	ErrorContextCallback errcb;
	FieldErrorContext fc;

	values[0] = UUIDPGetDatum(id);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&lock_task_attrs_plan,
							   "SELECT attrs FROM ONLY toygun.task WHERE id = $1 FOR UPDATE",
							   1, argtypes),
				   values, NULL, 1);
	else
		toygun_run(toygun_plan(&lock_resource_attrs_plan,
							   "SELECT attrs FROM ONLY toygun.resource WHERE id = $1 FOR UPDATE",
							   1, argtypes),
				   values, NULL, 1);
	if (SPI_processed == 0)
		return;					/* deleted since it was listed */
	attrs = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);

	fc.what = "re-encrypting the fields";
	fc.kind = kind;
	fc.id = id;
	errcb.callback = field_error_context;
	errcb.arg = &fc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	resealed = rewrite_fields(attrs, kind, id, names, n, reseal_one, rot, &changed);
	error_context_stack = errcb.previous;
	if (!changed)
		return;

	values[1] = JsonbPGetDatum(resealed);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&update_task_attrs_plan,
							   "UPDATE ONLY toygun.task SET attrs = $2 WHERE id = $1",
							   2, argtypes),
				   values, NULL, 0);
	else
		toygun_run(toygun_plan(&update_resource_attrs_plan,
							   "UPDATE ONLY toygun.resource SET attrs = $2 WHERE id = $1",
							   2, argtypes),
				   values, NULL, 0);
}

#define ROTATE_BATCH 256

/* Every object of a kind that has a value in one of its encrypted fields. */
static void
rotate_kind(ToygunKind kind, Rotation *rot)
{
	SPIPlanPtr	plan;
	Portal		portal;
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext, "toygun rotate batch",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext, "toygun rotate row",
												 ALLOCSET_DEFAULT_SIZES);

	if (kind == TOYGUN_TASK)
		plan = toygun_plan(&task_candidates_plan,
						   "SELECT t.id, tt.encrypted_fields FROM ONLY toygun.task t"
						   "  JOIN ONLY toygun.resource r ON r.id = t.resource_id"
						   "  JOIN ONLY toygun.task_type tt ON tt.resource_type = r.type AND tt.name = t.name"
						   " WHERE t.attrs ?| tt.encrypted_fields ORDER BY t.id",
						   0, NULL);
	else
		plan = toygun_plan(&resource_candidates_plan,
						   "SELECT r.id, rt.encrypted_fields FROM ONLY toygun.resource r"
						   "  JOIN ONLY toygun.resource_type rt ON rt.name = r.type"
						   " WHERE r.attrs ?| rt.encrypted_fields ORDER BY r.id",
						   0, NULL);
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, false);
	for (;;)
	{
		SPITupleTable *batch;
		uint64		n,
					i;
		pg_uuid_t  *ids;
		char	 ***names;
		int		   *counts;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, ROTATE_BATCH);
		n = SPI_processed;
		batch = SPI_tuptable;
		if (n == 0)
			break;
		old = MemoryContextSwitchTo(batchcxt);
		ids = palloc(sizeof(pg_uuid_t) * n);
		names = palloc(sizeof(char **) * n);
		counts = palloc(sizeof(int) * n);
		for (i = 0; i < n; i++)
		{
			bool		isnull;

			ids[i] = *DatumGetUUIDP(SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull));
			names[i] = toygun_text_array(DatumGetArrayTypeP(SPI_getbinval(batch->vals[i],
																		  batch->tupdesc, 2,
																		  &isnull)),
										 "encrypted_fields", &counts[i]);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(batch);

		for (i = 0; i < n; i++)
		{
			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(rowcxt);
			rotate_object(kind, &ids[i], names[i], counts[i], rot);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		MemoryContextReset(batchcxt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(rowcxt);
	MemoryContextDelete(batchcxt);
}

/*
 * rotate_secrets(): re-encrypt every encrypted field of every resource and
 * task with the current key. Returns how many values it rewrote; once it
 * returns 0, no stored field needs an older key.
 */
Datum
toygun_rotate_secrets(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	Rotation	rot;

	rot.count = 0;
	rot.skipped = 0;
	toygun_begin_call(&call);
	(void) toygun_keyring_current(&rot.current);
	rotate_kind(TOYGUN_RESOURCE, &rot);
	rotate_kind(TOYGUN_TASK, &rot);
	if (rot.skipped > MAX_SKIP_WARNINGS)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%lld encrypted field values do not decrypt, and were left as they are",
						(long long) rot.skipped),
				 errdetail("The first %d were named in warnings of their own.", MAX_SKIP_WARNINGS)));
	toygun_end_call(&call);
	PG_RETURN_INT64(rot.count);
}
