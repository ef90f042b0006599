/*
 * commands.c
 *		The SQL functions users call on resources and runs: create_resource,
 *		start_task, tick_task and tick_resource, the moves by hand (transition,
 *		stop, panic, rewind), last_error, and test_tick_until for tests. Each checks the caller's
 *		right (rights.c: start, operate or read) before it locks anything, then works on the object model
 *		(object.c) and the tick (tick.c).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_create_resource);
PG_FUNCTION_INFO_V1(toygun_start_task);
PG_FUNCTION_INFO_V1(toygun_tick_task);
PG_FUNCTION_INFO_V1(toygun_test_tick_until);
PG_FUNCTION_INFO_V1(toygun_tick_resource);
PG_FUNCTION_INFO_V1(toygun_transition_task);
PG_FUNCTION_INFO_V1(toygun_transition_resource);
PG_FUNCTION_INFO_V1(toygun_stop_task);
PG_FUNCTION_INFO_V1(toygun_stop_resource);
PG_FUNCTION_INFO_V1(toygun_panic_task);
PG_FUNCTION_INFO_V1(toygun_rewind_task);
PG_FUNCTION_INFO_V1(toygun_last_error);
PG_FUNCTION_INFO_V1(toygun_update_task);
PG_FUNCTION_INFO_V1(toygun_retry_task);
PG_FUNCTION_INFO_V1(toygun_update_resource);

static SPIPlanPtr parent_exists_plan;
static SPIPlanPtr insert_resource_plan;
static SPIPlanPtr insert_resource_version_plan;
static SPIPlanPtr insert_resource_queue_plan;
static SPIPlanPtr resource_for_start_plan;
static SPIPlanPtr insert_task_plan;
static SPIPlanPtr insert_task_version_plan;
static SPIPlanPtr insert_task_plan_03;
static SPIPlanPtr insert_task_priority_plan;
static SPIPlanPtr live_run_plan;
static SPIPlanPtr live_tasks_plan;
static SPIPlanPtr reread_resource_plan;
static SPIPlanPtr other_live_run_plan;
static SPIPlanPtr rewind_target_plan;

/* There is no other live run of this task, so this one may come back to life. */
static void
check_no_other_live_run(ToygunObject *obj)
{
	Oid			argtypes[3] = {UUIDOID, TEXTOID, UUIDOID};
	Datum		values[3];

	values[0] = UUIDPGetDatum(&obj->resource_id);
	values[1] = CStringGetTextDatum(obj->name);
	values[2] = UUIDPGetDatum(&obj->id);
	toygun_run(toygun_plan(&other_live_run_plan,
						   "SELECT id FROM ONLY toygun.task"
						   " WHERE resource_id = $1 AND name = $2 AND state <> '__stop__' AND id <> $3",
						   3, argtypes),
			   values, NULL, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("task \"%s\" on resource %s already has a live run",
						obj->name, toygun_uuid_text(&obj->resource_id)),
				 errdetail("Run %s is live; a stopped run can only come back when no other run is.",
						   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1))));
}

/* Copy a row datum out of SPI so it survives SPI_finish(). */
static Datum
return_row(Datum row)
{
	return SPI_datumTransfer(row, false, -1);
}

/* create_resource(type, attrs, parent): a new resource in __new__, due at once. */
Datum
toygun_create_resource(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	char	   *type;
	Jsonb	   *attrs;
	pg_uuid_t  *id;
	Oid			argtypes[4] = {UUIDOID, TEXTOID, UUIDOID, JSONBOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	toygun_check_not_null(fcinfo, 0, "type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "attrs");
	attrs = PG_GETARG_JSONB_P(1);
	toygun_check_object_attrs("attrs", attrs);

	toygun_begin_call(&call);
	/* against a rename of the type (issue 16): before the definition is read */
	toygun_lock_name_use(TOYGUN_RESOURCE, type, NULL, false);
	def = toygun_find_def(TOYGUN_RESOURCE, type, NULL, false);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_START);
	toygun_check_fields(def, attrs);
	if (PG_ARGISNULL(2) && def->parent_type != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("resource type \"%s\" needs a parent of type \"%s\"", type, def->parent_type),
				 errdetail("Its definition names parent_type \"%s\".", def->parent_type),
				 errhint("Pass the parent: toygun.create_resource('%s', attrs, parent => id).", type)));
	if (!PG_ARGISNULL(2))
	{
		Oid			idtype[1] = {UUIDOID};
		char	   *ptype;
		char	   *pstate;

		/*
		 * A child holds its parent FOR KEY SHARE until it commits, which a
		 * move of the parent waits for: only for those who may start on the
		 * parent's type.
		 */
		if (toygun_def_for_caller(TOYGUN_RESOURCE, PG_GETARG_UUID_P(2), call.caller,
								  TOYGUN_RIGHT_START, true) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("parent resource %s does not exist",
							toygun_uuid_text(PG_GETARG_UUID_P(2)))));
		/*
		 * The parent's state as it is once locked: a stop_resource() of the
		 * parent holds it FOR UPDATE, so this waits for it to commit and
		 * then reads the stopped row; a stop that comes after waits for
		 * this child to commit, and then stops it with the parent.
		 */
		values[0] = PG_GETARG_DATUM(2);
		toygun_run(toygun_plan(&parent_exists_plan,
							   "SELECT type, state FROM ONLY toygun.resource WHERE id = $1 FOR KEY SHARE",
							   1, idtype),
				   values, NULL, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("parent resource %s does not exist",
							toygun_uuid_text(PG_GETARG_UUID_P(2)))));
		ptype = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		pstate = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (def->parent_type != NULL && strcmp(ptype, def->parent_type) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("parent resource %s is of type \"%s\", not \"%s\"",
							toygun_uuid_text(PG_GETARG_UUID_P(2)), ptype, def->parent_type),
					 errdetail("Resources of type \"%s\" have parents of type \"%s\".",
							   type, def->parent_type),
					 errhint("Pass a resource of type \"%s\" as the parent.", def->parent_type)));
		if (strcmp(pstate, TOYGUN_STOP) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("parent resource %s is stopped", toygun_uuid_text(PG_GETARG_UUID_P(2))),
					 errdetail("A stopped resource gets no new children.")));
	}

	id = SPI_palloc(sizeof(pg_uuid_t));
	*id = *toygun_new_uuid();
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(type);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = JsonbPGetDatum(toygun_seal_attrs(def, id, toygun_without_nulls(attrs, attrs)));
	/* at the type's schema version (issue 16), in its queue (issue 17) */
	if (toygun_has_queues())
	{
		Oid			types[6];

		memcpy(types, argtypes, sizeof(Oid) * 4);
		types[4] = INT4OID;
		types[5] = INT2OID;
		values[4] = Int32GetDatum(def->version);
		values[5] = Int16GetDatum(def->queue_id);
		toygun_run(toygun_plan(&insert_resource_queue_plan,
							   "INSERT INTO toygun.resource (id, type, parent_id, attrs, run_at, version, queue_id)"
							   " VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp(), $5, $6)",
							   6, types),
				   values, nulls, 0);
	}
	else if (def->version > 1)
	{
		Oid			types[5];

		memcpy(types, argtypes, sizeof(Oid) * 4);
		types[4] = INT4OID;
		values[4] = Int32GetDatum(def->version);
		toygun_run(toygun_plan(&insert_resource_version_plan,
							   "INSERT INTO toygun.resource (id, type, parent_id, attrs, run_at, version)"
							   " VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp(), $5)",
							   5, types),
				   values, nulls, 0);
	}
	else
		toygun_run(toygun_plan(&insert_resource_plan,
							   "INSERT INTO toygun.resource (id, type, parent_id, attrs, run_at)"
							   " VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp())",
							   4, argtypes),
				   values, nulls, 0);
	toygun_wake_queue_at_commit(def->queue_id, 0);
	toygun_end_call(&call);
	PG_RETURN_UUID_P(id);
}

