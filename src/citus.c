/*
 * citus.c
 *		A worker on a Citus node ticks the runs of the shards that node holds
 *		(doc/citus.md §3). On a node where toygun's tables are distributed,
 *		a claim through toygun.task is a multi-shard query with FOR UPDATE,
 *		which Citus refuses; the same statement on one of the node's own
 *		shard tables (toygun.task_102008) is a plain local query. So the
 *		worker works one shard group at a time: the co-located shards of
 *		every distributed toygun table with the same shard index (a
 *		resource shard and its runs' shard). While a group is active,
 *		toygun_plan() hands out plans of the worker's statements with each
 *		distributed table's name replaced by the group's shard table.
 *
 * The group is active only for the worker's own statements about the runs
 * and resources it claimed: toygun_begin_handler_call() suspends it while
 * user code runs (handlers, hooks, upgrades, alarm deliveries), so that a
 * handler's start_task on another resource goes through Citus, routed to
 * whichever node holds it.
 *
 * A batch holds Citus's shard metadata lock on its group's shards in share
 * mode, as Citus's own executor does for every write: a shard move waits
 * at its cutover for the batch to commit, and the placement is checked
 * again under the lock, so that a worker never writes into a copy that
 * Citus has already switched away from.
 *
 * Nothing here runs where toygun's tables are not distributed: the worker
 * asks toygun_citus_round() once per round, which costs a catalog cache
 * lookup where Citus is not installed, and toygun_plan() tests one pointer.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* Citus's ShareLock on shard metadata (lock_shard_metadata's lock_mode 5) */
#define SHARD_METADATA_SHARE_LOCK 5
/* Read the groups again at least this often, whatever the invalidations said. */
#define GROUPS_REFRESH_MS 5000
/* At most this many distributed toygun tables in a group. */
#define MAX_GROUP_TABLES 16

/* One statement's plan in a group: keyed by its cache's address in toygun_plan(). */
typedef struct GroupPlan
{
	SPIPlanPtr *cache;			/* the key */
	SPIPlanPtr	plan;			/* NULL: the statement names no distributed table */
} GroupPlan;

struct ToygunShardGroup
{
	int			colocationid;
	char	   *minvalue;		/* the shard index: the shards' shardminvalue */
	int			n;
	int64		shardids[MAX_GROUP_TABLES];
	char	   *from[MAX_GROUP_TABLES]; /* "toygun.task" */
	char	   *to[MAX_GROUP_TABLES];	/* "toygun.task_102008" */
	HTAB	   *plans;
	bool		kept;			/* still on this node at the last reading */
};

/* The group toygun_plan() rewrites for, or NULL. */
ToygunShardGroup *toygun_citus_group = NULL;

static MemoryContext citus_context = NULL;
static ToygunShardGroup **groups = NULL;
static int	ngroups = 0;
static int	next_group = 0;
/* the group of the batch under way (what a resume after user code restores) */
static ToygunShardGroup *batch_group = NULL;
/* the group user code suspended, and the transaction nest level it began at */
static ToygunShardGroup *suspended_group = NULL;
static int	suspended_level = 0;
static bool in_use = false;
static bool stale = true;
static TimestampTz read_at = 0;

/* toygun.task, as the groups were last read: its invalidations make them stale */
static Oid	task_relid = InvalidOid;
static bool logged_skips = false;

static inline bool
ident_char(char c)
{
	return isalnum((unsigned char) c) || c == '_' || c == '$' || IS_HIGHBIT_SET(c);
}

/*
 * The length of the literal, quoted identifier, comment or dollar-quoted
 * string that starts at p, copied as it is; 0 if none starts there.
 * toygun's statements are its own constants: this knows their shapes
 * (standard strings, E'' strings with backslashes, "identifiers", -- and
 * block comments, $tag$ bodies), not every corner of SQL.
 */
