/*
 * alarms.c
 *		Alarms (issue 15): raise_alarm(), snooze_alarm() and close_alarm();
 *		the alarm of kind 'panic' that a panic raises and a repair closes;
 *		and escalation: an alarm that opens (or re-opens) is offered to the
 *		alarm_handler of its resource's type, then of the parent resource's
 *		type, and so on up, each called as its type's owner in a
 *		subtransaction, until one returns 'handled'.
 *
 *		An alarm's state is stored: 'active', 'snoozed' or 'closed'. A
 *		snoozed alarm whose snoozed_until has passed reads as active in the
 *		view toygun.alarms, and its next raise stores it active again and
 *		offers it again (a re-open). Nothing sweeps snoozes: an alarm that
 *		is not raised again is not offered again.
 *
 *		An alarm that opens, re-opens or closes is handed to outbox.c, which
 *		writes it to the outbox for the channels its routes match.
 *
 *		Nothing here runs on a successful tick: object.c calls in only when
 *		a save moves an object into or out of __panic__.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_raise_alarm);
PG_FUNCTION_INFO_V1(toygun_snooze_alarm);
PG_FUNCTION_INFO_V1(toygun_close_alarm);

/* The kind of the alarm a panic raises. */
#define PANIC_KIND "panic"

/* Most resources an alarm climbs through: a tree is finite, but cap it. */
#define MAX_ESCALATION_LEVELS 32

/* Escalations inside an alarm handler (which raised another alarm) this deep are not made. */
#define MAX_NESTED_ESCALATIONS 4

static int	escalating = 0;

/* What an alarm is about. */
typedef struct AlarmObject
{
	ToygunKind	kind;
	pg_uuid_t	id;
	char	   *resource_type;
	char	   *task;			/* a run's task name; NULL for a resource */
	pg_uuid_t	resource_id;	/* the resource, or the run's resource */
} AlarmObject;

/*
 * Is there an alarm table? An install of 0.3 running this library has
 * none. Asked only when an alarm would be raised or closed, and answered
 * once per transaction.
 */
static bool
alarms_installed(void)
{
	static LocalTransactionId checked_in = InvalidLocalTransactionId;
	static bool installed = false;

	if (checked_in != MyProc->lxid)
	{
		installed = OidIsValid(get_relname_relid("alarm", get_namespace_oid("toygun", false)));
		checked_in = MyProc->lxid;
	}
	return installed;
}

/* The run or resource of that id; false if there is none. */
static bool
find_object(pg_uuid_t *id, AlarmObject *o)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	toygun_run(toygun_plan(&plan,
						   "SELECT true, resource_type, name, resource_id FROM ONLY toygun.task WHERE id = $1"
						   " UNION ALL "
						   "SELECT false, type, NULL, id FROM ONLY toygun.resource WHERE id = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	o->kind = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull)) ? TOYGUN_TASK : TOYGUN_RESOURCE;
	o->id = *id;
	o->resource_type = SPI_getvalue(tup, desc, 2);
	o->task = SPI_getvalue(tup, desc, 3);
	o->resource_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 4, &isnull));
	return true;
}

/* The definition rights on the object are checked against. */
static ToygunDef *
object_def(ToygunKind kind, const char *resource_type, const char *task)
{
	if (kind == TOYGUN_TASK && task != NULL)
	{
		ToygunDef  *def = toygun_find_def(TOYGUN_TASK, resource_type, task, true);

		if (def != NULL)
			return def;
	}
	return toygun_find_def(TOYGUN_RESOURCE, resource_type, NULL, false);
}

/*
 * Open an alarm of a kind on the object, or count the open one again (its
 * message replaced). A snoozed one whose time has passed is active again:
 * re-opened. Returns its id; *opened says whether it was opened or
 * re-opened, which is when it is offered to the alarm handlers. Concurrent
 * raises make one alarm: the insert waits for the other's, and counts it.
 */
