/*
 * store.c
 *		The tick's hot path writes straight to the tables: the new version of
 *		a locked resource or task row, and its history rows, with their index
 *		entries, as logical replication's apply does; no SQL is planned or run
 *		per tick. The relations stay open for the rest of the transaction.
 *
 * toygun_store_update() declines (returns false) when the plain SQL path
 * must do it instead: a table with triggers, or a row this transaction has
 * changed since it was read (then the SQL path finds the newest version and
 * checks its step).
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "nodes/bitmapset.h"
#include "nodes/parsenodes.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
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

/* Columns written, by name; their numbers are looked up when opened. */
enum
{
	COL_STATE,
	COL_ATTRS,
	COL_STEP,
	COL_RUN_AT,
	COL_ATTEMPTS,
	COL_LAST_ERROR,
	COL_UPDATED_AT,
	NCOLS
};
static const char *const column_names[NCOLS] = {
	"state", "attrs", "step", "run_at", "attempts", "last_error", "updated_at"
};

typedef struct Store
{
	EState	   *estate;
	ResultRelInfo *rri[STORE_NTABLES];
	TupleTableSlot *slot[STORE_NTABLES];
	bool		plain[STORE_NTABLES];	/* no triggers: direct writes allowed */
	AttrNumber	col[2][NCOLS];	/* resource, task */
} Store;

/* The store of the current transaction, or NULL. */
static Store *store = NULL;

static Store *
open_store(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	ResourceOwner save_owner = CurrentResourceOwner;
	Oid			nsp = get_namespace_oid("toygun", false);
	Store	   *st = palloc0(sizeof(Store));
	List	   *rtable = NIL;
	int			t,
				c;

	/* held by the transaction, not by a subtransaction that may end first */
	CurrentResourceOwner = TopTransactionResourceOwner;
	st->estate = CreateExecutorState();

	/*
	 * A range table, whose entries say which columns an update changes:
	 * index insertion uses that to hint that an index's key did not change,
	 * which lets the index remove old versions bottom-up.
	 */
	for (t = 0; t < STORE_NTABLES; t++)
	{
		RangeTblEntry *rte = makeNode(RangeTblEntry);

		rte->rtekind = RTE_RELATION;
		rte->relid = get_relname_relid(table_names[t], nsp);
		rte->relkind = RELKIND_RELATION;
		rte->rellockmode = RowExclusiveLock;
		if (!OidIsValid(rte->relid))
			elog(ERROR, "table toygun.%s does not exist", table_names[t]);
		if (t != STORE_TRANSITION)
			for (c = 0; c < NCOLS; c++)
				rte->updatedCols = bms_add_member(rte->updatedCols,
												  get_attnum(rte->relid, column_names[c]) -
												  FirstLowInvalidHeapAttributeNumber);
		rtable = lappend(rtable, rte);
	}
	ExecInitRangeTable(st->estate, rtable);

	for (t = 0; t < STORE_NTABLES; t++)
	{
		Oid			relid = exec_rt_fetch(t + 1, st->estate)->relid;
		Relation	rel;

		rel = table_open(relid, RowExclusiveLock);
		st->rri[t] = makeNode(ResultRelInfo);
		InitResultRelInfo(st->rri[t], rel, t + 1, NULL, 0);
		ExecOpenIndices(st->rri[t], false);
		st->slot[t] = table_slot_create(rel, NULL);
		st->plain[t] = rel->trigdesc == NULL && rel->rd_rules == NULL;
		if (t == STORE_TRANSITION)
			continue;
		for (c = 0; c < NCOLS; c++)
		{
			AttrNumber	attnum = get_attnum(relid, column_names[c]);

			if (attnum == InvalidAttrNumber)
				elog(ERROR, "column %s of toygun.%s does not exist", column_names[c], table_names[t]);
			st->col[t][c] = attnum - 1;
		}
	}
	CurrentResourceOwner = save_owner;
	MemoryContextSwitchTo(old);
	return st;
}

/* Close the store before the transaction commits; an abort just forgets it. */
static void
store_end_of_xact(bool commit)
{
	ResourceOwner save_owner;
	int			t;

	if (store == NULL)
		return;
	if (commit)
	{
		save_owner = CurrentResourceOwner;
		CurrentResourceOwner = TopTransactionResourceOwner;
		for (t = 0; t < STORE_NTABLES; t++)
		{
			ExecDropSingleTupleTableSlot(store->slot[t]);
			ExecCloseIndices(store->rri[t]);
			table_close(store->rri[t]->ri_RelationDesc, NoLock);
		}
		FreeExecutorState(store->estate);
		CurrentResourceOwner = save_owner;
	}
	store = NULL;
}

static Store *
get_store(void)
{
	if (store == NULL)
		store = open_store();
	return store;
}

