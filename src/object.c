/*
 * object.c
 *		Resources and tasks as stored rows: locking one, claiming due ones for
 *		the worker, transitions made in memory, and saving state, attrs, step,
 *		run_at and history together. The SQL functions that create and move
 *		objects are in commands.c.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/inval.h"

#include "toygun.h"

static SPIPlanPtr save_task_plan;
static SPIPlanPtr save_resource_plan;
static SPIPlanPtr save_task_plan_03;	/* before the update to 0.4 */
static SPIPlanPtr save_resource_plan_03;
static SPIPlanPtr park_tasks_plan;
static SPIPlanPtr park_tasks_plan_03;
static SPIPlanPtr rearm_tasks_plan;

/*
 * The columns every read of an object returns, named: the SELECT lists below
 * are written in this order, and object_from_tuple() reads them by these
 * names. Locks read a task with its resource's state; claims read it without
 * the join, since a task of a stopped resource is never due.
 */
typedef enum ObjectColumn
{
	COL_ROW = 1,				/* the whole row, as a composite datum */
	COL_STATE,
	COL_ATTRS,
	COL_STEP,
	COL_ATTEMPTS,
	COL_LAST_ERROR,
	COL_RESOURCE_ID,			/* tasks */
	COL_NAME,					/* tasks */
	COL_TYPE,
	COL_RESOURCE_STATE,			/* tasks, when joined */
	COL_ID,
	COL_DUE,					/* run_at <= now() */
	COL_TID,
	COL_RUN_AT,
	COL_VERSION,				/* the schema version; 1 where the table has none (0.3) */
	NCOLUMNS = COL_VERSION
} ObjectColumn;

/* version is "t.version", or "1" for 0.3's tables (without the column) */
#define TASK_COLUMNS_NO_JOIN(rstate, version) \
	"t, t.state, t.attrs, t.step, t.attempts, t.last_error, t.resource_id, t.name," \
	" t.resource_type, " rstate ", t.id, t.run_at <= pg_catalog.now(), t.ctid, t.run_at, " version \
	" FROM ONLY toygun.task t"
#define TASK_COLUMNS(version) \
	TASK_COLUMNS_NO_JOIN("r.state", version) " LEFT JOIN ONLY toygun.resource r ON r.id = t.resource_id"
#define RESOURCE_COLUMNS(version) \
	"r, r.state, r.attrs, r.step, r.attempts, r.last_error, NULL::pg_catalog.uuid, NULL::pg_catalog.text," \
	" r.type, NULL::pg_catalog.text, r.id, r.run_at <= pg_catalog.now(), r.ctid, r.run_at, " version \
	" FROM ONLY toygun.resource r"

#define LOCK_TASK_SQL(version) "SELECT " TASK_COLUMNS(version) " WHERE t.id = $1 FOR UPDATE OF t"
#define LOCK_RESOURCE_SQL(version) "SELECT " RESOURCE_COLUMNS(version) " WHERE r.id = $1 FOR UPDATE"

/* Due objects, oldest first, from run_at $2 on; at most $1 of them. */
#define CLAIM_SQL(columns, alias) \
	"SELECT " columns " WHERE " alias ".run_at <= pg_catalog.now() AND " alias ".run_at >= $2" \
	" ORDER BY " alias ".run_at LIMIT $1 FOR UPDATE OF " alias " SKIP LOCKED"

/*
 * Flow control (issue 17): a claim reads one claim index. Tasks of queue 0
 * at level 0 are task_due_idx; every other (queue, level) is its range of
 * task_lane_idx ($4, $3). Resources of queue 0 are resource_due_idx, the
 * others' resource_queue_idx ($3). Each repeats its index's predicate
 * literally, so that a generic plan matches it (test/sql/claim_plans.sql
 * EXPLAINs these very strings, through toygun_claim_sql_text()).
 */
#define CLAIM_TAIL(alias) \
	" AND " alias ".run_at <= pg_catalog.now() AND " alias ".run_at >= $2" \
	" ORDER BY " alias ".run_at LIMIT $1 FOR UPDATE OF " alias " SKIP LOCKED"
#define TASK_CLAIM_COLUMNS TASK_COLUMNS_NO_JOIN("NULL::pg_catalog.text", "t.version")
#define TASK_DUE_PREDICATE "t.run_at IS NOT NULL AND t.queue_id = 0 AND t.priority = 0 AND t.flow_key IS NULL"
#define TASK_LANE_PREDICATE "t.run_at IS NOT NULL AND (t.queue_id <> 0 OR t.priority <> 0) AND t.flow_key IS NULL"
#define TASK_FLOW_PREDICATE "t.run_at IS NOT NULL AND t.flow_key IS NOT NULL"
static const char *const claim_task_due_sql =
"SELECT " TASK_CLAIM_COLUMNS " WHERE " TASK_DUE_PREDICATE CLAIM_TAIL("t");
static const char *const claim_task_lane_sql =
"SELECT " TASK_CLAIM_COLUMNS " WHERE " TASK_LANE_PREDICATE
" AND t.queue_id = $4 AND t.priority = $3" CLAIM_TAIL("t");
/* Runs of a limited type's key $3 (issue 17, flow.c), in task_flow_idx. */
static const char *const claim_task_flow_sql =
"SELECT " TASK_CLAIM_COLUMNS " WHERE " TASK_FLOW_PREDICATE " AND t.flow_key = $3" CLAIM_TAIL("t");

/*
 * The keys of a limited type in [$1, $2) of task_flow_idx with scheduled
 * runs, and each one's earliest run_at: a loose index scan, one descent
 * per key, whatever the number of its runs (issue 17, flow.c).
 */
static const char *const flow_keys_sql =
"WITH RECURSIVE k(key, at) AS ("
"  (SELECT t.flow_key, t.run_at FROM ONLY toygun.task t"
"    WHERE " TASK_FLOW_PREDICATE " AND t.flow_key >= $1 AND t.flow_key < $2"
"    ORDER BY t.flow_key, t.run_at LIMIT 1)"
"  UNION ALL"
"  SELECT n.key, n.at FROM k, LATERAL"
"    (SELECT t.flow_key AS key, t.run_at AS at FROM ONLY toygun.task t"
"      WHERE " TASK_FLOW_PREDICATE " AND t.flow_key > k.key AND t.flow_key < $2"
"      ORDER BY t.flow_key, t.run_at LIMIT 1) n)"
"SELECT key, at FROM k LIMIT $3";

