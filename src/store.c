/*
 * store.c
 *		The tick's hot path writes straight to the tables: the new version of
 *		a locked resource or task row, and its history rows, with their index
 *		entries, as logical replication's apply does; no SQL is planned or run
 *		per tick. The relations stay open until the transaction ends or a
 *		utility statement runs.
 *
 * The direct writes are sound only on the tables they were written for:
 * exactly toygun's columns, by name and type (dropped ones aside), a heap
 * table with no triggers, rules, inheritance children or partitioning, and
 * no row security that applies to the writer; the history is partitioned by
 * expires_at (retention, 0.4), and each history row goes to its partition as
 * logical replication's apply routes a row (apply_handle_tuple_routing),
 * each partition a heap table with no triggers and no forced row security. The writer is the tables'
 * owner (API calls) or a superuser (workers), so policies apply only when
 * FORCE ROW LEVEL SECURITY makes them (toygun's own policies only filter
 * what other roles read). Each table is checked when the store opens, and again after
 * any change to it (a relcache invalidation); a table that differs is
 * written through SQL, which does whatever the DBA's change asks. NOT NULL
 * and CHECK constraints, the replica identity and unique indexes are
 * enforced on the direct path as in SQL.
 *
 * toygun_store_update() declines (returns false) when the plain SQL path
 * must do it instead: a table not as written for, a row this transaction
 * has changed since it was read (then the SQL path finds the newest version
 * and checks its step), a table changed since the row was read (a rewrite
 * moves rows: the place read may hold another row, or be past the end), or
 * toygun.direct_writes off.
 *
 * A table is opened (and locked) only when a write needs it, as SQL locks
 * only the tables it writes; everything the store allocates is in a memory
 * context of its own, gone when it closes.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "storage/bufmgr.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "toygun.h"

bool		toygun_direct_writes = true;

/* Which table. */
enum
{
	STORE_RESOURCE,				/* = TOYGUN_RESOURCE */
	STORE_TASK,					/* = TOYGUN_TASK */
	STORE_TRANSITION,
	STORE_NTABLES
};

static const char *const table_names[STORE_NTABLES] = {"resource", "task", "transition"};

/*
 * Columns written, by name: of a resource or task row (COL_*), and of a
 * history row (HIST_*); their numbers are looked up when the store opens.
 */
enum
{
	COL_STATE,
	COL_ATTRS,
	COL_STEP,
	COL_RUN_AT,
	COL_ATTEMPTS,
	COL_LAST_ERROR,
	COL_UPDATED_AT,
	COL_VERSION,
	NCOLS
};
static const char *const column_names[NCOLS] = {
	"state", "attrs", "step", "run_at", "attempts", "last_error", "updated_at", "version"
};

enum
{
	HIST_OBJECT_ID,
	HIST_STEP,
	HIST_FROM_STATE,
	HIST_TO_STATE,
	HIST_AT,
	HIST_NOTE,
	HIST_RESOURCE_TYPE,
	HIST_MADE_BY,
	HIST_WORKER_PID,
	HIST_REASON,
	HIST_EXPIRES_AT,
	NHIST
};

/* Every column of each table, as the install script makes it. */
typedef struct Column
{
	int			table;
	const char *name;
	Oid			type;
} Column;

