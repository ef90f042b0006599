/*
 * redefine.c
 *		Safe redefinition (issue 16). A type defined again without a state
 *		that live objects of the type are in is refused, unless the call's
 *		move_states says where they go: they are moved in the same
 *		transaction. And a function that a type uses as its handler or hook
 *		cannot be dropped: toygun.guard_drop(), an event trigger on sql_drop.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_guard_drop);

/* Is state one of states, as a state objects may stay in (not toygun's own)? */
static bool
kept(const char *state, char **states, int nstates)
{
	return strncmp(state, "__", 2) == 0 || toygun_in_list(state, states, nstates);
}

/* The states of the old definition that the new one does not declare. */
static bool
removes_a_state(ToygunDef *existing, char **states, int nstates)
{
	int			i;

	for (i = 0; existing != NULL && i < existing->nstates; i++)
		if (!kept(existing->states[i], states, nstates))
			return true;
	return false;
}

/*
 * move_states, {"old": "new", ...}: each old a state name the new
 * definition does not declare, each new one of its declared states (not
 * __new__) or __stop__. 22023 naming the pair otherwise.
 */
static void
parse_moves(Jsonb *moves, const char *label, char **states, int nstates, ToygunRedefine *r)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *from = NULL;

	if (!JB_ROOT_IS_OBJECT(moves))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("move_states of %s must be a JSON object", label),
				 errhint("Map each state it no longer declares to where its objects go: {\"old\": \"new\"}.")));
	r->nmoves = 0;
	r->from = palloc(sizeof(char *) * (JB_ROOT_COUNT(moves) + 1));
	r->to = palloc(sizeof(char *) * (JB_ROOT_COUNT(moves) + 1));
	it = JsonbIteratorInit(&moves->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *to;

		if (tok == WJB_KEY)
		{
			from = pnstrdup(v.val.string.val, v.val.string.len);
			toygun_check_name_cstr("state name", from);
			if (kept(from, states, nstates))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("move_states of %s moves state \"%s\", which it keeps", label, from),
						 errdetail("move_states moves the objects in states the new definition does not declare."),
						 errhint("Leave \"%s\" out of move_states.", from)));
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		to = v.type == jbvString ? pnstrdup(v.val.string.val, v.val.string.len) : NULL;
		if (to == NULL || (strcmp(to, TOYGUN_STOP) != 0 &&
						   (strcmp(to, TOYGUN_NEW) == 0 || !toygun_in_list(to, states, nstates))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("move_states of %s moves state \"%s\" to %s%s%s, which is not one of its states",
							label, from, to ? "\"" : "", to ? to : "a JSON value that is no string", to ? "\"" : ""),
					 errhint("Move it to a state the new definition declares (not __new__), or to __stop__.")));
		r->from[r->nmoves] = from;
		r->to[r->nmoves++] = to;
	}
}

/* The table of a kind's objects, and the condition that selects a type's. */
static Oid
objects_table(ToygunKind kind)
{
	return get_relname_relid(kind == TOYGUN_TASK ? "task" : "resource",
							 get_namespace_oid("toygun", false));
}

#define OBJECTS_OF_TYPE(kind) \
	((kind) == TOYGUN_TASK ? "FROM ONLY toygun.task WHERE resource_type = $1 AND name = $2" \
	 : "FROM ONLY toygun.resource WHERE type = $1 AND $2::pg_catalog.text IS NULL")

/*
 * Before a type is defined again with states (under its definition lock):
 * if the new definition drops a state the old one declared, or move_states
 * is given, lock the objects' table against ticks, moves and starts
 * (EXCLUSIVE: readers go on) until the transaction ends, so that no tick
 * holding the old definition moves an object into a dropped state behind
 * this check; then count the live objects in states the new definition
 * does not declare. Any such state move_states does not map is refused
 * (55000, with the counts). Fills r for toygun_redefine_move().
 */
