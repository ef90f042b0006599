/*
 * flow.c
 *		Concurrency limits (issue 17, flow control): a task type's
 *		max_running, and its max_per_key per concurrency key. A run's key is
 *		its flow_key, computed at its start (toygun_flow_key): the type's
 *		limit_id in the high 16 bits, a 48-bit hash of the key below.
 *
 * A slot is a lock in PostgreSQL's lock manager: slot i of a key is an
 * exclusive lock on the tag (database, key, i) of locktype "userlock",
 * which no SQL function takes. A run is ticked only by a transaction that
 * holds one slot of its key (and one of its type, with max_running), taken
 * with a conditional LockAcquire from just before the claim locks the run
 * to the end of the transaction. So the counts are the lock manager's:
 * exact, never above the limit, and given back when the transaction ends
 * however it ends (commit, abort, a FATAL, pg_terminate_backend; a crash
 * restarts with an empty lock table). There is no count of our own that a
 * death could leave behind. A process never holds one slot twice, so the
 * slots it takes are the lowest free ones; with few runs held the search
 * is short (at most the held slots plus the wanted ones).
 *
 * Limited runs are in task_flow_idx only (flow_key, run_at), never in the
 * claim indexes of the other runs. A worker's claim reads the keys of each
 * limited type of its queue with a loose index scan (one descent per key,
 * at most FLOW_KEYS_PER_CLAIM keys a claim, the rest from a cursor next
 * time), takes the slots of each due key, round-robin, and claims that
 * many of the key's runs, oldest due first (object.c). A key at its limit
 * costs one failed lock attempt per slot, never a read of its runs: a
 * tenant's flood does not delay another tenant's runs.
 *
 * Types without a limit pay a pointer test on the tick path (def->flow),
 * and a worker of a queue without limited types a bool and an int test per
 * claim: the list of its queue's limited types is read again only after a
 * define changed toygun.task_type (a relcache invalidation).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_limit_status);

/* The most limited runs one batch claims: each holds up to 2 locks of the shared lock table. */
#define FLOW_BATCH_MAX 64
/* The most keys of a type one claim reads (a cursor goes on from there next time). */
#define FLOW_KEYS_PER_CLAIM 256
/* How long a worker that found every due key at its limit sleeps at most (a release wakes it sooner). */
#define FLOW_BLOCKED_SLEEP_MS 250
/* The most ancestors '$root' walks up (a deeper resource's run is refused: 54000). */
#define FLOW_ROOT_MAX_DEPTH 10000
#define FLOW_HASH_MASK ((INT64CONST(1) << 48) - 1)
/* field2 of a type's slot: a key's high word never has this bit (limit_id < 2^15) */
#define FLOW_TYPE_BIT 0x80000000U

/* A limited type of the worker's queue. */
typedef struct LimitedType
{
	int16		limit_id;
	int32		max_running;	/* 0: none */
	int32		max_per_key;	/* 0: none */
	int64		cursor;			/* where the next key scan starts */
	uint32		rr;				/* round robin over its due keys */
} LimitedType;

static LimitedType types[TOYGUN_FLOW_MAX_TYPES];
static int	ntypes = 0;
static int	types_queue = -1;
static bool types_stale = true;
static Oid	task_type_relid = InvalidOid;
static uint32 types_rr = 0;

/* What the last claim saw: when a limited run is next due (0: none), whether it held slots. */
static TimestampTz flow_next_due = 0;
static bool batch_held = false;

/* The runs this transaction holds slots for, with the (sub)transaction level that took them. */
typedef struct Granted
{
	pg_uuid_t	id;
	int			level;
} Granted;
static Granted *granted = NULL;
static int	ngranted = 0;
static int	granted_cap = 0;

static void
types_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || task_type_relid == InvalidOid || relid == task_type_relid)
		types_stale = true;
}

static void
flow_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ngranted = 0;
			break;
		default:
			break;
	}
}

static void
flow_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i,
				j;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* its locks are released: so are its runs' slots */
		for (i = 0, j = 0; i < ngranted; i++)
			if (granted[i].level < level)
				granted[j++] = granted[i];
		ngranted = j;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* its locks go to its parent */
		for (i = 0; i < ngranted; i++)
			if (granted[i].level >= level)
				granted[i].level = level - 1;
	}
}

/* From _PG_init. */
void
toygun_flow_init(void)
{
	toygun_on_relcache(types_invalidated);
	RegisterXactCallback(flow_xact_callback, NULL);
	RegisterSubXactCallback(flow_subxact_callback, NULL);
}