/*
 * The live run of a task on a resource, or NULL. With error_if_live, one is
 * an error (23505).
 */
static pg_uuid_t *
live_run(pg_uuid_t *resource, const char *name, bool error_if_live)
{
	Oid			live_types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	char	   *state;
	pg_uuid_t  *id;

	values[0] = UUIDPGetDatum(resource);
	values[1] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&live_run_plan,
						   "SELECT id, state FROM ONLY toygun.task"
						   " WHERE resource_id = $1 AND name = $2 AND state <> '__stop__'",
						   2, live_types),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return NULL;
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	id = SPI_palloc(sizeof(pg_uuid_t));
	*id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (error_if_live)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("task \"%s\" of resource %s already has a live run, %s",
						name, toygun_uuid_text(resource), toygun_uuid_text(id)),
				 errdetail("It is in state \"%s\"%s.", state,
						   strcmp(state, TOYGUN_PANIC) == 0 ? " (panicked: it needs a person)" : ""),
				 errhint("Wait for it to stop, or stop it with toygun.stop_task(), then start again.")));
	return id;
}

/*
 * Start task name on resource with args, acting for caller (the user of
 * start_task, the maker of a periodic start or of a trigger), inside a
 * toygun call: the caller's right start and the task type owner's
 * privileges are checked first, without a lock; then the resource is locked
 * FOR SHARE and must be live. A live run is returned as it is (*id;
 * TOYGUN_START_FOUND_LIVE), or with error_if_live refused (23505). Else the
 * task type's should_start, if it has one, is asked: no (false or NULL)
 * starts nothing (TOYGUN_START_DECLINED, *id NULL; with notice, a NOTICE
 * says so); an error is the caller's. Else a new run in __new__ with
 * attrs = args (TOYGUN_STARTED).
 */