static const char *const claim_resource_due_sql =
"SELECT " RESOURCE_COLUMNS("r.version") " WHERE r.run_at IS NOT NULL AND r.queue_id = 0" CLAIM_TAIL("r");
static const char *const claim_resource_queue_sql =
"SELECT " RESOURCE_COLUMNS("r.version") " WHERE r.run_at IS NOT NULL AND r.queue_id <> 0"
" AND r.queue_id = $3" CLAIM_TAIL("r");

/*
 * The levels of queue $1 with scheduled runs in task_lane_idx, due or not:
 * a loose index scan, one descent per level (0 too, for a queue other
 * than 0: one descent that stops at its first row).
 */
static const char *const census_sql =
"WITH RECURSIVE l(p) AS ("
"  (SELECT t.priority FROM ONLY toygun.task t"
"    WHERE " TASK_LANE_PREDICATE " AND t.queue_id = $1"
"    ORDER BY t.priority LIMIT 1)"
"  UNION ALL"
"  SELECT (SELECT t.priority FROM ONLY toygun.task t"
"           WHERE " TASK_LANE_PREDICATE " AND t.queue_id = $1 AND t.priority > l.p"
"           ORDER BY t.priority LIMIT 1)"
"    FROM l WHERE l.p IS NOT NULL)"
"SELECT p FROM l WHERE p IS NOT NULL";

/*
 * The earliest run_at of queue $1 through each of its claim indexes: level
 * 0 of queue 0 (task_due_idx), each level $2 of task_lane_idx (a min()
 * over the whole lane would read every sleeper), and its resources.
 */
static const char *const next_due_sql =
"SELECT LEAST((SELECT min(t.run_at) FROM ONLY toygun.task t"
"               WHERE " TASK_DUE_PREDICATE " AND $1 = 0),"
"             (SELECT min(x.run_at) FROM pg_catalog.unnest($2::pg_catalog.int2[]) AS l(p),"
"                LATERAL (SELECT t.run_at FROM ONLY toygun.task t"
"                          WHERE " TASK_LANE_PREDICATE " AND t.queue_id = $1 AND t.priority = l.p"
"                          ORDER BY t.run_at LIMIT 1) x),"
"             (SELECT min(r.run_at) FROM ONLY toygun.resource r"
"               WHERE r.run_at IS NOT NULL AND r.queue_id = 0 AND $1 = 0),"
"             (SELECT min(r.run_at) FROM ONLY toygun.resource r"
"               WHERE r.run_at IS NOT NULL AND r.queue_id <> 0 AND r.queue_id = $1))";

/* A claim statement by name, for test/sql/claim_plans.sql (status.c's toygun_claim_sql). */
const char *
toygun_claim_sql_text(const char *which)
{
	if (strcmp(which, "task_due") == 0)
		return claim_task_due_sql;
	if (strcmp(which, "task_lane") == 0)
		return claim_task_lane_sql;
	if (strcmp(which, "resource_due") == 0)
		return claim_resource_due_sql;
	if (strcmp(which, "resource_queue") == 0)
		return claim_resource_queue_sql;
	if (strcmp(which, "census") == 0)
		return census_sql;
	if (strcmp(which, "task_flow") == 0)
		return claim_task_flow_sql;
	if (strcmp(which, "flow_keys") == 0)
		return flow_keys_sql;
	if (strcmp(which, "next_due") == 0)
		return next_due_sql;
	return NULL;
}

/*
 * Whether the object tables have 0.4's version column: the reads' plans
 * come in two variants (a library newer than the installed extension reads
 * 0.3's tables until ALTER EXTENSION UPDATE).
 */
static int
versioned(ToygunKind kind)
{
	return toygun_has_column(kind == TOYGUN_TASK ? "task" : "resource", "version") ? 1 : 0;
}

static Datum
copy_col(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Form_pg_attribute att = TupleDescAttr(desc, col - 1);
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
}

/* Whether the last query found the object; an error if not, unless missing_ok. */
static bool
object_found(ToygunKind kind, pg_uuid_t *id, bool missing_ok)
{
	if (SPI_processed > 0)
		return true;
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s %s does not exist", toygun_kind_name(kind), toygun_uuid_text(id))));
	return false;
}

/* A text column as a C string, or NULL. */
#define TEXT_OR_NULL(c) (nulls[(c) - 1] ? NULL : TextDatumGetCString(values[(c) - 1]))

/*
 * An object from a row of TASK_COLUMNS or RESOURCE_COLUMNS, deformed once
 * (reading its columns one by one walks the row again for each).
 */
static ToygunObject *
object_from_tuple(ToygunKind kind, HeapTuple tup, TupleDesc desc)
{
	ToygunObject *obj = palloc0(sizeof(ToygunObject));
	Datum		values[NCOLUMNS];
	bool		nulls[NCOLUMNS];

	if (desc->natts != NCOLUMNS)
		elog(ERROR, "an object read returned %d columns, not %d", desc->natts, NCOLUMNS);
	heap_deform_tuple(tup, desc, values, nulls);
	obj->kind = kind;
	obj->row = datumCopy(values[COL_ROW - 1], false, -1);
	obj->state = TEXT_OR_NULL(COL_STATE);
	obj->attrs = DatumGetJsonbPCopy(values[COL_ATTRS - 1]);
	obj->step = DatumGetInt64(values[COL_STEP - 1]);
	obj->attempts = DatumGetInt32(values[COL_ATTEMPTS - 1]);
	obj->last_error = TEXT_OR_NULL(COL_LAST_ERROR);
	obj->id = *DatumGetUUIDP(values[COL_ID - 1]);
	if (kind == TOYGUN_TASK)
	{
		obj->resource_id = *DatumGetUUIDP(values[COL_RESOURCE_ID - 1]);
		obj->name = TEXT_OR_NULL(COL_NAME);
		obj->resource_state = TEXT_OR_NULL(COL_RESOURCE_STATE);
	}
	obj->type = TEXT_OR_NULL(COL_TYPE);
	obj->due = !nulls[COL_DUE - 1] && DatumGetBool(values[COL_DUE - 1]);
	obj->tid = *((ItemPointer) DatumGetPointer(values[COL_TID - 1]));
	obj->due_at = nulls[COL_RUN_AT - 1] ? DT_NOEND : DatumGetTimestampTz(values[COL_RUN_AT - 1]);
	/* a table rewritten after this moves the row: see toygun_store_update() */
	obj->generation = toygun_store_generation();
	/* a worker's own changes are its role's; a call by hand names its caller */
	obj->actor = GetUserId();
	obj->version = DatumGetInt32(values[COL_VERSION - 1]);
	return obj;
}