void
toygun_redefine_check(ToygunKind kind, const char *resource_type, const char *name,
					  const char *label, ToygunDef *existing, char **states, int nstates,
					  Jsonb *moves, ToygunRedefine *r)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	StringInfoData missing;
	int			nmissing = 0;
	uint64		i;

	memset(r, 0, sizeof(ToygunRedefine));
	if (moves != NULL)
		parse_moves(moves, label, states, nstates, r);
	if (moves == NULL && !removes_a_state(existing, states, nstates))
		return;
	r->active = true;
	LockRelationOid(objects_table(kind), ExclusiveLock);

	values[0] = CStringGetTextDatum(resource_type);
	values[1] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[1] = name ? ' ' : 'n';
	values[2] = toygun_cstring_array(states, nstates);
	/* planned with its values: Citus plans no generic multi-shard read */
	toygun_run_once(psprintf("SELECT state, pg_catalog.count(*) %s"
							 "   AND state NOT LIKE '\\_\\_%%' AND state <> ALL ($3)"
							 " GROUP BY state ORDER BY state", OBJECTS_OF_TYPE(kind)),
					3, argtypes, values, nulls, 0);
	initStringInfo(&missing);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *state = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *count = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (toygun_in_list(state, r->from, r->nmoves))
			continue;
		appendStringInfo(&missing, "%s%s in state \"%s\"", nmissing > 0 ? ", " : "", count, state);
		nmissing++;
	}
	SPI_freetuptable(SPI_tuptable);
	if (nmissing > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s has live %s in states its new definition does not declare",
						label, kind == TOYGUN_TASK ? "runs" : "resources"),
				 errdetail("Live %s: %s.", kind == TOYGUN_TASK ? "runs" : "resources", missing.data),
				 errhint("Say where they go with move_states => '{\"old state\": \"new state\"}' (a state the new definition declares, or __stop__), or keep the states.")));
}

/*
 * After the new definition (def) is stored: move the live objects in the
 * states move_states maps, in id order (as stops by hand lock several
 * objects), each locked as a move by hand locks it, with a history row
 * (note redefine, made by the caller). Their attempts stay as they are.
 */
void
toygun_redefine_move(ToygunDef *def, ToygunRedefine *r, Oid caller)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	pg_uuid_t  *ids;
	uint64		n,
				i;

	if (!r->active || r->nmoves == 0)
		return;
	values[0] = CStringGetTextDatum(def->resource_type);
	values[1] = def->name ? CStringGetTextDatum(def->name) : (Datum) 0;
	nulls[1] = def->name ? ' ' : 'n';
	values[2] = toygun_cstring_array(r->from, r->nmoves);
	/* planned with its values, as in toygun_redefine_check() */
	toygun_run_once(psprintf("SELECT id %s AND state = ANY ($3) ORDER BY id",
							 OBJECTS_OF_TYPE(def->kind)),
					3, argtypes, values, nulls, 0);
	n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	if (n > 0)
		toygun_refuse_on_citus("move_states with live objects to move",
							   "Each object moved is locked by its id, which does not say which shard holds it (doc/citus.md, section 2.1).");
	for (i = 0; i < n; i++)
	{
		ToygunObject *obj = toygun_lock_object(def->kind, &ids[i], true, false);
		int			k;

		if (obj == NULL)
			continue;
		for (k = 0; k < r->nmoves; k++)
			if (strcmp(obj->state, r->from[k]) == 0)
				break;
		if (k == r->nmoves)
			continue;
		obj->actor = caller;
		toygun_transition(obj, def, r->to[k], NULL, "redefine");
		(void) toygun_save_object(obj, def, obj->step);
	}
}

/*
 * The sql_drop event trigger toygun_guard_drop: a DROP (of a function, a
 * schema with CASCADE, DROP OWNED) that takes a function a defined type
 * uses as handler, alarm_handler, should_start, should_stop or upgrade is refused,
 * naming each such function and the types that use it. Dropping the
 * extension itself drops the definitions too, and is let through. Only
 * the uses by types whose owner the dropping role may act for count: a
 * tenant that made another role's function (EXECUTE is PUBLIC's by
 * default) its handler must not stop that role dropping it.
 */