ToygunStarted
toygun_start_run(pg_uuid_t *resource, const char *name, Jsonb *args, Oid caller,
				 bool error_if_live, bool notice, int priority, pg_uuid_t **id)
{
	ToygunDef  *def;
	ToygunDef  *rtype;
	char	   *type;
	char	   *rstate;
	Oid			idtype[1] = {UUIDOID};
	Oid			insert_types[10] = {UUIDOID, UUIDOID, TEXTOID, JSONBOID, TEXTOID, UUIDOID, INT4OID, INT2OID,
	INT2OID, INT8OID};
	Datum		values[10];
	char		insert_nulls[10] = {' ', ' ', ' ', ' ', ' ', 'n', ' ', ' ', ' ', 'n'};
	pg_uuid_t	parent;
	bool		has_parent_run;
	bool		has_priority;
	int			attempt;
	Datum		row;
	bool		isnull;

	*id = NULL;

	/*
	 * Privileges first, without a lock: the task type's, and its owner's
	 * for the resource type, which a revoked membership takes away.
	 */
	rtype = toygun_def_for_caller(TOYGUN_RESOURCE, resource, InvalidOid, TOYGUN_RIGHT_START, true);
	if (rtype == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("resource %s does not exist", toygun_uuid_text(resource))));
	def = toygun_find_def(TOYGUN_TASK, rtype->resource_type, name, false);
	toygun_check_right(def, caller, TOYGUN_RIGHT_START);
	toygun_check_task_owner(rtype, toygun_def_label(def), def->owner);

	/*
	 * FOR SHARE: a concurrent stop_resource() waits for this start to commit
	 * and then parks the new run, or this start waits and sees it stopped.
	 */
	values[0] = UUIDPGetDatum(resource);
	toygun_run(toygun_plan(&resource_for_start_plan,
						   "SELECT type, state, r FROM ONLY toygun.resource r WHERE id = $1 FOR SHARE",
						   1, idtype),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("resource %s does not exist", toygun_uuid_text(resource))));
	type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	rstate = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull),
							false, -1);

	/*
	 * Against a rename of the task (issue 16), and read again: the type's
	 * name is the locked row's, which a rename of the resource type that
	 * committed while this waited has changed.
	 */
	toygun_lock_name_use(TOYGUN_TASK, type, name, false);
	def = toygun_find_def(TOYGUN_TASK, type, name, false);
	if (strcmp(rstate, TOYGUN_STOP) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("resource %s is stopped", toygun_uuid_text(resource)),
				 errdetail("Tasks cannot start on a stopped resource.")));
	args = toygun_start_args(def, args);
	/* a limited type's runs are at level 0 (issue 17) */
	if (def->flow != NULL && priority != TOYGUN_PRIORITY_DEFAULT && priority != 0)
		toygun_flow_refuse_priority(toygun_def_label(def));

	/*
	 * should_start is asked only when a run would start: a live run is
	 * returned (or refused) without asking. A run that becomes live
	 * meanwhile is found by the insert below.
	 */
	if (def->should_start != NULL)
	{
		*id = live_run(resource, name, error_if_live);
		if (*id != NULL)
			return TOYGUN_START_FOUND_LIVE;
		if (!toygun_should_start(def, row, resource, args))
		{
			if (notice)
				ereport(NOTICE,
						(errmsg("%s was not started on resource %s: its should_start hook declined",
								toygun_def_label(def), toygun_uuid_text(resource)),
						 errdetail("should_start %s returned false or NULL.", def->should_start)));
			return TOYGUN_START_DECLINED;
		}
	}

	/* started by a run's handler: the run waits for it (it is woken when this one ends) */
	has_parent_run = toygun_has_column("task", "parent_run");
	has_priority = has_parent_run && toygun_has_queues();
	if (has_parent_run && toygun_ticking_top(&parent) && toygun_is_task(&parent))
	{
		values[5] = UUIDPGetDatum(&parent);
		insert_nulls[5] = ' ';
	}

	/*
	 * Insert, or find the live run. If the live run we collided with stops
	 * before we can read it, insert again.
	 */
	for (attempt = 0;; attempt++)
	{
		pg_uuid_t  *new_id = toygun_new_uuid();

		if (attempt >= 10)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not start task \"%s\" on resource %s", name,
							toygun_uuid_text(resource)),
					 errdetail("Its live run kept changing while the start was retried.")));
		values[0] = UUIDPGetDatum(new_id);
		values[1] = UUIDPGetDatum(resource);
		values[2] = CStringGetTextDatum(name);
		/* sealed for this attempt's id: a retry inserts under a new one */
		values[3] = JsonbPGetDatum(toygun_seal_attrs(def, new_id, args));
		values[4] = CStringGetTextDatum(type);
		values[6] = Int32GetDatum(def->version);
		/* the start's priority, or its type's (issue 17) */
		if (priority == TOYGUN_PRIORITY_DEFAULT)
			priority = def->priority;
		values[7] = Int16GetDatum((int16) priority);
		/* and its type's queue (issue 17) */
		values[8] = Int16GetDatum(def->queue_id);
		/* and its key, once, from its arguments (issue 17, flow.c): NULL without limits */
		if (def->flow != NULL && attempt == 0)
		{
			values[9] = Int64GetDatum(toygun_flow_key(def, resource, args));
			insert_nulls[9] = ' ';
		}
		/* at the type's schema version (issue 16): 1, the column's default, or above */
		if (has_priority)
			toygun_run(toygun_plan(&insert_task_priority_plan,
								   "INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at, parent_run, version, priority,"
								   "                         queue_id, flow_key)"
								   " VALUES ($1, $2, $5, $3, $4, pg_catalog.clock_timestamp(), $6, $7, $8, $9, $10)"
								   " ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING"
								   " RETURNING id",
								   10, insert_types),
					   values, insert_nulls, 0);
		else if (def->version > 1)
			toygun_run(toygun_plan(&insert_task_version_plan,
								   "INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at, parent_run, version)"
								   " VALUES ($1, $2, $5, $3, $4, pg_catalog.clock_timestamp(), $6, $7)"
								   " ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING"
								   " RETURNING id",
								   7, insert_types),
					   values, insert_nulls, 0);
		else if (has_parent_run)
			toygun_run(toygun_plan(&insert_task_plan,
								   "INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at, parent_run)"
								   " VALUES ($1, $2, $5, $3, $4, pg_catalog.clock_timestamp(), $6)"
								   " ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING"
								   " RETURNING id",
								   6, insert_types),
					   values, insert_nulls, 0);
		else					/* a task table of 0.3, before ALTER EXTENSION UPDATE */
			toygun_run(toygun_plan(&insert_task_plan_03,
								   "INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at)"
								   " VALUES ($1, $2, $5, $3, $4, pg_catalog.clock_timestamp())"
								   " ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING"
								   " RETURNING id",
								   5, insert_types),
					   values, insert_nulls, 0);
		if (SPI_processed > 0)
		{
			*id = SPI_palloc(sizeof(pg_uuid_t));
			**id = *new_id;
			/* a level above or below 0: the workers of its queue look for it from the commit on */
			toygun_levels_note_at_commit(def->queue_id, priority);
			toygun_wake_queue_at_commit(def->queue_id, priority);
			return TOYGUN_STARTED;
		}
		*id = live_run(resource, name, error_if_live);
		if (*id != NULL)
			return TOYGUN_START_FOUND_LIVE;
	}
}

/*
 * start_task(resource, name, args, if_live): a new run in __new__ with
 * attrs = args, or the live run, unchanged, if there is one; NULL, with a
 * NOTICE, when the task type's should_start declines.
 */