/* The lock tag of slot i of a key, or of its type's key (limit_id << 48) with of_type. */
static void
slot_tag(LOCKTAG *tag, int64 key, bool of_type, int i)
{
	tag->locktag_field1 = MyDatabaseId;
	tag->locktag_field2 = (uint32) ((uint64) key >> 32) | (of_type ? FLOW_TYPE_BIT : 0);
	tag->locktag_field3 = (uint32) key;
	tag->locktag_field4 = (uint16) i;
	tag->locktag_type = LOCKTAG_USERLOCK;
	tag->locktag_lockmethodid = USER_LOCKMETHOD;
}

/*
 * Take up to want free slots of a key (of its type, with of_type) below
 * limit: their numbers in slots[]. Returns how many. A slot this process
 * holds already (for another run) is not free.
 */
static int
take_slots(int64 key, bool of_type, int limit, int want, uint16 *slots)
{
	int			got = 0;
	int			i;

	for (i = 0; i < limit && got < want; i++)
	{
		LOCKTAG		tag;
		LockAcquireResult r;

		slot_tag(&tag, key, of_type, i);
		r = LockAcquire(&tag, ExclusiveLock, false, true);
		if (r == LOCKACQUIRE_OK)
			slots[got++] = (uint16) i;
		else if (r == LOCKACQUIRE_ALREADY_HELD || r == LOCKACQUIRE_ALREADY_CLEAR)
			(void) LockRelease(&tag, ExclusiveLock, false);
	}
	return got;
}

/* Give back slots[from..to) of a key before the transaction ends (taken but not used). */
static void
give_back(int64 key, bool of_type, uint16 *slots, int from, int to)
{
	int			i;

	for (i = from; i < to; i++)
	{
		LOCKTAG		tag;

		slot_tag(&tag, key, of_type, slots[i]);
		(void) LockRelease(&tag, ExclusiveLock, false);
	}
}

static void
grant(pg_uuid_t *id)
{
	if (ngranted >= granted_cap)
	{
		int			cap = granted_cap == 0 ? 128 : granted_cap * 2;

		granted = granted == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(Granted) * cap)
			: repalloc(granted, sizeof(Granted) * cap);
		granted_cap = cap;
	}
	granted[ngranted].id = *id;
	granted[ngranted].level = GetCurrentTransactionNestLevel();
	ngranted++;
}

static bool
holds(pg_uuid_t *id)
{
	int			i;

	for (i = 0; i < ngranted; i++)
		if (memcmp(&granted[i].id, id, sizeof(pg_uuid_t)) == 0)
			return true;
	return false;
}

/* The flow_key of a type's key text: its limit_id, and 48 bits of the text's hash. */
int64
toygun_flow_key_of(int16 limit_id, const char *key)
{
	uint64		h = 0;

	if (key != NULL)
		h = hash_bytes_extended((const unsigned char *) key, (int) strlen(key), 0);
	return ((int64) limit_id << 48) | (int64) (h & FLOW_HASH_MASK);
}

/* The id of the root ancestor of a resource (itself without a parent). */
static char *
root_of(pg_uuid_t *resource)
{
	static SPIPlanPtr plan;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	char	   *root = NULL;

	values[0] = UUIDPGetDatum(resource);
	toygun_run(toygun_plan(&plan,
						   "WITH RECURSIVE up(id, parent_id, depth) AS ("
						   "  SELECT r.id, r.parent_id, 0 FROM ONLY toygun.resource r WHERE r.id = $1"
						   "  UNION ALL"
						   "  SELECT r.id, r.parent_id, up.depth + 1 FROM up JOIN ONLY toygun.resource r"
						   "    ON r.id = up.parent_id WHERE up.depth < " CppAsString2(FLOW_ROOT_MAX_DEPTH) ")"
						   " SELECT id::pg_catalog.text, depth >= " CppAsString2(FLOW_ROOT_MAX_DEPTH) " AND parent_id IS NOT NULL"
						   "   FROM up ORDER BY depth DESC LIMIT 1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		root = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		/* the walk stopped at its bound below a parent: not the root, and one tree's resources would part */
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("resource %s is more than %d levels below its root: a run on it has no '$root' key",
							toygun_uuid_text(resource), FLOW_ROOT_MAX_DEPTH),
					 errhint("Start the run on a resource nearer its root, or define the type with another concurrency_key.")));
	}
	return root ? root : pstrdup(toygun_uuid_text(resource));
}