/*
 * Lock a resource or task row FOR UPDATE and read it. With skip_locked, a
 * row locked by someone else reads as missing. Returns NULL if there is no
 * such row and missing_ok.
 */
ToygunObject *
toygun_lock_object(ToygunKind kind, pg_uuid_t *id, bool missing_ok, bool skip_locked)
{
	static SPIPlanPtr plans[2][2][2];	/* [kind][versioned][skip_locked] */
	static const char *const sql[2][2][2] = {
		{{LOCK_RESOURCE_SQL("1"), LOCK_RESOURCE_SQL("1") " SKIP LOCKED"},
		 {LOCK_RESOURCE_SQL("r.version"), LOCK_RESOURCE_SQL("r.version") " SKIP LOCKED"}},
		{{LOCK_TASK_SQL("1"), LOCK_TASK_SQL("1") " SKIP LOCKED"},
		 {LOCK_TASK_SQL("t.version"), LOCK_TASK_SQL("t.version") " SKIP LOCKED"}}};
	int			k = kind == TOYGUN_TASK ? 1 : 0;
	int			v = versioned(kind);
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	ToygunObject *obj;

	plan = toygun_plan(&plans[k][v][skip_locked ? 1 : 0], sql[k][v][skip_locked ? 1 : 0], 1, argtypes);
	values[0] = UUIDPGetDatum(id);
	toygun_run(plan, values, NULL, 1);
	if (!object_found(kind, id, missing_ok))
		return NULL;
	obj = object_from_tuple(kind, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	SPI_freetuptable(SPI_tuptable);
	if (kind == TOYGUN_TASK && obj->resource_state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("resource %s of task %s does not exist",
						toygun_uuid_text(&obj->resource_id), toygun_uuid_text(&obj->id))));
	return obj;
}