static pg_uuid_t
upsert_alarm(AlarmObject *o, const char *kind, const char *message, bool *opened)
{
	static SPIPlanPtr reopen_plan = NULL;
	static SPIPlanPtr upsert_plan = NULL;
	Oid			argtypes[7] = {UUIDOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	pg_uuid_t  *new_id = toygun_new_uuid();
	pg_uuid_t	id;
	bool		isnull;
	bool		reopened;

	values[0] = UUIDPGetDatum(&o->id);
	values[1] = CStringGetTextDatum(kind);
	values[2] = UUIDPGetDatum(new_id);
	values[3] = CStringGetTextDatum(o->kind == TOYGUN_TASK ? "task" : "resource");
	values[4] = CStringGetTextDatum(o->resource_type);
	values[5] = o->task ? CStringGetTextDatum(o->task) : (Datum) 0;
	nulls[5] = o->task ? ' ' : 'n';
	values[6] = CStringGetTextDatum(message);

	/* a snooze run out: the first raise since takes it (the row lock decides) */
	toygun_run(toygun_plan(&reopen_plan,
						   "UPDATE ONLY toygun.alarm SET state = 'active', handled_by = NULL"
						   " WHERE object_id = $1 AND kind = $2 AND state = 'snoozed'"
						   "   AND snoozed_until <= pg_catalog.clock_timestamp()",
						   2, argtypes),
			   values, NULL, 0);
	reopened = SPI_processed > 0;
	toygun_run(toygun_plan(&upsert_plan,
						   "INSERT INTO toygun.alarm AS a"
						   "  (id, object_id, object_kind, resource_type, task, kind, message)"
						   " VALUES ($3, $1, $4, $5, $6, $2, $7)"
						   " ON CONFLICT (object_id, kind) WHERE state <> 'closed' DO UPDATE"
						   "  SET count = a.count + (a.count < 2147483647)::pg_catalog.int4,"
						   "      last_raised_at = pg_catalog.clock_timestamp(),"
						   "      message = excluded.message"
						   " RETURNING a.id",
						   7, argtypes),
			   values, nulls, 1);
	id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*opened = reopened || memcmp(&id, new_id, sizeof(pg_uuid_t)) == 0;
	/* notified as it opened, before any handler sees it: events stay in order */
	if (*opened)
		toygun_outbox_alarm(&id, kind, o->resource_type, reopened ? "reopen" : "open");
	return id;
}

/* The alarm's row, as a toygun.alarm datum in the current memory context. */
static Datum
alarm_row(pg_uuid_t *id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	toygun_run(toygun_plan(&plan, "SELECT a FROM ONLY toygun.alarm a WHERE a.id = $1", 1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return (Datum) 0;
	return datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull), false, -1);
}

typedef struct OfferContext
{
	ToygunDef  *def;
	pg_uuid_t  *alarm_id;
	pg_uuid_t  *resource;
} OfferContext;

static void
offer_error_context(void *arg)
{
	OfferContext *oc = (OfferContext *) arg;

	errcontext("toygun alarm_handler of %s, offered alarm %s at resource %s",
			   toygun_def_label(oc->def), toygun_uuid_text(oc->alarm_id),
			   toygun_uuid_text(oc->resource));
}

/*
 * Offer the alarm to a type's alarm handler, as the type's owner, in a
 * subtransaction: what the handler returned, or "error" (with *sqlstate)
 * if it failed, which is undone and logged. A cancel is not caught.
 */
static char *
offer(ToygunDef *def, Datum row, pg_uuid_t *alarm_id, pg_uuid_t *resource, char **sqlstate)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorContextCallback errcb;
	OfferContext oc;
	char	   *volatile result = NULL;

	oc.def = def;
	oc.alarm_id = alarm_id;
	oc.resource = resource;
	errcb.callback = offer_error_context;
	errcb.arg = &oc;
	errcb.previous = error_context_stack;

	*sqlstate = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 1);
		ToygunCall	call;
		Datum		d;

		error_context_stack = &errcb;
		InitFunctionCallInfoData(*fcinfo, toygun_def_alarm_handler(def), 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = row;
		fcinfo->args[0].isnull = false;
		toygun_begin_handler_call(&call, def);
		d = FunctionCallInvoke(fcinfo);
		toygun_end_handler_call(&call);
		result = fcinfo->isnull ? NULL : TextDatumGetCString(d);
		error_context_stack = errcb.previous;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		error_context_stack = errcb.previous;
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		/*
		 * The text stays in the server log: readers of the alarm may not read
		 * errors, nor may the session that raised it (a WARNING would reach
		 * it), which may be another owner's than the handler's.
		 */
		ereport(LOG_SERVER_ONLY,
				(errmsg("toygun: alarm_handler of %s failed on alarm %s: %s",
						toygun_def_label(def), toygun_uuid_text(alarm_id), edata->message)));
		*sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		result = "error";
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return result;
}

/*
 * Append an offer to the alarm's escalation (and name the type that took
 * it). Returns the alarm's row as it is now, or 0 if it is gone or closed
 * (by the handler, say): then it goes no further.
 */
