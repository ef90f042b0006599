/*
 * define.c
 *		define_resource() and define_task(): validate and store resource and
 *		task types, and look them up for the tick and the API.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_define_resource);
PG_FUNCTION_INFO_V1(toygun_define_task);

static SPIPlanPtr find_resource_type_plan;
static SPIPlanPtr find_task_type_plan;
static SPIPlanPtr upsert_resource_type_plan;
static SPIPlanPtr upsert_resource_type_0_3_plan;

/* define_resource's argument alarm_handler (issue 15) */
#define ALARM_HANDLER_ARG 8
/* define_resource's and define_task's argument field_types (issue 16), their last */
#define RESOURCE_FIELD_TYPES_ARG 9
#define TASK_FIELD_TYPES_ARG 14
static SPIPlanPtr upsert_task_type_plan;
static SPIPlanPtr upsert_task_type_retry_plan;
static SPIPlanPtr upsert_task_type_0_3_plan;

/* define_task's argument breaker (issue 15) */
#define BREAKER_ARG 13

/* move_states (issue 16): define_task's and define_resource's */
#define TASK_MOVE_STATES_ARG 15
#define RESOURCE_MOVE_STATES_ARG 10

/* version and upgrade (issue 16, schema versions): define_task's and define_resource's last two */
#define TASK_VERSION_ARG 16
#define RESOURCE_VERSION_ARG 11

/* keep (retention, issue 16): define_task's and define_resource's last */
#define TASK_KEEP_ARG 18
#define RESOURCE_KEEP_ARG 13

/* priority, queue, rate_limit (issue 17, flow control): define_task's last three */
#define TASK_PRIORITY_ARG 19
#define TASK_QUEUE_ARG 20
#define TASK_RATE_LIMIT_ARG 21
/* max_running, concurrency_key, max_per_key (issue 17, flow.c): the three after them */
#define TASK_MAX_RUNNING_ARG 22
/* queue: define_resource's last */
#define RESOURCE_QUEUE_ARG 14
static SPIPlanPtr upsert_task_type_queue_plan;
static SPIPlanPtr upsert_resource_type_queue_plan;

/*
 * The queue of a type being defined (define_resource's or define_task's
 * queue argument; NULL, or left out, is 'default'). Inside the call.
 */
static int16
queue_arg(FunctionCallInfo fcinfo, int argno, const char *label)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno) || !toygun_has_queues())
		return 0;
	return toygun_queue_for_define(PG_GETARG_DATUM(argno), label);
}

/*
 * A redefinition into another queue moves the type's live objects there,
 * in the define's transaction (a run being ticked is waited for), and
 * wakes the new queue's workers.
 */
static void
move_to_queue(ToygunKind kind, const char *resource_type, const char *name, ToygunDef *existing,
			  int16 queue_id)
{
	static SPIPlanPtr plans[2];
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT2OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (existing == NULL || existing->queue_id == queue_id)
		return;

	/*
	 * As a rename does: a start or a create that read the old queue and has
	 * not committed yet inserted a row this UPDATE would not see, left in
	 * the old queue for good; wait for it. Those after read the new queue.
	 */
	toygun_lock_name_use(kind, resource_type, name, true);
	values[0] = CStringGetTextDatum(resource_type);
	values[1] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[1] = name ? ' ' : 'n';
	values[2] = Int16GetDatum(queue_id);
	toygun_run(toygun_plan(&plans[kind],
						   kind == TOYGUN_TASK
						   ? "UPDATE ONLY toygun.task SET queue_id = $3"
						   "  WHERE resource_type = $1 AND name = $2 AND state <> '__stop__' AND queue_id <> $3"
						   : "UPDATE ONLY toygun.resource SET queue_id = $3"
						   "  WHERE type = $1 AND $2::pg_catalog.text IS NULL AND state <> '__stop__' AND queue_id <> $3",
						   3, argtypes),
			   values, nulls, 0);
	if (SPI_processed > 0)
		toygun_wake_queue_at_commit(queue_id, 0);
}

/*
 * Most states, and most fields, a type may declare. Lists are searched
 * linearly, and checked for duplicates pairwise; a definition far longer
 * than any state machine would make every call on the type slow.
 */
#define MAX_LIST 1000

/* The bounds of a task type's retry policy: those of the settings. */
#define MAX_MAX_ATTEMPTS 1000000
#define MAX_RETRY_BACKOFF_MS (3600 * 1000)

/*
 * An interval in milliseconds, for the retry policy. Months count 30 days
 * and days 24 hours, as interval comparison does. A double, so that a huge
 * interval is out of any range rather than wrapping around into it.
 */
static double
interval_ms(Interval *iv)
{
	return ((double) iv->month * DAYS_PER_MONTH + iv->day) * (SECS_PER_DAY * 1000.0) +
		(double) iv->time / 1000.0;
}

static void
check_list_length(const char *what, int n)
{
	if (n > MAX_LIST)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many %s", what),
				 errdetail("There are %d; the limit is %d.", n, MAX_LIST)));
}

/* Declared states: a non-empty list of unique names, none reserved. */
static char **
check_states(FunctionCallInfo fcinfo, int argno, int *n)
{
	char	  **states;
	int			i,
				j;

	toygun_check_not_null(fcinfo, argno, "states");
	states = toygun_text_array(PG_GETARG_ARRAYTYPE_P(argno), "states", n);
	check_list_length("states", *n);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("states must not be empty"),
				 errhint("List the states in order; the first is the initial state.")));
	for (i = 0; i < *n; i++)
	{
		(void) toygun_check_name("state name", cstring_to_text(states[i]));
		/* __new__ declared first: the handler runs in it (a first tick that prepares) */
		if (i == 0 && strcmp(states[i], TOYGUN_NEW) == 0 && *n > 1)
			continue;
		if (strcmp(states[i], TOYGUN_NEW) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("state \"%s\" may only be declared first, and before another state", states[i]),
					 errdetail("Declared first, it is where the handler runs a new object's first tick."),
					 errhint("Move \"%s\" to the head of the states, or leave it out.", states[i])));
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
	check_list_length(what, *n);
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
 * field_types, {"field": "type", ...}: checked (fieldtype.c), and returned
 * as given, or (Datum) 0 for none (NULL, an empty object, or an install
 * script that passes no such argument).
 */
static Datum
check_field_types(FunctionCallInfo fcinfo, int argno, const char *label)
{
	Jsonb	   *j;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return (Datum) 0;
	j = PG_GETARG_JSONB_P(argno);
	if (JB_ROOT_IS_OBJECT(j))
		check_list_length("field_types", JB_ROOT_COUNT(j));
	if (toygun_field_types_parse(j, label, false) == NULL)
		return (Datum) 0;
	return JsonbPGetDatum(j);
}

/*
 * A definition's field_types, from its column field_types if it has one
 * (0.3's table has none), parsed in the current memory context; NULL: none.
 * define_*() checked it; a row changed behind its back is read quietly.
 */
static ToygunFieldTypes *
read_field_types(HeapTuple tup, TupleDesc desc)
{
	int			col = SPI_fnumber(desc, "field_types");
	bool		isnull;
	Datum		d;

	if (col <= 0)
		return NULL;
	d = SPI_getbinval(tup, desc, col, &isnull);
	if (isnull)
		return NULL;
	return toygun_field_types_parse(DatumGetJsonbP(d), "", true);
}

/*
 * A task type's retry policy, from define_task's last three arguments
 * (argno on): each NULL or missing means the setting. The SQL of 0.3 passes
 * none of them. Out of range is 22023, naming the argument and the type.
 */