/*
 * The flow_key of a run of a limited type on a resource with these attrs:
 * its concurrency_key's value (the field's JSON text; a run without the
 * field has JSON null's key), or its resource's root ancestor, or the
 * type's single key without concurrency_key.
 */
int64
toygun_flow_key(ToygunDef *def, pg_uuid_t *resource, Jsonb *attrs)
{
	ToygunFlow *flow = def->flow;
	const char *key = NULL;

	if (flow->key == NULL)
		return (int64) flow->limit_id << 48;
	if (strcmp(flow->key, TOYGUN_ROOT_KEY) == 0)
		key = root_of(resource);
	else
	{
		JsonbValue	k;
		JsonbValue *v = NULL;

		k.type = jbvString;
		k.val.string.val = flow->key;
		k.val.string.len = (int) strlen(flow->key);
		if (attrs != NULL && JB_ROOT_IS_OBJECT(attrs))
			v = findJsonbValueFromContainer(&attrs->root, JB_FOBJECT, &k);
		key = v == NULL ? "null" : JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
	}
	return toygun_flow_key_of(flow->limit_id, key);
}

/*
 * Validate define_task's limits (max_running, concurrency_key,
 * max_per_key: arguments argno, argno + 1, argno + 2) into *out; false if
 * the type has none. limit_id is left for toygun_flow_assign().
 */
bool
toygun_flow_parse(FunctionCallInfo fcinfo, int argno, const char *label, char **fields,
				  int nfields, bool has_fields, char **encrypted, int nencrypted, int priority,
				  ToygunFlow *out)
{
	memset(out, 0, sizeof(*out));
	if (PG_NARGS() <= argno + 2)
		return false;
	if (!PG_ARGISNULL(argno))
		out->max_running = PG_GETARG_INT32(argno);
	if (!PG_ARGISNULL(argno + 1))
		out->key = text_to_cstring(PG_GETARG_TEXT_PP(argno + 1));
	if (!PG_ARGISNULL(argno + 2))
		out->max_per_key = PG_GETARG_INT32(argno + 2);
	if (!PG_ARGISNULL(argno) && (out->max_running < 1 || out->max_running > TOYGUN_FLOW_MAX_LIMIT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_running of %s must be between 1 and %d, not %d", label,
						TOYGUN_FLOW_MAX_LIMIT, out->max_running),
				 errhint("Leave it NULL for no limit.")));
	if (!PG_ARGISNULL(argno + 2) && (out->max_per_key < 1 || out->max_per_key > TOYGUN_FLOW_MAX_LIMIT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_per_key of %s must be between 1 and %d, not %d", label,
						TOYGUN_FLOW_MAX_LIMIT, out->max_per_key),
				 errhint("Leave it NULL for no limit per key.")));
	if ((out->key == NULL) != (out->max_per_key == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s gives %s without %s", label,
						out->key ? "concurrency_key" : "max_per_key",
						out->key ? "max_per_key" : "concurrency_key"),
				 errhint("A limit per key needs both: concurrency_key names the key, max_per_key its limit.")));
	if (out->key == NULL && out->max_running == 0)
		return false;
	if (out->key != NULL)
	{
		if (out->key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("concurrency_key of %s is empty", label),
					 errhint("Name a top-level field of its attrs, or '$root'.")));
		if (out->key[0] == '$' && strcmp(out->key, TOYGUN_ROOT_KEY) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("concurrency_key \"%s\" of %s is not a field name nor '$root'", out->key, label),
					 errhint("Keys starting with $ are reserved; '$root' is the root ancestor of the run's resource.")));
		if (out->key[0] != '$' && has_fields && !toygun_in_list(out->key, fields, nfields))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("concurrency_key \"%s\" of %s is not one of its fields", out->key, label),
					 errhint("Declare it in fields, or name another field.")));
		if (toygun_in_list(out->key, encrypted, nencrypted))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("concurrency_key \"%s\" of %s is an encrypted field", out->key, label),
					 errhint("Name a field that is not encrypted.")));
	}
	if (priority != 0)
		toygun_flow_refuse_priority(label);
	return true;
}

/* A run of a limited type has priority 0 (issue 17: limited runs are claimed at level 0). */
void
toygun_flow_refuse_priority(const char *label)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s has a concurrency limit, so its runs cannot have a priority", label),
			 errhint("Leave priority NULL or 0, or define the type without max_running and max_per_key.")));
}