Datum
toygun_guard_drop(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr dropped_plan = NULL;
	static SPIPlanPtr users_plan = NULL;
	Oid			argtypes[2] = {TEXTARRAYOID, OIDOID};
	Datum		values[2];
	ToygunCall	call;
	StringInfoData detail;
	uint64		i,
				n;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("toygun.guard_drop() must be called as an event trigger")));
	if (!OidIsValid(get_extension_oid("toygun", true)))
		PG_RETURN_NULL();

	toygun_begin_call(&call);
	/* the extension dropped with them (DROP SCHEMA toygun CASCADE) */
	toygun_run(toygun_plan(&dropped_plan,
						   "SELECT pg_catalog.array_agg(object_identity) FILTER (WHERE object_type = 'function'),"
						   "       pg_catalog.bool_or(object_type = 'extension' AND object_identity = 'toygun')"
						   "  FROM pg_catalog.pg_event_trigger_dropped_objects()",
						   0, NULL),
			   NULL, NULL, 1);
	{
		bool		isnull,
					ext_null;
		Datum		fns = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		Datum		ext = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &ext_null);

		if (isnull || (!ext_null && DatumGetBool(ext)))
		{
			toygun_end_call(&call);
			PG_RETURN_NULL();
		}
		values[0] = SPI_datumTransfer(fns, false, -1);
		values[1] = ObjectIdGetDatum(call.caller);
	}
	toygun_run(toygun_plan(&users_plan,
						   "SELECT u.fn, pg_catalog.string_agg(u.use, ', ' ORDER BY u.use) FROM ("
						   "  SELECT handler AS fn, pg_catalog.format('the handler of resource type \"%s\"', name) AS use, owner"
						   "    FROM ONLY toygun.resource_type"
						   "  UNION ALL SELECT alarm_handler, pg_catalog.format('the alarm_handler of resource type \"%s\"', name), owner"
						   "    FROM ONLY toygun.resource_type"
						   "  UNION ALL SELECT handler, pg_catalog.format('the handler of task type \"%s.%s\"', resource_type, name), owner"
						   "    FROM ONLY toygun.task_type"
						   "  UNION ALL SELECT should_start, pg_catalog.format('the should_start of task type \"%s.%s\"', resource_type, name), owner"
						   "    FROM ONLY toygun.task_type"
						   "  UNION ALL SELECT should_stop, pg_catalog.format('the should_stop of task type \"%s.%s\"', resource_type, name), owner"
						   "    FROM ONLY toygun.task_type"
						   "  UNION ALL SELECT upgrade, pg_catalog.format('the upgrade of resource type \"%s\"', name), owner"
						   "    FROM ONLY toygun.resource_type"
						   "  UNION ALL SELECT upgrade, pg_catalog.format('the upgrade of task type \"%s.%s\"', resource_type, name), owner"
						   "    FROM ONLY toygun.task_type) u"
						   " WHERE u.fn = ANY ($1) AND pg_catalog.pg_has_role($2, u.owner::pg_catalog.oid, 'USAGE')"
						   " GROUP BY u.fn ORDER BY u.fn",
						   2, argtypes),
			   values, NULL, 0);
	n = SPI_processed;
	if (n == 0)
	{
		toygun_end_call(&call);
		PG_RETURN_NULL();
	}
	initStringInfo(&detail);
	for (i = 0; i < n; i++)
		appendStringInfo(&detail, "%sfunction %s is %s",
						 i > 0 ? "; " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
	if (n == 1)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop function %s because a toygun type uses it",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("The drop would take it: %s.", detail.data),
				 errhint("Define the type again with another function (or without the hook) first, or change the function with CREATE OR REPLACE FUNCTION.")));
	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("cannot drop " UINT64_FORMAT " functions because toygun types use them", n),
			 errdetail("The drop would take them: %s.", detail.data),
			 errhint("Define the types again with other functions (or without the hooks) first, or change the functions with CREATE OR REPLACE FUNCTION.")));
	PG_RETURN_NULL();
}