typedef struct RetryPolicy
{
	Datum		values[3];		/* max_attempts, retry_backoff, tick_timeout */
	char		nulls[3];
} RetryPolicy;

static void
policy_out_of_range(const char *argname, const char *label, const char *value,
					const char *range, const char *setting)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s of %s must be %s", argname, label, range),
			 errdetail("It is %s.", value),
			 errhint("Give a value in that range, or leave %s out (NULL) to use %s.",
					 argname, setting)));
}

static void
check_retry_policy(FunctionCallInfo fcinfo, int argno, const char *label, RetryPolicy *policy)
{
	int			i;

	for (i = 0; i < 3; i++)
	{
		bool		given = PG_NARGS() > argno + i && !PG_ARGISNULL(argno + i);

		policy->nulls[i] = given ? ' ' : 'n';
		policy->values[i] = given ? PG_GETARG_DATUM(argno + i) : (Datum) 0;
	}
	if (policy->nulls[0] == ' ')
	{
		int32		n = DatumGetInt32(policy->values[0]);

		if (n < 1 || n > MAX_MAX_ATTEMPTS)
			policy_out_of_range("max_attempts", label, psprintf("%d", n),
								psprintf("between 1 and %d", MAX_MAX_ATTEMPTS),
								"toygun.max_attempts");
	}
	if (policy->nulls[1] == ' ')
	{
		double		ms = interval_ms(DatumGetIntervalP(policy->values[1]));

		if (ms < 0 || ms > MAX_RETRY_BACKOFF_MS)
			policy_out_of_range("retry_backoff", label,
								DatumGetCString(DirectFunctionCall1(interval_out, policy->values[1])),
								"between 0 and 1 hour", "toygun.retry_backoff");
	}
	if (policy->nulls[2] == ' ')
	{
		double		ms = interval_ms(DatumGetIntervalP(policy->values[2]));

		if (ms < 1 || ms > INT_MAX)
			policy_out_of_range("tick_timeout", label,
								DatumGetCString(DirectFunctionCall1(interval_out, policy->values[2])),
								psprintf("between 1 ms and %d ms (about 24 days)", INT_MAX),
								"toygun.tick_timeout");
	}
}

/*
 * The signature a handler or a hook must have: what it takes and returns,
 * as OIDs and as words for the messages.
 */
typedef struct Shape
{
	const char *noun;			/* "handler", "should_start hook" */
	int			nargs;
	Oid			args[2];
	Oid			ret;
	const char *takes;
	const char *args_words;		/* "toygun.task" */
	const char *returns;
	const char *declare;		/* a CREATE FUNCTION that fits */
} Shape;

/* The shape of a handler of rowtype's objects, or of hook should_start or should_stop. */
static void
shape_of(const char *what, Shape *s)
{
	memset(s, 0, sizeof(Shape));
	if (strcmp(what, "should_start") == 0)
	{
		s->noun = "should_start hook";
		s->nargs = 2;
		s->args[0] = toygun_type_oid("resource");
		s->args[1] = JSONBOID;
		s->ret = BOOLOID;
		s->takes = "two arguments, of types toygun.resource and jsonb";
		s->args_words = "toygun.resource and jsonb";
		s->returns = "boolean";
		s->declare = "CREATE FUNCTION f(r toygun.resource, args jsonb) RETURNS boolean";
	}
	else if (strcmp(what, "should_stop") == 0)
	{
		s->noun = "should_stop hook";
		s->nargs = 1;
		s->args[0] = toygun_type_oid("task");
		s->ret = BOOLOID;
		s->takes = "one argument of type toygun.task";
		s->args_words = "toygun.task";
		s->returns = "boolean";
		s->declare = "CREATE FUNCTION f(t toygun.task) RETURNS boolean";
	}
	else if (strcmp(what, "upgrade") == 0)
	{
		s->noun = "upgrade function";
		s->nargs = 2;
		s->args[0] = JSONBOID;
		s->args[1] = INT4OID;
		s->ret = JSONBOID;
		s->takes = "two arguments, of types jsonb and integer";
		s->args_words = "jsonb and integer";
		s->returns = "jsonb";
		s->declare = "CREATE FUNCTION f(attrs jsonb, from_version integer) RETURNS jsonb";
	}
	else if (strcmp(what, "alarm_handler") == 0)
	{
		s->noun = "alarm handler";
		s->nargs = 1;
		s->args[0] = toygun_type_oid("alarm");
		s->ret = TEXTOID;
		s->takes = "one argument of type toygun.alarm";
		s->args_words = "toygun.alarm";
		s->returns = "text";
		s->declare = "CREATE FUNCTION f(a toygun.alarm) RETURNS text";
	}
	else
	{
		s->noun = "handler";
		s->nargs = 1;
		s->args[0] = toygun_type_oid(what);
		s->ret = toygun_type_oid("next");
		s->takes = psprintf("one argument of type toygun.%s", what);
		s->args_words = psprintf("toygun.%s", what);
		s->returns = "toygun.next";
		s->declare = psprintf("CREATE FUNCTION f(o toygun.%s) RETURNS toygun.next", what);
	}
}

/*
 * Why fn does not have the shape, as a detail sentence, or NULL if it has
 * it: a plain function of the shape's arguments returning its type, in a
 * schema that outlives the session.
 */
static const char *
shape_problem(Oid fn, Shape *s)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	const char *problem = NULL;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function with OID %u does not exist", s->noun, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION)
		problem = "It is not a plain function.";
	else if (proc->proretset)
		problem = "It returns a set.";
	else if (proc->pronargs != s->nargs ||
			 memcmp(proc->proargtypes.values, s->args, sizeof(Oid) * s->nargs) != 0)
		problem = psprintf("It does not take %s.", s->takes);
	else if (proc->prorettype != s->ret)
		problem = psprintf("It does not return %s.", s->returns);
	else if (isAnyTempNamespace(proc->pronamespace))
		problem = "It is a temporary function: it would be gone at the end of the session, and another session's function of the same name would take its place.";
	ReleaseSysCache(tup);
	return problem;
}

/*
 * A handler (what: the row type, "task" or "resource"), hook (what:
 * "should_start", "should_stop"), upgrade function or alarm handler has
 * its shape, and the type's owner-to-be may execute it. Returns its
 * schema-qualified signature, which is what we store.
 */
static char *
check_function(Oid fn, const char *what, Oid owner)
{
	Shape		s;
	const char *problem;

	shape_of(what, &s);
	problem = shape_problem(fn, &s);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s %s must be a function taking %s and returning %s",
						s.noun, format_procedure(fn), s.args_words, s.returns),
				 errdetail_internal("%s", problem),
				 errhint("Declare it as %s.", s.declare)));
	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s %s", s.noun, format_procedure(fn)),
				 errdetail("The %s runs as the type's owner, role \"%s\", which must be allowed to execute it.",
						   s.noun, toygun_role_name(owner))));
	return format_procedure_qualified(fn);
}

/*
 * A definition's schema version and upgrade function (issue 16): version
 * (argument argno; NULL or missing: the current one, 1 for a new type) never
 * goes down; upgrade (argno + 1) is checked as a hook is, for the owner; left
 * out, it is the one the type has while the version stays, none when the
 * version rises (it upgraded to the old version, not to the new).
 */