static Datum
record_offer(pg_uuid_t *alarm_id, const char *type, pg_uuid_t *resource, const char *result,
			 const char *sqlstate)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {UUIDOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	values[0] = UUIDPGetDatum(alarm_id);
	values[1] = CStringGetTextDatum(type);
	values[2] = UUIDPGetDatum(resource);
	values[3] = result ? CStringGetTextDatum(result) : (Datum) 0;
	nulls[3] = result ? ' ' : 'n';
	values[4] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	nulls[4] = sqlstate ? ' ' : 'n';
	toygun_run(toygun_plan(&plan,
						   "UPDATE ONLY toygun.alarm a SET"
						   "  escalation = a.escalation || pg_catalog.jsonb_build_array("
						   "    pg_catalog.jsonb_build_object('type', $2, 'resource', $3, 'result', $4,"
						   "                                  'at', pg_catalog.clock_timestamp())"
						   "    || CASE WHEN $5 IS NULL THEN '{}'::pg_catalog.jsonb"
						   "            ELSE pg_catalog.jsonb_build_object('sqlstate', $5) END),"
						   "  handled_by = CASE WHEN $4 = 'handled' THEN $2 ELSE a.handled_by END"
						   " WHERE a.id = $1 RETURNING a, a.state = 'closed'",
						   5, argtypes),
			   values, nulls, 1);
	if (SPI_processed == 0 ||
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		return (Datum) 0;
	return datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull), false, -1);
}

/*
 * A resource's type and parent (false if it has none); false if the
 * resource is gone.
 */
static bool
read_resource(pg_uuid_t *id, char **type, pg_uuid_t *parent, bool *has_parent)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	Datum		d;
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	toygun_run(toygun_plan(&plan, "SELECT type, parent_id FROM ONLY toygun.resource WHERE id = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return false;
	*type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*has_parent = !isnull;
	if (!isnull)
		*parent = *DatumGetUUIDP(d);
	return true;
}

/*
 * Offer an alarm that opened to the alarm handlers up the resource tree,
 * from the object's resource to its parents, each type that has one, until
 * one returns 'handled'. Types without one are passed over.
 */
static void
climb(pg_uuid_t *alarm_id, AlarmObject *o, Datum row)
{
	pg_uuid_t	seen[MAX_ESCALATION_LEVELS];
	pg_uuid_t	current = o->resource_id;
	int			level;

	for (level = 0; level < MAX_ESCALATION_LEVELS; level++)
	{
		char	   *type;
		pg_uuid_t	parent;
		bool		has_parent;
		ToygunDef  *def;
		int			i;

		for (i = 0; i < level; i++)
			if (memcmp(&seen[i], &current, sizeof(pg_uuid_t)) == 0)
				return;			/* a cycle of parents */
		seen[level] = current;
		if (!read_resource(&current, &type, &parent, &has_parent))
			return;
		def = toygun_find_def(TOYGUN_RESOURCE, type, NULL, true);
		if (def != NULL && def->alarm_handler != NULL)
		{
			char	   *sqlstate;
			char	   *result = offer(def, row, alarm_id, &current, &sqlstate);

			row = record_offer(alarm_id, type, &current, result, sqlstate);
			if (row == (Datum) 0 || (result != NULL && strcmp(result, "handled") == 0))
				return;
			/* the handler may have moved things: read the parent again */
			if (!read_resource(&current, &type, &parent, &has_parent))
				return;
		}
		if (!has_parent)
			return;
		current = parent;
	}
}

static void
escalate(pg_uuid_t *alarm_id, AlarmObject *o)
{
	Datum		row;

	if (escalating >= MAX_NESTED_ESCALATIONS)
	{
		ereport(WARNING,
				(errmsg("toygun: alarm %s is not offered to alarm handlers: escalations are nested %d deep",
						toygun_uuid_text(alarm_id), escalating),
				 errdetail("An alarm handler raised an alarm whose handlers raised alarms, too deeply.")));
		return;
	}
	/* raised while a dead tick is charged: no tenant's code (contain.c) */
	if (toygun_tenant_code_barred())
	{
		ereport(LOG,
				(errmsg("toygun: alarm %s is not offered to alarm handlers: it was raised while charging a tick that ended its worker",
						toygun_uuid_text(alarm_id))));
		return;
	}
	row = alarm_row(alarm_id);
	if (row == (Datum) 0)
		return;
	escalating++;
	PG_TRY();
	{
		climb(alarm_id, o, row);
	}
	PG_FINALLY();
	{
		escalating--;
	}
	PG_END_TRY();
}

/*
 * A save moved the object into __panic__ (entered: by step, whose note is
 * the panic's message) or out of it (by step, whose note and reason say
 * how): raise its alarm of kind 'panic', or close it with that reason.
 * Called by object.c after the save, in the same transaction.
 */
void
toygun_alarm_panic_moved(ToygunObject *obj, ToygunStep *step, bool entered)
{
	AlarmObject o;

	if (!alarms_installed())
		return;
	o.kind = obj->kind;
	o.id = obj->id;
	o.resource_type = obj->type;
	o.task = obj->kind == TOYGUN_TASK ? obj->name : NULL;
	o.resource_id = obj->kind == TOYGUN_TASK ? obj->resource_id : obj->id;
	if (entered)
	{
		bool		opened;
		pg_uuid_t	id = upsert_alarm(&o, PANIC_KIND,
									  step->note ? step->note : "panicked", &opened);

		if (opened)
			escalate(&id, &o);
	}
	else
	{
		const char *how = step->note ? step->note : "moved out of " TOYGUN_PANIC;

		toygun_alarm_close(&obj->id, PANIC_KIND,
						   step->reason ? psprintf("%s: %s", how, step->reason) : how, obj->actor);
	}
}

/*
 * Raise an alarm of a kind toygun reserves (breaker.c's 'breaker') on a run
 * or resource, from C: opened, or counted again if open, and offered to the
 * alarm handlers when it opens. Nothing if the object is gone or there is
 * no alarm table (the SQL of 0.3).
 */
void
toygun_alarm_raise(pg_uuid_t *object, const char *kind, const char *message)
{
	AlarmObject o;
	bool		opened;
	pg_uuid_t	id;

	if (!alarms_installed() || !find_object(object, &o))
		return;
	id = upsert_alarm(&o, kind, message, &opened);
	if (opened)
		escalate(&id, &o);
}

/*
 * Close the open alarm of a kind on an object, if any, with the reason, by
 * actor; its routes' outbox rows say so.
 */
void
toygun_alarm_close(pg_uuid_t *object, const char *kind, const char *reason, Oid actor)
{
	static SPIPlanPtr close_plan = NULL;
	Oid			argtypes[4] = {UUIDOID, TEXTOID, OIDOID, TEXTOID};
	Datum		values[4];
	bool		isnull;

	if (!alarms_installed())
		return;
	values[0] = UUIDPGetDatum(object);
	values[1] = CStringGetTextDatum(reason);
	values[2] = ObjectIdGetDatum(actor);
	values[3] = CStringGetTextDatum(kind);
	toygun_run(toygun_plan(&close_plan,
						   "UPDATE ONLY toygun.alarm SET state = 'closed',"
						   "  closed_at = pg_catalog.clock_timestamp(), closed_reason = $2,"
						   "  closed_by = $3::pg_catalog.regrole"
						   " WHERE object_id = $1 AND kind = $4 AND state <> 'closed'"
						   " RETURNING id, resource_type",
						   4, argtypes),
			   values, NULL, 0);
	if (SPI_processed > 0)
	{
		pg_uuid_t	id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
													  &isnull));
		char	   *resource_type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		toygun_outbox_alarm(&id, kind, resource_type, "close");
	}
}