/*
 * The limit_id of a limited type being defined: the one it has, else the
 * lowest free one (under a lock against a concurrent define). Inside the
 * define's call.
 */
int16
toygun_flow_assign(const char *resource_type, const char *name, const char *label)
{
	static SPIPlanPtr plan;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	Datum		d;
	LOCKTAG		tag;

	/* the ids are handed out one define at a time */
	slot_tag(&tag, 0, true, 0);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&plan,
						   "SELECT COALESCE((SELECT limit_id FROM ONLY toygun.task_type"
						   "                  WHERE resource_type = $1 AND name = $2),"
						   "                 (SELECT min(i)::pg_catalog.int2 FROM pg_catalog.generate_series(1, "
						   CppAsString2(TOYGUN_FLOW_MAX_TYPES) ") i"
						   "                   WHERE NOT EXISTS (SELECT FROM ONLY toygun.task_type"
						   "                                      WHERE limit_id = i)))",
						   2, argtypes),
			   values, NULL, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s cannot have a concurrency limit: %d task types have one already",
						label, TOYGUN_FLOW_MAX_TYPES),
				 errhint("Define one of them again without max_running and max_per_key.")));
	return DatumGetInt16(d);
}

/*
 * The live runs of a type whose limits changed get their flow_key again
 * (NULL without limits): they move between task_flow_idx and the other
 * claim indexes in the define's transaction. Wakes the queue.
 */
void
toygun_flow_rekey(const char *resource_type, const char *name, int16 queue_id, bool limited)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(name);
	/* planned with its values: Citus plans no generic multi-shard write */
	toygun_run_once(limited
					? "UPDATE ONLY toygun.task SET flow_key = toygun._flow_key(resource_type, name, resource_id, attrs)"
					"  WHERE resource_type = $1 AND name = $2 AND state <> '__stop__'"
					: "UPDATE ONLY toygun.task SET flow_key = NULL"
					"  WHERE resource_type = $1 AND name = $2 AND state <> '__stop__' AND flow_key IS NOT NULL",
					2, argtypes, values, NULL, 0);
	if (SPI_processed > 0)
		toygun_wake_queue_at_commit(queue_id, 0);
}

/*
 * On the tick path, behind def->flow: the run's slots. A run a worker
 * claimed, or this transaction ticked already, holds them; otherwise they
 * are taken now, for the rest of the transaction. At the limit, a tick by
 * hand is refused (55000); a worker's (the replay of a failed batch) leaves
 * the run for a later claim: false.
 */
bool
toygun_flow_take(ToygunObject *obj, ToygunDef *def, bool by_hand)
{
	ToygunFlow *flow = def->flow;
	bool		isnull;
	Datum		d;
	int64		key;
	uint16		tslot,
				kslot;

	if (holds(&obj->id))
		return true;
	d = GetAttributeByNum(DatumGetHeapTupleHeader(obj->row), TOYGUN_TASK_FLOW_KEY, &isnull);
	/* a run started before its type had limits and not rekeyed yet: the type's key */
	key = isnull ? (int64) flow->limit_id << 48 : DatumGetInt64(d);
	if (flow->max_running > 0 &&
		take_slots((int64) flow->limit_id << 48, true, flow->max_running, 1, &tslot) == 0)
	{
		if (!by_hand)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is at its max_running (%d): run %s is not ticked",
						toygun_def_label(def), flow->max_running, toygun_uuid_text(&obj->id)),
				 errhint("Tick it once one of its runs being ticked has committed, or let a worker tick it.")));
	}
	if (flow->max_per_key > 0 && take_slots(key, false, flow->max_per_key, 1, &kslot) == 0)
	{
		if (flow->max_running > 0)
			give_back((int64) flow->limit_id << 48, true, &tslot, 0, 1);
		if (!by_hand)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is at its max_per_key (%d) for the key of run %s",
						toygun_def_label(def), flow->max_per_key, toygun_uuid_text(&obj->id)),
				 errhint("Tick it once one of the runs of its key being ticked has committed, or let a worker tick it.")));
	}
	grant(&obj->id);
	return true;
}