/* The objects a claim statement just locked, into objs: how many. */
static int
claimed(ToygunKind kind, ToygunObject **objs)
{
	int			n = (int) SPI_processed;
	int			i;

	for (i = 0; i < n; i++)
		objs[i] = object_from_tuple(kind, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * Claim up to limit due objects of one kind for the worker to tick: locked
 * FOR UPDATE SKIP LOCKED, oldest due first, from run_at "from" on (the
 * worker's claim floor; DT_NOBEGIN for all). Fills objs, each with its
 * due_at, and returns how many it claimed.
 */
int
toygun_claim_objects(ToygunKind kind, int queue, int limit, TimestampTz from, ToygunObject **objs)
{
	static SPIPlanPtr plans[2][2];	/* [kind][versioned], 0.3's tables */
	static SPIPlanPtr queue_plans[2][2];	/* [kind][queue 0, another] */
	static const char *const sql[2][2] = {
		{CLAIM_SQL(RESOURCE_COLUMNS("1"), "r"), CLAIM_SQL(RESOURCE_COLUMNS("r.version"), "r")},
		{CLAIM_SQL(TASK_COLUMNS_NO_JOIN("NULL::pg_catalog.text", "1"), "t"),
		 CLAIM_SQL(TASK_COLUMNS_NO_JOIN("NULL::pg_catalog.text", "t.version"), "t")}};
	int			k = kind == TOYGUN_TASK ? 1 : 0;
	Oid			argtypes[3] = {INT4OID, TIMESTAMPTZOID, INT2OID};
	Datum		values[3];

	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(from);
	values[2] = Int16GetDatum((int16) queue);
	if (!toygun_has_queues())
	{
		int			v = versioned(kind);

		/* before the update to 0.4, every object is in queue 0 */
		if (queue != 0)
			return 0;
		toygun_run(toygun_plan(&plans[k][v], sql[k][v], 2, argtypes), values, NULL, limit);
	}
	else if (kind == TOYGUN_TASK && queue != 0)
		return toygun_claim_level(queue, 0, limit, from, objs);
	else
		toygun_run(toygun_plan(&queue_plans[k][queue != 0],
							   kind == TOYGUN_TASK ? claim_task_due_sql
							   : queue == 0 ? claim_resource_due_sql : claim_resource_queue_sql,
							   queue == 0 ? 2 : 3, argtypes),
				   values, NULL, limit);
	return claimed(kind, objs);
}

/*
 * Claim up to limit due runs of one (queue, priority level) of
 * task_lane_idx (issue 17), oldest due first from run_at from on, as
 * toygun_claim_objects() claims level 0 of queue 0. Only on 0.4's tables.
 */
int
toygun_claim_level(int queue, int priority, int limit, TimestampTz from, ToygunObject **objs)
{
	static SPIPlanPtr plan;
	Oid			argtypes[4] = {INT4OID, TIMESTAMPTZOID, INT2OID, INT2OID};
	Datum		values[4];

	if (!toygun_has_queues())
		return 0;
	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(from);
	values[2] = Int16GetDatum((int16) priority);
	values[3] = Int16GetDatum((int16) queue);
	toygun_run(toygun_plan(&plan, claim_task_lane_sql, 4, argtypes), values, NULL, limit);
	return claimed(TOYGUN_TASK, objs);
}

/*
 * Claim up to limit due runs of one key of a limited type (issue 17), in
 * task_flow_idx, oldest due first. flow.c took a slot for each first.
 */
int
toygun_claim_flow_key(int64 key, int limit, ToygunObject **objs)
{
	static SPIPlanPtr plan;
	Oid			argtypes[3] = {INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[3];

	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(DT_NOBEGIN);
	values[2] = Int64GetDatum(key);
	toygun_run(toygun_plan(&plan, claim_task_flow_sql, 3, argtypes), values, NULL, limit);
	return claimed(TOYGUN_TASK, objs);
}

/*
 * The keys in [from, end) of task_flow_idx with scheduled runs, at most
 * limit of them in key order, each with its earliest run_at (issue 17).
 */
int
toygun_flow_keys(int64 from, int64 end, int limit, int64 *keys, TimestampTz *at)
{
	static SPIPlanPtr plan;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	uint64		i;
	int			n = 0;

	values[0] = Int64GetDatum(from);
	values[1] = Int64GetDatum(end);
	values[2] = Int32GetDatum(limit);
	toygun_run(toygun_plan(&plan, flow_keys_sql, 3, argtypes), values, NULL, 0);
	for (i = 0; i < SPI_processed && n < limit; i++)
	{
		bool		isnull1,
					isnull2;
		Datum		k = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull1);
		Datum		a = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull2);

		if (isnull1 || isnull2)
			continue;
		keys[n] = DatumGetInt64(k);
		at[n] = DatumGetTimestampTz(a);
		n++;
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * The levels other than 0 of a queue with scheduled runs (issue 17), due
 * or not, under the caller's snapshot. Published to shared memory by the
 * caller (toygun_levels_census_begin/end around the snapshot).
 */
void
toygun_levels_census(int queue, ToygunLevels *found)
{
	static SPIPlanPtr plan;
	Oid			argtypes[1] = {INT2OID};
	Datum		values[1];
	uint64		i;

	memset(found, 0, sizeof(*found));
	if (!toygun_has_queues())
		return;
	values[0] = Int16GetDatum((int16) queue);
	toygun_run(toygun_plan(&plan, census_sql, 1, argtypes), values, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int			p = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && p >= TOYGUN_PRIORITY_MIN && p <= TOYGUN_PRIORITY_MAX && p != 0)
			found->bits[(p - TOYGUN_PRIORITY_MIN) / 64] |= UINT64CONST(1) << ((p - TOYGUN_PRIORITY_MIN) % 64);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * The earliest run_at of anything a worker of the queue claims, given the
 * levels in use (*levels); false if nothing is scheduled.
 */
bool
toygun_next_due(int queue, ToygunLevels *levels, TimestampTz *next)
{
	static SPIPlanPtr plan;
	static SPIPlanPtr plan_03;
	Datum		elems[TOYGUN_PRIORITY_LEVELS];
	int			nelems = 0;
	int			p;
	Oid			argtypes[2] = {INT2OID, INT2ARRAYOID};
	Datum		values[2];
	Datum		d;
	bool		isnull;

	if (!toygun_has_queues())
		toygun_run(toygun_plan(&plan_03,
							   "SELECT LEAST((SELECT min(run_at) FROM ONLY toygun.task WHERE run_at IS NOT NULL),"
							   "             (SELECT min(run_at) FROM ONLY toygun.resource WHERE run_at IS NOT NULL))",
							   0, NULL),
				   NULL, NULL, 1);
	else
	{
		for (p = TOYGUN_PRIORITY_MIN; p <= TOYGUN_PRIORITY_MAX; p++)
		{
			int			bit = p - TOYGUN_PRIORITY_MIN;

			/* level 0 of a queue other than 0 is in task_lane_idx too */
			if ((p == 0 && queue != 0) ||
				(p != 0 && (levels->bits[bit / 64] & (UINT64CONST(1) << (bit % 64)))))
				elems[nelems++] = Int16GetDatum((int16) p);
		}
		values[0] = Int16GetDatum((int16) queue);
		values[1] = PointerGetDatum(construct_array(elems, nelems, INT2OID, sizeof(int16), true,
													TYPALIGN_SHORT));
		toygun_run(toygun_plan(&plan, next_due_sql, 2, argtypes), values, NULL, 1);
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		*next = DatumGetTimestampTz(d);
	SPI_freetuptable(SPI_tuptable);
	return !isnull;
}

/* Is there a task (a run) with this id? */
bool
toygun_is_task(pg_uuid_t *id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];

	ToygunShardGroup *volatile saved = toygun_citus_group;

	values[0] = UUIDPGetDatum(id);

	/*
	 * On a Citus node, asked (by a start in a handler) of the run the
	 * worker is ticking: it is in the batch's shard group, which the
	 * handler's call suspended, and a lookup by id through Citus is not
	 * routable (doc/citus.md §2.1).
	 */
	toygun_citus_resume();
	PG_TRY();
	{
		toygun_run(toygun_plan(&plan, "SELECT FROM ONLY toygun.task WHERE id = $1", 1, argtypes),
				   values, NULL, 1);
	}
	PG_FINALLY();
	{
		toygun_citus_group = saved;
	}
	PG_END_TRY();
	return SPI_processed > 0;
}

/* The definition governing an object. */
ToygunDef *
toygun_object_def(ToygunObject *obj)
{
	return toygun_find_def(obj->kind, obj->type, obj->name, false);
}

/*
 * The definition of an object locked after its definition was read: API
 * calls read it first, to check the caller's right without a lock, and a
 * rename (issue 16) that committed while the lock was awaited changed the
 * object's names or states, and its definition with them. The lock's wait
 * took no lock that accepts invalidations: accept them here.
 */
ToygunDef *
toygun_locked_def(ToygunObject *obj)
{
	AcceptInvalidationMessages();
	return toygun_object_def(obj);
}

/*
 * The definition governing an object, read without locking it, once the
 * caller is known to have the right on it. API calls check this
 * before they lock anything: a role without privileges must not be able to
 * hold a lock that ticks, moves or rotate_secrets() would wait for. NULL if
 * there is no such object and missing_ok. With caller InvalidOid, the
 * caller checks what it needs itself. A rename (issue 16) may change the
 * object's type, task name or state before it is locked: once it is, read
 * its definition again with toygun_locked_def().
 */
ToygunDef *
toygun_def_for_caller(ToygunKind kind, pg_uuid_t *id, Oid caller, ToygunRight right,
					  bool missing_ok)
{
	static SPIPlanPtr task_plan = NULL;
	static SPIPlanPtr resource_plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	char	   *type;
	char	   *name;
	ToygunDef  *def;

	/*
	 * On Citus (toygun.distribute()) runs are placed by their resource's
	 * id, which a run's id does not carry: Citus cannot route a statement
	 * by the run's id alone, and would fail it with an error of its own.
	 * The worker's statements (a shard group active) read the node's
	 * shards instead (citus.c).
	 */
	if (kind == TOYGUN_TASK && toygun_citus_group == NULL && toygun_definitions_on_citus())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a run cannot be found by its id alone on Citus yet (%s)", toygun_uuid_text(id)),
				 errdetail("toygun.distribute() places runs by their resource's id, and a run's id does not say which node holds it."),
				 errhint("On Citus, create resources, start runs and define types; each node's worker ticks the runs it holds. The README's section on Citus lists the calls that work.")));

	values[0] = UUIDPGetDatum(id);
	if (kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&task_plan,
							   "SELECT resource_type, name FROM ONLY toygun.task WHERE id = $1",
							   1, argtypes),
				   values, NULL, 1);
	else
		toygun_run(toygun_plan(&resource_plan,
							   "SELECT type, NULL::pg_catalog.text FROM ONLY toygun.resource WHERE id = $1",
							   1, argtypes),
				   values, NULL, 1);
	if (!object_found(kind, id, missing_ok))
		return NULL;
	type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	def = toygun_find_def(kind, type, name, false);
	if (OidIsValid(caller))
		toygun_check_right(def, caller, right);
	return def;
}

bool
toygun_state_declared(ToygunDef *def, const char *state)
{
	return toygun_in_list(state, def->states, def->nstates);
}

/* Is the object in its type's stop_state (a stop under way)? */
bool
toygun_in_stop_state(ToygunObject *obj, ToygunDef *def)
{
	return def->stop_state != NULL && strcmp(obj->state, def->stop_state) == 0;
}

static char *
declared_list(ToygunDef *def)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < def->nstates; i++)
		if (strcmp(def->states[i], TOYGUN_NEW) != 0)
			appendStringInfo(&buf, "%s, ", def->states[i]);
	appendStringInfoString(&buf, TOYGUN_STOP ", " TOYGUN_PANIC);
	return buf.data;
}