Datum
toygun_start_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	pg_uuid_t  *resource;
	char	   *name;
	Jsonb	   *args;
	pg_uuid_t  *id;
	bool		error_if_live = false;
	int			priority = TOYGUN_PRIORITY_DEFAULT;

	toygun_check_not_null(fcinfo, 0, "resource");
	resource = PG_GETARG_UUID_P(0);
	toygun_check_not_null(fcinfo, 1, "name");
	name = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	toygun_check_not_null(fcinfo, 2, "args");
	args = PG_GETARG_JSONB_P(2);
	toygun_check_object_attrs("args", args);
	/* if_live: what a start that finds a live run does (older install scripts: return it) */
	if (PG_NARGS() > 3)
	{
		char	   *if_live;

		toygun_check_not_null(fcinfo, 3, "if_live");
		if_live = text_to_cstring(PG_GETARG_TEXT_PP(3));
		if (strcmp(if_live, "error") == 0)
			error_if_live = true;
		else if (strcmp(if_live, "return") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("if_live must be 'return' or 'error', not '%s'", if_live),
					 errhint("'return' returns the live run and ignores args; 'error' raises 23505.")));
	}

	/* priority (issue 17): NULL, or an older install script, is the type's */
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
	{
		priority = PG_GETARG_INT32(4);
		toygun_check_priority(priority, NULL);
	}

	toygun_begin_call(&call);
	(void) toygun_start_run(resource, name, args, call.caller, error_if_live, true, priority, &id);
	toygun_end_call(&call);
	if (id == NULL)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(id);
}

/*
 * Lock an object for a manual operation by the caller. Its definition is
 * read again once it is locked: a redefinition that drops states locks the
 * objects' table until it commits (redefine.c), so a lock that waited for
 * it found the definition read before it stale, and the move must be
 * checked against the new one. Without a redefinition since, it is the
 * cached definition, with no query. With upgrade, an object below its
 * type's schema version is upgraded (versions.c); stops and panics do not
 * upgrade, so that they work while an upgrade function fails.
 */
static ToygunObject *
lock_for_caller(ToygunKind kind, FunctionCallInfo fcinfo, ToygunCall *call, ToygunDef **def,
				bool upgrade)
{
	ToygunObject *obj;

	toygun_check_not_null(fcinfo, 0, "id");
	*def = toygun_def_for_caller(kind, PG_GETARG_UUID_P(0), call->caller, TOYGUN_RIGHT_OPERATE, false);
	obj = toygun_lock_object(kind, PG_GETARG_UUID_P(0), false, false);
	*def = toygun_locked_def(obj);
	obj->actor = call->caller;
	*def = toygun_object_def(obj);
	/* a move that keeps it live, or an update, works on attrs of its type's version */
	if (upgrade)
		toygun_upgrade_object(obj, *def);
	return obj;
}

/*
 * Manual moves clear the failure count: a person has looked at it. Their
 * history rows keep the reason given in argument reason_arg (the last; a
 * call through an older install script has none).
 */
static Datum
save_manual(ToygunObject *obj, ToygunDef *def, FunctionCallInfo fcinfo, int reason_arg)
{
	char	   *reason = NULL;
	int			i;

	if (PG_NARGS() > reason_arg && !PG_ARGISNULL(reason_arg))
		reason = text_to_cstring(PG_GETARG_TEXT_PP(reason_arg));
	for (i = 0; i < obj->nsteps; i++)
		obj->steps[i].reason = reason;

	/*
	 * A run repaired out of __panic__ no longer carries its panic's message:
	 * the history and the failures keep it. A stop keeps it.
	 */
	if (obj->nsteps > 0 && strcmp(obj->steps[0].from_state, TOYGUN_PANIC) == 0 &&
		strcmp(obj->state, TOYGUN_PANIC) != 0 && strcmp(obj->state, TOYGUN_STOP) != 0)
		obj->attrs = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(obj->attrs),
														CStringGetTextDatum("panic_message")));
	obj->attempts = 0;
	obj->last_error = NULL;
	return return_row(toygun_save_object(obj, def, obj->step));
}

/* Move an object by hand, as transition_task/transition_resource do. */
static Datum
transition_by_hand(ToygunKind kind, FunctionCallInfo fcinfo, const char *note)
{
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	char	   *state;
	Datum		row;

	toygun_check_not_null(fcinfo, 1, "state");
	state = text_to_cstring(PG_GETARG_TEXT_PP(1));
	toygun_begin_call(&call);
	obj = lock_for_caller(kind, fcinfo, &call, &def,
						  strcmp(state, TOYGUN_STOP) != 0 && strcmp(state, TOYGUN_PANIC) != 0);
	if (!PG_ARGISNULL(3))
	{
		char	   *expected = toygun_check_name("expected_state", PG_GETARG_TEXT_PP(3));

		if (strcmp(expected, obj->state) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("%s %s is desynchronized", toygun_kind_name(kind),
							toygun_uuid_text(&obj->id)),
					 errdetail("Expected it in state \"%s\", but it is in state \"%s\".",
							   expected, obj->state)));
	}
	if (kind == TOYGUN_TASK && strcmp(obj->state, TOYGUN_STOP) == 0 &&
		strcmp(state, TOYGUN_STOP) != 0)
		check_no_other_live_run(obj);
	toygun_transition(obj, def, state, PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), note);
	row = save_manual(obj, def, fcinfo, 4);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

Datum
toygun_transition_task(PG_FUNCTION_ARGS)
{
	return transition_by_hand(TOYGUN_TASK, fcinfo, "transition_task");
}

Datum
toygun_transition_resource(PG_FUNCTION_ARGS)
{
	return transition_by_hand(TOYGUN_RESOURCE, fcinfo, "transition_resource");
}

/*
 * Merge attrs into an object by hand, with no transition: its state, step
 * and when it is next due stay as they are, and so do its attempts (an
 * update is not a repair). With expected_step, only if the object is still
 * at that step: a tick or move since fails the update as desynchronized
 * rather than merging into a state the caller did not see.
 */