/* Read the limited types of a queue (a define changed task_type, or the queue is another). */
static void
load_types(int queue)
{
	static SPIPlanPtr plan;
	Oid			argtypes[1] = {INT2OID};
	Datum		values[1];
	uint64		i;
	LimitedType old[TOYGUN_FLOW_MAX_TYPES];
	int			nold = types_queue == queue ? ntypes : 0;

	memcpy(old, types, sizeof(LimitedType) * nold);
	types_stale = false;
	if (task_type_relid == InvalidOid)
		task_type_relid = get_relname_relid("task_type", get_namespace_oid("toygun", false));
	values[0] = Int16GetDatum((int16) queue);
	toygun_run(toygun_plan(&plan,
						   "SELECT limit_id, COALESCE(max_running, 0), COALESCE(max_per_key, 0)"
						   "  FROM ONLY toygun.task_type WHERE limit_id IS NOT NULL AND queue_id = $1"
						   " ORDER BY limit_id",
						   1, argtypes),
			   values, NULL, 0);
	ntypes = 0;
	for (i = 0; i < SPI_processed && ntypes < TOYGUN_FLOW_MAX_TYPES; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		LimitedType *t = &types[ntypes];
		bool		isnull;
		int			j;

		t->limit_id = DatumGetInt16(SPI_getbinval(tup, desc, 1, &isnull));
		t->max_running = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		t->max_per_key = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		t->cursor = (int64) t->limit_id << 48;
		t->rr = 0;
		if (t->limit_id < 1 || t->limit_id > TOYGUN_FLOW_MAX_TYPES ||
			t->max_running < 0 || t->max_per_key < 0 ||
			t->max_running > TOYGUN_FLOW_MAX_LIMIT || t->max_per_key > TOYGUN_FLOW_MAX_LIMIT)
			continue;			/* changed behind define_task's back: not claimed */
		for (j = 0; j < nold; j++)
			if (old[j].limit_id == t->limit_id)
			{
				t->cursor = old[j].cursor;
				t->rr = old[j].rr;
			}
		ntypes++;
	}
	SPI_freetuptable(SPI_tuptable);
	types_queue = queue;
}

/*
 * Whether the queue has limited types: a bool and an int test, unless a
 * define changed task_type since (then one read of it). In a transaction.
 */
bool
toygun_flow_limited(int queue)
{
	if (types_stale || types_queue != queue)
	{
		if (!toygun_has_queues())
			return false;
		load_types(queue);
	}
	return ntypes > 0;
}

/* Claim up to budget due runs of one limited type, round-robin over its due keys. */
static int
claim_type(LimitedType *t, int budget, ToygunObject **objs, TimestampTz now, bool *blocked)
{
	int64		keys[FLOW_KEYS_PER_CLAIM];
	TimestampTz at[FLOW_KEYS_PER_CLAIM];
	int64		due[FLOW_KEYS_PER_CLAIM];
	int64		type_key = (int64) t->limit_id << 48;
	int64		end = (int64) (t->limit_id + 1) << 48;
	int			nkeys;
	int			ndue = 0;
	int			n = 0;
	int			i;

	nkeys = toygun_flow_keys(t->cursor, end, FLOW_KEYS_PER_CLAIM, keys, at);
	/* the rest of the keys next time; from the start once they were all read */
	t->cursor = nkeys == FLOW_KEYS_PER_CLAIM ? keys[nkeys - 1] + 1 : type_key;
	if (nkeys == FLOW_KEYS_PER_CLAIM)
		flow_next_due = flow_next_due == 0 ? now : Min(flow_next_due, now);
	for (i = 0; i < nkeys; i++)
	{
		if (at[i] <= now)
			due[ndue++] = keys[i];
		else if (flow_next_due == 0 || at[i] < flow_next_due)
			flow_next_due = at[i];
	}
	for (i = 0; i < ndue && n < budget; i++)
	{
		int64		key = due[(t->rr + i) % ndue];
		uint16		tslots[FLOW_BATCH_MAX];
		uint16		kslots[FLOW_BATCH_MAX];
		int			want = budget - n;
		int			got;
		int			j;

		if (t->max_running > 0)
		{
			want = take_slots(type_key, true, t->max_running, want, tslots);
			if (want == 0)
			{
				*blocked = true;
				break;
			}
		}
		if (t->max_per_key > 0)
		{
			int			k = take_slots(key, false, t->max_per_key, want, kslots);

			if (t->max_running > 0)
				give_back(type_key, true, tslots, k, want);
			want = k;
			if (want == 0)
			{
				*blocked = true;
				continue;
			}
		}
		got = toygun_claim_flow_key(key, want, objs + n);
		if (t->max_per_key > 0)
			give_back(key, false, kslots, got, want);
		if (t->max_running > 0)
			give_back(type_key, true, tslots, got, want);
		for (j = 0; j < got; j++)
			grant(&objs[n + j]->id);
		n += got;
	}
	t->rr++;
	return n;
}