/* A transition may enter a declared state, __stop__ or __panic__. */
static void
check_target(ToygunDef *def, const char *to_state)
{
	if (strcmp(to_state, TOYGUN_STOP) == 0 || strcmp(to_state, TOYGUN_PANIC) == 0 ||
		(toygun_state_declared(def, to_state) && strcmp(to_state, TOYGUN_NEW) != 0))
		return;
	toygun_check_name_cstr("state name", to_state);
	if (strncmp(to_state, "__", 2) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("state \"%s\" cannot be entered by a transition", to_state),
				 errdetail("Of toygun's own states, only " TOYGUN_STOP " and " TOYGUN_PANIC " can be entered.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("state \"%s\" is not declared by %s", to_state, toygun_def_label(def)),
			 errhint("The states it can enter are: %s.", declared_list(def))));
}

/*
 * The attrs a new run starts with, made from the args of a start. Every path
 * that starts runs (start_task, periodic starts, triggers) prepares its args here, so
 * they all check and transform args the same way.
 */
Jsonb *
toygun_start_args(ToygunDef *def, Jsonb *args)
{
	toygun_check_object_attrs("args", args);
	toygun_check_fields(def, args);
	return toygun_without_nulls(args, args);
}

/*
 * The top-level keys of an attrs object whose value is JSON null, as a
 * text[], or NULL if there are none.
 */
static ArrayType *
null_keys(Jsonb *attrs)
{
	JsonbIterator *it = JsonbIteratorInit(&attrs->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	Datum	   *keys = NULL;
	int			n = 0;
	text	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = cstring_to_text_with_len(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvNull)
		{
			keys = keys ? repalloc(keys, sizeof(Datum) * (n + 1)) : palloc(sizeof(Datum));
			keys[n++] = PointerGetDatum(key);
		}
	}
	return n > 0 ? construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT) : NULL;
}

/*
 * base without the fields that attrs sets to JSON null: in every attrs write
 * (creates, starts, outcomes, moves, updates), a field set to null is a
 * field removed, as in the original framework.
 */
Jsonb *
toygun_without_nulls(Jsonb *base, Jsonb *attrs)
{
	ArrayType  *keys = null_keys(attrs);

	if (keys == NULL)
		return base;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_array, JsonbPGetDatum(base),
											  PointerGetDatum(keys)));
}

/*
 * Merge attrs (a JSON object, or NULL for none) into the object's attrs; a
 * field attrs sets to null is removed (before sealing, which would seal the
 * null of an encrypted field).
 */
void
toygun_merge_attrs(ToygunObject *obj, ToygunDef *def, Jsonb *attrs)
{
	Jsonb	   *sealed;

	if (attrs == NULL)
		return;
	toygun_check_object_attrs("attrs", attrs);
	toygun_check_fields(def, attrs);
	sealed = toygun_seal_attrs(def, &obj->id, toygun_without_nulls(attrs, attrs));
	obj->attrs = toygun_without_nulls(DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
																		 JsonbPGetDatum(obj->attrs),
																		 JsonbPGetDatum(sealed))),
									  attrs);
}

/* A transition to to_state in memory, written when the object is saved. */
static void
append_step(ToygunObject *obj, const char *to_state, const char *note)
{
	ToygunStep *s;

	if (obj->nsteps >= TOYGUN_MAX_STEPS)
		elog(ERROR, "too many transitions in one save");
	s = &obj->steps[obj->nsteps++];
	s->from_state = obj->state;
	s->to_state = pstrdup(to_state);
	s->note = note ? pstrdup(note) : NULL;
	s->reason = NULL;
	obj->state = s->to_state;
}