static const Column shape[] = {
	{STORE_RESOURCE, "id", UUIDOID},
	{STORE_RESOURCE, "type", TEXTOID},
	{STORE_RESOURCE, "parent_id", UUIDOID},
	{STORE_RESOURCE, "state", TEXTOID},
	{STORE_RESOURCE, "attrs", JSONBOID},
	{STORE_RESOURCE, "step", INT8OID},
	{STORE_RESOURCE, "run_at", TIMESTAMPTZOID},
	{STORE_RESOURCE, "attempts", INT4OID},
	{STORE_RESOURCE, "last_error", TEXTOID},
	{STORE_RESOURCE, "created_at", TIMESTAMPTZOID},
	{STORE_RESOURCE, "updated_at", TIMESTAMPTZOID},
	{STORE_RESOURCE, "version", INT4OID},
	{STORE_RESOURCE, "queue_id", INT2OID},
	{STORE_TASK, "id", UUIDOID},
	{STORE_TASK, "resource_id", UUIDOID},
	{STORE_TASK, "resource_type", TEXTOID},
	{STORE_TASK, "name", TEXTOID},
	{STORE_TASK, "state", TEXTOID},
	{STORE_TASK, "attrs", JSONBOID},
	{STORE_TASK, "step", INT8OID},
	{STORE_TASK, "run_at", TIMESTAMPTZOID},
	{STORE_TASK, "attempts", INT4OID},
	{STORE_TASK, "last_error", TEXTOID},
	{STORE_TASK, "created_at", TIMESTAMPTZOID},
	{STORE_TASK, "updated_at", TIMESTAMPTZOID},
	{STORE_TASK, "seq", INT8OID},
	{STORE_TASK, "parent_run", UUIDOID},
	{STORE_TASK, "version", INT4OID},
	{STORE_TASK, "priority", INT2OID},
	{STORE_TASK, "queue_id", INT2OID},
	{STORE_TASK, "flow_key", INT8OID},
	/* in HIST_* order */
	{STORE_TRANSITION, "object_id", UUIDOID},
	{STORE_TRANSITION, "step", INT8OID},
	{STORE_TRANSITION, "from_state", TEXTOID},
	{STORE_TRANSITION, "to_state", TEXTOID},
	{STORE_TRANSITION, "at", TIMESTAMPTZOID},
	{STORE_TRANSITION, "note", TEXTOID},
	{STORE_TRANSITION, "resource_type", TEXTOID},
	{STORE_TRANSITION, "made_by", REGROLEOID},
	{STORE_TRANSITION, "worker_pid", INT4OID},
	{STORE_TRANSITION, "reason", TEXTOID},
	{STORE_TRANSITION, "expires_at", TIMESTAMPTZOID},
};

typedef struct Store
{
	MemoryContext cxt;			/* everything below */
	EState	   *estate;
	bool		opened[STORE_NTABLES];	/* open_table() has run */
	ResultRelInfo *rri[STORE_NTABLES];	/* NULL: no such table */
	TupleTableSlot *slot[STORE_NTABLES];
	bool		direct[STORE_NTABLES];	/* as written for: direct writes allowed */
	AttrNumber	col[STORE_NTABLES][Max((int) NCOLS, (int) NHIST)];	/* 0-based; HIST_* for transition */
	AttrNumber	idcol[STORE_NTABLES];	/* 1-based: the id column */
	/* the history's partitions (retention): routing, set up at its first row */
	ModifyTableState *mtstate;
	PartitionTupleRouting *proute;
	ResultRelInfo *forever;		/* the partition of rows kept forever, once found */
} Store;

/* The store of the current transaction, or NULL. */
static Store *store = NULL;

/*
 * Changes of the tables: bumped by every relcache invalidation of one of
 * them (or of all relations), whether the store is open or not. A row read
 * under an older generation may have moved (CLUSTER, SET UNLOGGED and
 * TRUNCATE give a table a new file), so it is written through SQL. The
 * tables' OIDs as last looked up; until they are known, every invalidation
 * counts.
 */
static uint64 store_generation = 1;
static Oid	store_relids[STORE_NTABLES];
static bool store_relids_known = false;

/* A table of the store has changed since it opened: check it again. */
static bool store_stale = false;

/* A direct write is under way (a CHECK or an index expression may run SQL). */
static bool store_busy = false;

static ProcessUtility_hook_type prev_utility_hook = NULL;

static bool write_row(Store *st, int t, ToygunObject *obj, ToygunDef *def, Datum run_at,
					  bool run_at_null, int64 expected_step, Datum *saved);

/*
 * Is the open table exactly what the direct writes were written for? If so,
 * note the numbers of the columns written; if not, say why at DEBUG1.
 */
