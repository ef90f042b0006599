/*
 * fieldtype.c
 *		Field types: a type's field_types, {"size": "integer", ...}, parsed
 *		once into its definition, and the check of a value written into a
 *		typed field. Each type is a check on the JSON value, as a handler
 *		reads it back with (attrs->>'size')::integer: a JSON number, string
 *		or boolean that the SQL type reads, or an array of such.
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "toygun.h"

typedef enum FieldKind
{
	FT_TEXT,
	FT_INTEGER,
	FT_BIGINT,
	FT_NUMERIC,
	FT_BOOLEAN,
	FT_TIMESTAMPTZ,
	FT_DATE,
	FT_UUID,
	FT_JSONB
} FieldKind;

/* What each type takes, for hints; in FieldKind's order. */
static const struct
{
	const char *name;
	const char *takes;
} kinds[] = {
	{"text", "a JSON string"},
	{"integer", "a JSON number without a fraction, from -2147483648 to 2147483647"},
	{"bigint", "a JSON number without a fraction, from -9223372036854775808 to 9223372036854775807"},
	{"numeric", "a JSON number"},
	{"boolean", "JSON true or false"},
	{"timestamptz", "a JSON string that PostgreSQL reads as a timestamptz, with its time zone (as to_jsonb(now()) writes it), or \"infinity\" or \"-infinity\""},
	{"date", "a JSON string that PostgreSQL reads as a date, such as \"2024-05-31\""},
	{"uuid", "a JSON string that PostgreSQL reads as a uuid"},
	{"jsonb", "any JSON value"},
};

#define NKINDS lengthof(kinds)

/* "text, integer, ..., text[], ...": the names field_types knows. */
static char *
known_names(void)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < NKINDS; i++)
		appendStringInfo(&s, "%s%s", i > 0 ? ", " : "", kinds[i].name);
	for (i = 0; i < NKINDS; i++)
		if (i != FT_JSONB)
			appendStringInfo(&s, ", %s[]", kinds[i].name);
	return s.data;
}

/* The type a name stands for; false if it names none. */
static bool
parse_type_name(const char *s, int len, ToygunFieldType *t)
{
	int			i;

	t->array = len > 2 && s[len - 2] == '[' && s[len - 1] == ']';
	if (t->array)
		len -= 2;
	for (i = 0; i < NKINDS; i++)
		if (strlen(kinds[i].name) == (size_t) len && memcmp(kinds[i].name, s, len) == 0)
		{
			if (t->array && i == FT_JSONB)
				return false;	/* jsonb takes arrays already */
			t->kind = i;
			return true;
		}
	return false;
}

static void
bad_field_types(const char *label, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("field_types of %s %s", label, msg),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * field_types: a JSON object of field names and type names. Checked for
 * define_*() (errors name the entry and the type label), or read back from
 * a definition's row quietly: an entry that is not one is left out.
 * Returns NULL for an empty object. Allocated in the current memory context.
 */
ToygunFieldTypes *
toygun_field_types_parse(Jsonb *j, const char *label, bool quiet)
{
	ToygunFieldTypes *ft;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n;

	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
	{
		if (!quiet)
			bad_field_types(label, "must be a JSON object",
							"Pass {\"field\": \"type\", ...}, or NULL for none.");
		return NULL;
	}
	n = JB_ROOT_COUNT(j);
	if (n == 0)
		return NULL;
	ft = palloc(sizeof(ToygunFieldTypes));
	ft->n = 0;
	ft->types = palloc(sizeof(ToygunFieldType) * n);
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		ToygunFieldType *t = &ft->types[ft->n];
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		if (!quiet)
		{
			toygun_check_name_cstr("field name", name);
			if (strcmp(name, TOYGUN_PANIC_MESSAGE) == 0)
				bad_field_types(label, psprintf("cannot type field \"%s\"", name),
								"toygun writes it, with a panic's message as a JSON string; leave it out of field_types.");
			if (v.type != jbvString)
				bad_field_types(label, psprintf("gives field \"%s\" no type name", name),
								psprintf("Give each field a type name, a JSON string: one of %s.",
										 known_names()));
		}
		if (v.type != jbvString || !parse_type_name(v.val.string.val, v.val.string.len, t))
		{
			if (quiet)
				continue;
			bad_field_types(label,
							psprintf("gives field \"%s\" unknown type \"%.*s\"", name,
									 v.val.string.len, v.val.string.val),
							psprintf("The types are: %s.", known_names()));
		}
		t->name = name;
		ft->n++;
	}
	return ft->n > 0 ? ft : NULL;
}

