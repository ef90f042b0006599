/*
 * renames.c
 *		rename_state(), rename_task() and rename_resource_type() (issue 16):
 *		a name changes everywhere it is a key, in one transaction.
 *
 * What follows the new name: the definitions (states, stop_state, a task
 * type's resource_type, other types' parent_type), the objects (a live
 * object's state; every run's name and resource_type and every resource's
 * type, stopped ones too: they are keys to their type, which field(),
 * task_for() and the rights read), the schedules and their pg_cron jobs,
 * triggers, type grants, breakers, alarms, messages, failures, routes
 * ('type:<name>'), and the resource_type column of the history (the key its
 * row-level security filters on). What keeps the old name: the history's
 * from_state, to_state and note, alarms' escalation and handled_by, the
 * outbox's payloads: what was true then. Each rename writes a row of
 * toygun.rename, the log that says when a name changed.
 *
 * Concurrency: the definitions are locked as define_* lock them, and the
 * name's use (toygun_lock_name_use: starts and creates wait); then every
 * live object of the type is locked FOR UPDATE, which waits for the ticks
 * and moves in progress, and holds the ones to come until this commits:
 * they then read the renamed row and, once it is locked, its definition
 * again (toygun_locked_def), and a worker's claim skips the locked rows. So
 * no object moves into the old state after the rename read it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_rename_state);
PG_FUNCTION_INFO_V1(toygun_rename_task);
PG_FUNCTION_INFO_V1(toygun_rename_resource_type);

/*
 * Run a statement of the rename with its text arguments ($1.. = args[0..],
 * NULL as NULL); returns the rows it processed. Renames are rare: the
 * statements are planned at each call, not kept.
 */