static size_t
skip_quoted(const char *sql, const char *p)
{
	const char *q = p;

	if (*q == '\'' || *q == '"')
	{
		char		quote = *q++;
		bool		backslashes = quote == '\'' && q - 1 > sql && (q[-2] == 'E' || q[-2] == 'e') &&
			(q - 2 == sql || !ident_char(q[-3]));

		while (*q)
		{
			if (backslashes && *q == '\\' && q[1])
				q += 2;
			else if (*q == quote && q[1] == quote)
				q += 2;
			else if (*q == quote)
				return q + 1 - p;
			else
				q++;
		}
		return q - p;
	}
	if (q[0] == '-' && q[1] == '-')
		return strcspn(q, "\n");
	if (q[0] == '/' && q[1] == '*')
	{
		const char *end = strstr(q + 2, "*/");

		return end ? end + 2 - p : strlen(q);
	}
	if (*q == '$' && (q == sql || !ident_char(q[-1])))
	{
		const char *tag_end = q + 1;
		const char *end;
		char	   *tag;

		while (*tag_end && *tag_end != '$' && ident_char(*tag_end))
			tag_end++;
		if (*tag_end != '$')
			return 0;			/* a parameter ($1), not a quote */
		tag = pnstrdup(q, tag_end + 1 - q);
		end = strstr(tag_end + 1, tag);
		end = end ? end + strlen(tag) : q + strlen(q);
		pfree(tag);
		return end - p;
	}
	return 0;
}

/*
 * sql with each whole-word name of g's distributed tables replaced by g's
 * shard table, outside literals, quoted identifiers and comments; NULL if
 * it names none. "toygun.task" does not match "toygun.task_type".
 */
static char *
rewrite_sql(const char *sql, ToygunShardGroup *g)
{
	StringInfoData buf;
	const char *p = sql;
	bool		changed = false;

	initStringInfo(&buf);
	while (*p)
	{
		int			i;
		size_t		quoted = skip_quoted(sql, p);

		if (quoted > 0)
		{
			appendBinaryStringInfo(&buf, p, quoted);
			p += quoted;
			continue;
		}
		if (p == sql || (!ident_char(p[-1]) && p[-1] != '.'))
		{
			for (i = 0; i < g->n; i++)
			{
				size_t		len = strlen(g->from[i]);

				if (strncmp(p, g->from[i], len) == 0 && !ident_char(p[len]))
				{
					appendStringInfoString(&buf, g->to[i]);
					p += len;
					changed = true;
					break;
				}
			}
			if (i < g->n)
				continue;
		}
		appendStringInfoChar(&buf, *p++);
	}
	if (!changed)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/*
 * toygun_plan() with a group active: the statement's plan on the group's
 * shards, made once per statement and group; NULL when it names no
 * distributed table (toygun_plan() uses its one plan for every group).
 */
SPIPlanPtr
toygun_citus_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	ToygunShardGroup *g = toygun_citus_group;
	GroupPlan  *entry;
	bool		found;

	entry = hash_search(g->plans, &cache, HASH_FIND, NULL);
	if (entry == NULL)
	{
		char	   *shard_sql = rewrite_sql(sql, g);
		SPIPlanPtr	plan = NULL;

		/* prepared before it is entered: an error leaves no entry behind */
		if (shard_sql != NULL)
		{
			plan = SPI_prepare_cursor(shard_sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed for \"%s\": %s", shard_sql,
					 SPI_result_code_string(SPI_result));
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "SPI_keepplan failed");
			pfree(shard_sql);
		}
		entry = hash_search(g->plans, &cache, HASH_ENTER, &found);
		entry->plan = plan;
	}
	return entry->plan;
}

/* A plan of citus.c's own (catalog reads, locks), made once and kept. */
static SPIPlanPtr
own_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

static void
run(SPIPlanPtr plan, Datum *values, const char *nulls, long count)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/*
 * Citus invalidates a distributed table's relcache entry when its shards'
 * placements change (a move): any invalidation of toygun.task, or of all
 * relations, means the groups may have changed.
 */
static void
citus_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == task_relid)
		stale = true;
}

static void
free_group(ToygunShardGroup *g)
{
	HASH_SEQ_STATUS seq;
	GroupPlan  *entry;

	hash_seq_init(&seq, g->plans);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->plan != NULL)
			SPI_freeplan(entry->plan);
	hash_destroy(g->plans);
	for (int i = 0; i < g->n; i++)
	{
		pfree(g->from[i]);
		pfree(g->to[i]);
	}
	pfree(g->minvalue);
	pfree(g);
}