static Datum
update_by_hand(ToygunKind kind, FunctionCallInfo fcinfo)
{
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	Jsonb	   *attrs;
	Datum		row;

	toygun_check_not_null(fcinfo, 1, "attrs");
	attrs = PG_GETARG_JSONB_P(1);
	toygun_check_object_attrs("attrs", attrs);
	toygun_begin_call(&call);
	obj = lock_for_caller(kind, fcinfo, &call, &def, true);
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) != obj->step)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("%s %s is desynchronized", toygun_kind_name(kind),
						toygun_uuid_text(&obj->id)),
				 errdetail("Expected it at step " INT64_FORMAT ", but it is at step " INT64_FORMAT ".",
						   PG_GETARG_INT64(2), obj->step),
				 errhint("Read it again, then update it.")));
	toygun_merge_attrs(obj, def, attrs);
	obj->has_run_at = true;
	obj->run_at_null = obj->due_at == DT_NOEND;
	obj->run_at = obj->due_at;
	row = return_row(toygun_save_object(obj, def, obj->step));
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

Datum
toygun_update_task(PG_FUNCTION_ARGS)
{
	return update_by_hand(TOYGUN_TASK, fcinfo);
}

Datum
toygun_update_resource(PG_FUNCTION_ARGS)
{
	return update_by_hand(TOYGUN_RESOURCE, fcinfo);
}

/*
 * Where a stop by hand moves a live object: into its type's stop_state,
 * whose handler then stops it; to __stop__ on the spot when the type has
 * none, when the object is in it already (a second stop is the force), or
 * when it is panicked (nothing would run its stop_state).
 */
static const char *
stop_target(ToygunObject *obj, ToygunDef *def)
{
	if (def->stop_state != NULL && !toygun_in_stop_state(obj, def) &&
		strcmp(obj->state, TOYGUN_PANIC) != 0)
		return def->stop_state;
	return TOYGUN_STOP;
}

/* stop: idempotent; a stopped object is returned unchanged. */
static Datum
stop_by_hand(ToygunKind kind, FunctionCallInfo fcinfo, const char *note)
{
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	Datum		row;

	toygun_begin_call(&call);
	obj = lock_for_caller(kind, fcinfo, &call, &def, false);
	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		row = return_row(obj->row);
	else
	{
		toygun_transition(obj, def, stop_target(obj, def), NULL, note);
		row = save_manual(obj, def, fcinfo, 1);
	}
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

Datum
toygun_stop_task(PG_FUNCTION_ARGS)
{
	return stop_by_hand(TOYGUN_TASK, fcinfo, "stop_task");
}

/*
 * Stop a locked resource's live children, each locked in id order after
 * their parent, then their own children first (depth first), with the
 * reason of the call. Each child's type may have another owner: the caller
 * needs right operate on it, checked before the child is locked.
 */
static void
stop_children(ToygunObject *parent, ToygunCall *call, FunctionCallInfo fcinfo)
{
	static SPIPlanPtr children_plan = NULL;
	Oid			idtype[1] = {UUIDOID};
	pg_uuid_t  *ids;
	uint64		n,
				i;
	char	   *note;

	check_stack_depth();
	ids = toygun_run_ids(toygun_plan(&children_plan,
									 "SELECT id FROM ONLY toygun.resource"
									 " WHERE parent_id = $1 AND state <> '__stop__' ORDER BY id",
									 1, idtype),
						 &parent->id, &n);
	note = psprintf("stop_resource of parent %s", toygun_uuid_text(&parent->id));
	for (i = 0; i < n; i++)
	{
		ToygunDef  *def;
		ToygunObject *child;

		def = toygun_def_for_caller(TOYGUN_RESOURCE, &ids[i], InvalidOid, TOYGUN_RIGHT_OPERATE, true);
		if (def == NULL)
			continue;
		if (!toygun_has_right(def, call->caller, TOYGUN_RIGHT_OPERATE))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to stop child resource %s of type \"%s\": it needs right \"operate\" on resource type \"%s\"",
							toygun_uuid_text(&ids[i]), def->resource_type, def->resource_type),
					 errdetail("Stopping resource %s stops its live children first.",
							   toygun_uuid_text(&parent->id)),
					 errhint("The owner of resource type \"%s\" can grant it with toygun.grant_type(), or stop with cascade => false once its children are stopped.",
							 def->resource_type)));
		child = toygun_lock_object(TOYGUN_RESOURCE, &ids[i], true, false);
		/* gone, or stopped by another transaction since it was listed */
		if (child == NULL || strcmp(child->state, TOYGUN_STOP) == 0)
			continue;
		child->actor = call->caller;
		stop_children(child, call, fcinfo);
		toygun_transition(child, def, TOYGUN_STOP, NULL, note);
		(void) save_manual(child, def, fcinfo, 1);
	}
}

/*
 * A resource being stopped moves its live runs whose task type has a
 * stop_state into it (each locked in id order after the resource, note
 * stop_resource, the reason of the call): they stop through their handler,
 * and their resource's stop does not park them. Runs panicked or in their
 * stop_state already are left as they are. Rights are the resource type's,
 * which the caller has.
 */
static void
runs_to_stop_states(ToygunObject *res, ToygunCall *call, FunctionCallInfo fcinfo)
{
	static SPIPlanPtr runs_plan = NULL;
	Oid			idtype[1] = {UUIDOID};
	pg_uuid_t  *ids;
	uint64		n,
				i;

	/* the SQL of 0.3, before ALTER EXTENSION UPDATE: no stop states */
	if (!toygun_has_column("task_type", "stop_state"))
		return;
	ids = toygun_run_ids(toygun_plan(&runs_plan,
									 "SELECT t.id FROM ONLY toygun.task t"
									 "  JOIN ONLY toygun.task_type d"
									 "    ON d.resource_type = t.resource_type AND d.name = t.name"
									 " WHERE t.resource_id = $1 AND t.state NOT IN ('__stop__', '__panic__')"
									 "   AND d.stop_state IS NOT NULL AND t.state <> d.stop_state"
									 " ORDER BY t.id",
									 1, idtype),
						 &res->id, &n);
	for (i = 0; i < n; i++)
	{
		ToygunDef  *def;
		ToygunObject *run;

		def = toygun_def_for_caller(TOYGUN_TASK, &ids[i], InvalidOid, TOYGUN_RIGHT_OPERATE, true);
		if (def == NULL || def->stop_state == NULL)
			continue;
		run = toygun_lock_object(TOYGUN_TASK, &ids[i], true, false);
		/* gone, or moved by another transaction since it was listed */
		if (run == NULL || strcmp(stop_target(run, def), def->stop_state) != 0 ||
			strcmp(run->state, TOYGUN_STOP) == 0)
			continue;
		run->actor = call->caller;
		toygun_transition(run, def, def->stop_state, NULL, "stop_resource");
		(void) save_manual(run, def, fcinfo, 1);
	}
}