static bool
check_shape(Store *st, int t)
{
	Relation	rel = st->rri[t]->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	const char *why = NULL;
	int			expected = 0,
				live = 0,
				i;

	/* the partitioned history: its partitions are checked as rows go to them */
	if ((rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition) &&
		!(t == STORE_TRANSITION && rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE &&
		  !rel->rd_rel->relispartition))
		why = "it is partitioned or a partition";
	else if (rel->rd_rel->relkind == RELKIND_RELATION &&
			 rel->rd_tableam != GetHeapamTableAmRoutine())
		why = "its access method is not heap";
	else if (rel->trigdesc != NULL)
		why = "it has triggers";
	else if (rel->rd_rules != NULL)
		why = "it has rules";
	else if (rel->rd_rel->relforcerowsecurity ||
			 check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies to its writer";
	else if (rel->rd_rel->relhassubclass && rel->rd_rel->relkind == RELKIND_RELATION)
		why = "it has inheritance children";

	for (i = 0; why == NULL && i < lengthof(shape); i++)
	{
		AttrNumber	attnum;
		Form_pg_attribute att;

		if (shape[i].table != t)
			continue;
		attnum = get_attnum(RelationGetRelid(rel), shape[i].name);
		att = attnum > 0 ? TupleDescAttr(desc, attnum - 1) : NULL;
		if (att == NULL || att->atttypid != shape[i].type || att->atttypmod != -1 ||
			att->attidentity != '\0' || att->attgenerated != '\0')
		{
			why = psprintf("column %s is not as toygun made it", shape[i].name);
			break;
		}
		if (strcmp(shape[i].name, "id") == 0)
			st->idcol[t] = attnum;
		if (t == STORE_TRANSITION)
			st->col[t][expected] = attnum - 1;
		else
			for (int c = 0; c < NCOLS; c++)
				if (strcmp(column_names[c], shape[i].name) == 0)
					st->col[t][c] = attnum - 1;
		expected++;
	}
	for (i = 0; why == NULL && i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			live++;
	if (why == NULL && live != expected)
		why = "it has columns toygun did not make";

	if (why != NULL)
		ereport(DEBUG1,
				(errmsg_internal("toygun.%s is written through SQL: %s", table_names[t], why)));
	return why == NULL;
}

static pg_noinline Store *
open_store(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopTransactionContext, "toygun store",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Oid			nsp = get_namespace_oid("toygun", false);
	Store	   *st = palloc0(sizeof(Store));
	List	   *rtable = NIL;
	Oid			relids[STORE_NTABLES];
	int			t;

	st->cxt = cxt;
	st->estate = CreateExecutorState();

	/* a range table, as the executor's routines the store calls expect */
	for (t = 0; t < STORE_NTABLES; t++)
	{
		RangeTblEntry *rte = makeNode(RangeTblEntry);

		rte->rtekind = RTE_RELATION;
		rte->relid = relids[t] = get_relname_relid(table_names[t], nsp);
		rte->relkind = RELKIND_RELATION;
		rte->rellockmode = RowExclusiveLock;
		rtable = lappend(rtable, rte);
	}
	ExecInitRangeTable(st->estate, rtable);

	/* other tables than those invalidations were counted for: rows may have moved */
	if (store_relids_known && memcmp(store_relids, relids, sizeof(relids)) != 0)
		store_generation++;
	memcpy(store_relids, relids, sizeof(relids));
	store_relids_known = true;

	MemoryContextSwitchTo(old);
	return st;
}

/* Open one table of the store, the first time a write needs it. */
static void
open_table(Store *st, int t)
{
	MemoryContext old;
	ResourceOwner save_owner;
	Oid			relid;
	Relation	rel;

	if (st->opened[t])
		return;
	st->opened[t] = true;
	relid = exec_rt_fetch(t + 1, st->estate)->relid;
	if (!OidIsValid(relid))
		return;					/* dropped or renamed: SQL says what is wrong */

	old = MemoryContextSwitchTo(st->cxt);
	save_owner = CurrentResourceOwner;
	/* held by the transaction, not by a subtransaction that may end first */
	CurrentResourceOwner = TopTransactionResourceOwner;
	rel = table_open(relid, RowExclusiveLock);
	st->rri[t] = makeNode(ResultRelInfo);
	InitResultRelInfo(st->rri[t], rel, t + 1, NULL, 0);
	/* a partitioned table's indexes are its partitions' (opened as rows go there) */
	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ExecOpenIndices(st->rri[t], false);
	st->slot[t] = table_slot_create(rel, NULL);
	st->direct[t] = check_shape(st, t);

	/*
	 * Which columns an update changes: index insertion uses that to hint
	 * that an index's key did not change, which lets the index remove old
	 * versions bottom-up.
	 */
	if (st->direct[t] && t != STORE_TRANSITION)
	{
		RangeTblEntry *rte = exec_rt_fetch(t + 1, st->estate);

		for (int c = 0; c < NCOLS; c++)
			rte->updatedCols = bms_add_member(rte->updatedCols,
											  st->col[t][c] + 1 - FirstLowInvalidHeapAttributeNumber);
	}
	CurrentResourceOwner = save_owner;
	MemoryContextSwitchTo(old);
}

/*
 * Close the store: before the transaction commits, before a utility
 * statement (which may change the tables, and may not while they are
 * open), or to open it afresh after a table changed. An abort just forgets
 * it: the transaction's resource owner releases what it held.
 */
static void
close_store(bool release)
{
	ResourceOwner save_owner;
	int			t;

	if (store == NULL)
		return;
	if (release)
	{
		save_owner = CurrentResourceOwner;
		CurrentResourceOwner = TopTransactionResourceOwner;
		if (store->proute != NULL)
			ExecCleanupTupleRouting(store->mtstate, store->proute);
		for (t = 0; t < STORE_NTABLES; t++)
		{
			if (store->rri[t] == NULL)
				continue;
			ExecDropSingleTupleTableSlot(store->slot[t]);
			ExecCloseIndices(store->rri[t]);
			table_close(store->rri[t]->ri_RelationDesc, NoLock);
		}
		FreeExecutorState(store->estate);
		CurrentResourceOwner = save_owner;
		MemoryContextDelete(store->cxt);
	}
	store = NULL;
	store_stale = false;
}

static Store *
get_store(void)
{
	if (store != NULL && store_stale)
		close_store(true);
	if (store == NULL)
		store = open_store();
	return store;
}

/*
 * A history row of obj in the history's slot: step s, written at at, to
 * expire at expires.
 */
static TupleTableSlot *
history_row(Store *st, ToygunObject *obj, int64 step, ToygunStep *s, TimestampTz at,
			TimestampTz expires)
{
	TupleTableSlot *slot = st->slot[STORE_TRANSITION];
	AttrNumber *col = st->col[STORE_TRANSITION];

	ExecClearTuple(slot);
	/* dropped columns are null */
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[col[HIST_OBJECT_ID]] = UUIDPGetDatum(&obj->id);
	slot->tts_values[col[HIST_STEP]] = Int64GetDatum(step);
	slot->tts_values[col[HIST_FROM_STATE]] = CStringGetTextDatum(s->from_state);
	slot->tts_values[col[HIST_TO_STATE]] = CStringGetTextDatum(s->to_state);
	slot->tts_values[col[HIST_AT]] = TimestampTzGetDatum(at);
	slot->tts_values[col[HIST_NOTE]] = s->note ? CStringGetTextDatum(s->note) : (Datum) 0;
	slot->tts_values[col[HIST_RESOURCE_TYPE]] = CStringGetTextDatum(obj->type);
	slot->tts_values[col[HIST_MADE_BY]] = ObjectIdGetDatum(obj->actor);
	slot->tts_values[col[HIST_WORKER_PID]] = Int32GetDatum(MyProcPid);
	slot->tts_values[col[HIST_REASON]] = s->reason ? CStringGetTextDatum(s->reason) : (Datum) 0;
	slot->tts_isnull[col[HIST_OBJECT_ID]] = false;
	slot->tts_isnull[col[HIST_STEP]] = false;
	slot->tts_isnull[col[HIST_FROM_STATE]] = false;
	slot->tts_isnull[col[HIST_TO_STATE]] = false;
	slot->tts_isnull[col[HIST_AT]] = false;
	slot->tts_isnull[col[HIST_NOTE]] = s->note == NULL;
	slot->tts_isnull[col[HIST_RESOURCE_TYPE]] = false;
	slot->tts_isnull[col[HIST_MADE_BY]] = false;
	slot->tts_isnull[col[HIST_WORKER_PID]] = !toygun_in_worker;
	slot->tts_isnull[col[HIST_REASON]] = s->reason == NULL;
	slot->tts_values[col[HIST_EXPIRES_AT]] = TimestampTzGetDatum(expires);
	slot->tts_isnull[col[HIST_EXPIRES_AT]] = false;
	return ExecStoreVirtualTuple(slot);
}

/*
 * The partition of the history a row goes to (the history itself when it is
 * a plain table), found as logical replication's apply finds it; NULL when
 * that partition is not one the direct writes are sound on (then the SQL
 * path writes, and fires what it has).
 */
static ResultRelInfo *
history_partition(Store *st, TupleTableSlot *slot, TimestampTz expires)
{
	ResultRelInfo *root = st->rri[STORE_TRANSITION];
	ResultRelInfo *leaf;
	Relation	rel;
	MemoryContext old;
	ResourceOwner save_owner;

	if (root->ri_RelationDesc->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return root;
	/* most types keep forever: their rows' partition is found once a transaction */
	if (expires == DT_NOEND && st->forever != NULL)
		return st->forever;
	old = MemoryContextSwitchTo(st->cxt);
	save_owner = CurrentResourceOwner;
	/* partitions are held by the transaction, as the tables are (open_table) */
	CurrentResourceOwner = TopTransactionResourceOwner;
	if (st->proute == NULL)
	{
		st->mtstate = makeNode(ModifyTableState);
		st->mtstate->ps.plan = NULL;
		st->mtstate->ps.state = st->estate;
		st->mtstate->operation = CMD_INSERT;
		st->mtstate->resultRelInfo = root;
		st->proute = ExecSetupPartitionTupleRouting(st->estate, root->ri_RelationDesc);
	}
	leaf = ExecFindPartition(st->mtstate, root, st->proute, slot, st->estate);
	CurrentResourceOwner = save_owner;
	MemoryContextSwitchTo(old);

	rel = leaf->ri_RelationDesc;
	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->rd_tableam != GetHeapamTableAmRoutine() ||
		rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relforcerowsecurity)
	{
		ereport(DEBUG1,
				(errmsg_internal("toygun.transition is written through SQL: its partition %s is not as toygun made it",
								 RelationGetRelationName(rel))));
		return NULL;
	}
	if (expires == DT_NOEND)
		st->forever = leaf;
	return leaf;
}

/* Append a history row, in the slot, to its partition. */
static void
insert_step(Store *st, ResultRelInfo *leaf, TupleTableSlot *slot)
{
	TupleConversionMap *map = leaf->ri_RootToPartitionMap;

	if (map != NULL)
		slot = execute_attr_map_slot(map->attrMap, slot, leaf->ri_PartitionTupleSlot);
	/* checks the constraints and the replica identity, as SQL would */
	ExecSimpleRelationInsert(leaf, st->estate, slot);
	ResetPerTupleExprContext(st->estate);
}

/*
 * Write the new version of a locked object row and its history: the state,
 * attrs, step, run_at (run_at_null), attempts, last_error and schema version
 * of obj.
 * Returns false, having written nothing, when the SQL path must do it. On
 * success *saved is the saved row (if saved is not NULL).
 */
bool
toygun_store_update(ToygunObject *obj, ToygunDef *def, Datum run_at, bool run_at_null,
					int64 expected_step, Datum *saved)
{
	int			t = obj->kind == TOYGUN_TASK ? STORE_TASK : STORE_RESOURCE;
	Store	   *st;
	bool		written = false;

	/*
	 * On a Citus node (citus.c) the row is in a shard table, not in
	 * toygun.task or toygun.resource (whose own files hold nothing, or the
	 * rows from before they were distributed): the SQL path writes it there,
	 * through the statements rewritten for the group.
	 */
	if (!toygun_direct_writes || store_busy || !ItemPointerIsValid(&obj->tid) ||
		toygun_citus_in_use())
		return false;
	st = get_store();
	open_table(st, t);
	open_table(st, STORE_TRANSITION);
	if (!st->direct[t] || !st->direct[STORE_TRANSITION] || obj->generation != store_generation)
		return false;

	store_busy = true;
	PG_TRY();
	{
		written = write_row(st, t, obj, def, run_at, run_at_null, expected_step, saved);
	}
	PG_FINALLY();
	{
		store_busy = false;
	}
	PG_END_TRY();
	return written;
}

/*
 * Is the version of the object's row at tid, the one read, still its
 * newest? Not if this transaction has updated or deleted the row since, in
 * an earlier command (a handler moving its own run, another tick's stop
 * parking the runs of its resource, any UPDATE): heap_update() would fail
 * with "attempted to update invisible tuple", where SQL writes the newest
 * version if its step is still the one read. Nor if the version there is
 * not the object's at all.
 */
static bool
newest_version(Store *st, int t, ToygunObject *obj)
{
	Relation	rel = st->rri[t]->ri_RelationDesc;
	Buffer		buf = ReadBuffer(rel, ItemPointerGetBlockNumber(&obj->tid));
	OffsetNumber off = ItemPointerGetOffsetNumber(&obj->tid);
	Page		page;
	bool		newest = false;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page) &&
		ItemIdIsNormal(PageGetItemId(page, off)))
	{
		ItemId		lp = PageGetItemId(page, off);
		HeapTupleData tup;
		uint16		infomask;
		Datum		id;
		bool		isnull;

		tup.t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tup.t_len = ItemIdGetLength(lp);
		tup.t_tableOid = RelationGetRelid(rel);
		tup.t_self = obj->tid;
		infomask = tup.t_data->t_infomask;
		id = heap_getattr(&tup, st->idcol[t], RelationGetDescr(rel), &isnull);
		newest = !isnull && memcmp(DatumGetUUIDP(id), &obj->id, sizeof(pg_uuid_t)) == 0 &&
			((infomask & HEAP_XMAX_INVALID) || HEAP_XMAX_IS_LOCKED_ONLY(infomask) ||
			 !TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(tup.t_data)));
	}
	UnlockReleaseBuffer(buf);
	return newest;
}

