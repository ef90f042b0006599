/*
 * versions.c
 *		Schema versions (issue 16): a type's version is the shape its
 *		objects' attrs are in, and each object records the version its attrs
 *		were written in. An object below its type's version is upgraded by
 *		the type's upgrade function, f(attrs jsonb, from_version integer)
 *		RETURNS jsonb, run as the type's owner as a handler is, before its
 *		next tick (tick.c) or move by hand (commands.c), or by
 *		toygun.backfill(), in bounded batches.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_backfill);

typedef struct UpgradeContext
{
	ToygunObject *obj;
	ToygunDef  *def;
} UpgradeContext;

static void
upgrade_error_context(void *arg)
{
	UpgradeContext *uc = (UpgradeContext *) arg;

	errcontext("toygun upgrade of %s %s (%s) from version %d to %d by %s",
			   toygun_kind_name(uc->obj->kind), toygun_uuid_text(&uc->obj->id),
			   toygun_def_label(uc->def), uc->obj->version, uc->def->version, uc->def->upgrade);
}

/* Is the value of key in a the same as in b (both present)? */
static bool
same_value(Jsonb *a, Jsonb *b, const char *key)
{
	JsonbValue	va,
				vb;
	int			len = strlen(key);

	if (getKeyJsonValueFromContainer(&a->root, key, len, &va) == NULL ||
		getKeyJsonValueFromContainer(&b->root, key, len, &vb) == NULL)
		return false;
	return DatumGetBool(DirectFunctionCall2(jsonb_eq,
											JsonbPGetDatum(JsonbValueToJsonb(&va)),
											JsonbPGetDatum(JsonbValueToJsonb(&vb))));
}

/*
 * The encrypted fields the upgrade returned as they were stored (sealed):
 * kept as they are, neither checked nor sealed again. A text[], or NULL.
 */
static ArrayType *
kept_sealed(ToygunDef *def, Jsonb *stored, Jsonb *result)
{
	Datum	   *keys = palloc(sizeof(Datum) * Max(def->nencrypted, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < def->nencrypted; i++)
		if (same_value(stored, result, def->encrypted[i]))
			keys[n++] = CStringGetTextDatum(def->encrypted[i]);
	return n > 0 ? construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT) : NULL;
}

/*
 * The attrs an upgrade function returned, as the object's new attrs: a JSON
 * object, its fields checked (declared, typed) as any attrs write is, its
 * encrypted fields sealed unless they are the stored, sealed values; a
 * field set to null is removed. The attrs are replaced, not merged: an
 * upgrade may drop fields.
 */
static Jsonb *
upgraded_attrs(ToygunObject *obj, ToygunDef *def, Jsonb *result)
{
	ArrayType  *kept;
	Jsonb	   *fresh;
	Jsonb	   *sealed;

	toygun_check_object_attrs("the attrs an upgrade function returns", result);
	kept = def->nencrypted > 0 ? kept_sealed(def, obj->attrs, result) : NULL;
	fresh = kept == NULL ? result :
		DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_array, JsonbPGetDatum(result),
										   PointerGetDatum(kept)));
	toygun_check_fields(def, fresh);
	sealed = toygun_seal_attrs(def, &obj->id, toygun_without_nulls(fresh, fresh));
	if (kept == NULL)
		return sealed;
	return toygun_without_nulls(DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
																   JsonbPGetDatum(result),
																   JsonbPGetDatum(sealed))),
								result);
}

/*
 * Bring a locked object's attrs up to its type's version, in memory (the
 * save writes attrs and version): the upgrade function is called once, with
 * the attrs as stored (encrypted fields sealed) and the version they are
 * in, as the type's owner, restricted, with its search_path. Without an
 * upgrade function only the version changes. An error is the caller's:
 * a tick fails (retried, then a panic, as a handler's error), a move by
 * hand is refused. Nothing to do for an object at its type's version.
 */
void
toygun_upgrade_object(ToygunObject *obj, ToygunDef *def)
{
	ErrorContextCallback errcb;
	UpgradeContext uc;
	FmgrInfo   *flinfo;
	LOCAL_FCINFO(fcinfo, 2);
	ToygunCall	call;
	Datum		result;

	if (obj->version >= def->version)
		return;
	if (def->upgrade == NULL)
	{
		obj->version = def->version;
		return;
	}
	uc.obj = obj;
	uc.def = def;
	errcb.callback = upgrade_error_context;
	errcb.arg = &uc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	flinfo = toygun_def_upgrade(def);
	InitFunctionCallInfoData(*fcinfo, flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(obj->attrs);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = Int32GetDatum(obj->version);
	fcinfo->args[1].isnull = false;
	toygun_begin_handler_call(&call, def);
	result = FunctionCallInvoke(fcinfo);
	toygun_end_handler_call(&call);
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("upgrade function %s of %s returned NULL", def->upgrade, toygun_def_label(def)),
				 errhint("Return the attrs as version %d has them ('{}' for none).", def->version)));
	obj->attrs = upgraded_attrs(obj, def, DatumGetJsonbP(result));
	obj->version = def->version;

	error_context_stack = errcb.previous;
}

/*
 * Live objects of a type below a version that backfill() may take now: not
 * panicked (a person moves those, which upgrades them), not waiting out
 * the backoff of a failed tick or upgrade. Resources: $1 type, $2 version;
 * runs: $1 resource type, $2 version, $3 task.
 */
#define BACKLOG_WHERE \
	" AND version < $2 AND state NOT IN ('__stop__', '__panic__')" \
	" AND (attempts = 0 OR run_at IS NULL OR run_at <= pg_catalog.now())"
