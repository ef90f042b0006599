/*
 * triggers.c
 *		Triggers: a task started on a resource when it enters a state.
 *		define_trigger() and drop_trigger() keep toygun.trigger; the save of a
 *		resource's move (object.c) fires the triggers of the states it entered,
 *		in its transaction, each start acting for the trigger's owner through
 *		the start of start_task (commands.c). A resource type's triggers are
 *		read once per definition cache generation and kept in its ToygunDef:
 *		a move of a type without triggers costs a pointer test, a task's tick
 *		nothing.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_define_trigger);
PG_FUNCTION_INFO_V1(toygun_drop_trigger);

typedef struct ToygunTrigger
{
	char	   *on_state;
	char	   *task;
	Jsonb	   *args;
	Oid			owner;			/* the role that defined it: starts act for it */
} ToygunTrigger;

struct ToygunTriggers
{
	int			n;
	ToygunTrigger items[FLEXIBLE_ARRAY_MEMBER];
};

/* A type without triggers shares this. */
static struct ToygunTriggers no_triggers = {0};

/* toygun.trigger, or InvalidOid in an install not yet updated to 0.4. */
static Oid
trigger_table(void)
{
	return get_relname_relid("trigger", get_namespace_oid("toygun", false));
}

/*
 * A resource type's triggers, in the memory of its definition (the cache's):
 * a change to toygun.trigger makes the definition cache stale (define.c), so
 * the next lookup reads them again.
 */
static struct ToygunTriggers *
load_triggers(ToygunDef *def)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext cxt = GetMemoryChunkContext(def);
	struct ToygunTriggers *trs;
	uint64		i;

	if (!OidIsValid(trigger_table()))
		return &no_triggers;
	values[0] = CStringGetTextDatum(def->resource_type);
	toygun_run(toygun_plan(&plan,
						   "SELECT on_state, task, args, owner::pg_catalog.oid FROM ONLY toygun.trigger"
						   " WHERE resource_type = $1 ORDER BY on_state, task",
						   1, argtypes),
			   values, NULL, 0);
	if (SPI_processed == 0)
		return &no_triggers;
	trs = MemoryContextAlloc(cxt, offsetof(struct ToygunTriggers, items) +
							 sizeof(ToygunTrigger) * SPI_processed);
	trs->n = (int) SPI_processed;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ToygunTrigger *tr = &trs->items[i];
		bool		isnull;
		Jsonb	   *args = DatumGetJsonbP(SPI_getbinval(tup, desc, 3, &isnull));

		tr->on_state = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 1));
		tr->task = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
		tr->args = MemoryContextAlloc(cxt, VARSIZE(args));
		memcpy(tr->args, args, VARSIZE(args));
		tr->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return trs;
}

/* What a start that a trigger made was doing, for its errors. */
typedef struct FiringContext
{
	ToygunTrigger *trigger;
	ToygunObject *obj;
} FiringContext;

static void
firing_context(void *arg)
{
	FiringContext *f = arg;

	errcontext("trigger of resource type \"%s\" on state \"%s\", starting task \"%s\" on resource %s for role \"%s\"",
			   f->obj->type, f->trigger->on_state, f->trigger->task,
			   toygun_uuid_text(&f->obj->id), toygun_role_name(f->trigger->owner));
}

/*
 * Fire the triggers of the states a resource's saved move entered: each
 * step into a state from another. Called by the save once the resource's
 * new row is written, in its transaction: a start that fails fails the move.
 */
void
toygun_fire_triggers(ToygunObject *obj, ToygunDef *def)
{
	struct ToygunTriggers *trs;
	int			i,
				j;

	/* a panic charged for a dead tick fires none: no tenant's code (contain.c) */
	if (toygun_tenant_code_barred())
		return;
	if (def->triggers == NULL)
		def->triggers = load_triggers(def);
	trs = def->triggers;
	if (trs->n == 0)
		return;
	for (i = 0; i < obj->nsteps; i++)
	{
		ToygunStep *s = &obj->steps[i];

		if (strcmp(s->from_state, s->to_state) == 0)
			continue;
		for (j = 0; j < trs->n; j++)
		{
			FiringContext f;
			ErrorContextCallback errcb;
			pg_uuid_t  *run;

			if (strcmp(trs->items[j].on_state, s->to_state) != 0)
				continue;
			f.trigger = &trs->items[j];
			f.obj = obj;
			errcb.callback = firing_context;
			errcb.arg = &f;
			errcb.previous = error_context_stack;
			error_context_stack = &errcb;
			/* a live run, or should_start saying no: nothing started, no error */
			(void) toygun_start_run(&obj->id, f.trigger->task, f.trigger->args,
									f.trigger->owner, false, false, TOYGUN_PRIORITY_DEFAULT, &run);
			error_context_stack = errcb.previous;
		}
	}
}