/* The same shards as g: plans made for g still hold. */
static ToygunShardGroup *
find_group(int colocationid, const char *minvalue, int n, int64 *shardids)
{
	for (int i = 0; i < ngroups; i++)
	{
		ToygunShardGroup *g = groups[i];

		if (g->colocationid == colocationid && strcmp(g->minvalue, minvalue) == 0 &&
			g->n == n && memcmp(g->shardids, shardids, sizeof(int64) * n) == 0)
			return g;
	}
	return NULL;
}

/*
 * Read whether toygun's tables are distributed here, and the node's shard
 * groups; keep the groups that did not change (with their plans), free the
 * others'.
 */
static void
read_groups(void)
{
	static SPIPlanPtr dist_plan = NULL;
	static SPIPlanPtr shards_plan = NULL;
	ToygunShardGroup **found;
	int			nfound = 0;
	uint64		i;
	MemoryContext old;
	bool		isnull;
	Oid			nsp = get_namespace_oid("toygun", false);

	if (citus_context == NULL)
		citus_context = AllocSetContextCreate(TopMemoryContext, "toygun citus",
											  ALLOCSET_SMALL_SIZES);
	stale = false;
	read_at = GetCurrentTimestamp();
	task_relid = get_relname_relid("task", nsp);

	/* is toygun.task distributed? */
	run(own_plan(&dist_plan,
						   "SELECT d.logicalrelid, c.relname = 'task'"
						   "  FROM pg_catalog.pg_dist_partition d"
						   "  JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid"
						   " WHERE c.relnamespace = $1",
						   1, (Oid[]) {OIDOID}),
			   (Datum[]) {ObjectIdGetDatum(nsp)}, NULL, 0);
	in_use = false;
	for (i = 0; i < SPI_processed; i++)
	{
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			in_use = true;
	}
	SPI_freetuptable(SPI_tuptable);

	found = MemoryContextAlloc(citus_context, sizeof(ToygunShardGroup *) * (ngroups + 1));
	if (in_use)
	{
		run(own_plan(&shards_plan,
							   "SELECT d.colocationid, s.shardminvalue, s.shardid,"
							   "       'toygun.' || pg_catalog.quote_ident(c.relname),"
							   "       pg_catalog.shard_name(s.logicalrelid, s.shardid)"
							   "  FROM pg_catalog.pg_dist_partition d"
							   "  JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid"
							   "  JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = d.logicalrelid"
							   "  JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid"
							   " WHERE c.relnamespace = $1 AND d.partmethod = 'h'"
							   /* toygun's own tables only: a user's table in schema toygun is not rewritten */
							   "   AND c.relname IN ('resource', 'task')"
							   "   AND d.colocationid = (SELECT colocationid FROM pg_catalog.pg_dist_partition"
							   "                          WHERE logicalrelid = 'toygun.task'::pg_catalog.regclass)"
							   "   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)"
							   " ORDER BY d.colocationid, s.shardminvalue::pg_catalog.int4, c.relname",
							   1, (Oid[]) {OIDOID}),
				   (Datum[]) {ObjectIdGetDatum(nsp)}, NULL, 0);
		found = repalloc(found, sizeof(ToygunShardGroup *) * (ngroups + SPI_processed + 1));
		for (i = 0; i < SPI_processed;)
		{
			int			colocationid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			char	   *minvalue = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			int64		shardids[MAX_GROUP_TABLES];
			char	   *from[MAX_GROUP_TABLES];
			char	   *to[MAX_GROUP_TABLES];
			int			n = 0;
			ToygunShardGroup *g;

			/* the rows of one group: same co-location, same shard index */
			for (; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];

				if (DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)) != colocationid ||
					strcmp(SPI_getvalue(tup, SPI_tuptable->tupdesc, 2), minvalue) != 0)
					break;
				if (n == MAX_GROUP_TABLES)
					continue;
				shardids[n] = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
				from[n] = SPI_getvalue(tup, SPI_tuptable->tupdesc, 4);
				to[n] = SPI_getvalue(tup, SPI_tuptable->tupdesc, 5);
				n++;
			}
			g = find_group(colocationid, minvalue, n, shardids);
			if (g == NULL)
			{
				HASHCTL		ctl;

				old = MemoryContextSwitchTo(citus_context);
				g = palloc0(sizeof(ToygunShardGroup));
				g->colocationid = colocationid;
				g->minvalue = pstrdup(minvalue);
				g->n = n;
				memcpy(g->shardids, shardids, sizeof(int64) * n);
				for (int k = 0; k < n; k++)
				{
					g->from[k] = pstrdup(from[k]);
					g->to[k] = pstrdup(to[k]);
				}
				ctl.keysize = sizeof(SPIPlanPtr *);
				ctl.entrysize = sizeof(GroupPlan);
				ctl.hcxt = citus_context;
				g->plans = hash_create("toygun shard group plans", 64, &ctl,
									   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
				MemoryContextSwitchTo(old);
			}
			g->kept = true;
			found[nfound++] = g;
		}
		SPI_freetuptable(SPI_tuptable);
	}

	/* groups that left the node: their plans go */
	for (i = 0; i < (uint64) ngroups; i++)
	{
		if (groups[i]->kept)
			groups[i]->kept = false;
		else
		{
			if (groups[i] == batch_group)
				batch_group = NULL;
			free_group(groups[i]);
		}
	}
	for (i = 0; i < (uint64) nfound; i++)
		found[i]->kept = false;
	if (groups != NULL)
		pfree(groups);
	groups = found;
	ngroups = nfound;
	if (next_group >= ngroups)
		next_group = 0;
}