static bool
write_row(Store *st, int t, ToygunObject *obj, ToygunDef *def, Datum run_at, bool run_at_null,
		  int64 expected_step, Datum *saved)
{
	ResultRelInfo *leaf = NULL;
	TimestampTz expires = 0;
	ResultRelInfo *rri = st->rri[t];
	Relation	rel = rri->ri_RelationDesc;
	TupleTableSlot *slot = st->slot[t];
	AttrNumber *col = st->col[t];
	HeapTupleHeader td = DatumGetHeapTupleHeader(obj->row);
	HeapTupleData old;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;
	TimestampTz now;
	int			i;

	if (!newest_version(st, t, obj))
		return false;			/* changed by this transaction since: SQL path */

	/*
	 * Where its history goes, before anything is written: one partition for
	 * all its rows (one time, one keep).
	 */
	now = GetCurrentTimestamp();
	if (obj->nsteps > 0)
	{
		expires = toygun_expires_at(def, now);
		leaf = history_partition(st, history_row(st, obj, expected_step, &obj->steps[0], now,
												 expires), expires);
		if (leaf == NULL)
			return false;
	}

	/* the new version: the row as read, with the changed columns */
	old.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&old.t_self);
	old.t_tableOid = InvalidOid;
	old.t_data = td;
	ExecClearTuple(slot);
	heap_deform_tuple(&old, slot->tts_tupleDescriptor, slot->tts_values, slot->tts_isnull);
	slot->tts_values[col[COL_STATE]] = CStringGetTextDatum(obj->state);
	slot->tts_values[col[COL_ATTRS]] = JsonbPGetDatum(obj->attrs);
	slot->tts_values[col[COL_STEP]] = Int64GetDatum(expected_step + obj->nsteps);
	slot->tts_values[col[COL_RUN_AT]] = run_at;
	slot->tts_isnull[col[COL_RUN_AT]] = run_at_null;
	slot->tts_values[col[COL_ATTEMPTS]] = Int32GetDatum(obj->attempts);
	slot->tts_values[col[COL_LAST_ERROR]] = obj->last_error ? CStringGetTextDatum(obj->last_error) : (Datum) 0;
	slot->tts_isnull[col[COL_LAST_ERROR]] = obj->last_error == NULL;
	slot->tts_values[col[COL_UPDATED_AT]] = TimestampTzGetDatum(now);
	/* as read, or as an upgrade (versions.c) made it */
	slot->tts_values[col[COL_VERSION]] = Int32GetDatum(obj->version);
	slot->tts_isnull[col[COL_VERSION]] = false;
	ExecStoreVirtualTuple(slot);

	/* what UPDATE checks: the replica identity, NOT NULL and CHECK */
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	if (rel->rd_att->constr)
		ExecConstraints(rri, slot, st->estate);

	result = table_tuple_update(rel, &obj->tid, slot, GetCurrentCommandId(true),
								GetActiveSnapshot(), InvalidSnapshot, true,
								&tmfd, &lockmode, &update_indexes);
	if (result == TM_SelfModified)
	{
		ResetPerTupleExprContext(st->estate);
		return false;			/* changed by this transaction since: SQL path */
	}
	if (result != TM_Ok)
		elog(ERROR, "locked %s %s changed under its lock", toygun_kind_name(obj->kind),
			 toygun_uuid_text(&obj->id));
	if (update_indexes && rri->ri_NumIndices > 0)
		list_free(ExecInsertIndexTuples(rri, slot, st->estate, true, false, NULL, NIL));
	ResetPerTupleExprContext(st->estate);

	/* the first row is in the history's slot still, as routed */
	for (i = 0; i < obj->nsteps; i++)
		insert_step(st, leaf, i == 0 ? st->slot[STORE_TRANSITION] :
					history_row(st, obj, expected_step + i, &obj->steps[i], now, expires));

	obj->tid = slot->tts_tid;
	if (saved != NULL)
		*saved = ExecFetchSlotHeapTupleDatum(slot);
	/* later statements of this transaction, a handler's too, see the writes */
	CommandCounterIncrement();
	return true;
}