/*
 * stop_resource(id, reason, cascade): stops its live children first (with
 * cascade, the default), or refuses while it has any.
 */
Datum
toygun_stop_resource(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr live_children_plan = NULL;
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	Datum		row;
	bool		cascade = true;

	/* cascade: older install scripts pass none, and stop no child */
	if (PG_NARGS() > 2)
	{
		toygun_check_not_null(fcinfo, 2, "cascade");
		cascade = PG_GETARG_BOOL(2);
	}
	else
		return stop_by_hand(TOYGUN_RESOURCE, fcinfo, "stop_resource");

	toygun_begin_call(&call);
	obj = lock_for_caller(TOYGUN_RESOURCE, fcinfo, &call, &def, false);
	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		row = return_row(obj->row);
	else
	{
		if (cascade)
			stop_children(obj, &call, fcinfo);
		else
		{
			Oid			idtype[1] = {UUIDOID};
			Datum		values[1];
			bool		isnull;
			int64		live;

			values[0] = UUIDPGetDatum(&obj->id);
			toygun_run(toygun_plan(&live_children_plan,
								   "SELECT pg_catalog.count(*) FROM ONLY toygun.resource"
								   " WHERE parent_id = $1 AND state <> '__stop__'",
								   1, idtype),
					   values, NULL, 1);
			live = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (live > 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("resource %s has " INT64_FORMAT " live %s",
								toygun_uuid_text(&obj->id), live, live == 1 ? "child" : "children"),
						 errdetail("With cascade => false, a resource stops only once its children are stopped."),
						 errhint("Stop the children first, or call toygun.stop_resource() with cascade => true.")));
		}
		runs_to_stop_states(obj, &call, fcinfo);
		toygun_transition(obj, def, stop_target(obj, def), NULL, "stop_resource");
		row = save_manual(obj, def, fcinfo, 1);
	}
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * A manual tick of a locked task, for a caller already checked against def:
 * not for tasks of a stopped resource.
 */
static Datum
tick_task_by_hand(ToygunObject *obj, ToygunDef *def)
{
	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		return obj->row;
	/* a run in its stop_state is ticked on until it stops */
	if (strcmp(obj->resource_state, TOYGUN_STOP) == 0 && !toygun_in_stop_state(obj, def))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("resource %s of task %s is stopped",
						toygun_uuid_text(&obj->resource_id), toygun_uuid_text(&obj->id)),
				 errdetail("Tasks of a stopped resource are not ticked.")));
	return toygun_tick(obj, def);
}

/*
 * tick_task(id): tick now, in the caller's transaction. Privileges are
 * checked before the run is locked, stopped or not.
 */
Datum
toygun_tick_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunObject *obj;
	ToygunDef  *def;
	Datum		row;

	toygun_check_not_null(fcinfo, 0, "id");
	toygun_begin_call(&call);
	def = toygun_def_for_caller(TOYGUN_TASK, PG_GETARG_UUID_P(0), call.caller, TOYGUN_RIGHT_OPERATE, false);
	obj = toygun_lock_object(TOYGUN_TASK, PG_GETARG_UUID_P(0), false, false);
	obj->actor = call.caller;
	def = toygun_locked_def(obj);
	row = SPI_datumTransfer(tick_task_by_hand(obj, def), false, -1);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/* A run's panic_message, when it is plain text (not sealed), or NULL. */