/*
 * At the start of a worker's round, in its transaction: are toygun's tables
 * distributed on this node? Reads the shard groups again when Citus's
 * metadata changed. Where Citus is not installed, one catalog cache lookup.
 */
bool
toygun_citus_round(void)
{
	static bool registered = false;

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
	{
		in_use = false;
		return false;
	}
	if (!registered)
	{
		toygun_on_relcache(citus_relcache_callback);
		registered = true;
	}
	if (stale ||
		TimestampDifferenceExceeds(read_at, GetCurrentTimestamp(), GROUPS_REFRESH_MS))
		read_groups();
	if (in_use && !logged_skips)
	{
		ereport(LOG,
				(errmsg("toygun worker: toygun's tables are distributed by Citus on this node: it ticks the node's %d shard groups one at a time",
						ngroups),
				 errdetail("Retention rounds (history partitions, expired runs) are skipped on this node; doc/citus.md lists what else works per shard group only.")));
		logged_skips = true;
	}
	return in_use;
}

/* Whether the last toygun_citus_round() found toygun's tables distributed. */
bool
toygun_citus_in_use(void)
{
	return in_use;
}

/*
 * Take Citus's shard metadata lock on the batch group's shards, in share
 * mode, until the transaction ends, and check under it that they are still
 * placed on this node (a move's cutover that committed before we got the
 * lock took them). False, with the groups to be read again, if not.
 */