static uint64
exec(const char *sql, int nargs, const char **args)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4];
	int			i;
	int			rc;

	for (i = 0; i < nargs; i++)
	{
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "a rename's statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* Argument argno, a name that must not be NULL. */
static char *
name_arg(FunctionCallInfo fcinfo, int argno, const char *argname, const char *what)
{
	toygun_check_not_null(fcinfo, argno, argname);
	return toygun_check_name(what, PG_GETARG_TEXT_PP(argno));
}

/*
 * Rename column of every row of table whose key column(s) hold the old name:
 * "UPDATE table SET column = $n WHERE where", for each (table, column) of a
 * list, with the same arguments.
 */
typedef struct Follower
{
	const char *table;
	const char *column;
} Follower;

static void
follow(const Follower *list, int n, const char *set, const char *where, int nargs, const char **args)
{
	int			i;

	/* the history is partitioned (0.4): ONLY would update none of its rows */
	for (i = 0; i < n; i++)
		exec(psprintf("UPDATE %stoygun.%s SET %s = %s WHERE %s",
					  strcmp(list[i].table, "transition") == 0 ? "" : "ONLY ",
					  list[i].table, list[i].column, set, psprintf(where, list[i].column)),
			 nargs, args);
}

/* Argument argno, the new name: a valid one, not NULL, and not the old one. */
static char *
new_name_arg(FunctionCallInfo fcinfo, int argno, const char *what, const char *old)
{
	char	   *new_name;

	toygun_check_not_null(fcinfo, argno, "new");
	new_name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	toygun_check_name_cstr(psprintf("%s name", what), new_name);
	if (strcmp(old, new_name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("%s \"%s\" is already called that", what, old),
				 errhint("Give another name.")));
	return new_name;
}

/* Record a rename in toygun.rename; live: the live objects renamed (or moved to the new state). */
static void
log_rename(const char *kind, const char *resource_type, const char *task,
		   const char *old, const char *new_name, uint64 live, Oid caller)
{
	const char *args[4] = {kind, resource_type, task, old};
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, OIDOID, INT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			i;

	for (i = 0; i < 4; i++)
	{
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	values[4] = CStringGetTextDatum(new_name);
	values[5] = ObjectIdGetDatum(caller);
	values[6] = Int64GetDatum((int64) live);
	if (SPI_execute_with_args("INSERT INTO toygun.rename"
							  " (kind, resource_type, task, old_name, new_name, renamed_by, live_objects)"
							  " VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.regrole, $7)",
							  7, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording a rename failed");
}

/*
 * A resource type (task NULL) or task type, locked against definitions and
 * renames of it and read again after the lock; the caller must act for its
 * owner (as define_* require), checked before the lock too.
 */
static ToygunDef *
lock_type(const char *type, const char *task, Oid caller)
{
	ToygunKind	kind = task != NULL ? TOYGUN_TASK : TOYGUN_RESOURCE;
	ToygunDef  *def = toygun_find_def(kind, type, task, false);

	toygun_check_acting_for(def, caller);
	toygun_lock_definition(kind, type, task);
	def = toygun_find_def(kind, type, task, false);
	toygun_check_acting_for(def, caller);
	return def;
}

/*
 * Lock the live objects of a type (task NULL: its resources) FOR UPDATE:
 * the ticks and moves in progress commit first. Returns how many.
 */
static uint64
lock_live(const char *type, const char *task)
{
	const char *args[2] = {type, task};

	if (task == NULL)
		return exec("SELECT FROM ONLY toygun.resource WHERE type = $1 AND state <> '__stop__'"
					" ORDER BY id FOR UPDATE", 1, args);
	return exec("SELECT FROM ONLY toygun.task WHERE resource_type = $1 AND name = $2"
				" AND state <> '__stop__' ORDER BY id FOR UPDATE", 2, args);
}

/* The columns that name a task (with its resource_type), and a resource type. */
static const Follower task_followers[] = {
	{"task_type", "name"}, {"task", "name"}, {"trigger", "task"}, {"breaker", "task"},
	{"alarm", "task"}, {"rename", "task"}
};
static const Follower type_followers[] = {
	{"resource_type", "name"}, {"resource_type", "parent_type"}, {"task_type", "resource_type"},
	{"resource", "type"}, {"task", "resource_type"}, {"transition", "resource_type"},
	{"failure", "resource_type"}, {"message", "resource_type"}, {"alarm", "resource_type"},
	{"trigger", "resource_type"}, {"type_grant", "resource_type"}, {"breaker", "resource_type"},
	{"rename", "resource_type"}
};

/*
 * rename_state(resource_type, task, old, new): a state of a task type, or
 * (task NULL) of a resource type, is called new from now on: in the
 * definition's states and stop_state, in the live objects in it, and for a
 * resource type in its triggers' on_state and its schedules' states.
 */
Datum
toygun_rename_state(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	char	   *type;
	char	   *task = NULL;
	char	   *old;
	char	   *new_name;
	const char *args[4];
	uint64		moved;

	type = name_arg(fcinfo, 0, "resource_type", "resource type name");
	if (!PG_ARGISNULL(1))
		task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	old = name_arg(fcinfo, 2, "old", "state name");
	new_name = new_name_arg(fcinfo, 3, "state", old);
	if (strncmp(old, "__", 2) == 0 || strncmp(new_name, "__", 2) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("state name \"%s\" is reserved", strncmp(old, "__", 2) == 0 ? old : new_name),
				 errdetail("Names that start with \"__\" are toygun's own states, which keep their names."),
				 errhint("Rename a state the type declares, to a name that does not start with \"__\".")));

	toygun_begin_call(&call);
	toygun_refuse_on_citus("rename_state",
						   "A rename locks and updates the runs, resources and history of the type on every node, which needs statements by shard (doc/citus.md, section 7).");
	def = lock_type(type, NULL, call.caller);
	if (task != NULL)
		def = lock_type(type, task, call.caller);
	if (!toygun_state_declared(def, old))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("state \"%s\" is not declared by %s", old, toygun_def_label(def)),
				 errhint("Name one of the states it declares.")));
	if (toygun_state_declared(def, new_name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("%s already declares state \"%s\"", toygun_def_label(def), new_name),
				 errhint("Give a name it does not declare, or move its objects out of \"%s\" and define the type again without it.",
						 new_name)));

	args[0] = type;
	args[1] = old;
	args[2] = new_name;
	args[3] = task;
	(void) lock_live(type, task);
	if (task != NULL)
	{
		exec("UPDATE ONLY toygun.task_type SET states = pg_catalog.array_replace(states, $2, $3),"
			 "       stop_state = CASE WHEN stop_state = $2 THEN $3 ELSE stop_state END"
			 " WHERE resource_type = $1 AND name = $4", 4, args);
		moved = exec("UPDATE ONLY toygun.task SET state = $3"
					 " WHERE resource_type = $1 AND name = $4 AND state = $2", 4, args);
	}
	else
	{
		exec("UPDATE ONLY toygun.resource_type SET states = pg_catalog.array_replace(states, $2, $3),"
			 "       stop_state = CASE WHEN stop_state = $2 THEN $3 ELSE stop_state END"
			 " WHERE name = $1", 3, args);
		moved = exec("UPDATE ONLY toygun.resource SET state = $3 WHERE type = $1 AND state = $2", 3, args);
		exec("UPDATE ONLY toygun.trigger SET on_state = $3 WHERE resource_type = $1 AND on_state = $2",
			 3, args);
		exec("UPDATE ONLY toygun.schedule SET states = pg_catalog.array_replace(states, $2, $3)"
			 " WHERE resource_type = $1 AND $2 = ANY (states)", 3, args);
	}
	log_rename("state", type, task, old, new_name, moved, call.caller);
	toygun_definitions_changed(task != NULL ? TOYGUN_TASK : TOYGUN_RESOURCE);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/*
 * rename_task(resource_type, old, new): a task type is called new from now
 * on: its definition, all its runs (stopped ones too), its triggers,
 * schedules and their pg_cron jobs, its breaker and its runs' alarms.
 */
Datum
toygun_rename_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *type;
	char	   *old;
	char	   *new_name;
	const char *args[3];
	uint64		live;

	type = name_arg(fcinfo, 0, "resource_type", "resource type name");
	old = name_arg(fcinfo, 1, "old", "task name");
	new_name = new_name_arg(fcinfo, 2, "task", old);

	toygun_begin_call(&call);
	toygun_refuse_on_citus("rename_task",
						   "A rename locks and updates the runs, resources and history of the type on every node, which needs statements by shard (doc/citus.md, section 7).");
	(void) lock_type(type, NULL, call.caller);
	(void) lock_type(type, old, call.caller);
	/* the new name is a definition to be, locked as define_task locks it */
	toygun_lock_definition(TOYGUN_TASK, type, new_name);
	if (toygun_find_def(TOYGUN_TASK, type, new_name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("task \"%s\" is already defined for resource type \"%s\"", new_name, type),
				 errhint("Give a name no task of resource type \"%s\" has.", type)));
	toygun_lock_name_use(TOYGUN_TASK, type, old, true);

	args[0] = type;
	args[1] = old;
	args[2] = new_name;
	live = lock_live(type, old);
	follow(task_followers, lengthof(task_followers), "$3", "resource_type = $1 AND %s = $2", 3, args);
	toygun_rename_schedules(type, type, old, new_name);
	log_rename("task", type, NULL, old, new_name, live, call.caller);
	toygun_definitions_changed(TOYGUN_TASK);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/*
 * rename_resource_type(old, new): a resource type is called new from now
 * on, wherever a row names it: its definition and its task types', other
 * types' parent_type, its resources and runs (stopped ones too), their
 * history's resource_type, failures, messages and alarms, its triggers,
 * schedules and their pg_cron jobs, grants, breakers, routes and renames.
 */
Datum
toygun_rename_resource_type(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *old;
	char	   *new_name;
	const char *args[2];
	uint64		live;

	old = name_arg(fcinfo, 0, "old", "resource type name");
	new_name = new_name_arg(fcinfo, 1, "resource type", old);

	toygun_begin_call(&call);
	toygun_refuse_on_citus("rename_resource_type",
						   "A rename locks and updates the runs, resources and history of the type on every node, which needs statements by shard (doc/citus.md, section 7).");
	(void) lock_type(old, NULL, call.caller);
	toygun_lock_definition(TOYGUN_RESOURCE, new_name, NULL);
	if (toygun_find_def(TOYGUN_RESOURCE, new_name, NULL, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("resource type \"%s\" already exists", new_name),
				 errhint("Give a name no resource type has.")));
	toygun_lock_name_use(TOYGUN_RESOURCE, old, NULL, true);

	args[0] = old;
	args[1] = new_name;
	live = lock_live(old, NULL);
	live += exec("SELECT FROM ONLY toygun.task WHERE resource_type = $1 AND state <> '__stop__'"
				 " ORDER BY id FOR UPDATE", 1, args);
	follow(type_followers, lengthof(type_followers), "$2", "%s = $1", 2, args);
	/* a route of the new name's pattern to the same channel is one already */
	exec("DELETE FROM ONLY toygun.route o WHERE o.pattern = 'type:' OPERATOR(pg_catalog.||) $1"
		 " AND EXISTS (SELECT FROM ONLY toygun.route n"
		 "              WHERE n.pattern = 'type:' OPERATOR(pg_catalog.||) $2 AND n.channel = o.channel)",
		 2, args);
	exec("UPDATE ONLY toygun.route SET pattern = 'type:' OPERATOR(pg_catalog.||) $2"
		 " WHERE pattern = 'type:' OPERATOR(pg_catalog.||) $1", 2, args);
	toygun_rename_schedules(old, new_name, NULL, NULL);
	log_rename("resource_type", new_name, NULL, old, new_name, live, call.caller);
	toygun_definitions_changed(TOYGUN_RESOURCE);
	toygun_definitions_changed(TOYGUN_TASK);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}