/*
 * Move the object to to_state in memory, merging attrs. The target is
 * checked before anything is written; toygun_save_object() writes it.
 */
void
toygun_transition(ToygunObject *obj, ToygunDef *def, const char *to_state,
				  Jsonb *attrs, const char *note)
{
	check_target(def, to_state);
	toygun_merge_attrs(obj, def, attrs);
	append_step(obj, to_state, note);
}

/*
 * Move the object back to __new__ in memory, to be ticked from its first
 * state again: for repairs by hand of a run whose first tick never got
 * through (it panicked from __new__). No transition can enter __new__.
 */
void
toygun_restart(ToygunObject *obj, const char *note)
{
	append_step(obj, TOYGUN_NEW, note);
}

static bool
is_inert(const char *state)
{
	return strcmp(state, TOYGUN_STOP) == 0 || strcmp(state, TOYGUN_PANIC) == 0;
}

/*
 * Where state, attrs, step and version are in each kind's row type, as last
 * seen (-1: no such column, as in 0.3's tables for version).
 */
typedef struct RowColumns
{
	Oid			typid;
	uint64		desc_id;		/* the type cache's, new with each change of the row type */
	int			state,
				attrs,
				step,
				version;
} RowColumns;

/* The columns of the row type of td (a row of kind), with its descriptor (to release). */
static RowColumns *
row_columns(ToygunKind kind, HeapTupleHeader td, TupleDesc *descp)
{
	static RowColumns cols[2];
	Oid			typid = HeapTupleHeaderGetTypeId(td);
	TupleDesc	desc = lookup_rowtype_tupdesc(typid, HeapTupleHeaderGetTypMod(td));
	uint64		desc_id = lookup_type_cache(typid, TYPECACHE_TUPDESC)->tupDesc_identifier;
	RowColumns *c = &cols[kind == TOYGUN_TASK ? 0 : 1];
	int			i;

	if (c->typid != typid || c->desc_id != desc_id)
	{
		c->typid = InvalidOid;
		c->state = c->attrs = c->step = c->version = -1;
		for (i = 0; i < desc->natts; i++)
		{
			const char *col = NameStr(TupleDescAttr(desc, i)->attname);

			if (TupleDescAttr(desc, i)->attisdropped)
				continue;
			if (strcmp(col, "state") == 0)
				c->state = i;
			else if (strcmp(col, "attrs") == 0)
				c->attrs = i;
			else if (strcmp(col, "step") == 0)
				c->step = i;
			else if (strcmp(col, "version") == 0 && TupleDescAttr(desc, i)->atttypid == INT4OID)
				c->version = i;
		}
		c->typid = typid;
		c->desc_id = desc_id;
	}
	*descp = desc;
	return c;
}

/*
 * The row a handler receives: the locked row with the in-memory state,
 * attrs, step and version.
 */
Datum
toygun_object_row(ToygunObject *obj)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(obj->row);
	TupleDesc	desc;
	RowColumns *c = row_columns(obj->kind, td, &desc);
	HeapTupleData tmp;
	HeapTuple	newtup;
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	tmp.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tmp.t_self);
	tmp.t_tableOid = InvalidOid;
	tmp.t_data = td;
	heap_deform_tuple(&tmp, desc, values, nulls);
	if (c->state >= 0)
	{
		values[c->state] = CStringGetTextDatum(obj->state);
		nulls[c->state] = false;
	}
	if (c->attrs >= 0)
	{
		values[c->attrs] = JsonbPGetDatum(obj->attrs);
		nulls[c->attrs] = false;
	}
	if (c->step >= 0)
	{
		values[c->step] = Int64GetDatum(obj->step + obj->nsteps);
		nulls[c->step] = false;
	}
	if (c->version >= 0)
	{
		values[c->version] = Int32GetDatum(obj->version);
		nulls[c->version] = false;
	}
	newtup = heap_form_tuple(desc, values, nulls);
	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(newtup);
}

/* Resources this transaction has stopped (or more: it only grows). */
static int	resources_stopped_in_xact = 0;

static void
object_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
		resources_stopped_in_xact = 0;
}

/* From _PG_init. */
void
toygun_object_init(void)
{
	RegisterXactCallback(object_xact_callback, NULL);
}

static bool
resource_is_stopped(pg_uuid_t *id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];

	values[0] = UUIDPGetDatum(id);
	toygun_run(toygun_plan(&plan, "SELECT FROM ONLY toygun.resource WHERE id = $1 AND state = '__stop__'",
						   1, argtypes),
			   values, NULL, 1);
	return SPI_processed > 0;
}

/* A text[] of the steps' from_state, to_state, note or reason (0, 1, 2, 3). */
static Datum
steps_array(ToygunObject *obj, int which)
{
	Datum		elems[TOYGUN_MAX_STEPS];
	bool		nulls[TOYGUN_MAX_STEPS];
	int			dims[1];
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < obj->nsteps; i++)
	{
		ToygunStep *s = &obj->steps[i];
		char	   *v = which == 0 ? s->from_state : which == 1 ? s->to_state :
			which == 2 ? s->note : s->reason;

		elems[i] = v ? CStringGetTextDatum(v) : (Datum) 0;
		nulls[i] = v == NULL;
	}
	dims[0] = obj->nsteps;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

/*
 * The save: one statement that updates the row, conditional on the step it
 * had when it was read ($8), and appends one history row per transition
 * ($9, $10, $11, $15: from_state, to_state, note and reason; $12, $13, $14:
 * the resource type, the maker and the worker's pid). A task of a stopped
 * resource is never due: the resource may have been stopped in this very
 * transaction, by the task's own handler. Without the audit columns (an
 * install not yet updated to 0.4), $12 to $15 are not written.
 */