static int32
check_version(FunctionCallInfo fcinfo, int argno, const char *label, ToygunDef *existing,
			  Oid owner, char **upgrade)
{
	int32		current = existing != NULL ? existing->version : 1;
	int32		version = current;

	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
		version = PG_GETARG_INT32(argno);
	if (version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version of %s must be at least 1, not %d", label, version),
				 errhint("Leave version out (NULL) to keep the current one, %d.", current)));
	if (version < current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version of %s cannot go down from %d to %d", label, current, version),
				 errdetail("Its objects' attrs may be stored at version %d, which a definition of an older version would misread.",
						   current),
				 errhint("Give version %d or higher, or leave version out (NULL) to keep it.", current)));
	*upgrade = NULL;
	if (PG_NARGS() > argno + 1 && !PG_ARGISNULL(argno + 1))
		*upgrade = check_function(PG_GETARG_OID(argno + 1), "upgrade", owner);
	else if (existing != NULL && version == current && existing->upgrade != NULL)
		*upgrade = pstrdup(existing->upgrade);
	return version;
}

/* A stop_state is one of the type's declared states (not __new__), or NULL. */
/*
 * keep (argno): NULL for forever, else a positive interval that toygun can
 * add to any time it writes (retention.c).
 */
static Datum
check_keep(FunctionCallInfo fcinfo, int argno, const char *label, char *null)
{
	Interval   *keep;

	*null = 'n';
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return (Datum) 0;
	keep = PG_GETARG_INTERVAL_P(argno);
	if (!toygun_keep_valid(keep))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep of %s must be a positive interval of at most 1000 years, not %s",
						label, DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(keep)))),
				 errhint("Give an interval such as '30 days', or keep => NULL to keep its stopped objects and history forever.")));
	*null = ' ';
	return IntervalPGetDatum(keep);
}

static char *
check_stop_state(FunctionCallInfo fcinfo, int argno, const char *label, char **states, int nstates)
{
	char	   *stop_state;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	stop_state = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(stop_state, TOYGUN_NEW) == 0 || !toygun_in_list(stop_state, states, nstates))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stop_state \"%s\" of %s is not one of its states", stop_state, label),
				 errdetail("A first stop moves it into its stop_state, whose handler then stops it."),
				 errhint("Name one of the states it declares (not __new__), or leave stop_state out (NULL) to stop at once.")));
	return stop_state;
}

/* The search_path handlers of a type defined now will run with. */
static char *
definer_search_path(void)
{
	return pstrdup(GetConfigOption("search_path", false, false));
}

/*
 * Definitions are cached per backend: the tick path looks one up for every
 * tick. An entry holds the definition and, once resolved and checked, its
 * handler. Any change to the definition tables (define_* sends a relcache
 * invalidation for them), to functions or to roles makes the cache stale; a
 * stale cache is replaced at the next lookup, and replaced generations are
 * freed at the end of the transaction, since a tick in progress may still
 * hold their entries.
 */
typedef struct DefKey
{
	ToygunKind	kind;
	char		resource_type[TOYGUN_NAME_MAX + 1];
	char		name[TOYGUN_NAME_MAX + 1];
} DefKey;

typedef struct DefEntry
{
	DefKey		key;
	ToygunDef  *def;
} DefEntry;

static HTAB *def_cache = NULL;
static MemoryContext def_cache_cxt = NULL;
static List *retired_cxts = NIL;
static bool def_cache_stale = false;
static Oid	def_table_relids[3];	/* resource_type, task_type, trigger */

static void
def_cache_relcache_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == def_table_relids[0] || relid == def_table_relids[1] ||
		relid == def_table_relids[2])
		def_cache_stale = true;
}

static void
def_cache_syscache_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	def_cache_stale = true;
}

/*
 * Free the generations of the cache replaced during the transaction, once
 * it ends: nothing of the transaction points into them any more.
 */
static void
define_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PREPARE)
		return;
	foreach(lc, retired_cxts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired_cxts);
	retired_cxts = NIL;
}

/* From _PG_init. */
void
toygun_define_init(void)
{
	RegisterXactCallback(define_xact_callback, NULL);
}