static char *
plain_panic_message(ToygunObject *obj)
{
	JsonbValue	v;

	if (obj->attrs == NULL || !JB_ROOT_IS_OBJECT(obj->attrs) ||
		getKeyJsonValueFromContainer(&obj->attrs->root, "panic_message", strlen("panic_message"), &v) == NULL ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * test_tick_until(id, state, max_ticks): ticks a run by hand, as tick_task
 * does, until it is in state, or waits: a run not due by this session's
 * clock (toygun.test_now, clock.c) is returned as it is, so that a test sees
 * the wait, advances the clock, and goes on. A run that stops or panics
 * elsewhere is 55000; one still going after max_ticks ticks, 54000.
 */
Datum
toygun_test_tick_until(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunObject *obj;
	ToygunDef  *def;
	pg_uuid_t  *id;
	char	   *target;
	int32		max_ticks;
	int32		ticks = 0;
	char	   *last_ran = NULL;
	Datum		row;

	toygun_check_not_null(fcinfo, 0, "id");
	toygun_check_not_null(fcinfo, 1, "state");
	toygun_check_not_null(fcinfo, 2, "max_ticks");
	id = PG_GETARG_UUID_P(0);
	target = toygun_check_name("state", PG_GETARG_TEXT_PP(1));
	max_ticks = PG_GETARG_INT32(2);
	if (max_ticks < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_ticks must be at least 1, not %d", max_ticks)));
	toygun_begin_call(&call);
	for (;;)
	{
		/* as tick_task: the right before the lock, at every tick */
		def = toygun_def_for_caller(TOYGUN_TASK, id, call.caller, TOYGUN_RIGHT_OPERATE, false);
		if (ticks == 0 && !toygun_state_declared(def, target) &&
			strcmp(target, TOYGUN_STOP) != 0 && strcmp(target, TOYGUN_PANIC) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s does not declare state \"%s\"", toygun_def_label(def), target),
					 errhint("Name one of its states, __stop__ or __panic__.")));
		obj = toygun_lock_object(TOYGUN_TASK, id, false, false);
		obj->actor = call.caller;
		def = toygun_locked_def(obj);
		if (strcmp(obj->state, target) == 0)
			break;
		if (strcmp(obj->state, TOYGUN_STOP) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("task %s stopped before reaching state \"%s\"", toygun_uuid_text(id), target),
					 last_ran == NULL ? errdetail("It was stopped already.") :
					 strcmp(target, def->states[0]) == 0 ?
					 errdetail("Its last tick ran state \"%s\". A run's first tick enters its first state and runs it, so it rests there only when that state stays.", last_ran) :
					 errdetail("Its last tick ran state \"%s\".", last_ran),
					 errhint("toygun.history() shows the states it went through.")));
		if (strcmp(obj->state, TOYGUN_PANIC) == 0)
		{
			char	   *message = plain_panic_message(obj);

			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("task %s panicked before reaching state \"%s\"", toygun_uuid_text(id), target),
					 message ? errdetail("Its panic_message: %s", message) : 0,
					 errhint("toygun.history() shows where; to test a panic, tick until state \"__panic__\".")));
		}
		/* waiting: a stay whose wait has not ended by this session's clock */
		if (obj->due_at != DT_NOEND && obj->due_at > toygun_clock_now())
			break;
		if (ticks >= max_ticks)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("task %s is still in state \"%s\" after %d ticks", toygun_uuid_text(id),
							obj->state, ticks),
					 errdetail("toygun.test_tick_until() ticks it until state \"%s\", at most max_ticks (%d) times.",
							   target, max_ticks),
					 errhint("Raise max_ticks if it needs more ticks; a run that goes round states, or stays with a zero wait, never gets there.")));
		last_ran = pstrdup(obj->state);
		(void) tick_task_by_hand(obj, def);
		ticks++;
	}
	row = return_row(obj->row);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * tick_resource(id): tick the resource (its first tick moves it out of
 * __new__), then each of its live, unpanicked tasks, in start order.
 */
Datum
toygun_tick_resource(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunObject *res;
	ToygunDef  *def;
	Oid			idtype[1] = {UUIDOID};
	Datum		values[1];
	Datum		row;
	bool		isnull;
	pg_uuid_t  *ids;
	uint64		ntasks,
				i;

	toygun_check_not_null(fcinfo, 0, "id");
	toygun_begin_call(&call);
	def = toygun_def_for_caller(TOYGUN_RESOURCE, PG_GETARG_UUID_P(0), call.caller, TOYGUN_RIGHT_OPERATE,
								false);
	res = toygun_lock_object(TOYGUN_RESOURCE, PG_GETARG_UUID_P(0), false, false);
	res->actor = call.caller;
	def = toygun_locked_def(res);
	if (strcmp(res->state, TOYGUN_STOP) != 0)
		(void) toygun_tick(res, def);
	if (strcmp(res->state, TOYGUN_STOP) != 0)
	{
		ids = toygun_run_ids(toygun_plan(&live_tasks_plan,
										 "SELECT id FROM ONLY toygun.task WHERE resource_id = $1"
										 "   AND state NOT IN ('__stop__', '__panic__') ORDER BY seq",
										 1, idtype),
							 &res->id, &ntasks);
		for (i = 0; i < ntasks; i++)
		{
			ToygunObject *task = NULL;
			ToygunDef  *tdef;

			/* each run's type may have another owner: check before locking */
			tdef = toygun_def_for_caller(TOYGUN_TASK, &ids[i], call.caller, TOYGUN_RIGHT_OPERATE, true);
			if (tdef != NULL)
				task = toygun_lock_object(TOYGUN_TASK, &ids[i], true, false);
			if (task != NULL)
			{
				task->actor = call.caller;
				tdef = toygun_locked_def(task);
			}

			/* an earlier handler may have stopped the resource, or this task */
			if (task != NULL && strcmp(task->resource_state, TOYGUN_STOP) == 0)
				break;
			if (task != NULL && strcmp(task->state, TOYGUN_PANIC) != 0)
				(void) tick_task_by_hand(task, tdef);
		}
	}
	values[0] = UUIDPGetDatum(&res->id);
	toygun_run(toygun_plan(&reread_resource_plan,
						   "SELECT r FROM ONLY toygun.resource r WHERE id = $1",
						   1, idtype),
			   values, NULL, 1);
	row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							false, -1);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/* panic_task(id, message): allowed from any state; records panic_message. */
Datum
toygun_panic_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	char	   *message;
	Datum		row;

	toygun_check_not_null(fcinfo, 1, "message");
	message = text_to_cstring(PG_GETARG_TEXT_PP(1));
	toygun_begin_call(&call);
	obj = lock_for_caller(TOYGUN_TASK, fcinfo, &call, &def, false);
	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		check_no_other_live_run(obj);
	toygun_transition(obj, def, TOYGUN_PANIC, toygun_panic_attrs(message), message);
	row = save_manual(obj, def, fcinfo, 2);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * rewind_task(id, n): a new transition back to the state the task was in n
 * transitions ago, clamped to its first state.
 */