#define SAVE_SQL(table, alias, run_at, audit_cols, audit_vals, version) \
	"WITH saved AS (" \
	"  UPDATE ONLY toygun." table " " alias " SET state = $2, attrs = $3, step = $4, run_at = " run_at "," \
	"    attempts = $6, last_error = $7, updated_at = pg_catalog.clock_timestamp()" version \
	"   WHERE id = $1 AND step = $8 RETURNING " alias ")," \
	" steps AS (" \
	"  INSERT INTO toygun.transition (object_id, step, from_state, to_state, at, note" audit_cols ")" \
	"  SELECT $1, $8 + s.n - 1, s.f, s.t, c.at, s.note" audit_vals \
	"    FROM saved, (SELECT pg_catalog.clock_timestamp() AS at) c," \
	"         unnest($9::pg_catalog.text[], $10::pg_catalog.text[], $11::pg_catalog.text[]," \
	"                $15::pg_catalog.text[]) WITH ORDINALITY AS s(f, t, note, reason, n))" \
	"SELECT " alias " FROM saved"
#define AUDIT_COLS ", resource_type, made_by, worker_pid, reason, expires_at"
#define VERSION_SET ", version = $16"
/* expires_at (retention, 0.4): at + the type's keep ($17), infinity for forever */
#define AUDIT_VALS ", $12, $13, $14, s.reason," \
	" COALESCE(c.at OPERATOR(pg_catalog.+) $17, 'infinity'::pg_catalog.timestamptz)"
#define TASK_RUN_AT \
	"CASE WHEN EXISTS (SELECT FROM ONLY toygun.resource r" \
	" WHERE r.id = t.resource_id AND r.state = '__stop__') THEN NULL ELSE $5 END"

/*
 * A stopped object leaving __stop__ (toygun_save_object): into its type's
 * queue, if that is not the one it stopped in; a run with the flow_key its
 * type gives it now (issue 17: a redefinition's rekey skips stopped runs,
 * so a run stopped before its type lost, gained or changed its limits has
 * a key of the old ones, in task_flow_idx under a limit_id no worker of
 * its type claims). Returns the row as saved.
 */