static void
prepare_def_cache(void)
{
	static bool callbacks_registered = false;
	HASHCTL		ctl;
	Oid			nsp;

	if (!callbacks_registered)
	{
		toygun_on_relcache(def_cache_relcache_inval);
		CacheRegisterSyscacheCallback(PROCOID, def_cache_syscache_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, def_cache_syscache_inval, (Datum) 0);
		callbacks_registered = true;
	}
	if (def_cache != NULL && !def_cache_stale)
		return;
	if (def_cache_cxt != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired_cxts = lappend(retired_cxts, def_cache_cxt);
		MemoryContextSwitchTo(old);
	}
	def_cache_stale = false;
	def_cache_cxt = AllocSetContextCreate(TopMemoryContext, "toygun definitions",
										  ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DefKey);
	ctl.entrysize = sizeof(DefEntry);
	ctl.hcxt = def_cache_cxt;
	def_cache = hash_create("toygun definitions", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	nsp = get_namespace_oid("toygun", false);
	def_table_relids[0] = get_relname_relid("resource_type", nsp);
	def_table_relids[1] = get_relname_relid("task_type", nsp);
	/* a resource type's definition caches its triggers (triggers.c) */
	def_table_relids[2] = get_relname_relid("trigger", nsp);
}

/* Tell every backend, this one included, that a definition changed. */
static void
definitions_changed(ToygunKind kind)
{
	CacheInvalidateRelcacheByRelid(def_table_relids[kind == TOYGUN_TASK ? 1 : 0]);
	def_cache_stale = true;
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

static char *
cache_string(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? MemoryContextStrdup(def_cache_cxt, v) : NULL;
}

/* A text column read by name, NULL if the table has none (an older install's). */
static char *
cache_column(HeapTuple tup, TupleDesc desc, const char *name)
{
	int			col = SPI_fnumber(desc, name);

	return col > 0 ? cache_string(tup, desc, col) : NULL;
}

/* A task type's retry policy, from the columns of its row that exist. */
static void
read_retry_policy(ToygunDef *def, HeapTuple tup, TupleDesc desc)
{
	int			col;
	bool		isnull;
	Datum		d;

	/*
	 * define_task() checked the values; a row changed behind its back is
	 * clamped to what the settings allow, never wrapped.
	 */
	col = SPI_fnumber(desc, "max_attempts");
	if (col > 0 && !(d = SPI_getbinval(tup, desc, col, &isnull), isnull))
		def->max_attempts = Max(DatumGetInt32(d), 1);
	col = SPI_fnumber(desc, "retry_backoff");
	if (col > 0 && !(d = SPI_getbinval(tup, desc, col, &isnull), isnull))
		def->retry_backoff_ms = (int) Min(Max(interval_ms(DatumGetIntervalP(d)), 0), MAX_RETRY_BACKOFF_MS);
	col = SPI_fnumber(desc, "tick_timeout");
	if (col > 0 && !(d = SPI_getbinval(tup, desc, col, &isnull), isnull))
		def->tick_timeout_ms = (int) Min(Max(interval_ms(DatumGetIntervalP(d)), 1), INT_MAX);
}

/*
 * A task type's circuit breaker, from its column breaker if it has one (the
 * SQL of 0.3 has none), in the cache's memory. define_task() checked it; a
 * row changed behind its back that is no breaker is read as none.
 */
static ToygunBreaker *
read_breaker(HeapTuple tup, TupleDesc desc, ToygunDef *def)
{
	int			col = SPI_fnumber(desc, "breaker");
	ToygunBreaker b;
	bool		isnull;
	Datum		d;

	if (col <= 0)
		return NULL;
	d = SPI_getbinval(tup, desc, col, &isnull);
	if (isnull || !toygun_breaker_parse(DatumGetJsonbP(d), "", &b, true))
		return NULL;
	return memcpy(MemoryContextAlloc(def_cache_cxt, sizeof(ToygunBreaker)), &b, sizeof(ToygunBreaker));
}

/*
 * Look up a resource type (name NULL) or task type. Must be called inside a
 * toygun call (SPI connected). Errors with a hint if it does not exist,
 * unless missing_ok. The result belongs to the cache: do not change it.
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
	DefKey		key;
	DefEntry   *entry;
	MemoryContext old;
	char	   *v;
	bool		isnull;
	bool		found;
	int			n;

	prepare_def_cache();
	memset(&key, 0, sizeof(key));
	key.kind = kind;
	strlcpy(key.resource_type, resource_type, sizeof(key.resource_type));
	if (name)
		strlcpy(key.name, name, sizeof(key.name));
	entry = hash_search(def_cache, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->def;

	values[0] = CStringGetTextDatum(resource_type);
	if (kind == TOYGUN_RESOURCE)
	{
		Oid			argtypes[1] = {TEXTOID};

		/* d.* for parent_type and stop_state, read by column name: 0.3's table has none */
		plan = toygun_plan(&find_resource_type_plan,
						   "SELECT states, handler, fields, encrypted_fields, owner::pg_catalog.oid, search_path, d.*"
						   "  FROM ONLY toygun.resource_type d WHERE d.name = $1",
						   1, argtypes);
	}
	else
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		values[1] = CStringGetTextDatum(name);
		/*
		 * d.* for the retry policy, hooks and stop_state, read by column
		 * name: the SQL of 0.3 runs on this library until ALTER EXTENSION
		 * UPDATE, and its task_type has no such columns.
		 */
		plan = toygun_plan(&find_task_type_plan,
						   "SELECT states, handler, fields, encrypted_fields, owner::pg_catalog.oid, search_path, d.*"
						   "  FROM ONLY toygun.task_type d WHERE d.resource_type = $1 AND d.name = $2",
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
	old = MemoryContextSwitchTo(def_cache_cxt);
	def = palloc0(sizeof(ToygunDef));
	def->kind = kind;
	def->resource_type = pstrdup(resource_type);
	def->name = name ? pstrdup(name) : NULL;
	def->states = datum_text_array(tup, desc, 1, &def->nstates, &isnull);
	def->handler = cache_string(tup, desc, 2);
	def->fields = datum_text_array(tup, desc, 3, &def->nfields, &isnull);
	def->has_fields = !isnull;
	def->encrypted = datum_text_array(tup, desc, 4, &n, &isnull);
	def->nencrypted = n;
	def->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
	def->search_path = cache_string(tup, desc, 6);
	def->max_attempts = 0;
	def->retry_backoff_ms = -1;
	def->tick_timeout_ms = 0;
	if (kind == TOYGUN_TASK)
	{
		read_retry_policy(def, tup, desc);
		def->should_start = cache_column(tup, desc, "should_start");
		def->should_stop = cache_column(tup, desc, "should_stop");
		def->breaker = read_breaker(tup, desc, def);
		/* a rate limit (issue 17): the tick takes a token of it (rate.c) */
		def->rate = NULL;
		if ((v = cache_column(tup, desc, "rate_limit")) != NULL)
		{
			def->rate = palloc(sizeof(ToygunRate));
			def->rate->name = v;
		}
	}
	else
	{
		def->parent_type = cache_column(tup, desc, "parent_type");
		def->alarm_handler = cache_column(tup, desc, "alarm_handler");
	}
	def->stop_state = cache_column(tup, desc, "stop_state");
	def->field_types = read_field_types(tup, desc);
	/* 0.3's tables have no version: 1 */
	n = SPI_fnumber(desc, "version");
	def->version = 1;
	if (n > 0)
	{
		Datum		d = SPI_getbinval(tup, desc, n, &isnull);

		if (!isnull)
			def->version = Max(DatumGetInt32(d), 1);
	}
	def->upgrade = cache_column(tup, desc, "upgrade");
	/* keep: NULL, no such column (before 0.4), or one changed behind define_*'s back: forever */
	def->keep_forever = true;
	n = SPI_fnumber(desc, "keep");
	if (n > 0)
	{
		Datum		d = SPI_getbinval(tup, desc, n, &isnull);

		if (!isnull && toygun_keep_valid(DatumGetIntervalP(d)))
		{
			def->keep = *DatumGetIntervalP(d);
			def->keep_forever = false;
		}
	}
	/* priority (issue 17): none before 0.4, or one set out of range behind define_task's back: 0 */
	def->priority = 0;
	n = kind == TOYGUN_TASK ? SPI_fnumber(desc, "priority") : -1;
	if (n > 0)
	{
		Datum		d = SPI_getbinval(tup, desc, n, &isnull);

		if (!isnull && DatumGetInt16(d) >= TOYGUN_PRIORITY_MIN && DatumGetInt16(d) <= TOYGUN_PRIORITY_MAX)
			def->priority = DatumGetInt16(d);
	}
	/* concurrency limits (issue 17): a limit_id, checked by define_task (one changed behind its back: none) */
	def->flow = NULL;
	n = kind == TOYGUN_TASK ? SPI_fnumber(desc, "limit_id") : -1;
	if (n > 0)
	{
		Datum		d = SPI_getbinval(tup, desc, n, &isnull);

		if (!isnull && DatumGetInt16(d) >= 1 && DatumGetInt16(d) <= TOYGUN_FLOW_MAX_TYPES)
		{
			ToygunFlow *f = palloc0(sizeof(ToygunFlow));

			f->limit_id = DatumGetInt16(d);
			d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "max_running"), &isnull);
			f->max_running = isnull ? 0 : Max(DatumGetInt32(d), 0);
			d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "max_per_key"), &isnull);
			f->max_per_key = isnull ? 0 : Max(DatumGetInt32(d), 0);
			f->key = cache_column(tup, desc, "concurrency_key");
			if (f->key == NULL)
				f->max_per_key = 0;
			if (f->max_running > 0 || f->max_per_key > 0)
				def->flow = f;
		}
	}
	/* queue (issue 17): none before 0.4 is 0, 'default' */
	def->queue_id = 0;
	n = SPI_fnumber(desc, "queue_id");
	if (n > 0)
	{
		Datum		d = SPI_getbinval(tup, desc, n, &isnull);

		if (!isnull && DatumGetInt16(d) >= 0 && DatumGetInt16(d) < TOYGUN_MAX_QUEUES)
			def->queue_id = DatumGetInt16(d);
	}
	MemoryContextSwitchTo(old);

	entry = hash_search(def_cache, &key, HASH_ENTER, &found);
	entry->def = def;
	return def;
}

/* The owner may execute the handler or hook: directly, or through a role it is a member of. */
static void
check_execute(ToygunDef *def, Shape *s, const char *signature, Oid fn)
{
	if (pg_proc_aclcheck(fn, def->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute %s %s of %s",
						toygun_role_name(def->owner), s->noun, signature, toygun_def_label(def)),
				 errhint("Grant EXECUTE on the function to role \"%s\", or define the type again with a %s it may run.",
						 toygun_role_name(def->owner), s->noun)));
}

/*
 * A handler or hook of a definition (what: as shape_of() reads it), ready to
 * call: resolved from its stored signature, its owner still a role, allowed
 * to execute it. Resolved once per cache generation (a change to functions
 * or roles makes a new one); EXECUTE is checked at every call, since a
 * membership revoked changes neither.
 */