#define RESOURCE_BACKLOG " FROM ONLY toygun.resource WHERE type = $1" BACKLOG_WHERE
#define TASK_BACKLOG " FROM ONLY toygun.task WHERE resource_type = $1 AND name = $3" BACKLOG_WHERE

/* Is the error one that must end the call rather than count as the object's? */
static bool
is_fatal_to_call(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		edata->elevel > ERROR;
}

/*
 * Upgrade one object locked by backfill() in a subtransaction. A failure is
 * recorded as a failed tick of the object (failure.c: attempts, last_error,
 * a retry after its backoff, a panic after max_attempts), in a
 * subtransaction of its own, and reported as a WARNING. Returns whether it
 * was upgraded.
 */
static bool
backfill_one(ToygunKind kind, pg_uuid_t *id, Oid caller)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	TimestampTz started = GetCurrentTimestamp();
	volatile bool upgraded = false;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ToygunObject *obj = toygun_lock_object(kind, id, true, true);
		ToygunDef  *def = obj != NULL ? toygun_locked_def(obj) : NULL;

		if (obj != NULL && obj->version < def->version &&
			strcmp(obj->state, TOYGUN_STOP) != 0 && strcmp(obj->state, TOYGUN_PANIC) != 0)
		{
			obj->actor = caller;
			toygun_upgrade_object(obj, def);
			/* when it is due stays as it is */
			obj->has_run_at = true;
			obj->run_at_null = obj->due_at == DT_NOEND;
			obj->run_at = obj->due_at;
			(void) toygun_save_object(obj, def, obj->step);
			upgraded = true;
		}
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (is_fatal_to_call(edata))
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata == NULL)
		return upgraded;

	ereport(WARNING,
			(errmsg("upgrade of %s %s failed: %s", toygun_kind_name(kind), toygun_uuid_text(id),
					edata->message ? edata->message : "unknown error"),
			 errdetail("It is recorded as a failed tick of the object, retried after its backoff."),
			 errhint("toygun.failures and last_error() show it; define the type again with an upgrade function that works.")));

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ToygunFailure failure;

		failure.error = edata->message ? edata->message : "unknown error";
		failure.started_at = started;
		failure.ended_at = GetCurrentTimestamp();
		failure.worker_pid = 0;
		(void) toygun_record_failure(kind, id, &failure, true, true, NULL);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *again;

		MemoryContextSwitchTo(cxt);
		again = CopyErrorData();
		if (is_fatal_to_call(again))
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING,
				(errmsg("the failed upgrade of %s %s could not be recorded: %s",
						toygun_kind_name(kind), toygun_uuid_text(id),
						again->message ? again->message : "unknown error")));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return false;
}

/*
 * backfill(resource_type, task, batch): upgrade at most batch live objects
 * of the type (task NULL: its resources; else the runs of that task) that
 * are below its version, each in a subtransaction, skipping those locked by
 * someone else (a tick upgrades them itself). Returns how many it could
 * still take (BACKLOG_WHERE) once done: call it again until 0, each call
 * in a transaction of its own. Right operate on the resource type.
 */
Datum
toygun_backfill(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr candidates_plan[2];
	static SPIPlanPtr count_plan[2];
	ToygunCall	call;
	ToygunKind	kind;
	ToygunDef  *def;
	char	   *type;
	char	   *task = NULL;
	int32		batch;
	Oid			argtypes[4] = {TEXTOID, INT4OID, TEXTOID, INT4OID};
	Datum		values[4];
	pg_uuid_t  *ids;
	uint64		n,
				i;
	bool		isnull;
	int64		remaining;

	toygun_check_not_null(fcinfo, 0, "resource_type");
	toygun_check_not_null(fcinfo, 2, "batch");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	batch = PG_GETARG_INT32(2);
	if (batch < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be at least 1, not %d", batch),
				 errhint("Give how many objects one call upgrades at most.")));
	kind = task != NULL ? TOYGUN_TASK : TOYGUN_RESOURCE;

	toygun_begin_call(&call);
	def = toygun_find_def(kind, type, task, false);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_OPERATE);
	values[0] = CStringGetTextDatum(type);
	values[1] = Int32GetDatum(def->version);
	values[2] = task != NULL ? CStringGetTextDatum(task) : (Datum) 0;
	values[3] = Int32GetDatum(batch);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&candidates_plan[kind],
							   "SELECT id" TASK_BACKLOG " LIMIT $4 FOR UPDATE SKIP LOCKED",
							   4, argtypes),
				   values, NULL, 0);
	else
	{
		Oid			rtypes[3] = {TEXTOID, INT4OID, INT4OID};
		Datum		rvalues[3] = {values[0], values[1], values[3]};

		toygun_run(toygun_plan(&candidates_plan[kind],
							   "SELECT id" RESOURCE_BACKLOG " LIMIT $3 FOR UPDATE SKIP LOCKED",
							   3, rtypes),
				   rvalues, NULL, 0);
	}
	n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
		ids[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);

	for (i = 0; i < n; i++)
		(void) backfill_one(kind, &ids[i], call.caller);

	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&count_plan[kind], "SELECT pg_catalog.count(*)" TASK_BACKLOG,
							   3, argtypes),
				   values, NULL, 1);
	else
		toygun_run(toygun_plan(&count_plan[kind], "SELECT pg_catalog.count(*)" RESOURCE_BACKLOG,
							   2, argtypes),
				   values, NULL, 1);
	remaining = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	toygun_end_call(&call);
	PG_RETURN_INT64(remaining);
}