/* Tell every backend, this one included, that a type's triggers changed. */
static void
triggers_changed(void)
{
	CacheInvalidateRelcacheByRelid(trigger_table());
}

/* The states a trigger may fire on: the declared ones and __panic__. */
static void
check_on_state(ToygunDef *rdef, const char *on_state)
{
	StringInfoData buf;
	int			i;

	if (strcmp(on_state, TOYGUN_PANIC) == 0 || (strcmp(on_state, TOYGUN_NEW) != 0 &&
												 toygun_in_list(on_state, rdef->states, rdef->nstates)))
		return;
	initStringInfo(&buf);
	for (i = 0; i < rdef->nstates; i++)
		appendStringInfo(&buf, "%s, ", rdef->states[i]);
	appendStringInfoString(&buf, TOYGUN_PANIC);
	if (strcmp(on_state, TOYGUN_STOP) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a trigger cannot fire on state \"%s\" of %s", on_state,
						toygun_def_label(rdef)),
				 errdetail("Nothing starts on a stopped resource."),
				 errhint("Fire on one of: %s.", buf.data)));
	if (strcmp(on_state, TOYGUN_NEW) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a trigger cannot fire on state \"%s\" of %s", on_state,
						toygun_def_label(rdef)),
				 errdetail("No move enters \"%s\": a resource is created in it.", TOYGUN_NEW),
				 errhint("Fire on its first state, \"%s\", which its first tick enters.",
						 rdef->states[0])));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("state \"%s\" is not declared by %s", on_state, toygun_def_label(rdef)),
			 errhint("Fire on one of: %s.", buf.data)));
}

/*
 * define_trigger(resource_type, on_state, task, args): start task with args
 * on each resource of the type that enters on_state, acting for the caller.
 * Defining it again replaces its args and owner.
 */
Datum
toygun_define_trigger(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	ToygunDef  *rdef;
	ToygunDef  *tdef;
	char	   *type;
	char	   *on_state;
	char	   *task;
	Jsonb	   *args;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, OIDOID};
	Datum		values[5];

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "on_state");
	on_state = toygun_check_name("state name", PG_GETARG_TEXT_PP(1));
	toygun_check_not_null(fcinfo, 2, "task");
	task = toygun_check_name("task name", PG_GETARG_TEXT_PP(2));
	toygun_check_not_null(fcinfo, 3, "args");
	args = PG_GETARG_JSONB_P(3);
	toygun_check_object_attrs("args", args);

	toygun_begin_call(&call);
	/*
	 * Locked as renames of the type, its tasks and its states lock it: a
	 * rename waits and takes the trigger along; no trigger stays behind
	 * under an old name, for the next type of that name to inherit.
	 */
	toygun_lock_definition(TOYGUN_RESOURCE, type, NULL);
	rdef = toygun_find_def(TOYGUN_RESOURCE, type, NULL, false);
	toygun_check_acting_for(rdef, call.caller);
	check_on_state(rdef, on_state);
	tdef = toygun_find_def(TOYGUN_TASK, type, task, false);
	toygun_check_task_owner(rdef, toygun_def_label(tdef), tdef->owner);
	toygun_check_fields(tdef, args);
	toygun_check_stored_args(tdef, args, "triggers", "a trigger", "toygun.trigger");

	values[0] = CStringGetTextDatum(type);
	values[1] = CStringGetTextDatum(on_state);
	values[2] = CStringGetTextDatum(task);
	values[3] = JsonbPGetDatum(args);
	values[4] = ObjectIdGetDatum(call.caller);
	toygun_refuse_role_on_citus(call.caller, "define_trigger");
	toygun_run(toygun_plan(&plan,
						   "INSERT INTO toygun.trigger (resource_type, on_state, task, args, owner)"
						   " VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole)"
						   " ON CONFLICT (resource_type, on_state, task) DO UPDATE"
						   " SET args = excluded.args, owner = excluded.owner",
						   5, argtypes),
			   values, NULL, 0);
	triggers_changed();
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* drop_trigger(resource_type, on_state, task): whether there was one. */
Datum
toygun_drop_trigger(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	ToygunDef  *rdef;
	char	   *type;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		dropped;

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "on_state");
	toygun_check_not_null(fcinfo, 2, "task");

	toygun_begin_call(&call);
	rdef = toygun_find_def(TOYGUN_RESOURCE, type, NULL, false);
	toygun_check_acting_for(rdef, call.caller);
	values[0] = CStringGetTextDatum(type);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);
	toygun_run(toygun_plan(&plan,
						   "DELETE FROM ONLY toygun.trigger"
						   " WHERE resource_type = $1 AND on_state = $2 AND task = $3",
						   3, argtypes),
			   values, NULL, 0);
	dropped = SPI_processed > 0;
	if (dropped)
		triggers_changed();
	toygun_end_call(&call);
	PG_RETURN_BOOL(dropped);
}
