/*
 * util.c
 *		Helpers shared by the API and the worker: prepared SPI plans, a
 *		worker's unit of work, argument checks and conversions. Running as
 *		another role is security.c's.
 */
#include "postgres.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* A prepared plan, made once per backend and kept. */
SPIPlanPtr
toygun_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	/* a Citus node's worker on one of its shard groups (citus.c): the group's plan */
	if (unlikely(toygun_citus_group != NULL))
	{
		SPIPlanPtr	plan = toygun_citus_plan(cache, sql, nargs, argtypes);

		if (plan != NULL)
			return plan;
		/* it names no distributed table: one plan for every group, and for none */
	}
	if (*cache == NULL)
	{
		/* generic plans: these statements are simple, and planning them each time is not */
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

/*
 * Run a statement planned for these parameter values (SPI_execute_with_args),
 * not a generic plan kept by toygun_plan(): for the statements of the
 * definition calls that read or write toygun's tables with conditions Citus
 * plans only with the values bound (a multi-shard read of the distributed
 * tables, a reference table's write with a subquery). Those calls are rare;
 * planning each time costs them little.
 */
int
toygun_run_once(const char *sql, int nargs, Oid *argtypes, Datum *values,
				const char *nulls, long count)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	return rc;
}

int
toygun_run(SPIPlanPtr plan, Datum *values, const char *nulls, long count)
{
	/* never read-only: later statements in a call must see earlier writes */
	int			rc = SPI_execute_plan(plan, values, nulls, false, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * Run a plan of one uuid argument that returns ids (first column, never
 * NULL): the ids, palloc'd, and how many in *n.
 */
pg_uuid_t *
toygun_run_ids(SPIPlanPtr plan, pg_uuid_t *arg, uint64 *n)
{
	Datum		values[1];
	pg_uuid_t  *ids;
	uint64		i;

	values[0] = UUIDPGetDatum(arg);
	toygun_run(plan, values, NULL, 0);
	*n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return ids;
}

/* Argument argno must not be NULL. */
void
toygun_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * A type, task, state or field name: not empty, at most TOYGUN_NAME_MAX
 * bytes, no control characters (C0, DEL and, in UTF-8, C1).
 */
void
toygun_check_name_cstr(const char *what, const char *s)
{
	size_t		len = strlen(s);
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	size_t		i;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > TOYGUN_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s is too long", what),
				 errdetail("It is %zu bytes long; the limit is %d bytes.",
						   len, TOYGUN_NAME_MAX)));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f ||
			(utf8 && c == 0xc2 && (unsigned char) s[i + 1] >= 0x80 &&
			 (unsigned char) s[i + 1] <= 0x9f))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain control characters", what)));
	}
}

/* toygun_check_name_cstr() of a text argument; returns it as a C string. */
char *
toygun_check_name(const char *what, text *name)
{
	char	   *s = text_to_cstring(name);

	toygun_check_name_cstr(what, s);
	return s;
}

/*
 * The elements of a one-dimensional text[] as C strings (an empty array gives
 * n = 0). NULL elements are refused.
 */
char **
toygun_text_array(ArrayType *arr, const char *what, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", what)));
		out[i] = TextDatumGetCString(elems[i]);
	}
	out[*n] = NULL;
	return out;
}

/* A text[] datum made from C strings. */
Datum
toygun_cstring_array(char **items, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

bool
toygun_in_list(const char *s, char **list, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

const char *
toygun_kind_name(ToygunKind kind)
{
	return kind == TOYGUN_TASK ? "task" : "resource";
}

/* "task type \"example.echo\"" or "resource type \"example\"", for messages. */
const char *
toygun_def_label(ToygunDef *def)
{
	if (def->kind == TOYGUN_TASK)
		return psprintf("task type \"%s.%s\"", def->resource_type, def->name);
	return psprintf("resource type \"%s\"", def->resource_type);
}

const char *
toygun_uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/*
 * A new id: a UUID version 7 (RFC 9562), the Unix time in milliseconds
 * followed by random bits. Ids made one after another sort together, so the
 * indexes they key (the tables' primary keys, the history's) take inserts
 * at a few hot pages instead of all over. Within a backend they increase
 * strictly: the 12 bits after the time count ids made in the same
 * millisecond.
 */
pg_uuid_t *
toygun_new_uuid(void)
{
	static int64 last_ms = 0;
	static uint16 counter = 0;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	int64		ms = GetCurrentTimestamp() / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	int			i;

	if (ms <= last_ms)
	{
		ms = last_ms;
		if (++counter > 0x0fff)
		{
			ms++;
			counter = 0;
		}
	}
	else
		counter = 0;
	last_ms = ms;

	randombytes_buf(id->data, UUID_LEN);
	for (i = 0; i < 6; i++)
		id->data[i] = (uint8) (ms >> (8 * (5 - i)));
	id->data[6] = (uint8) (0x70 | ((counter >> 8) & 0x0f));
	id->data[7] = (uint8) (counter & 0xff);
	id->data[8] = (uint8) (0x80 | (id->data[8] & 0x3f));
	return id;
}

/*
 * toygun._new_id(): toygun_new_uuid() for SQL, where one statement makes many
 * ids (a periodic start's runs): UUIDv7, so they sort by start as the others.
 */
PG_FUNCTION_INFO_V1(toygun_new_id);
Datum
toygun_new_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_UUID_P(toygun_new_uuid());
}

/* attrs, args and outcome attrs must be JSON objects. */
void
toygun_check_object_attrs(const char *what, Jsonb *attrs)
{
	if (!JB_ROOT_IS_OBJECT(attrs) || JB_ROOT_IS_SCALAR(attrs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what),
				 errdetail("Got a JSON %s.",
						   JB_ROOT_IS_SCALAR(attrs) ? "scalar" : "array")));
}

/*
 * Has toygun's table this column? Not always: the SQL of an older version
 * runs on this library until ALTER EXTENSION UPDATE, and its tables lack
 * the newer columns, which the library then does not write.
 */
bool
toygun_has_column(const char *table, const char *column)
{
	Oid			relid = get_relname_relid(table, get_namespace_oid("toygun", false));

	return OidIsValid(relid) && get_attnum(relid, column) != InvalidAttrNumber;
}

/* Whether the tables have 0.4's queues and priorities (issue 17): else 0.3's statements. */
bool
toygun_has_queues(void)
{
	return toygun_has_column("task", "queue_id");
}

/* The OID of one of toygun's types, by name. */
Oid
toygun_type_oid(const char *typname)
{
	Oid			nsp = get_namespace_oid("toygun", false);
	Oid			typ = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									  CStringGetDatum(typname),
									  ObjectIdGetDatum(nsp));

	if (!OidIsValid(typ))
		elog(ERROR, "type toygun.%s does not exist", typname);
	return typ;
}

/*
 * A unit of a worker's work in a transaction of its own, connected to SPI:
 * toygun_begin_work(), then toygun_end_work() to commit it (counted in
 * worker_status().transactions).
 */
void
toygun_begin_work(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
toygun_end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	toygun_count_transaction();
	pgstat_report_stat(false);
}

/*
 * An interval as interval_in reads it (its own syntax or ISO 8601), or false
 * where interval_in would raise: for settings' checks and quiet parsers.
 */
bool
toygun_parse_interval(const char *str, Interval *out)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype = 0;
	int			dterr;
	struct pg_itm_in itm_in;

	if (strlen(str) >= sizeof(workbuf))
		return false;
	dterr = ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm_in);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(unconstify(char *, str), &dtype, &itm_in);
	return dterr == 0 && dtype == DTK_DELTA && itmin2interval(&itm_in, out) == 0;
}