bool
toygun_citus_lock_batch_group(void)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr check_plan = NULL;
	ToygunShardGroup *g = batch_group;
	Datum	   *ids;
	Datum		values[1];
	bool		isnull;
	int64		here;
	const char *manual;

	if (g == NULL)
		return false;
	toygun_citus_group = NULL;
	ids = palloc(sizeof(Datum) * g->n);
	for (int i = 0; i < g->n; i++)
		ids[i] = Int64GetDatum(g->shardids[i]);
	values[0] = PointerGetDatum(construct_array(ids, g->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	run(own_plan(&lock_plan,
						   "SELECT pg_catalog.lock_shard_metadata(" CppAsString2(SHARD_METADATA_SHARE_LOCK) ", $1)",
						   1, (Oid[]) {INT8ARRAYOID}),
			   values, NULL, 0);
	run(own_plan(&check_plan,
						   "SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_placement"
						   " WHERE shardid = ANY ($1)"
						   "   AND groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)",
						   1, (Oid[]) {INT8ARRAYOID}),
			   values, NULL, 1);
	here = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (here != g->n)
	{
		stale = true;
		return false;
	}

	/*
	 * Citus refuses writes to shard tables from outside its own executor
	 * unless this is on; only the statements rewritten for the group write
	 * to them. Set for the transaction (GUC_ACTION_LOCAL): its end, commit
	 * or abort, undoes it; the next batch sets it again.
	 */
	manual = GetConfigOption("citus.enable_manual_changes_to_shards", true, false);
	if (manual == NULL || strcmp(manual, "on") != 0)
		(void) set_config_option("citus.enable_manual_changes_to_shards", "on", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	toygun_citus_group = g;
	return true;
}

/*
 * Begin a batch on the next group, round-robin: lock it and make it active.
 * False if the node holds none (a coordinator without shards) or none
 * whose placement held under the lock.
 */
bool
toygun_citus_begin_batch(void)
{
	toygun_citus_group = NULL;
	batch_group = NULL;
	if (ngroups == 0)
		return false;
	batch_group = groups[next_group];
	next_group = (next_group + 1) % ngroups;
	if (!toygun_citus_lock_batch_group())
	{
		batch_group = NULL;
		return false;
	}
	return true;
}

/*
 * The batch is over: no group is active. After an error the groups are read
 * again (a shard table gone under a probe, a placement that moved).
 */
void
toygun_citus_end_batch(bool failed)
{
	toygun_citus_group = NULL;
	batch_group = NULL;
	suspended_group = NULL;
	suspended_level = 0;
	if (failed)
		stale = true;
}

/* After an error in user code or a tick: the batch's group is active again. */
void
toygun_citus_resume(void)
{
	toygun_citus_group = batch_group;
	suspended_group = NULL;
	suspended_level = 0;
}

/*
 * An abort of the subtransaction in which user code began (or of one
 * around it) ends that code: the group is active again. Errors in user
 * code are often caught where the worker does not hear of them (an alarm
 * handler's error is kept in its alarm, a failed upgrade in its failure),
 * and the batch's next statements must be the group's, not Citus's.
 */
static void
citus_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && suspended_group != NULL &&
		GetCurrentTransactionNestLevel() <= suspended_level)
	{
		toygun_citus_group = suspended_group;
		suspended_group = NULL;
		suspended_level = 0;
	}
}

/*
 * User code is about to run (security.c): no group for its statements,
 * which Citus routes like a client's. Returns the group to give back to
 * toygun_citus_unsuspend() when it returns; NULL if none was active (on
 * one node, or user code called from user code).
 */
ToygunShardGroup *
toygun_citus_suspend(void)
{
	static bool registered = false;
	ToygunShardGroup *g = toygun_citus_group;

	if (g == NULL)
		return NULL;
	if (!registered)
	{
		RegisterSubXactCallback(citus_subxact_callback, NULL);
		registered = true;
	}
	toygun_citus_group = NULL;
	suspended_group = g;
	suspended_level = GetCurrentTransactionNestLevel();
	return g;
}

/* User code returned: the group it suspended (or none) is active again. */
void
toygun_citus_unsuspend(ToygunShardGroup *saved)
{
	toygun_citus_group = saved;
	if (saved != NULL)
	{
		suspended_group = NULL;
		suspended_level = 0;
	}
}

/* The number of the node's shard groups. */
int
toygun_citus_ngroups(void)
{
	return ngroups;
}

/*
 * Make group i active for a read (the probe of the next due time covers
 * every group); toygun_citus_resume() goes back to the batch's.
 */
void
toygun_citus_use_group(int i)
{
	toygun_citus_group = groups[i];
}

/* Is group i the batch's? */
bool
toygun_citus_is_batch_group(int i)
{
	return groups[i] == batch_group;
}

/*
 * Make active, and lock as a batch's, the shard group on this node that
 * holds the object (a dead tick's run, to charge it): false if none does
 * (its shard moved away, or it is gone). The caller ends it with
 * toygun_citus_end_batch().
 */
bool
toygun_citus_find_object(ToygunKind kind, pg_uuid_t *id)
{
	static SPIPlanPtr plans[2];
	Datum		values[1];

	values[0] = UUIDPGetDatum(id);
	for (int i = 0; i < ngroups; i++)
	{
		batch_group = groups[i];
		if (!toygun_citus_lock_batch_group())
			continue;
		run(toygun_citus_plan(&plans[kind],
							   kind == TOYGUN_TASK
							   ? "SELECT FROM ONLY toygun.task WHERE id = $1"
							   : "SELECT FROM ONLY toygun.resource WHERE id = $1",
							   1, (Oid[]) {UUIDOID}),
				   values, NULL, 1);
		if (SPI_processed > 0)
			return true;
	}
	toygun_citus_end_batch(false);
	return false;
}