/* raise_alarm(object, kind, message): right operate on the object's type. */
Datum
toygun_raise_alarm(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	AlarmObject o;
	char	   *kind;
	char	   *message;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));
	pg_uuid_t	id;
	bool		opened;

	toygun_check_not_null(fcinfo, 0, "object");
	toygun_check_not_null(fcinfo, 1, "kind");
	toygun_check_not_null(fcinfo, 2, "message");
	kind = toygun_check_name("alarm kind", PG_GETARG_TEXT_PP(1));
	if (strcmp(kind, PANIC_KIND) == 0 || strcmp(kind, TOYGUN_BREAKER_KIND) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("alarm kind \"%s\" is reserved", kind),
				 errdetail("toygun raises alarms of kinds \"panic\" and \"breaker\" itself, and closes them when the object is repaired."),
				 errhint("Name another kind.")));
	message = text_to_cstring(PG_GETARG_TEXT_PP(2));

	toygun_begin_call(&call);
	if (!find_object(PG_GETARG_UUID_P(0), &o))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("resource or task %s does not exist", toygun_uuid_text(PG_GETARG_UUID_P(0))),
				 errhint("Raise an alarm on a resource or a run.")));
	toygun_check_right(object_def(o.kind, o.resource_type, o.task), call.caller, TOYGUN_RIGHT_OPERATE);
	id = upsert_alarm(&o, kind, message, &opened);
	if (opened)
		escalate(&id, &o);
	toygun_end_call(&call);
	*result = id;
	PG_RETURN_UUID_P(result);
}