/*
 * Before a utility statement: close the store, so that the statement may
 * change toygun's tables (PostgreSQL refuses to while this session has them
 * open), and so that the next write checks them again.
 */
static void
store_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			  ProcessUtilityContext context, ParamListInfo params,
			  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	/* a handler's SET, SHOW or NOTIFY changes no table: keep the store open */
	if (IsA(stmt, VariableSetStmt) || IsA(stmt, VariableShowStmt) || IsA(stmt, NotifyStmt))
		;
	else if (store_busy)
		store_stale = true;
	else
		close_store(true);
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/* One of the store's tables changed, or all relcache entries are reset. */
static void
store_relcache_callback(Datum arg, Oid relid)
{
	bool		ours = !OidIsValid(relid) || !store_relids_known;
	int			t;

	for (t = 0; t < STORE_NTABLES; t++)
		if (store_relids[t] == relid)
			ours = true;
	if (!ours)
		return;
	store_generation++;
	if (store != NULL)
		store_stale = true;
}

/* What a row read now carries, to be compared when it is written. */
uint64
toygun_store_generation(void)
{
	return store_generation;
}

static void
store_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			close_store(true);
			break;
		case XACT_EVENT_ABORT:
			close_store(false);
			store_busy = false;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that aborts may have created a relation the store holds
 * open (an index): close the store, so that the relation can go. The store
 * stays open, stale, while a write is under way (a subtransaction of a CHECK
 * constraint's function).
 */
static void
store_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	if (store_busy)
		store_stale = true;
	else
		close_store(true);
}

/* From _PG_init. */
void
toygun_store_init(void)
{
	RegisterXactCallback(store_xact_callback, NULL);
	RegisterSubXactCallback(store_subxact_callback, NULL);
	toygun_on_relcache(store_relcache_callback);
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = store_utility;
}