static FmgrInfo *
def_function(ToygunDef *def, const char *what, const char *signature, FmgrInfo *finfo,
			 bool *ready)
{
	LOCAL_FCINFO(lookup, 1);
	Datum		fn;
	const char *problem;
	Shape		s;

	shape_of(what, &s);
	/* checked at every tick: a revoked EXECUTE takes effect at once */
	if (*ready)
	{
		check_execute(def, &s, signature, finfo->fn_oid);
		return finfo;
	}

	InitFunctionCallInfoData(*lookup, NULL, 1, InvalidOid, NULL, NULL);
	lookup->args[0].value = CStringGetTextDatum(signature);
	lookup->args[0].isnull = false;
	fn = to_regprocedure(lookup);
	if (lookup->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s %s of %s does not exist", s.noun, signature, toygun_def_label(def)),
				 errhint("Create the function again, or define the type again with a new %s.", s.noun)));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(def->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that defined %s no longer exists", toygun_def_label(def)),
				 errhint("Define the type again as an existing role.")));
	/*
	 * The function of that signature may have been dropped and created
	 * again since the type was defined, as something else: calling it would
	 * read its result as the wrong type.
	 */
	problem = shape_problem(DatumGetObjectId(fn), &s);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s %s of %s is no longer a %s", s.noun, signature, toygun_def_label(def), s.noun),
				 errdetail_internal("%s", problem),
				 errhint("Create the function again returning %s, or define the type again with another %s.",
						 s.returns, s.noun)));
	check_execute(def, &s, signature, DatumGetObjectId(fn));
	fmgr_info_cxt(DatumGetObjectId(fn), finfo, def_cache_cxt);
	*ready = true;
	return finfo;
}

FmgrInfo *
toygun_def_handler(ToygunDef *def)
{
	return def_function(def, def->kind == TOYGUN_TASK ? "task" : "resource", def->handler,
						&def->handler_fn, &def->handler_ready);
}

/* Hook should_start or should_stop of a task type that has it, ready to call. */
FmgrInfo *
toygun_def_hook(ToygunDef *def, const char *hook)
{
	if (strcmp(hook, "should_start") == 0)
		return def_function(def, hook, def->should_start, &def->should_start_fn,
							&def->should_start_ready);
	return def_function(def, hook, def->should_stop, &def->should_stop_fn,
						&def->should_stop_ready);
}

/* The upgrade function of a type that has one (versions.c), ready to call. */
FmgrInfo *
toygun_def_upgrade(ToygunDef *def)
{
	return def_function(def, "upgrade", def->upgrade, &def->upgrade_fn, &def->upgrade_ready);
}

/*
 * The alarm handler of a resource type that has one (alarms.c), ready to
 * call: checked as a handler is (it still exists and is one, its owner is a
 * role that may execute it).
 */
FmgrInfo *
toygun_def_alarm_handler(ToygunDef *def)
{
	return def_function(def, "alarm_handler", def->alarm_handler, &def->alarm_handler_fn,
						&def->alarm_handler_ready);
}

/* move_states, or NULL: install scripts before 0.4 pass none. */
static Jsonb *
move_states_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_NARGS() > argno && !PG_ARGISNULL(argno) ? PG_GETARG_JSONB_P(argno) : NULL;
}

/* Redefining a type is for roles that may act for its current owner. */
static void
check_redefine(ToygunDef *existing, Oid caller)
{
	if (existing != NULL)
		toygun_check_acting_for(existing, caller);
}

/*
 * Definitions of one name are made one at a time: the ownership check and
 * the upsert must see the same committed row, or a role could define a name
 * while its owner's first definition is not yet committed, wait for it, and
 * take the type over. The lock is on the name (a hash of it: a collision
 * only makes two definitions take turns), not on the tables, so that a role
 * holding it in an open transaction holds up no other name, and no tick.
 * Taking it makes this backend accept invalidations, so that the definition
 * cache is fresh for the check that follows.
 */
static void
lock_name(ToygunKind kind, const char *resource_type, const char *name, uint16 subid,
		  LOCKMODE mode)
{
	uint32		h = hash_bytes((const unsigned char *) resource_type, strlen(resource_type));

	prepare_def_cache();
	if (name != NULL)
		h = hash_combine(h, hash_bytes((const unsigned char *) name, strlen(name)));
	LockDatabaseObject(def_table_relids[kind == TOYGUN_TASK ? 1 : 0], h, subid, mode);
}

static void
lock_definition(ToygunKind kind, const char *resource_type, const char *name)
{
	lock_name(kind, resource_type, name, 0, ExclusiveLock);
}

/* lock_definition() for renames.c, which takes it as define_* do */
void
toygun_lock_definition(ToygunKind kind, const char *resource_type, const char *name)
{
	lock_definition(kind, resource_type, name);
}

/*
 * The use of a name (issue 16): creating a resource of a type or starting a
 * run of a task type takes it in ShareLock before it reads the definition
 * it inserts under, a rename of the name in ExclusiveLock, so that no object
 * is inserted under the old name after the rename moved the others (a row
 * inserted by a transaction still open is one an UPDATE cannot see). Another
 * lock than the definition's (objsubid 1): a redefinition holds up no start.
 * Taking it accepts invalidations, so the definition read after is fresh.
 */
void
toygun_lock_name_use(ToygunKind kind, const char *resource_type, const char *name, bool rename)
{
	lock_name(kind, resource_type, name, 1, rename ? ExclusiveLock : ShareLock);
}

/* renames.c: a definition changed, for every backend */
void
toygun_definitions_changed(ToygunKind kind)
{
	definitions_changed(kind);
}

/*
 * The owner a definition gets: the role named by the owner argument, which
 * the caller must be able to act for; otherwise the existing owner of a type
 * defined before, or the caller for a new one. A member of the owner's role
 * redefining a type therefore leaves it with its owner.
 */
static Oid
definition_owner(FunctionCallInfo fcinfo, int argno, const char *label,
				 ToygunDef *existing, Oid caller)
{
	Oid			owner;

	/* the SQL of 0.1 and 0.2, until ALTER EXTENSION UPDATE, passes no owner */
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return existing != NULL ? existing->owner : caller;
	owner = PG_GETARG_OID(argno);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", owner),
				 errhint("Name an existing role as the owner of %s.", label)));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to make role \"%s\" the owner of %s",
						toygun_role_name(owner), label),
				 errdetail("The handler would run as role \"%s\", which role \"%s\" may not act for.",
						   toygun_role_name(owner), toygun_role_name(caller)),
				 errhint("Act as a member of role \"%s\", or leave owner out.",
						 toygun_role_name(owner))));
	return owner;
}

/*
 * The search_path the handler will run with: the caller's when the caller
 * is the owner (or defines the type for the first time), or else the one it
 * had, so that a member redefining another role's type does not change what
 * the owner's handler resolves. callers is the caller's, read before the
 * call switched to toygun's own. A change is announced.
 */
static char *
definition_search_path(const char *label, ToygunDef *existing, Oid owner, Oid caller,
					   char *callers)
{
	char	   *search_path;

	if (existing == NULL || owner == caller)
		search_path = callers;
	else
		search_path = pstrdup(existing->search_path);
	if (existing != NULL && strcmp(existing->search_path, search_path) != 0)
		ereport(NOTICE,
				(errmsg("search_path of %s changes from \"%s\" to \"%s\"",
						label, existing->search_path, search_path),
				 errdetail("Its handler runs with the search_path of its owner, role \"%s\", as it was when the owner defined it.",
						   toygun_role_name(owner))));
	return search_path;
}