Datum
toygun_rewind_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	int32		n;
	Oid			argtypes[2] = {UUIDOID, INT8OID};
	Datum		values[2];
	char	   *target;
	char	   *note;
	Datum		row;

	toygun_check_not_null(fcinfo, 1, "n");
	n = PG_GETARG_INT32(1);
	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must be at least 1"),
				 errdetail("It was %d.", n)));
	toygun_begin_call(&call);
	obj = lock_for_caller(TOYGUN_TASK, fcinfo, &call, &def, true);
	if (obj->step < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task %s has no earlier state to rewind to", toygun_uuid_text(&obj->id)),
				 errdetail("It has made no transition yet.")));
	note = psprintf("rewind_task(%d)", n);

	/*
	 * After one transition, its first (out of __new__: a panic in its first
	 * tick, say), it goes back to __new__ to be ticked from the start.
	 */
	if (obj->step == 1)
	{
		if (strcmp(obj->state, TOYGUN_STOP) == 0)
			check_no_other_live_run(obj);
		toygun_restart(obj, note);
		row = save_manual(obj, def, fcinfo, 2);
		toygun_end_call(&call);
		PG_RETURN_DATUM(row);
	}

	/* The state after step (step - 1 - n): n transitions before the last. */
	values[0] = UUIDPGetDatum(&obj->id);
	values[1] = Int64GetDatum(Max((int64) 0, obj->step - 1 - (int64) n));
	toygun_run(toygun_plan(&rewind_target_plan,
						   "SELECT to_state FROM toygun.transition WHERE object_id = $1 AND step = $2",
						   2, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("history of task %s has no step " INT64_FORMAT,
						toygun_uuid_text(&obj->id), DatumGetInt64(values[1]))));
	target = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(obj->state, TOYGUN_STOP) == 0 && strcmp(target, TOYGUN_STOP) != 0)
		check_no_other_live_run(obj);
	toygun_transition(obj, def, target, NULL, note);
	row = save_manual(obj, def, fcinfo, 2);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * retry_task(id, reason): a failing or waiting run is due now, in the state
 * it is in; a panicked one goes back to the state it panicked from (to
 * __new__ if that was its first tick). Either way a history row says who
 * retried it and why, and attempts start again. A stopped run is not
 * retried: it is started again.
 */
Datum
toygun_retry_task(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr panicked_from_plan = NULL;
	ToygunCall	call;
	ToygunDef  *def;
	ToygunObject *obj;
	Datum		row;

	toygun_begin_call(&call);
	obj = lock_for_caller(TOYGUN_TASK, fcinfo, &call, &def, false);
	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task %s is stopped", toygun_uuid_text(&obj->id)),
				 errdetail("A stopped run is not retried."),
				 errhint("Start the task again with toygun.start_task(), or bring the run back with toygun.rewind_task().")));
	if (strcmp(obj->state, TOYGUN_PANIC) == 0)
	{
		Oid			argtypes[2] = {UUIDOID, INT8OID};
		Datum		values[2];
		char	   *from;

		/* the panic is the last transition */
		values[0] = UUIDPGetDatum(&obj->id);
		values[1] = Int64GetDatum(obj->step - 1);
		toygun_run(toygun_plan(&panicked_from_plan,
							   "SELECT from_state FROM toygun.transition WHERE object_id = $1 AND step = $2",
							   2, argtypes),
				   values, NULL, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("history of task %s has no step " INT64_FORMAT,
							toygun_uuid_text(&obj->id), obj->step - 1)));
		from = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (strcmp(from, TOYGUN_NEW) == 0)
			toygun_restart(obj, "retry_task");
		else
			toygun_transition(obj, def, from, NULL, "retry_task");
	}
	else if (strcmp(obj->state, TOYGUN_NEW) == 0)
		toygun_restart(obj, "retry_task");
	else
		toygun_transition(obj, def, obj->state, NULL, "retry_task");
	row = save_manual(obj, def, fcinfo, 1);
	toygun_end_call(&call);
	PG_RETURN_DATUM(row);
}

/*
 * last_error(id): the message of the last failed tick of a run or resource,
 * NULL if it has none. The column is not readable by PUBLIC: a handler's
 * error can carry what its owner would not show to everybody.
 */
Datum
toygun_last_error(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr task_plan = NULL;
	static SPIPlanPtr resource_plan = NULL;
	ToygunCall	call;
	ToygunKind	kind = TOYGUN_TASK;
	pg_uuid_t  *id;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	Datum		d;
	bool		isnull;
	text	   *result = NULL;

	toygun_check_not_null(fcinfo, 0, "id");
	id = PG_GETARG_UUID_P(0);
	toygun_begin_call(&call);
	if (toygun_def_for_caller(TOYGUN_TASK, id, call.caller, TOYGUN_RIGHT_READ_ERRORS, true) == NULL)
	{
		kind = TOYGUN_RESOURCE;
		if (toygun_def_for_caller(TOYGUN_RESOURCE, id, call.caller, TOYGUN_RIGHT_READ_ERRORS, true) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("resource or task %s does not exist", toygun_uuid_text(id))));
	}
	values[0] = UUIDPGetDatum(id);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&task_plan, "SELECT last_error FROM ONLY toygun.task WHERE id = $1",
							   1, argtypes),
				   values, NULL, 1);
	else
		toygun_run(toygun_plan(&resource_plan, "SELECT last_error FROM ONLY toygun.resource WHERE id = $1",
							   1, argtypes),
				   values, NULL, 1);
	if (SPI_processed > 0)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = (text *) SPI_datumTransfer(d, false, -1);
	}
	toygun_end_call(&call);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

/*
 * toygun._flow_key(resource_type, name, resource, attrs) RETURNS bigint
 * (issue 17): the flow_key of a run of the task type with these attrs on
 * that resource, NULL if the type has no concurrency limit. For the
 * statements that start or rekey runs in bulk (schedule.c's firing,
 * flow.c's redefinition); starts one at a time compute it in C.
 */
PG_FUNCTION_INFO_V1(toygun_flow_key_sql);
Datum
toygun_flow_key_sql(PG_FUNCTION_ARGS)
{
	ToygunDef  *def;
	int64		key = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	def = toygun_find_def(TOYGUN_TASK, text_to_cstring(PG_GETARG_TEXT_PP(0)),
						  text_to_cstring(PG_GETARG_TEXT_PP(1)), true);
	if (def != NULL && def->flow != NULL)
		key = toygun_flow_key(def, PG_GETARG_UUID_P(2), PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3));
	SPI_finish();
	if (def == NULL || def->flow == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT64(key);
}