static Datum
requeue(ToygunObject *obj, ToygunDef *def, Datum saved)
{
	static SPIPlanPtr plans[2];
	Oid			argtypes[2] = {UUIDOID, INT2OID};
	Datum		values[2];
	bool		isnull;

	values[0] = UUIDPGetDatum(&obj->id);
	values[1] = Int16GetDatum(def->queue_id);
	toygun_run(toygun_plan(&plans[obj->kind == TOYGUN_TASK],
						   obj->kind == TOYGUN_TASK
						   ? "UPDATE ONLY toygun.task t SET queue_id = $2, flow_key = n.k"
						   "  FROM (SELECT toygun._flow_key(resource_type, name, resource_id, attrs) AS k"
						   "          FROM ONLY toygun.task WHERE id = $1) n"
						   " WHERE t.id = $1 AND (t.queue_id <> $2 OR t.flow_key IS DISTINCT FROM n.k) RETURNING t"
						   : "UPDATE ONLY toygun.resource r SET queue_id = $2 WHERE id = $1 AND queue_id <> $2 RETURNING r",
						   2, argtypes),
			   values, NULL, 0);
	if (SPI_processed == 0)
		return saved;
	toygun_wake_queue_at_commit(def->queue_id, 0);
	return copy_col(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * Write the object's pending changes: state, attrs, step, run_at, attempts,
 * last_error and its history, in one statement. Fails as desynchronized if
 * the object moved on since it was read at expected_step. Returns the saved
 * row (in the SPI context).
 */
Datum
toygun_save_object(ToygunObject *obj, ToygunDef *def, int64 expected_step)
{
	Oid			argtypes[17] = {UUIDOID, TEXTOID, JSONBOID, INT8OID, TIMESTAMPTZOID,
		INT4OID, TEXTOID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTOID, REGROLEOID, INT4OID, TEXTARRAYOID, INT4OID, INTERVALOID};
	Datum		values[17];
	char		nulls[17] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum		saved;
	bool		isnull;
	bool		due_now = false;
	const char *old_state = obj->nsteps > 0 ? obj->steps[0].from_state : obj->state;

	/* for toygun.wait(): one atomic read while nobody waits */
	if (obj->kind == TOYGUN_TASK)
		toygun_waits_note(&obj->id);

	/* When is it next due? */
	if (is_inert(obj->state))
		nulls[4] = 'n';
	else if (obj->has_run_at && obj->run_at_null)
		nulls[4] = 'n';
	else if (obj->has_run_at)
	{
		values[4] = TimestampTzGetDatum(obj->run_at);

		/*
		 * Due later, by a session's hand: wake a worker at commit, which
		 * claims nothing and sleeps until the earliest run_at, this one's
		 * too, rather than until its own target. A worker needs no wake:
		 * it looks for the earliest run_at itself after each batch.
		 */
		if (!toygun_in_worker)
			toygun_wake_at_commit();
	}
	else if (obj->kind == TOYGUN_RESOURCE && def->handler == NULL)
		nulls[4] = 'n';
	else
	{
		values[4] = TimestampTzGetDatum(GetCurrentTimestamp());
		due_now = true;
	}

	values[0] = UUIDPGetDatum(&obj->id);
	values[1] = CStringGetTextDatum(obj->state);
	values[2] = JsonbPGetDatum(obj->attrs);
	values[3] = Int64GetDatum(expected_step + obj->nsteps);
	values[5] = Int32GetDatum(obj->attempts);
	values[6] = obj->last_error ? CStringGetTextDatum(obj->last_error) : (Datum) 0;
	nulls[6] = obj->last_error ? ' ' : 'n';
	values[7] = Int64GetDatum(expected_step);

	/*
	 * A task of a stopped resource is never due. Another transaction that
	 * stops the resource waits for our lock on the task and parks it after
	 * us; only this transaction can have stopped it since the task was read.
	 */
	if (obj->kind == TOYGUN_TASK && nulls[4] != 'n' && resources_stopped_in_xact > 0 &&
		!toygun_in_stop_state(obj, def) && resource_is_stopped(&obj->resource_id))
	{
		nulls[4] = 'n';
		due_now = false;
	}

	if (toygun_store_update(obj, def, values[4], nulls[4] == 'n', expected_step, &saved))
		goto saved;

	values[8] = steps_array(obj, 0);
	values[9] = steps_array(obj, 1);
	values[10] = steps_array(obj, 2);
	values[11] = CStringGetTextDatum(obj->type);
	values[12] = ObjectIdGetDatum(obj->actor);
	values[13] = Int32GetDatum(MyProcPid);
	nulls[13] = toygun_in_worker ? ' ' : 'n';
	values[14] = steps_array(obj, 3);
	values[15] = Int32GetDatum(obj->version);
	values[16] = def->keep_forever ? (Datum) 0 : IntervalPGetDatum(&def->keep);
	nulls[16] = def->keep_forever ? 'n' : ' ';
	if (!toygun_has_column("transition", "made_by"))
	{
		if (obj->kind == TOYGUN_TASK)
			toygun_run(toygun_plan(&save_task_plan_03, SAVE_SQL("task", "t", TASK_RUN_AT, "", "", ""),
								   17, argtypes),
					   values, nulls, 0);
		else
			toygun_run(toygun_plan(&save_resource_plan_03, SAVE_SQL("resource", "r", "$5", "", "", ""),
								   17, argtypes),
					   values, nulls, 0);
	}
	else if (obj->kind == TOYGUN_TASK)
		toygun_run(toygun_plan(&save_task_plan,
							   SAVE_SQL("task", "t", TASK_RUN_AT, AUDIT_COLS, AUDIT_VALS, VERSION_SET),
							   17, argtypes),
				   values, nulls, 0);
	else
		toygun_run(toygun_plan(&save_resource_plan,
							   SAVE_SQL("resource", "r", "$5", AUDIT_COLS, AUDIT_VALS, VERSION_SET),
							   17, argtypes),
				   values, nulls, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("%s %s is desynchronized", toygun_kind_name(obj->kind),
						toygun_uuid_text(&obj->id)),
				 errdetail("It moved on from step " INT64_FORMAT " while this change was being made.",
						   expected_step)));
	saved = copy_col(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	ItemPointerSetInvalid(&obj->tid);

saved:
	/* a run that ends tells the run that started it (the row as read has parent_run) */
	if (obj->kind == TOYGUN_TASK && obj->nsteps > 0 && is_inert(obj->state) && !is_inert(old_state))
		toygun_child_ended(obj);

	/*
	 * A stopped object keeps the queue it stopped in (issue 17); brought
	 * back by hand (rewind_task, transition_*), it goes to its type's queue
	 * now, the one its type's workers claim from, not a queue the type left,
	 * and a run gets the concurrency key of its type's limits now.
	 */
	if (obj->nsteps > 0 && strcmp(old_state, TOYGUN_STOP) == 0 && strcmp(obj->state, TOYGUN_STOP) != 0 &&
		toygun_has_queues())
		saved = requeue(obj, def, saved);
	obj->row = saved;

	/* A stopped resource parks its tasks; one coming back re-arms them. */
	if (obj->kind == TOYGUN_RESOURCE && obj->nsteps > 0)
	{
		bool		was_stopped = strcmp(old_state, TOYGUN_STOP) == 0;
		bool		is_stopped = strcmp(obj->state, TOYGUN_STOP) == 0;
		Oid			idtype[1] = {UUIDOID};

		if (is_stopped && !was_stopped)
		{
			resources_stopped_in_xact++;
			/* but not the runs in their task type's stop_state: they stop themselves */
			if (toygun_has_column("task_type", "stop_state"))
				toygun_run(toygun_plan(&park_tasks_plan,
									   "UPDATE ONLY toygun.task t SET run_at = NULL"
									   " WHERE resource_id = $1 AND run_at IS NOT NULL"
									   "   AND NOT EXISTS (SELECT FROM ONLY toygun.task_type d"
									   "                    WHERE d.resource_type = t.resource_type"
									   "                      AND d.name = t.name AND d.stop_state = t.state)",
									   1, idtype),
						   values, NULL, 0);
			else				/* the SQL of 0.3, before ALTER EXTENSION UPDATE */
				toygun_run(toygun_plan(&park_tasks_plan_03,
									   "UPDATE ONLY toygun.task SET run_at = NULL"
									   " WHERE resource_id = $1 AND run_at IS NOT NULL",
									   1, idtype),
						   values, NULL, 0);
		}
		else if (was_stopped && !is_stopped)
		{
			toygun_run(toygun_plan(&rearm_tasks_plan,
								   "UPDATE ONLY toygun.task SET run_at = pg_catalog.clock_timestamp()"
								   " WHERE resource_id = $1 AND run_at IS NULL"
								   "   AND state NOT IN ('__stop__', '__panic__')",
								   1, idtype),
					   values, NULL, 0);
			if (SPI_processed > 0)
				due_now = true;
		}
	}
	/* a resource that entered a state starts its triggers' tasks (a task's save: nothing) */
	if (obj->kind == TOYGUN_RESOURCE && obj->nsteps > 0)
		toygun_fire_triggers(obj, def);
	if (due_now)
		toygun_wake_at_commit();

	/*
	 * A panic raises an alarm, and a move out of __panic__ closes it, last,
	 * since the alarm's handlers may act on the object (alarms.c): a
	 * successful tick pays the test, never a query.
	 */
	if (obj->nsteps > 0 &&
		(strcmp(obj->state, TOYGUN_PANIC) == 0 || strcmp(old_state, TOYGUN_PANIC) == 0))
	{
		bool		entered = strcmp(obj->state, TOYGUN_PANIC) == 0;
		ToygunStep	step = obj->steps[entered ? obj->nsteps - 1 : 0];

		obj->step = expected_step + obj->nsteps;
		obj->nsteps = 0;
		obj->has_run_at = false;
		toygun_alarm_panic_moved(obj, &step, entered);
		return saved;
	}
	obj->step = expected_step + obj->nsteps;
	obj->nsteps = 0;
	obj->has_run_at = false;
	return saved;
}

/* A panic attrs object: {"panic_message": message}. */
Jsonb *
toygun_panic_attrs(const char *message)
{
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = TOYGUN_PANIC_MESSAGE;
	k.val.string.len = strlen(TOYGUN_PANIC_MESSAGE);
	pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) message;
	v.val.string.len = strlen(message);
	pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}