/*
 * A redefinition that found a row it may not replace: the lock makes this
 * unreachable in READ COMMITTED, but the upsert checks again, for every
 * isolation level (a snapshot older than the lock does not see the row).
 */
static void
check_upserted(const char *label)
{
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", label),
				 errdetail("Another role defined it concurrently."),
				 errhint("Act as a member of the role that owns it.")));
}

/*
 * Insert or replace a resource type, with its parent_type (cols, vals, sets)
 * or without it.
 */
#define RESOURCE_04_COLUMNS \
	", parent_type, stop_state, alarm_handler, field_types, version, upgrade, keep"
#define RESOURCE_04_VALUES ", $9, $10, $11, $12, $13, $14, $15"
#define RESOURCE_04_SETS \
	", parent_type = excluded.parent_type, stop_state = excluded.stop_state," \
	"  alarm_handler = excluded.alarm_handler, field_types = excluded.field_types," \
	"  version = excluded.version, upgrade = excluded.upgrade, keep = excluded.keep"
#define UPSERT_RESOURCE_TYPE(cols, vals, sets) \
	"INSERT INTO toygun.resource_type AS d" \
	"  (name, states, handler, fields, encrypted_fields, owner, search_path" cols ")" \
	" VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.regrole, $7" vals ")" \
	" ON CONFLICT (name) DO UPDATE SET states = excluded.states," \
	"  handler = excluded.handler, fields = excluded.fields," \
	"  encrypted_fields = excluded.encrypted_fields, owner = excluded.owner," \
	"  search_path = excluded.search_path, defined_at = excluded.defined_at" sets \
	" WHERE $8 IS NULL OR d.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($8)"

Datum
toygun_define_resource(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *existing;
	char	   *type;
	char	   *label;
	char	  **states;
	char	  **fields;
	char	  **encrypted;
	char	   *handler = NULL;
	char	   *search_path;
	char	   *callers_search_path = definer_search_path();
	Oid			owner;
	int			nstates,
				nfields,
				nencrypted;
	char	   *parent_type = NULL;
	char	   *stop_state;
	char	   *alarm_handler = NULL;
	ToygunRedefine redefine;
	int32		version;
	char	   *upgrade;
	int16		queue_id;
	Datum		values[16];
	char		nulls[16] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[16] = {TEXTOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID,
	TEXTARRAYOID, OIDOID, TEXTOID, OIDARRAYOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT4OID, TEXTOID,
	INTERVALOID, INT2OID};

	toygun_check_not_null(fcinfo, 0, "type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	label = psprintf("resource type \"%s\"", type);
	states = check_states(fcinfo, 1, &nstates);
	fields = check_fields(fcinfo, 3, "fields", &nfields);
	encrypted = check_fields(fcinfo, 4, "encrypted_fields", &nencrypted);
	/* parent_type: older install scripts pass none */
	if (PG_NARGS() > 6 && !PG_ARGISNULL(6))
		parent_type = toygun_check_name("parent type name", PG_GETARG_TEXT_PP(6));
	stop_state = check_stop_state(fcinfo, 7, label, states, nstates);
	values[11] = check_field_types(fcinfo, RESOURCE_FIELD_TYPES_ARG, label);
	nulls[11] = values[11] ? ' ' : 'n';
	values[14] = check_keep(fcinfo, RESOURCE_KEEP_ARG, label, &nulls[14]);

	toygun_begin_call(&call);
	/* a role that may not redefine it is refused before it takes the lock */
	check_redefine(toygun_find_def(TOYGUN_RESOURCE, type, NULL, true), call.caller);
	/* a type may be its own parent type (a tree); any other must exist */
	if (parent_type != NULL && strcmp(parent_type, type) != 0 &&
		toygun_find_def(TOYGUN_RESOURCE, parent_type, NULL, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("parent type \"%s\" of %s does not exist", parent_type, label),
				 errhint("Define resource type \"%s\" first, or leave parent_type out (NULL) to allow any parent.",
						 parent_type)));
	lock_definition(TOYGUN_RESOURCE, type, NULL);
	existing = toygun_find_def(TOYGUN_RESOURCE, type, NULL, true);
	check_redefine(existing, call.caller);
	owner = definition_owner(fcinfo, 5, label, existing, call.caller);
	toygun_refuse_role_on_citus(owner, psprintf("a definition of %s", label));
	if (!PG_ARGISNULL(2))
		handler = check_function(PG_GETARG_OID(2), "resource", owner);
	/* alarm_handler: install scripts before it pass none */
	if (PG_NARGS() > ALARM_HANDLER_ARG && !PG_ARGISNULL(ALARM_HANDLER_ARG))
		alarm_handler = check_function(PG_GETARG_OID(ALARM_HANDLER_ARG), "alarm_handler", owner);
	version = check_version(fcinfo, RESOURCE_VERSION_ARG, label, existing, owner, &upgrade);
	search_path = definition_search_path(label, existing, owner, call.caller,
										 callers_search_path);
	toygun_redefine_check(TOYGUN_RESOURCE, type, NULL, label, existing, states, nstates,
						  move_states_arg(fcinfo, RESOURCE_MOVE_STATES_ARG), &redefine);
	queue_id = queue_arg(fcinfo, RESOURCE_QUEUE_ARG, label);
	values[15] = Int16GetDatum(queue_id);

	values[0] = CStringGetTextDatum(type);
	values[1] = toygun_cstring_array(states, nstates);
	values[2] = handler ? CStringGetTextDatum(handler) : (Datum) 0;
	nulls[2] = handler ? ' ' : 'n';
	values[3] = fields ? toygun_cstring_array(fields, nfields) : (Datum) 0;
	nulls[3] = fields ? ' ' : 'n';
	values[4] = toygun_cstring_array(encrypted, nencrypted > 0 ? nencrypted : 0);
	values[5] = ObjectIdGetDatum(owner);
	values[6] = CStringGetTextDatum(search_path);
	values[7] = toygun_usable_roles(call.caller, &nulls[7]);
	values[8] = parent_type ? CStringGetTextDatum(parent_type) : (Datum) 0;
	nulls[8] = parent_type ? ' ' : 'n';
	values[9] = stop_state ? CStringGetTextDatum(stop_state) : (Datum) 0;
	nulls[9] = stop_state ? ' ' : 'n';
	values[10] = alarm_handler ? CStringGetTextDatum(alarm_handler) : (Datum) 0;
	nulls[10] = alarm_handler ? ' ' : 'n';
	values[12] = Int32GetDatum(version);
	values[13] = upgrade ? CStringGetTextDatum(upgrade) : (Datum) 0;
	nulls[13] = upgrade ? ' ' : 'n';

	/*
	 * A redefinition replaces parent_type, stop_state, alarm_handler,
	 * field_types and keep as it replaces the fields. The SQL of 0.3 (fewer
	 * arguments) has a resource_type without those columns.
	 */
	if (PG_NARGS() > RESOURCE_QUEUE_ARG)
		toygun_run(toygun_plan(&upsert_resource_type_queue_plan,
							   UPSERT_RESOURCE_TYPE(RESOURCE_04_COLUMNS ", queue_id", RESOURCE_04_VALUES ", $16",
													RESOURCE_04_SETS ", queue_id = excluded.queue_id"),
							   16, argtypes),
				   values, nulls, 0);
	else if (PG_NARGS() > 6)
		toygun_run(toygun_plan(&upsert_resource_type_plan,
							   UPSERT_RESOURCE_TYPE(RESOURCE_04_COLUMNS, RESOURCE_04_VALUES, RESOURCE_04_SETS),
							   15, argtypes),
				   values, nulls, 0);
	else
		toygun_run(toygun_plan(&upsert_resource_type_0_3_plan, UPSERT_RESOURCE_TYPE("", "", ""),
							   8, argtypes),
				   values, nulls, 0);
	check_upserted(label);
	move_to_queue(TOYGUN_RESOURCE, type, NULL, existing, queue_id);
	definitions_changed(TOYGUN_RESOURCE);
	toygun_redefine_move(toygun_find_def(TOYGUN_RESOURCE, type, NULL, false), &redefine, call.caller);

	/* Resources parked for want of a handler are due again once there is one. */
	if (handler != NULL)
	{
		Oid			rearm_types[2] = {TEXTOID, TIMESTAMPTZOID};
		Datum		rearm_values[2];

		/*
		 * The time as a parameter (clock_timestamp() now), planned with its
		 * values: Citus refuses a volatile function in an UPDATE of a
		 * distributed table, and plans no generic multi-shard write.
		 */
		rearm_values[0] = values[0];
		rearm_values[1] = TimestampTzGetDatum(GetCurrentTimestamp());
		toygun_run_once("UPDATE ONLY toygun.resource SET run_at = $2"
						" WHERE type = $1 AND run_at IS NULL"
						"   AND state NOT IN ('__stop__', '__panic__')",
						2, rearm_types, rearm_values, NULL, 0);
		if (SPI_processed > 0)
			toygun_wake_at_commit();
	}
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/*
 * The columns of 0.4's task_type after the eight every version has, their
 * values and their replacement; queues and priorities (issue 17) add theirs.
 */
#define TASK_POLICY_COLUMNS \
	", max_attempts, retry_backoff, tick_timeout, should_start, should_stop, stop_state," \
	"  breaker, field_types, version, upgrade, keep"
#define TASK_POLICY_VALUES ", $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20"
#define TASK_POLICY_SETS \
	", max_attempts = excluded.max_attempts, retry_backoff = excluded.retry_backoff," \
	"  tick_timeout = excluded.tick_timeout, should_start = excluded.should_start," \
	"  should_stop = excluded.should_stop, stop_state = excluded.stop_state," \
	"  breaker = excluded.breaker, field_types = excluded.field_types," \
	"  version = excluded.version, upgrade = excluded.upgrade, keep = excluded.keep"

/*
 * Insert or replace a task type, with the retry policy's columns (cols),
 * their values (vals) and their replacement (sets), or none of them.
 */
#define UPSERT_TASK_TYPE(cols, vals, sets) \
	"INSERT INTO toygun.task_type AS d" \
	"  (resource_type, name, states, handler, fields, encrypted_fields, owner, search_path" cols ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.regrole, $8" vals ")" \
	" ON CONFLICT (resource_type, name) DO UPDATE SET states = excluded.states," \
	"  handler = excluded.handler, fields = excluded.fields," \
	"  encrypted_fields = excluded.encrypted_fields, owner = excluded.owner," \
	"  search_path = excluded.search_path, defined_at = excluded.defined_at" sets \
	" WHERE $9 IS NULL OR d.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($9)"