/*
 * The alarm of that id, checked for right operate on its object's type
 * before it is locked, then locked. Returns its stored state.
 */
static char *
lock_alarm_for_caller(pg_uuid_t *id, Oid caller)
{
	static SPIPlanPtr read_plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;

	values[0] = UUIDPGetDatum(id);
	toygun_run(toygun_plan(&read_plan,
						   "SELECT object_kind, resource_type, task FROM ONLY toygun.alarm WHERE id = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("alarm %s does not exist", toygun_uuid_text(id)),
				 errhint("toygun.alarms lists the alarms you may read.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	toygun_check_right(object_def(strcmp(SPI_getvalue(tup, desc, 1), "task") == 0 ? TOYGUN_TASK : TOYGUN_RESOURCE,
								  SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3)),
					   caller, TOYGUN_RIGHT_OPERATE);
	toygun_run(toygun_plan(&lock_plan, "SELECT state FROM ONLY toygun.alarm WHERE id = $1 FOR UPDATE",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("alarm %s does not exist", toygun_uuid_text(id))));
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* The row a statement returned, as this function's result. */
static Datum
returned_row(void)
{
	bool		isnull;

	return SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							 false, -1);
}

/*
 * snooze_alarm(id, until): an open alarm is snoozed until a time to come;
 * a raise after that time makes it active again. Snoozing again moves it.
 */
Datum
toygun_snooze_alarm(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	TimestampTz until;
	char	   *state;
	Datum		row;

	toygun_check_not_null(fcinfo, 0, "id");
	toygun_check_not_null(fcinfo, 1, "until");
	until = PG_GETARG_TIMESTAMPTZ(1);
	if (until <= GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alarm %s cannot be snoozed until %s", toygun_uuid_text(PG_GETARG_UUID_P(0)),
						timestamptz_to_str(until)),
				 errdetail("That time has passed."),
				 errhint("Snooze it until a time to come, or close it with toygun.close_alarm().")));
	toygun_begin_call(&call);
	state = lock_alarm_for_caller(PG_GETARG_UUID_P(0), call.caller);
	if (strcmp(state, "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("alarm %s is closed", toygun_uuid_text(PG_GETARG_UUID_P(0))),
				 errdetail("Only an open alarm is snoozed."),
				 errhint("A closed alarm stays closed: raising its kind again opens a new one.")));
	values[0] = UUIDPGetDatum(PG_GETARG_UUID_P(0));
	values[1] = TimestampTzGetDatum(until);
	toygun_run(toygun_plan(&plan,
						   "UPDATE ONLY toygun.alarm a SET state = 'snoozed', snoozed_until = $2"
						   " WHERE a.id = $1 RETURNING a",
						   2, argtypes),
			   values, NULL, 1);
	row = returned_row();
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * close_alarm(id, reason): closed by the caller, with the reason. Closing
 * a closed alarm returns it as it is (who closed it first, and why).
 */
Datum
toygun_close_alarm(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr close_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	ToygunCall	call;
	Oid			argtypes[3] = {UUIDOID, TEXTOID, OIDOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	char	   *state;
	Datum		row;

	toygun_check_not_null(fcinfo, 0, "id");
	toygun_begin_call(&call);
	state = lock_alarm_for_caller(PG_GETARG_UUID_P(0), call.caller);
	values[0] = UUIDPGetDatum(PG_GETARG_UUID_P(0));
	if (strcmp(state, "closed") == 0)
		toygun_run(toygun_plan(&read_plan, "SELECT a FROM ONLY toygun.alarm a WHERE a.id = $1",
							   1, argtypes),
				   values, NULL, 1);
	else
	{
		values[1] = PG_NARGS() > 1 && !PG_ARGISNULL(1) ? PointerGetDatum(PG_GETARG_TEXT_PP(1)) : (Datum) 0;
		nulls[1] = PG_NARGS() > 1 && !PG_ARGISNULL(1) ? ' ' : 'n';
		values[2] = ObjectIdGetDatum(call.caller);
		toygun_run(toygun_plan(&close_plan,
							   "UPDATE ONLY toygun.alarm a SET state = 'closed',"
							   "  closed_at = pg_catalog.clock_timestamp(), closed_reason = $2,"
							   "  closed_by = $3::pg_catalog.regrole"
							   " WHERE a.id = $1 RETURNING a, a.kind, a.resource_type",
							   3, argtypes),
				   values, nulls, 1);
		row = returned_row();
		toygun_outbox_alarm(PG_GETARG_UUID_P(0), SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
							SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "close");
		toygun_end_call(&call);
		PG_RETURN_DATUM(row);
	}
	row = returned_row();
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}