/* Append one history row. */
static void
insert_step(Store *st, pg_uuid_t *id, int64 step, ToygunStep *s, TimestampTz at)
{
	TupleTableSlot *slot = st->slot[STORE_TRANSITION];
	ResultRelInfo *rri = st->rri[STORE_TRANSITION];

	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	/* object_id, step, from_state, to_state, at, note */
	slot->tts_values[0] = UUIDPGetDatum(id);
	slot->tts_values[1] = Int64GetDatum(step);
	slot->tts_values[2] = CStringGetTextDatum(s->from_state);
	slot->tts_values[3] = CStringGetTextDatum(s->to_state);
	slot->tts_values[4] = TimestampTzGetDatum(at);
	slot->tts_values[5] = s->note ? CStringGetTextDatum(s->note) : (Datum) 0;
	slot->tts_isnull[5] = s->note == NULL;
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(rri, st->estate, slot);
	ResetPerTupleExprContext(st->estate);
}

/*
 * Write the new version of a locked object row and its history. new_values
 * holds the state, attrs, step, run_at (run_at_null), attempts and
 * last_error to write. Returns false, having written nothing, when the SQL
 * path must do it. On success *saved is the saved row (if saved is not NULL).
 */
bool
toygun_store_update(ToygunObject *obj, Datum run_at, bool run_at_null, int64 expected_step,
					Datum *saved)
{
	Store	   *st;
	int			t = obj->kind == TOYGUN_TASK ? STORE_TASK : STORE_RESOURCE;
	Relation	rel;
	TupleTableSlot *slot;
	TupleDesc	desc;
	AttrNumber *col;
	HeapTupleHeader td = DatumGetHeapTupleHeader(obj->row);
	HeapTupleData old;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (!toygun_direct_writes)
		return false;
	st = get_store();
	if (!st->plain[t] || !st->plain[STORE_TRANSITION] || !ItemPointerIsValid(&obj->tid))
		return false;
	rel = st->rri[t]->ri_RelationDesc;
	slot = st->slot[t];
	desc = slot->tts_tupleDescriptor;
	col = st->col[t];

	/* the new version: the row as read, with the changed columns */
	old.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&old.t_self);
	old.t_tableOid = InvalidOid;
	old.t_data = td;
	ExecClearTuple(slot);
	heap_deform_tuple(&old, desc, slot->tts_values, slot->tts_isnull);
	slot->tts_values[col[COL_STATE]] = CStringGetTextDatum(obj->state);
	slot->tts_values[col[COL_ATTRS]] = JsonbPGetDatum(obj->attrs);
	slot->tts_values[col[COL_STEP]] = Int64GetDatum(expected_step + obj->nsteps);
	slot->tts_values[col[COL_RUN_AT]] = run_at;
	slot->tts_isnull[col[COL_RUN_AT]] = run_at_null;
	slot->tts_values[col[COL_ATTEMPTS]] = Int32GetDatum(obj->attempts);
	slot->tts_values[col[COL_LAST_ERROR]] = obj->last_error ? CStringGetTextDatum(obj->last_error) : (Datum) 0;
	slot->tts_isnull[col[COL_LAST_ERROR]] = obj->last_error == NULL;
	slot->tts_values[col[COL_UPDATED_AT]] = TimestampTzGetDatum(now);
	ExecStoreVirtualTuple(slot);

	result = table_tuple_update(rel, &obj->tid, slot, GetCurrentCommandId(true),
								GetActiveSnapshot(), InvalidSnapshot, true,
								&tmfd, &lockmode, &update_indexes);
	if (result == TM_SelfModified)
		return false;			/* changed by this transaction since: SQL path */
	if (result != TM_Ok)
		elog(ERROR, "locked %s %s changed under its lock", toygun_kind_name(obj->kind),
			 toygun_uuid_text(&obj->id));
	if (update_indexes && st->rri[t]->ri_NumIndices > 0)
		list_free(ExecInsertIndexTuples(st->rri[t], slot, st->estate, true, false, NULL, NIL));
	ResetPerTupleExprContext(st->estate);

	for (i = 0; i < obj->nsteps; i++)
		insert_step(st, &obj->id, expected_step + i, &obj->steps[i], now);

	if (saved != NULL)
		*saved = ExecFetchSlotHeapTupleDatum(slot);
	/* later statements of this transaction, a handler's too, see the writes */
	CommandCounterIncrement();
	return true;
}

static void
store_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			store_end_of_xact(true);
			break;
		case XACT_EVENT_ABORT:
			store_end_of_xact(false);
			break;
		default:
			break;
	}
}

/* From _PG_init. */
void
toygun_store_init(void)
{
	RegisterXactCallback(store_xact_callback, NULL);
}