Datum
toygun_define_task(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *existing;
	char	   *resource_type;
	char	   *name;
	char	   *label;
	char	  **states;
	char	  **fields;
	char	  **encrypted;
	char	   *handler;
	char	   *search_path;
	char	   *callers_search_path = definer_search_path();
	Oid			owner;
	int			nstates,
				nfields,
				nencrypted;
	ToygunDef  *rtype;
	RetryPolicy policy;
	char	   *hooks[2] = {NULL, NULL};	/* should_start, should_stop */
	char	   *stop_state;
	char	   *breaker = NULL;
	ToygunRedefine redefine;
	int32		version;
	char	   *upgrade;
	int			i;
	int			priority = 0;
	int16		queue_id;
	char	   *rate_limit = NULL;
	ToygunFlow	flow;
	bool		limited;
	Datum		values[27];
	char		nulls[27] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', 'n',
	'n', 'n', 'n', 'n'};
	Oid			argtypes[27] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTARRAYOID,
		TEXTARRAYOID, OIDOID, TEXTOID, OIDARRAYOID, INT4OID, INTERVALOID, INTERVALOID,
		TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, INT4OID, TEXTOID, INTERVALOID, INT2OID, INT2OID, TEXTOID,
	INT4OID, TEXTOID, INT4OID, INT2OID};

	toygun_check_not_null(fcinfo, 0, "resource_type");
	resource_type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "name");
	name = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	label = psprintf("task type \"%s.%s\"", resource_type, name);
	states = check_states(fcinfo, 2, &nstates);
	toygun_check_not_null(fcinfo, 3, "handler");
	fields = check_fields(fcinfo, 4, "fields", &nfields);
	encrypted = check_fields(fcinfo, 5, "encrypted_fields", &nencrypted);
	check_retry_policy(fcinfo, 7, label, &policy);
	stop_state = check_stop_state(fcinfo, 12, label, states, nstates);
	if (PG_NARGS() > BREAKER_ARG && !PG_ARGISNULL(BREAKER_ARG))
	{
		ToygunBreaker b;

		(void) toygun_breaker_parse(PG_GETARG_JSONB_P(BREAKER_ARG), label, &b, false);
		breaker = toygun_breaker_text(&b);
	}
	values[16] = check_field_types(fcinfo, TASK_FIELD_TYPES_ARG, label);
	nulls[16] = values[16] ? ' ' : 'n';
	values[19] = check_keep(fcinfo, TASK_KEEP_ARG, label, &nulls[19]);
	/* priority (issue 17): NULL, or left out by a redefinition, is 0 */
	if (PG_NARGS() > TASK_PRIORITY_ARG && !PG_ARGISNULL(TASK_PRIORITY_ARG))
	{
		priority = PG_GETARG_INT32(TASK_PRIORITY_ARG);
		toygun_check_priority(priority, label);
	}
	values[20] = Int16GetDatum((int16) priority);
	/* rate_limit (issue 17): NULL, or left out by a redefinition, is none */
	if (PG_NARGS() > TASK_RATE_LIMIT_ARG && !PG_ARGISNULL(TASK_RATE_LIMIT_ARG))
	{
		rate_limit = text_to_cstring(PG_GETARG_TEXT_PP(TASK_RATE_LIMIT_ARG));
		values[22] = CStringGetTextDatum(rate_limit);
		nulls[22] = ' ';
	}
	/* max_running, concurrency_key, max_per_key (issue 17): NULL, or left out by a redefinition, is none */
	limited = toygun_flow_parse(fcinfo, TASK_MAX_RUNNING_ARG, label, fields, nfields, fields != NULL,
								encrypted, nencrypted, priority, &flow);

	toygun_begin_call(&call);
	if (limited)
		toygun_refuse_on_citus("define_task with max_running or max_per_key",
							   "The live runs of a type with concurrency limits get their flow key from toygun._flow_key(), a volatile function Citus refuses in an UPDATE of a distributed table; and the limits are counted per node (doc/citus.md, section 2.3).");
	rtype = toygun_find_def(TOYGUN_RESOURCE, resource_type, NULL, false);
	toygun_check_acting_for(rtype, call.caller);
	/* a role that may not redefine it is refused before it takes the lock */
	check_redefine(toygun_find_def(TOYGUN_TASK, resource_type, name, true), call.caller);
	lock_definition(TOYGUN_TASK, resource_type, name);
	rtype = toygun_find_def(TOYGUN_RESOURCE, resource_type, NULL, false);
	toygun_check_acting_for(rtype, call.caller);
	existing = toygun_find_def(TOYGUN_TASK, resource_type, name, true);
	check_redefine(existing, call.caller);
	owner = definition_owner(fcinfo, 6, label, existing, call.caller);
	toygun_refuse_role_on_citus(owner, psprintf("a definition of %s", label));
	/* starts check this again: membership can be revoked later */
	toygun_check_task_owner(rtype, label, owner);
	/* the limit exists, and the owner may use it; its row is locked against a drop */
	if (rate_limit != NULL)
		toygun_rate_check_use(rate_limit, owner, label);
	handler = check_function(PG_GETARG_OID(3), "task", owner);
	for (i = 0; i < 2; i++)
		if (PG_NARGS() > 10 + i && !PG_ARGISNULL(10 + i))
			hooks[i] = check_function(PG_GETARG_OID(10 + i), i == 0 ? "should_start" : "should_stop",
									  owner);
	version = check_version(fcinfo, TASK_VERSION_ARG, label, existing, owner, &upgrade);
	search_path = definition_search_path(label, existing, owner, call.caller,
										 callers_search_path);
	toygun_redefine_check(TOYGUN_TASK, resource_type, name, label, existing, states, nstates,
						  move_states_arg(fcinfo, TASK_MOVE_STATES_ARG), &redefine);
	queue_id = queue_arg(fcinfo, TASK_QUEUE_ARG, label);
	values[21] = Int16GetDatum(queue_id);
	/* a limited type keeps its limit_id, a new one takes the lowest free (54000 past 64) */
	if (limited)
	{
		flow.limit_id = toygun_flow_assign(resource_type, name, label);
		values[23] = Int32GetDatum(flow.max_running);
		nulls[23] = flow.max_running > 0 ? ' ' : 'n';
		values[24] = flow.key ? CStringGetTextDatum(flow.key) : (Datum) 0;
		nulls[24] = flow.key ? ' ' : 'n';
		values[25] = Int32GetDatum(flow.max_per_key);
		nulls[25] = flow.max_per_key > 0 ? ' ' : 'n';
		values[26] = Int16GetDatum(flow.limit_id);
		nulls[26] = ' ';
	}

	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(name);
	values[2] = toygun_cstring_array(states, nstates);
	values[3] = CStringGetTextDatum(handler);
	values[4] = fields ? toygun_cstring_array(fields, nfields) : (Datum) 0;
	nulls[4] = fields ? ' ' : 'n';
	values[5] = toygun_cstring_array(encrypted, nencrypted > 0 ? nencrypted : 0);
	values[6] = ObjectIdGetDatum(owner);
	values[7] = CStringGetTextDatum(search_path);
	values[8] = toygun_usable_roles(call.caller, &nulls[8]);
	memcpy(&values[9], policy.values, sizeof(policy.values));
	memcpy(&nulls[9], policy.nulls, sizeof(policy.nulls));
	for (i = 0; i < 3; i++)
	{
		char	   *v = i < 2 ? hooks[i] : stop_state;

		values[12 + i] = v ? CStringGetTextDatum(v) : (Datum) 0;
		nulls[12 + i] = v ? ' ' : 'n';
	}
	values[15] = breaker ? DirectFunctionCall1(jsonb_in, CStringGetDatum(breaker)) : (Datum) 0;
	nulls[15] = breaker ? ' ' : 'n';
	values[17] = Int32GetDatum(version);
	values[18] = upgrade ? CStringGetTextDatum(upgrade) : (Datum) 0;
	nulls[18] = upgrade ? ' ' : 'n';
	/*
	 * A redefinition replaces the retry policy, hooks, stop_state,
	 * breaker, field_types and keep as it replaces the fields: what is left out is NULL again (the
	 * settings, no hook, no breaker). The SQL of 0.3 (ten arguments) has a
	 * task_type with only the retry policy's columns, and that of 0.2 (seven)
	 * none of them.
	 */
	if (PG_NARGS() > TASK_QUEUE_ARG)
		toygun_run(toygun_plan(&upsert_task_type_queue_plan,
							   UPSERT_TASK_TYPE(TASK_POLICY_COLUMNS ", priority, queue_id, rate_limit,"
												"  max_running, concurrency_key, max_per_key, limit_id",
												TASK_POLICY_VALUES ", $21, $22, $23, $24, $25, $26, $27",
												TASK_POLICY_SETS ", priority = excluded.priority,"
												"  queue_id = excluded.queue_id, rate_limit = excluded.rate_limit,"
												"  max_running = excluded.max_running,"
												"  concurrency_key = excluded.concurrency_key,"
												"  max_per_key = excluded.max_per_key, limit_id = excluded.limit_id"),
							   27, argtypes),
				   values, nulls, 0);
	else if (PG_NARGS() > BREAKER_ARG)
		toygun_run(toygun_plan(&upsert_task_type_plan,
							   UPSERT_TASK_TYPE(TASK_POLICY_COLUMNS, TASK_POLICY_VALUES, TASK_POLICY_SETS),
							   20, argtypes),
				   values, nulls, 0);
	else if (PG_NARGS() > 7)
		toygun_run(toygun_plan(&upsert_task_type_retry_plan,
							   UPSERT_TASK_TYPE(", max_attempts, retry_backoff, tick_timeout",
												", $10, $11, $12",
												", max_attempts = excluded.max_attempts,"
												"  retry_backoff = excluded.retry_backoff,"
												"  tick_timeout = excluded.tick_timeout"),
							   12, argtypes),
				   values, nulls, 0);
	else
		toygun_run(toygun_plan(&upsert_task_type_0_3_plan, UPSERT_TASK_TYPE("", "", ""), 9, argtypes),
				   values, nulls, 0);
	check_upserted(label);
	/* defined again without a breaker: the runs it held go on now */
	if (PG_NARGS() > BREAKER_ARG && breaker == NULL)
		toygun_breaker_dropped(resource_type, name, existing ? existing->queue_id : 0,
							   existing && existing->flow ? existing->flow->limit_id : 0);
	move_to_queue(TOYGUN_TASK, resource_type, name, existing, queue_id);
	definitions_changed(TOYGUN_TASK);
	/* limits given, changed or taken away (issue 17): the live runs' flow_key again */
	if (limited || (existing && existing->flow))
	{
		ToygunFlow *was = existing ? existing->flow : NULL;

		if (!limited || was == NULL || was->limit_id != flow.limit_id ||
			(was->key == NULL) != (flow.key == NULL) ||
			(was->key != NULL && strcmp(was->key, flow.key) != 0))
		{
			/*
			 * As move_to_queue: a start that read the old limits and has
			 * not committed inserted a run this rekey would not see, left
			 * with the old key for good (in task_flow_idx under a limit_id
			 * no worker claims, once the type has no limits): wait for it.
			 */
			toygun_lock_name_use(TOYGUN_TASK, resource_type, name, true);
			toygun_flow_rekey(resource_type, name, queue_id, limited);
		}
	}
	/* a default above or below 0: the workers look for the level's runs from its first start */
	toygun_levels_note_at_commit(queue_id, priority);
	toygun_redefine_move(toygun_find_def(TOYGUN_TASK, resource_type, name, false), &redefine,
						 call.caller);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}