/* The type of the field key (len bytes), or NULL if it has none. */
ToygunFieldType *
toygun_field_type_of(ToygunFieldTypes *ft, const char *key, int len)
{
	int			i;

	if (ft == NULL)
		return NULL;
	for (i = 0; i < ft->n; i++)
		if (strlen(ft->types[i].name) == (size_t) len &&
			memcmp(ft->types[i].name, key, len) == 0)
			return &ft->types[i];
	return NULL;
}

static const char *
json_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "value";
	}
}

/* A JSON number without a fraction, in [min, max]. */
static bool
integral_in(JsonbValue *v, int64 min, int64 max, const char **why)
{
	char	   *digits = DatumGetCString(DirectFunctionCall1(numeric_out,
															 NumericGetDatum(v->val.numeric)));
	char	   *end;
	long long	n;

	if (strchr(digits, '.') != NULL)
	{
		*why = "it has a fraction";
		return false;
	}
	errno = 0;
	n = strtoll(digits, &end, 10);
	if (errno == ERANGE || *end != '\0' || n < min || n > max)
	{
		*why = "it is out of range";
		return false;
	}
	return true;
}

/* Whether a date or time string names a time relative to when it is read. */
static bool
relative_time(char **field, int nf)
{
	static const char *const words[] = {"now", "today", "tomorrow", "yesterday"};
	int			i,
				w;

	for (i = 0; i < nf; i++)
		for (w = 0; w < lengthof(words); w++)
			if (pg_strcasecmp(field[i], words[w]) == 0)
				return true;
	return false;
}

/*
 * DecodeDateTime() with a time zone, which raises its own error for a zone
 * name it does not know: that error is caught, and is false with *why.
 * No subtransaction is needed: the caller raises an error at once, so the
 * transaction ends with it.
 */
static bool
decode_quietly(char **field, int *ftype, int nf, int *dtype, struct pg_tm *tt, fsec_t *fsec,
			   int *tz, const char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool decoded = false;

	PG_TRY();
	{
		decoded = DecodeDateTime(field, ftype, nf, dtype, tt, fsec, tz) == 0;
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		/* not its message, which quotes the value: an encrypted field's too */
		*why = "PostgreSQL does not read its time zone";
	}
	PG_END_TRY();
	return decoded;
}

/*
 * A date (zoned false) or timestamptz string as date_in and timestamptz_in
 * read it, without their errors. A timestamptz needs its time zone: without
 * one, each session would read another instant in its own TimeZone.
 */
static bool
datetime_fits(const char *s, bool zoned, const char **why)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf,
				dtype,
				tz;
	struct pg_tm tt;
	fsec_t		fsec;

	*why = zoned ? "PostgreSQL does not read it as a timestamptz" : "PostgreSQL does not read it as a date";
	if (strlen(s) >= MAXDATELEN ||
		ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0)
		return false;
	if (relative_time(field, nf))
	{
		*why = "it is relative to when it is read";
		return false;
	}
	if (zoned &&
		DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, NULL) == 0 && dtype == DTK_DATE)
	{
		*why = "it has no time zone";
		return false;
	}
	/* DecodeDateTime may have changed the fields: parse them again */
	if (ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		!decode_quietly(field, ftype, nf, &dtype, &tt, &fsec, &tz, why))
		return false;
	if (dtype == DTK_EPOCH || dtype == DTK_LATE || dtype == DTK_EARLY)
		return true;
	if (dtype != DTK_DATE)
		return false;
	if (zoned)
	{
		Timestamp	ts;

		if (tm2timestamp(&tt, fsec, &tz, &ts) != 0 || !IS_VALID_TIMESTAMP(ts))
		{
			*why = "it is out of range for timestamptz";
			return false;
		}
	}
	else
	{
		int			d;

		if (!IS_VALID_JULIAN(tt.tm_year, tt.tm_mon, tt.tm_mday) ||
			(d = date2j(tt.tm_year, tt.tm_mon, tt.tm_mday) - POSTGRES_EPOCH_JDATE,
			 !IS_VALID_DATE(d)))
		{
			*why = "it is out of range for date";
			return false;
		}
	}
	return true;
}