/*
 * A worker's claim of due limited runs of its queue (toygun_flow_limited()
 * said it has some): up to budget (and FLOW_BATCH_MAX), each with its
 * slots, held until the batch's transaction ends.
 */
int
toygun_flow_claim(int queue, int budget, ToygunObject **objs)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	bool		blocked = false;
	int			n = 0;
	int			i;

	flow_next_due = 0;
	budget = Min(budget, FLOW_BATCH_MAX);
	for (i = 0; i < ntypes && n < budget; i++)
		n += claim_type(&types[(types_rr + i) % ntypes], budget - n, objs + n, now, &blocked);
	types_rr++;
	/* due runs wait for a slot: look again soon, if no release wakes us first */
	if (blocked)
		flow_next_due = TimestampTzPlusMilliseconds(now, FLOW_BLOCKED_SLEEP_MS);
	batch_held = n > 0;
	return n;
}

/*
 * How long an idle worker may sleep for the limited runs of its queue, as
 * its last claim saw them (-1: no limit of its own).
 */
long
toygun_flow_sleep_ms(void)
{
	TimestampTz now;

	if (ntypes == 0 || flow_next_due == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (flow_next_due <= now)
		return 0;
	return TimestampDifferenceMilliseconds(now, flow_next_due) + 1;
}

/* Whether the worker's last batch held slots (its commit gave them back: wake a waiting worker). */
bool
toygun_flow_batch_held(void)
{
	bool		held = batch_held;

	batch_held = false;
	return held;
}

/*
 * toygun.limit_status(): the slots held now, as the lock manager has them:
 * per limited type (flow_key NULL) the slots of its max_running, and per
 * key those of its max_per_key; only of the types the caller may read.
 * Read by the view toygun.flow.
 */
Datum
toygun_limit_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LockData   *locks;
	HTAB	   *counts;
	HASHCTL		ctl;
	HASH_SEQ_STATUS seq;
	int64	   *entry;
	int			i;
	static SPIPlanPtr plan;
	bool		readable[TOYGUN_FLOW_MAX_TYPES + 1];
	uint64		u;

	InitMaterializedSRF(fcinfo, 0);
	/* the limited types the caller may read: another owner's keys and counts are not shown */
	memset(readable, 0, sizeof(readable));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	toygun_run(toygun_plan(&plan,
						   "SELECT limit_id FROM ONLY toygun.task_type"
						   " WHERE limit_id IS NOT NULL AND resource_type OPERATOR(pg_catalog.=)"
						   "       ANY (toygun.readable_types())",
						   0, NULL),
			   NULL, NULL, 0);
	for (u = 0; u < SPI_processed; u++)
	{
		bool		isnull;
		int16		id = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[u], SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && id >= 1 && id <= TOYGUN_FLOW_MAX_TYPES)
			readable[id] = true;
	}
	SPI_finish();
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64) * 2;
	ctl.entrysize = sizeof(int64) * 3;
	ctl.hcxt = CurrentMemoryContext;
	counts = hash_create("toygun slots", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	locks = GetLockStatusData();
	for (i = 0; i < locks->nelements; i++)
	{
		LockInstanceData *l = &locks->locks[i];
		int64		k[2];
		bool		found;

		if (l->locktag.locktag_type != LOCKTAG_USERLOCK ||
			l->locktag.locktag_lockmethodid != USER_LOCKMETHOD ||
			l->locktag.locktag_field1 != MyDatabaseId ||
			(l->holdMask & LOCKBIT_ON(ExclusiveLock)) == 0)
			continue;
		k[0] = (int64) (((uint64) (l->locktag.locktag_field2 & ~FLOW_TYPE_BIT) << 32) |
						l->locktag.locktag_field3);
		k[1] = (l->locktag.locktag_field2 & FLOW_TYPE_BIT) != 0;
		/* the lock that hands out limit ids is no slot */
		if (k[0] >> 48 < 1 || k[0] >> 48 > TOYGUN_FLOW_MAX_TYPES || !readable[k[0] >> 48])
			continue;
		entry = hash_search(counts, k, HASH_ENTER, &found);
		if (!found)
			entry[2] = 0;
		entry[2]++;
	}
	hash_seq_init(&seq, counts);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int16GetDatum((int16) (entry[0] >> 48));
		values[1] = Int64GetDatum(entry[0]);
		nulls[1] = entry[1] != 0;
		values[2] = Int32GetDatum((int32) entry[2]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
