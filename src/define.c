/*
 * define.c
 *		define_resource() and define_task(): validate and store resource and
 *		task types, and look them up for the tick and the API.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_define_resource);
PG_FUNCTION_INFO_V1(toygun_define_task);

static SPIPlanPtr find_resource_type_plan;
static SPIPlanPtr find_task_type_plan;
static SPIPlanPtr upsert_resource_type_plan;
static SPIPlanPtr upsert_task_type_plan;
static SPIPlanPtr rearm_resources_plan;

/* Declared states: a non-empty list of unique names, none reserved. */
static char **
check_states(FunctionCallInfo fcinfo, int argno, int *n)
{
	char	  **states;
	int			i,
				j;

	toygun_check_not_null(fcinfo, argno, "states");
	states = toygun_text_array(PG_GETARG_ARRAYTYPE_P(argno), "states", n);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("states must not be empty"),
				 errhint("List the states in order; the first is the initial state.")));
	for (i = 0; i < *n; i++)
	{
		(void) toygun_check_name("state name", cstring_to_text(states[i]));
		if (strncmp(states[i], "__", 2) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("state name \"%s\" is reserved", states[i]),
					 errdetail("Names that start with \"__\" are toygun's own states.")));
		for (j = 0; j < i; j++)
			if (strcmp(states[i], states[j]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("state \"%s\" is listed more than once", states[i])));
	}
	return states;
}

/* A list of field names: unique valid names. NULL gives *n = -1. */
static char **
check_fields(FunctionCallInfo fcinfo, int argno, const char *what, int *n)
{
	char	  **fields;
	int			i,
				j;

	if (PG_ARGISNULL(argno))
	{
		*n = -1;
		return NULL;
	}
	fields = toygun_text_array(PG_GETARG_ARRAYTYPE_P(argno), what, n);
	for (i = 0; i < *n; i++)
	{
		(void) toygun_check_name("field name", cstring_to_text(fields[i]));
		for (j = 0; j < i; j++)
			if (strcmp(fields[i], fields[j]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("field \"%s\" is listed more than once in %s", fields[i], what)));
	}
	return fields;
}

/*
 * A handler is a plain function of one argument, the object's row type,
 * returning toygun.next, that the definer may execute. Returns its
 * schema-qualified signature, which is what we store.
 */
static char *
check_handler(Oid fn, const char *rowtype, Oid caller)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			argtype = toygun_type_oid(rowtype);
	Oid			nexttype = toygun_type_oid("next");
	bool		ok;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function with OID %u does not exist", fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->pronargs == 1 && proc->proargtypes.values[0] == argtype &&
		proc->prorettype == nexttype;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler %s must be a function taking toygun.%s and returning toygun.next",
						format_procedure(fn), rowtype),
				 errhint("Declare it as CREATE FUNCTION f(o toygun.%s) RETURNS toygun.next.",
						 rowtype)));
	if (pg_proc_aclcheck(fn, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for handler %s", format_procedure(fn)),
				 errdetail("The handler runs as the role that defines the type, which must be allowed to execute it.")));
	return format_procedure_qualified(fn);
}

/* The search_path handlers of a type defined now will run with. */
static char *
definer_search_path(void)
{
	return pstrdup(GetConfigOption("search_path", false, false));
}

static char **
datum_text_array(HeapTuple tup, TupleDesc desc, int col, int *n, bool *isnull)
{
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	if (*isnull)
	{
		*n = 0;
		return NULL;
	}
	return toygun_text_array(DatumGetArrayTypeP(d), "list", n);
}

/*
 * Look up a resource type (name NULL) or task type. Must be called inside a
 * toygun call (SPI connected). Errors with a hint if it does not exist,
 * unless missing_ok.
 */
ToygunDef *
toygun_find_def(ToygunKind kind, const char *resource_type, const char *name,
				bool missing_ok)
{
	Datum		values[2];
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	ToygunDef  *def;
	bool		isnull;
	int			n;

	values[0] = CStringGetTextDatum(resource_type);
	if (kind == TOYGUN_RESOURCE)
	{
		Oid			argtypes[1] = {TEXTOID};

		plan = toygun_plan(&find_resource_type_plan,
						   "SELECT states, handler, fields, encrypted_fields, owner::pg_catalog.oid, search_path"
						   "  FROM toygun.resource_type WHERE name = $1",
						   1, argtypes);
	}
	else
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		values[1] = CStringGetTextDatum(name);
		plan = toygun_plan(&find_task_type_plan,
						   "SELECT states, handler, fields, encrypted_fields, owner::pg_catalog.oid, search_path"
						   "  FROM toygun.task_type WHERE resource_type = $1 AND name = $2",
						   2, argtypes);
	}
	toygun_run(plan, values, NULL, 1);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return NULL;
		if (kind == TOYGUN_RESOURCE)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("resource type \"%s\" does not exist", resource_type),
					 errhint("Define it with toygun.define_resource().")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" is not defined for resource type \"%s\"", name, resource_type),
				 errhint("Define it with toygun.define_task().")));
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	def = palloc0(sizeof(ToygunDef));
	def->kind = kind;
	def->resource_type = pstrdup(resource_type);
	def->name = name ? pstrdup(name) : NULL;
	def->states = datum_text_array(tup, desc, 1, &def->nstates, &isnull);
	def->handler = SPI_getvalue(tup, desc, 2);
	def->fields = datum_text_array(tup, desc, 3, &def->nfields, &isnull);
	def->has_fields = !isnull;
	def->encrypted = datum_text_array(tup, desc, 4, &n, &isnull);
	def->nencrypted = n;
	def->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
	def->search_path = SPI_getvalue(tup, desc, 6);
	return def;
}