/* A uuid as uuid_in reads it: 32 hex digits, a hyphen allowed after each 4, in braces or not. */
static bool
uuid_fits(const char *s)
{
	bool		braces = *s == '{';
	int			i;

	if (braces)
		s++;
	for (i = 0; i < UUID_LEN; i++)
	{
		if (!isxdigit((unsigned char) s[0]) || !isxdigit((unsigned char) s[1]))
			return false;
		s += 2;
		if (s[0] == '-' && (i % 2) == 1 && i < UUID_LEN - 1)
			s++;
	}
	if (braces && *s++ != '}')
		return false;
	return *s == '\0';
}

/* Whether the (not null) value is of kind; if not, *why may say why. */
static bool
scalar_fits(int kind, JsonbValue *v, const char **why)
{
	char	   *s;

	*why = NULL;
	switch (kind)
	{
		case FT_TEXT:
			return v->type == jbvString;
		case FT_INTEGER:
			return v->type == jbvNumeric && integral_in(v, PG_INT32_MIN, PG_INT32_MAX, why);
		case FT_BIGINT:
			return v->type == jbvNumeric && integral_in(v, PG_INT64_MIN, PG_INT64_MAX, why);
		case FT_NUMERIC:
			return v->type == jbvNumeric;
		case FT_BOOLEAN:
			return v->type == jbvBool;
		case FT_JSONB:
			return true;
		default:
			break;
	}
	if (v->type != jbvString)
		return false;
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (kind == FT_UUID)
	{
		*why = "PostgreSQL does not read it as a uuid";
		return uuid_fits(s);
	}
	return datetime_fits(s, kind == FT_TIMESTAMPTZ, why);
}

/* At most this much of a refused value is shown. */
#define SHOWN_MAX 200

static char *
shown(JsonbValue *v)
{
	char	   *s = JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);

	if (strlen(s) > SHOWN_MAX)
		s = psprintf("%.*s...", pg_mbcliplen(s, strlen(s), SHOWN_MAX), s);
	return s;
}

/*
 * Refuse a value of field name (namelen bytes) of the type's that is not of
 * type t: 22023 naming the field, its type and the value's JSON type, and
 * the value unless the field is encrypted. A JSON null (a field removed)
 * passes.
 */
void
toygun_check_field_type(ToygunDef *def, ToygunFieldType *t, const char *name, int namelen,
						JsonbValue *v, bool encrypted)
{
	const char *why = NULL;
	JsonbValue *bad = v;
	int			element = 0;
	bool		fits;

	if (v->type == jbvNull)
		return;
	if (!t->array)
		fits = scalar_fits(t->kind, v, &why);
	else if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		fits = false;
	else
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		fits = true;
		while (fits && (tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			element++;
			if (e.type == jbvNull)
			{
				why = "SQL arrays of field_types hold no nulls";
				fits = false;
			}
			else
				fits = scalar_fits(t->kind, &e, &why);
			if (!fits)
				bad = &e;
		}
	}
	if (fits)
		return;
	if (bad != v)
		why = psprintf("its element %d is a JSON %s%s", element, json_type(bad),
					   why ? psprintf(" (%s)", why) : "");
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("field \"%.*s\" of %s takes %s%s, not this JSON %s%s%s",
					namelen, name, toygun_def_label(def), kinds[t->kind].name, t->array ? "[]" : "",
					json_type(v), why ? ": " : "", why ? why : ""),
			 encrypted
			 ? errdetail("The field is encrypted, so the value is not shown.")
			 : errdetail("The value is %s.", shown(v)),
			 errhint("Field \"%.*s\" takes %s%s, or null to remove it.", namelen, name,
					 t->array ? "a JSON array, each element " : "", kinds[t->kind].takes)));
}