/* Redefining a type is for roles that may act for its current owner. */
static void
check_redefine(ToygunDef *existing, Oid caller)
{
	if (existing != NULL)
		toygun_check_acting_for(existing, caller);
}

Datum
toygun_define_resource(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *type;
	char	  **states;
	char	  **fields;
	char	  **encrypted;
	char	   *handler = NULL;
	char	   *search_path = definer_search_path();
	int			nstates,
				nfields,
				nencrypted;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[7] = {TEXTOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID,
	TEXTARRAYOID, OIDOID, TEXTOID};

	toygun_check_not_null(fcinfo, 0, "type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	states = check_states(fcinfo, 1, &nstates);
	fields = check_fields(fcinfo, 3, "fields", &nfields);
	encrypted = check_fields(fcinfo, 4, "encrypted_fields", &nencrypted);

	toygun_begin_call(&call);
	if (!PG_ARGISNULL(2))
		handler = check_handler(PG_GETARG_OID(2), "resource", call.caller);
	check_redefine(toygun_find_def(TOYGUN_RESOURCE, type, NULL, true), call.caller);

	values[0] = CStringGetTextDatum(type);
	values[1] = toygun_cstring_array(states, nstates);
	values[2] = handler ? CStringGetTextDatum(handler) : (Datum) 0;
	nulls[2] = handler ? ' ' : 'n';
	values[3] = fields ? toygun_cstring_array(fields, nfields) : (Datum) 0;
	nulls[3] = fields ? ' ' : 'n';
	values[4] = toygun_cstring_array(encrypted, nencrypted > 0 ? nencrypted : 0);
	values[5] = ObjectIdGetDatum(call.caller);
	values[6] = CStringGetTextDatum(search_path);
	toygun_run(toygun_plan(&upsert_resource_type_plan,
						   "INSERT INTO toygun.resource_type"
						   "  (name, states, handler, fields, encrypted_fields, owner, search_path)"
						   " VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.regrole, $7)"
						   " ON CONFLICT (name) DO UPDATE SET states = excluded.states,"
						   "  handler = excluded.handler, fields = excluded.fields,"
						   "  encrypted_fields = excluded.encrypted_fields, owner = excluded.owner,"
						   "  search_path = excluded.search_path, defined_at = pg_catalog.now()",
						   7, argtypes),
			   values, nulls, 0);

	/* Resources parked for want of a handler are due again once there is one. */
	if (handler != NULL)
	{
		Oid			rearm_types[1] = {TEXTOID};

		toygun_run(toygun_plan(&rearm_resources_plan,
							   "UPDATE toygun.resource SET run_at = pg_catalog.clock_timestamp()"
							   " WHERE type = $1 AND run_at IS NULL"
							   "   AND state NOT IN ('__stop__', '__panic__')",
							   1, rearm_types),
				   values, NULL, 0);
		if (SPI_processed > 0)
			toygun_note_due();
	}
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

Datum
toygun_define_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *resource_type;
	char	   *name;
	char	  **states;
	char	  **fields;
	char	  **encrypted;
	char	   *handler;
	char	   *search_path = definer_search_path();
	int			nstates,
				nfields,
				nencrypted;
	ToygunDef  *rtype;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID,
	TEXTARRAYOID, OIDOID, TEXTOID};

	toygun_check_not_null(fcinfo, 0, "resource_type");
	resource_type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "name");
	name = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	states = check_states(fcinfo, 2, &nstates);
	toygun_check_not_null(fcinfo, 3, "handler");
	fields = check_fields(fcinfo, 4, "fields", &nfields);
	encrypted = check_fields(fcinfo, 5, "encrypted_fields", &nencrypted);

	toygun_begin_call(&call);
	handler = check_handler(PG_GETARG_OID(3), "task", call.caller);
	rtype = toygun_find_def(TOYGUN_RESOURCE, resource_type, NULL, false);
	toygun_check_acting_for(rtype, call.caller);
	check_redefine(toygun_find_def(TOYGUN_TASK, resource_type, name, true), call.caller);

	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(name);
	values[2] = toygun_cstring_array(states, nstates);
	values[3] = CStringGetTextDatum(handler);
	values[4] = fields ? toygun_cstring_array(fields, nfields) : (Datum) 0;
	nulls[4] = fields ? ' ' : 'n';
	values[5] = toygun_cstring_array(encrypted, nencrypted > 0 ? nencrypted : 0);
	values[6] = ObjectIdGetDatum(call.caller);
	values[7] = CStringGetTextDatum(search_path);
	toygun_run(toygun_plan(&upsert_task_type_plan,
						   "INSERT INTO toygun.task_type"
						   "  (resource_type, name, states, handler, fields, encrypted_fields, owner, search_path)"
						   " VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.regrole, $8)"
						   " ON CONFLICT (resource_type, name) DO UPDATE SET states = excluded.states,"
						   "  handler = excluded.handler, fields = excluded.fields,"
						   "  encrypted_fields = excluded.encrypted_fields, owner = excluded.owner,"
						   "  search_path = excluded.search_path, defined_at = pg_catalog.now()",
						   8, argtypes),
			   values, nulls, 0);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}
