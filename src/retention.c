/*
 * retention.c
 *		Retention (issue 16): how long a type keeps its stopped objects and
 *		their history (keep, the setting toygun.keep), when a history row
 *		expires, and maintenance: the history's time partitions made ahead
 *		and dropped once expired, each with the stopped runs whose stop it
 *		holds, the default partition's expired rows (with theirs), stopped
 *		resources past their keep removed in bounded batches with what only
 *		they use (their failures among them).
 *
 * toygun.transition is partitioned by range of expires_at (the write time
 * plus the type's keep; infinity for forever): transition_forever holds the
 * rows kept forever, transition_default the rows no time partition takes,
 * and the time partitions transition_<UTC lower bound, YYYYMMDD_HH24MISS>
 * cover toygun.history_partition each, counted from the Unix epoch (clipped
 * to the gaps between existing ones when the width changed). Expiry drops
 * whole partitions: DROP takes ACCESS EXCLUSIVE on the history, so it is
 * tried under a short lock_timeout and, when another transaction holds the
 * history (a held snapshot), given up until the next round, never queued
 * for long in front of the ticks. A partition is made as a table LIKE the
 * history and attached (SHARE UPDATE EXCLUSIVE on the history, which ticks
 * do not conflict with), after moving its range's rows out of the default
 * partition in the same transaction.
 *
 * A stopped run leaves with the history row of its stop (to_state __stop__,
 * its last: step one less than the run's, which counts its rows), which
 * expires when the run should: stop time plus keep. Before a time partition is dropped its stop rows are found by block
 * ranges and the runs still stopped at that step removed (so no index on
 * stopped runs costs every stopping tick an entry); the progress is kept in
 * this backend's memory (see StopScan).
 *
 * The workers run a round when nothing is due after ticking (at most once a
 * second) and at least every toygun.maintain_interval, each step in a transaction of its
 * own, one worker of a database at a time (a transaction-level advisory
 * lock); toygun.maintain() runs one in the caller's transaction. Nothing
 * here runs in a tick's transaction, and the tick path only calls
 * toygun_expires_at().
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_default_keep);
PG_FUNCTION_INFO_V1(toygun_maintain);

/* A keep longer than this is refused: any time toygun writes plus it is a valid time. */
#define MAX_KEEP_MONTHS (1000 * MONTHS_PER_YEAR)

/* How long a round waits for a lock on the history before it gives up until the next. */
#define LOCK_TIMEOUT "100ms"

/* Most partitions one round makes: the rest in the next rounds. */
#define MAX_CREATED 100

/* Blocks of a time partition one statement scans for stop rows (1 MB). */
#define SCAN_BLOCKS 128

/* Most blocks of time partitions one round scans (8 MB). */
#define SCAN_MOST 1024

/* An idle worker runs a round at most this often. */
#define IDLE_GAP_MS 1000
/*
 * A worker runs rounds back to back while they stop at a batch, for at most
 * this long before it ticks again: up to about half of one worker's time
 * when retention is behind (as long as a batch of ticks, BATCH_TIME_MS).
 */
#define ROUNDS_MS 100

/* The advisory lock that lets one round run at a time in a database: "toyg", "main". */
#define LOCK_KEY1 0x746f7967
#define LOCK_KEY2 0x6d61696e

/* Seconds from PostgreSQL's epoch (2000) back to the Unix epoch. */
#define UNIX_OFFSET_US ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* What a round did. */
typedef struct Round
{
	int64		created;		/* time partitions made */
	int64		dropped;		/* time partitions dropped */
	int64		deferred;		/* steps given up for a lock held elsewhere */
	int64		rows_deleted;	/* expired rows of the default partition */
	int64		runs;			/* stopped runs removed */
	int64		resources;		/* stopped resources removed */
	int64		failures;		/* failure rows pruned */
	int64		claims;			/* schedule claims deleted with their resources */
	bool		more;			/* a step stopped at its batch: more to do now */
} Round;

/* A time partition's range. */
typedef struct Range
{
	TimestampTz lo;
	TimestampTz hi;
	char	   *name;			/* schema-qualified, quoted */
	Oid			oid;
	bool		ours;			/* in schema toygun: a DBA's elsewhere is never dropped */
} Range;

/*
 * How far this backend has scanned an expired time partition for stop rows:
 * its blocks before next_now are done (every stopped run whose stop row is
 * there removed) in this transaction, before next as of the last commit. A
 * transaction or subtransaction that rolls back takes its progress with it
 * (the runs it removed come back), so an abort goes back to next; a new
 * backend (a restart, another worker) begins at block 0: only a rescan.
 */
typedef struct StopScan
{
	Oid			rel;
	BlockNumber next;
	BlockNumber next_now;
} StopScan;

static StopScan *scans;				/* in TopMemoryContext */
static int	nscans;
static int	maxscans;

/* The subtransaction that last moved a next_now; Invalid: none since the last commit. */
static SubTransactionId scans_moved_in = InvalidSubTransactionId;

/* Positive, and at most 1000 years. */
bool
toygun_keep_valid(Interval *keep)
{
	Interval	zero = {0, 0, 0};
	Interval	most = {0, 0, MAX_KEEP_MONTHS};

	return DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(keep),
											 IntervalPGetDatum(&zero))) > 0 &&
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(keep),
										  IntervalPGetDatum(&most))) <= 0;
}

static bool
is_forever(const char *s)
{
	return s == NULL || pg_strcasecmp(s, "forever") == 0;
}

/* toygun.keep: forever, or a keep define_* accepts. */
bool
toygun_keep_check(char **newval, void **extra, GucSource source)
{
	Interval	keep;

	if (is_forever(*newval))
		return true;
	if (!toygun_parse_interval(*newval, &keep) || !toygun_keep_valid(&keep))
	{
		GUC_check_errdetail("toygun.keep is forever, or a positive interval of at most 1000 years such as '30 days'.");
		return false;
	}
	return true;
}

/* default_keep(): the setting toygun.keep, NULL for forever. */
Datum
toygun_default_keep(PG_FUNCTION_ARGS)
{
	Interval   *keep = palloc(sizeof(Interval));

	if (is_forever(toygun_keep) || !toygun_parse_interval(toygun_keep, keep))
		PG_RETURN_NULL();
	PG_RETURN_INTERVAL_P(keep);
}

/*
 * When a history row of def's objects written at at expires: at plus the
 * type's keep (checked at definition to stay a valid time), infinity for
 * forever. On the tick path: no query.
 */
TimestampTz
toygun_expires_at(ToygunDef *def, TimestampTz at)
{
	if (def->keep_forever)
		return DT_NOEND;
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(at),
												   IntervalPGetDatum(&def->keep)));
}

/* Run sql with its arguments; the rows are in SPI_tuptable. */
static uint64
exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

static Datum
value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* The history's time partitions, by lower bound (the forever and default partitions aside). */
static Range *
time_partitions(int *n)
{
	Range	   *ranges;
	uint64		i;

	exec("SELECT c.oid::pg_catalog.regclass::text, b[1]::timestamptz, b[2]::timestamptz, c.oid,"
		 "       c.relnamespace = 'toygun'::pg_catalog.regnamespace"
		 "  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid,"
		 "       pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
		 "                               '^FOR VALUES FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)$') b"
		 " WHERE i.inhparent = 'toygun.transition'::pg_catalog.regclass"
		 "   AND b[2] IS NOT NULL AND b[1] <> 'infinity'"
		 " ORDER BY 2", 0, NULL, NULL);
	*n = (int) SPI_processed;
	ranges = palloc(sizeof(Range) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ranges[i].name = TextDatumGetCString(value(i, 1, &isnull));
		ranges[i].lo = DatumGetTimestampTz(value(i, 2, &isnull));
		ranges[i].hi = DatumGetTimestampTz(value(i, 3, &isnull));
		ranges[i].oid = DatumGetObjectId(value(i, 4, &isnull));
		ranges[i].ours = DatumGetBool(value(i, 5, &isnull));
	}
	return ranges;
}

static char *
timestamp_literal(TimestampTz t)
{
	return quote_literal_cstr(DatumGetCString(DirectFunctionCall1(timestamptz_out,
																  TimestampTzGetDatum(t))));
}

/*
 * Take locks under a short lock_timeout, then run fn, in a subtransaction:
 * false, with nothing done, if a lock was not had in time (another
 * transaction holds it); any other error is raised.
 */
static bool
with_locks(int nlocks, Oid *rels, LOCKMODE *modes, void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool done = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			nest = NewGUCNestLevel();
		int			i;

		(void) set_config_option("lock_timeout", LOCK_TIMEOUT, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		for (i = 0; i < nlocks; i++)
			LockRelationOid(rels[i], modes[i]);
		fn(arg);
		AtEOXact_GUC(true, nest);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		done = false;
	}
	PG_END_TRY();
	return done;
}

static Oid
history_oid(void)
{
	return get_relname_relid("transition", get_namespace_oid("toygun", false));
}

/* The history's default partition, or InvalidOid. */
static Oid
default_partition(void)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(history_oid())};
	bool		isnull;
	Datum		d;

	if (exec("SELECT partdefid FROM pg_catalog.pg_partitioned_table WHERE partrelid = $1",
			 1, types, values) == 0)
		return InvalidOid;
	d = value(0, 1, &isnull);
	return isnull ? InvalidOid : DatumGetObjectId(d);
}

/* The history's columns, as a list for INSERT and SELECT. */
static char *
history_columns(void)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(history_oid())};
	bool		isnull;

	exec("SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum)"
		 "  FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
		 1, types, values);
	return TextDatumGetCString(value(0, 1, &isnull));
}

typedef struct Create
{
	TimestampTz lo;
	TimestampTz hi;
	char	   *name;
	const char *default_name;
	const char *columns;
} Create;

/*
 * Keep a new partition as private as the history: the history's row
 * security does not apply to a partition read by its own name, and a
 * default ACL (ALTER DEFAULT PRIVILEGES of the extension's owner, say for a
 * reporting role) grants on every table the owner makes. So the grants it
 * made are revoked, and row security is enabled with no policy (reads by
 * the owner and through the history are as before).
 */
static void
private_partition(const char *name)
{
	char	   *rel = psprintf("toygun.%s", quote_identifier(name));
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(rel)};
	bool		isnull;
	Datum		grantees;

	exec(psprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY", rel), 0, NULL, NULL);
	exec("SELECT pg_catalog.string_agg(DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC'"
		 "                                 ELSE pg_catalog.quote_ident(r.rolname) END, ', ')"
		 "  FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a"
		 "  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee"
		 " WHERE c.oid = $1::pg_catalog.regclass AND a.grantee <> c.relowner", 1, types, values);
	grantees = value(0, 1, &isnull);
	if (!isnull)
		exec(psprintf("REVOKE ALL ON TABLE %s FROM %s", rel, TextDatumGetCString(grantees)),
			 0, NULL, NULL);
}

static void
create_partition(void *arg)
{
	Create	   *c = arg;
	char	   *lo = timestamp_literal(c->lo);
	char	   *hi = timestamp_literal(c->hi);

	exec(psprintf("CREATE TABLE toygun.%s (LIKE toygun.transition INCLUDING DEFAULTS"
				  " INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION,"
				  " PRIMARY KEY (object_id, step))",
				  quote_identifier(c->name)), 0, NULL, NULL);
	private_partition(c->name);
	/* ATTACH refuses while the default partition holds rows of the range */
	if (c->default_name != NULL)
		exec(psprintf("WITH moved AS (DELETE FROM toygun.%s WHERE expires_at >= %s AND expires_at < %s"
					  "               RETURNING %s)"
					  " INSERT INTO toygun.%s (%s) SELECT %s FROM moved",
					  quote_identifier(c->default_name), lo, hi, c->columns,
					  quote_identifier(c->name), c->columns, c->columns), 0, NULL, NULL);
	exec(psprintf("ALTER TABLE toygun.transition ATTACH PARTITION toygun.%s FOR VALUES FROM (%s) TO (%s)",
				  quote_identifier(c->name), lo, hi), 0, NULL, NULL);
}

/*
 * Make one partition [lo, hi): its rows moved out of the default partition
 * (locked ACCESS EXCLUSIVE by the ATTACH as well), the history locked SHARE
 * UPDATE EXCLUSIVE. Returns false if a lock was not had in time.
 */
static bool
make_partition(TimestampTz lo, TimestampTz hi, Oid defpart, const char *columns)
{
	Create		c;
	Oid			rels[2];
	LOCKMODE	modes[2] = {ShareUpdateExclusiveLock, AccessExclusiveLock};
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(lo)};
	bool		isnull;

	/* the name of its lower bound, or with a suffix when a DBA kept a table of that name (detached) */
	if (exec("SELECT n || CASE i WHEN 0 THEN '' ELSE '_' || i END"
		 "  FROM (SELECT 'transition_' || pg_catalog.to_char($1 AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS')) b(n),"
		 "       pg_catalog.generate_series(0, 1000) i"
		 " WHERE pg_catalog.to_regclass('toygun.' || pg_catalog.quote_ident(n || CASE i WHEN 0 THEN ''"
		 "                                                   ELSE '_' || i END)) IS NULL"
		 " ORDER BY i LIMIT 1", 1, types, values) == 0)
		elog(ERROR, "no free name for a partition of toygun.transition");
	c.name = TextDatumGetCString(value(0, 1, &isnull));
	c.lo = lo;
	c.hi = hi;
	c.default_name = OidIsValid(defpart) ? get_rel_name(defpart) : NULL;
	c.columns = columns;
	rels[0] = history_oid();
	rels[1] = defpart;
	return with_locks(OidIsValid(defpart) ? 2 : 1, rels, modes, create_partition, &c);
}

/* The start of the partition width that holds t, counted from the Unix epoch. */
static TimestampTz
aligned(TimestampTz t, int64 width)
{
	int64		u = t + UNIX_OFFSET_US;
	int64		r = u % width;

	if (r < 0)
		r += width;
	return t - r;
}

/*
 * Where rows are being written now: each finite keep's expiry of a row
 * written now, from now + keep to margin later. A partition attached over
 * such a range would race the writers: one whose routing was set up before
 * the ATTACH committed (a worker's batch keeps it for the whole batch, a
 * statement for its whole run) sends a row of the new range to the default
 * partition, whose new constraint then refuses it (23514, a failed tick).
 * So a partition is only made ahead of the rows, at least margin before the
 * first of them (one whose width is being written begins after that range): the longest a tick may run (toygun.tick_timeout) and its
 * grace, and a second, which bound how long a worker's batch keeps its
 * routing (a task type with a longer tick_timeout, or a statement that runs
 * longer, may still meet the race: its tick fails and is retried). Rows that find no
 * partition meanwhile (after a first keep, a new keep, a round that came
 * late) go to the default partition, and expire from there.
 */
typedef struct Writing
{
	int			n;
	TimestampTz *from;			/* now + each keep, ascending */
	int64		margin;			/* microseconds */
} Writing;

/* margin: toygun.tick_timeout (60 s if none), toygun.tick_grace and a second */
static int64
write_margin(void)
{
	int64		tick_ms = toygun_tick_timeout_ms > 0 ? toygun_tick_timeout_ms : 60000;

	return (tick_ms + toygun_tick_grace_ms + 1000) * 1000;
}

/* Where a partition of [lo, hi) may begin: past every range being written that overlaps it. */
static TimestampTz
past_writing(Writing *w, TimestampTz lo, TimestampTz hi)
{
	int			i;

	for (i = 0; i < w->n; i++)	/* ascending: a later range may overlap the moved start */
		if (lo < w->from[i] + w->margin && hi > w->from[i])
			lo = w->from[i] + w->margin;
	return lo;
}

/*
 * Make the partitions missing from [from, to): width-aligned, clipped to the
 * gaps between those there are. False when the round must stop here (its
 * limit reached, or a lock not had in time).
 */
static bool
fill(TimestampTz from, TimestampTz to, int64 width, Range *have, int nhave, Oid defpart,
	 const char *columns, Writing *writing, Round *round)
{
	TimestampTz lo;

	for (lo = from; lo < to; lo += width)
	{
		TimestampTz hi = lo + width;
		TimestampTz cur = lo;
		TimestampTz start;
		int			i;

		/* the gaps of [lo, hi) between the partitions there are */
		for (i = 0; i <= nhave && cur < hi; i++)
		{
			TimestampTz gap_end = i < nhave ? Min(have[i].lo, hi) : hi;

			if (i < nhave && have[i].hi <= cur)
				continue;
			start = past_writing(writing, cur, gap_end);
			if (gap_end > start)
			{
				if (round->created >= MAX_CREATED)
				{
					round->more = true;
					return false;
				}
				if (!make_partition(start, gap_end, defpart, columns))
				{
					round->deferred++;
					return false;
				}
				round->created++;
			}
			if (i < nhave)
				cur = Max(cur, have[i].hi);
		}
	}
	return true;
}

/*
 * (a) The time partitions rows will need: for each finite keep of any type,
 * from the one that holds now plus that keep on (rows written until the
 * next rounds land there), clipped to the gaps between those there are,
 * and never over a range being written (see Writing). Only around each keep, not the whole span from
 * the smallest to the largest: a type kept 1000 years beside one kept a
 * day would otherwise ask for 365 000 daily partitions.
 */
static void
create_partitions(TimestampTz now, Round *round)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(now)};
	int64		width = (int64) toygun_history_partition_s * USECS_PER_SEC;
	TimestampTz *targets;
	TimestampTz done = DT_NOBEGIN;
	Range	   *have;
	int			nhave;
	int			ntargets;
	int			i;
	Oid			defpart;
	char	   *columns;
	Writing		writing;
	bool		isnull;

	ntargets = (int) exec("SELECT DISTINCT $1 + k FROM ("
						  "  SELECT keep FROM ONLY toygun.task_type WHERE keep IS NOT NULL"
						  "  UNION ALL SELECT keep FROM ONLY toygun.resource_type WHERE keep IS NOT NULL) s(k)"
						  " ORDER BY 1", 1, types, values);
	if (ntargets == 0)
		return;					/* every type keeps forever */
	targets = palloc(sizeof(TimestampTz) * ntargets);
	for (i = 0; i < ntargets; i++)
		targets[i] = DatumGetTimestampTz(value(i, 1, &isnull));
	writing.n = ntargets;
	writing.from = targets;
	writing.margin = write_margin();
	have = time_partitions(&nhave);
	defpart = default_partition();
	columns = history_columns();

	/*
	 * Targets ascend: a window starts where the one before ended, if later.
	 * Each reaches past the range being written (see Writing) by two widths
	 * and two rounds' worth of time (a busy worker's rounds come every
	 * toygun.maintain_interval; at most MAX_CREATED widths), so the
	 * partitions are there before rows need them.
	 */
	for (i = 0; i < ntargets; i++)
	{
		TimestampTz from = Max(aligned(targets[i], width), done);
		TimestampTz to = targets[i] + writing.margin + 2 * width +
			Min(2 * (int64) Max(toygun_maintain_interval_ms, 0) * 1000, MAX_CREATED * width);

		if (!fill(from, to, width, have, nhave, defpart, columns, &writing, round))
			return;
		done = Max(done, aligned(to - 1, width) + width);	/* where fill's last width ended */
	}
}

/* Undo this transaction's progress, or a rolled-back subtransaction's (and, to be safe, its parent's). */
static void
scans_revert(void)
{
	int			i;

	for (i = 0; i < nscans; i++)
		scans[i].next_now = scans[i].next;
	scans_moved_in = InvalidSubTransactionId;
}

static void
scans_xact_callback(XactEvent event, void *arg)
{
	int			i;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (i = 0; i < nscans; i++)
				scans[i].next = scans[i].next_now;
			scans_moved_in = InvalidSubTransactionId;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			scans_revert();
			break;
		default:
			break;
	}
}

static void
scans_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	/* a subtransaction's children have higher ids: progress moved in it or below is undone */
	if (event == SUBXACT_EVENT_ABORT_SUB && scans_moved_in != InvalidSubTransactionId &&
		scans_moved_in >= mySubid)
		scans_revert();
}

/*
 * The progress of rel (an expired time partition), from block 0 when this
 * backend has none; progress of partitions not among the n of expired (gone,
 * or not expired by this caller's clock) is forgotten.
 */
static StopScan *
scan_of(Oid rel, Oid *expired, int n)
{
	static bool registered = false;
	int			i,
				j,
				kept = 0;

	if (!registered)
	{
		RegisterXactCallback(scans_xact_callback, NULL);
		RegisterSubXactCallback(scans_subxact_callback, NULL);
		registered = true;
	}
	for (i = 0; i < nscans; i++)
		for (j = 0; j < n; j++)
			if (scans[i].rel == expired[j])
			{
				scans[kept++] = scans[i];
				break;
			}
	nscans = kept;
	for (i = 0; i < nscans; i++)
		if (scans[i].rel == rel)
			return &scans[i];
	if (nscans == maxscans)
	{
		maxscans = Max(8, maxscans * 2);
		scans = scans == NULL ? MemoryContextAlloc(TopMemoryContext, sizeof(StopScan) * maxscans) :
			repalloc(scans, sizeof(StopScan) * maxscans);
	}
	scans[nscans].rel = rel;
	scans[nscans].next = 0;
	scans[nscans].next_now = 0;
	return &scans[nscans++];
}

/* What only the removed objects (ids, a uuid[]) used; the schedule claims on resources are counted. */
static void
remove_dependents(Datum ids, bool resources, Round *round)
{
	Oid			types[1] = {UUIDARRAYOID};
	Datum		values[1] = {ids};

	round->failures += exec("DELETE FROM ONLY toygun.failure WHERE object_id = ANY ($1)", 1, types, values);
	exec("DELETE FROM ONLY toygun.alarm WHERE object_id = ANY ($1)", 1, types, values);
	if (resources)
		round->claims += exec("DELETE FROM ONLY toygun.schedule_start WHERE resource_id = ANY ($1)",
							  1, types, values);
	else
		exec("DELETE FROM ONLY toygun.message WHERE run_id = ANY ($1)", 1, types, values);
}

/*
 * Remove stopped objects: sql deletes them and returns their ids as one
 * uuid[], how many, and a third count of its own (into *other when not
 * NULL). Removes what only they used too. Returns how many.
 */
static uint64
remove_batch(const char *sql, int nargs, Oid *types, Datum *values, bool resources, int64 *other,
			 Round *round)
{
	bool		isnull;
	Datum		ids;
	uint64		n;

	exec(sql, nargs, types, values);
	if (other != NULL)
		*other = DatumGetInt64(value(0, 3, &isnull));
	ids = value(0, 1, &isnull);
	if (isnull)
		return 0;
	n = DatumGetInt64(value(0, 2, &isnull));
	ids = datumCopy(ids, false, -1);
	remove_dependents(ids, resources, round);
	return n;
}

/*
 * The end of a statement removing stopped runs by their stop rows: c holds
 * (id, step) of the runs whose stop row it found (the run's step is one past
 * it); l locks those still stopped there (SKIP LOCKED, checked again under
 * the lock), del deletes them, returning their ids.
 */
#define STOPPED_RUNS_GO \
	" l AS (SELECT t.id FROM ONLY toygun.task t" \
	"        WHERE (t.id, t.step) IN (SELECT id, step FROM c) AND t.state = '__stop__'" \
	"          FOR UPDATE OF t SKIP LOCKED)," \
	" del AS (DELETE FROM ONLY toygun.task t WHERE t.id IN (SELECT id FROM l) RETURNING t.id)"

/* A visit of an expired time partition for its stop rows. */
typedef struct Visit
{
	StopScan	   *scan;
	int64	   *blocks_left;	/* of the round's SCAN_MOST */
	int64	   *runs_left;		/* of toygun.prune_batch */
	Round	   *round;
	int64		removed;		/* runs removed */
	bool		finished;		/* every block scanned */
	bool		stuck;			/* a run was locked elsewhere: this range again next round */
} Visit;

/*
 * Under a SHARE lock on the partition, scan it for stop rows from where this
 * backend left it, a range of SCAN_BLOCKS blocks at a time (a TID range
 * scan), within the round's budget, and remove each run still stopped by
 * that row (its last row: a run brought back by hand is not, nor one
 * stopped again later, whose later stop row is elsewhere), locked SKIP
 * LOCKED.
 *
 * Why every stop row is seen: no row can be routed into an expired
 * partition, since a new row's expires_at is its write time (the clock, on
 * both write paths) plus a positive keep, later than now, and now is at or
 * past the partition's upper bound. A transaction that wrote into it before
 * it expired and has not committed holds ROW EXCLUSIVE on it, which the
 * SHARE lock waits for (or the visit is given up): the scan's snapshots,
 * taken after, see every row it will ever hold. (A session whose test clock
 * is ahead sees partitions expired that ticks may still write to: tests only.)
 */
static void
scan_partition(void *arg)
{
	Visit	   *v = arg;
	Relation	rel = try_relation_open(v->scan->rel, NoLock);	/* locked SHARE */
	BlockNumber nblocks;
	const char *name;

	if (rel == NULL)
		return;					/* dropped behind maintenance's back: nothing to scan or drop */
	nblocks = RelationGetNumberOfBlocks(rel);
	name = quote_identifier(RelationGetRelationName(rel));
	relation_close(rel, NoLock);
	while (v->scan->next_now < nblocks)
	{
		BlockNumber a = v->scan->next_now;
		BlockNumber b = a + Min(SCAN_BLOCKS, nblocks - a);
		Oid			types[1] = {INT4OID};
		Datum		values[1];
		int64		candidates;
		uint64		n;

		if (*v->blocks_left <= 0 || *v->runs_left <= 0)
			return;
		values[0] = Int32GetDatum((int32) *v->runs_left);
		n = remove_batch(psprintf(
			"WITH c AS ("
			"  SELECT t.id, t.step FROM toygun.%s h JOIN ONLY toygun.task t ON t.id = h.object_id AND t.step = h.step + 1"
			"   WHERE h.ctid >= '(%u,0)'::pg_catalog.tid AND h.ctid < '(%u,0)'::pg_catalog.tid"
			"     AND h.to_state = '__stop__' AND t.state = '__stop__'"
			"   LIMIT $1),"
			STOPPED_RUNS_GO
			" SELECT pg_catalog.array_agg(id), count(*), (SELECT count(*) FROM c) FROM del", name, a, b),
						 1, types, values, false, &candidates, v->round);
		v->removed += n;
		*v->runs_left -= n;
		*v->blocks_left -= b - a;
		if ((int64) n < candidates)
		{
			v->stuck = true;
			return;
		}
		/* at the batch's limit: more of this range, in the next batch */
		if (candidates >= DatumGetInt32(values[0]))
			continue;
		v->scan->next_now = b;
		scans_moved_in = GetCurrentSubTransactionId();
	}
	v->finished = true;
}

typedef struct Drop
{
	int			n;
	Range	   *ranges;
} Drop;

static void
drop_partitions(void *arg)
{
	Drop	   *d = arg;
	StringInfoData sql;
	int			i;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "DROP TABLE ");
	for (i = 0; i < d->n; i++)
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", d->ranges[i].name);
	exec(sql.data, 0, NULL, NULL);
}

/*
 * (b) The time partitions whose upper bound has passed (every row in them
 * has expired), oldest first: each scanned for its stop rows (above), at
 * most SCAN_MOST blocks and toygun.prune_batch runs a round; those scanned
 * to the end are dropped. The history and the partitions are locked ACCESS
 * EXCLUSIVE under a short lock_timeout; held elsewhere, the drop waits for
 * the next round, as does a partition with a stopped run locked elsewhere.
 */
static void
drop_expired(TimestampTz now, Round *round)
{
	Range	   *have;
	int			nhave;
	int			n = 0;
	int			i;
	Oid		   *expired;
	int			nexpired = 0;
	Oid		   *rels;
	LOCKMODE   *modes;
	int64		blocks_left = SCAN_MOST;
	int64		runs_left = toygun_prune_batch;
	Drop		d;

	have = time_partitions(&nhave);
	expired = palloc(sizeof(Oid) * (nhave + 1));
	for (i = 0; i < nhave; i++)
		if (have[i].hi <= now && have[i].ours)
		{
			have[nexpired] = have[i];
			expired[nexpired++] = have[i].oid;
		}
	if (nexpired == 0)
		return;
	rels = palloc(sizeof(Oid) * (nexpired + 1));
	modes = palloc(sizeof(LOCKMODE) * (nexpired + 1));
	rels[0] = history_oid();
	modes[0] = AccessExclusiveLock;
	for (i = 0; i < nexpired; i++)
	{
		Visit		v;
		LOCKMODE	share = ShareLock;

		memset(&v, 0, sizeof(v));
		v.scan = scan_of(expired[i], expired, nexpired);
		v.blocks_left = &blocks_left;
		v.runs_left = &runs_left;
		v.round = round;
		/* a snapshot older than the lock might miss rows of a writer it waited for */
		if (IsolationUsesXactSnapshot())
			v.stuck = true;
		else if (!with_locks(1, &expired[i], &share, scan_partition, &v))
			v.stuck = true;
		round->runs += v.removed;
		if (v.finished)
		{
			have[n] = have[i];
			rels[n + 1] = expired[i];
			modes[n + 1] = AccessExclusiveLock;
			n++;
		}
		else if (v.stuck)
			round->deferred++;
		else
			round->more = true;	/* out of budget */
	}
	if (n == 0)
		return;
	d.n = n;
	d.ranges = have;
	if (with_locks(n + 1, rels, modes, drop_partitions, &d))
		round->dropped += n;
	else
		round->deferred++;
}

/*
 * (c) Expired rows of the default partition, a batch at a time, each stop
 * row with its run when the run is still stopped at that step (as above);
 * a stop row whose run is locked elsewhere stays until a later round.
 */
static void
delete_default_expired(TimestampTz now, Round *round)
{
	Oid			defpart = default_partition();
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(now), Int32GetDatum(toygun_prune_batch)};
	const char *name;
	int64		rows;

	if (!OidIsValid(defpart))
		return;
	name = quote_identifier(get_rel_name(defpart));
	round->runs += remove_batch(psprintf(
		"WITH h AS (SELECT ctid, object_id, step, to_state FROM toygun.%s WHERE expires_at <= $1 LIMIT $2),"
		" c AS (SELECT t.id, t.step FROM ONLY toygun.task t JOIN h ON t.id = h.object_id AND t.step = h.step + 1"
		"        WHERE h.to_state = '__stop__' AND t.state = '__stop__'),"
		STOPPED_RUNS_GO ","
		" gone AS (DELETE FROM toygun.%s WHERE ctid = ANY (ARRAY(SELECT ctid FROM h))"
		"            AND object_id NOT IN (SELECT id FROM c EXCEPT SELECT id FROM l) RETURNING 1)"
		" SELECT pg_catalog.array_agg(id), count(*), (SELECT count(*) FROM gone) FROM del", name, name),
								2, types, values, false, &rows, round);
	round->rows_deleted += rows;
	if (rows >= toygun_prune_batch)
		round->more = true;
}

/*
 * (d) Stopped resources past their type's keep that have no runs (stopped
 * or not) and no children left: each locked (SKIP LOCKED, checked again
 * under the lock) and deleted, at most toygun.prune_batch. created_at
 * bounds the index scan: a resource stopped before a time was created
 * before it. (Stopped runs go with their stop rows, in (b) and (c).)
 */
static void
remove_stopped(TimestampTz now, Round *round)
{
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(now), Int32GetDatum(toygun_prune_batch)};
	uint64		n;

	n = remove_batch(
		"WITH c AS ("
		"  SELECT r.id FROM ONLY toygun.resource_type d CROSS JOIN LATERAL ("
		"    SELECT r.id FROM ONLY toygun.resource r"
		"     WHERE r.type = d.name AND r.state = '__stop__'"
		"       AND r.created_at < $1 - d.keep AND r.updated_at < $1 - d.keep"
		"       AND NOT EXISTS (SELECT FROM ONLY toygun.task t WHERE t.resource_id = r.id)"
		"       AND NOT EXISTS (SELECT FROM ONLY toygun.resource k WHERE k.parent_id = r.id)"
		"     ORDER BY r.created_at LIMIT $2) r"
		"   WHERE d.keep IS NOT NULL LIMIT $2),"
		" l AS (SELECT r.id FROM ONLY toygun.resource r JOIN ONLY toygun.resource_type d ON d.name = r.type"
		"        WHERE r.id IN (SELECT id FROM c) AND r.state = '__stop__' AND r.updated_at < $1 - d.keep"
		"          FOR UPDATE OF r SKIP LOCKED),"
		" del AS (DELETE FROM ONLY toygun.resource r WHERE r.id IN (SELECT id FROM l)"
		"           AND NOT EXISTS (SELECT FROM ONLY toygun.task t WHERE t.resource_id = r.id)"
		"           AND NOT EXISTS (SELECT FROM ONLY toygun.resource k WHERE k.parent_id = r.id)"
		"         RETURNING r.id)"
		" SELECT pg_catalog.array_agg(id), count(*) FROM del", 2, types, values, true, NULL, round);
	round->resources += n;
	if (n >= (uint64) toygun_prune_batch)
		round->more = true;
}

typedef void (*Step) (TimestampTz now, Round *round);

static const Step steps[] = {create_partitions, drop_expired, delete_default_expired,
remove_stopped};

/* The round's lock, for this transaction: false if another round holds it (wait: wait for it). */
static bool
lock_round(bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, LOCK_KEY1, LOCK_KEY2, 2);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* Is the history partitioned here (0.4's SQL)? */
static bool
partitioned(void)
{
	Oid			rel = history_oid();

	return OidIsValid(rel) && get_rel_relkind(rel) == RELKIND_PARTITIONED_TABLE;
}

static Datum
round_jsonb(Round *r)
{
	char	   *s = psprintf("{\"partitions_created\": " INT64_FORMAT ", \"partitions_dropped\": " INT64_FORMAT
							 ", \"deferred\": " INT64_FORMAT ", \"history_rows_deleted\": " INT64_FORMAT
							 ", \"runs_removed\": " INT64_FORMAT ", \"resources_removed\": " INT64_FORMAT
							 ", \"failures_deleted\": " INT64_FORMAT ", \"claims_deleted\": " INT64_FORMAT
							 ", \"more\": %s}",
							 r->created, r->dropped, r->deferred, r->rows_deleted, r->runs,
							 r->resources, r->failures, r->claims, r->more ? "true" : "false");

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
}

/*
 * toygun.maintain(): one round, in the caller's transaction, by the time a
 * tick by hand reads (toygun.test_now). For the extension's owner.
 */
Datum
toygun_maintain(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	Round		round;
	TimestampTz now = toygun_clock_now();
	int			i;

	memset(&round, 0, sizeof(round));
	toygun_begin_call(&call);
	/* the extension's owner is who the call runs as now */
	if (!has_privs_of_role(call.caller, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for toygun.maintain()"),
				 errdetail("It removes every owner's expired objects and history."),
				 errhint("Call it as the role that owns extension toygun (%s), or a superuser.",
						 toygun_role_name(GetUserId()))));
	if (!partitioned())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("toygun.transition is not partitioned"),
				 errhint("Run ALTER EXTENSION toygun UPDATE.")));
	(void) lock_round(true);
	for (i = 0; i < lengthof(steps); i++)
		steps[i] (now, &round);
	toygun_end_call(&call);
	PG_RETURN_DATUM(round_jsonb(&round));
}

/*
 * One round by a worker, each step in a transaction of its own. A step that
 * fails is logged and the round goes on with the next: a lasting error in
 * one (say, making partitions) must not stop the others (drops, removals).
 * Returns whether there is more.
 */
static bool
worker_round(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	Round		round;
	volatile int i;

	memset(&round, 0, sizeof(round));
	for (i = 0; i < lengthof(steps); i++)
	{
		volatile bool stop = false;

		PG_TRY();
		{
			ToygunCall	call;

			toygun_begin_work();
			pgstat_report_activity(STATE_RUNNING, "maintaining toygun's tables");
			if (!OidIsValid(get_namespace_oid("toygun", true)) || !partitioned() || !lock_round(false))
				stop = true;
			else
			{
				toygun_begin_call(&call);
				steps[i] (GetCurrentTimestamp(), &round);
				toygun_end_call(&call);
			}
			toygun_end_work();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		if (stop)
			return false;
	}
	if (round.created + round.dropped + round.rows_deleted + round.runs + round.resources +
		round.failures + round.claims + round.deferred > 0)
		ereport(DEBUG1,
				(errmsg_internal("toygun maintenance: %s",
								 DatumGetCString(DirectFunctionCall1(jsonb_out, round_jsonb(&round))))));
	return round.more;
}

/*
 * From a worker between batches (idle: nothing was due): a round when one
 * is due: at least every toygun.maintain_interval, and sooner (at most once
 * a second) when the worker has nothing due and ticked something since the
 * last round. When a round stops at a batch (more to do), the next follows
 * at once, for up to ROUNDS_MS, and again after the worker's next batch of
 * ticks if it is busy: a system that is never idle removes what expired as
 * fast as it stops. Returns how long until the next is
 * due (for an idle worker's sleep), or -1 when the workers do none
 * (toygun.maintain_interval 0).
 */
long
toygun_maintain_in_worker(bool idle)
{
	static TimestampTz last = 0;
	static bool more = false;
	static bool worked = false;
	TimestampTz now = GetCurrentTimestamp();
	long		interval = toygun_maintain_interval_ms;
	long		gap;
	long		since;

	if (interval <= 0)
		return -1;
	/* a worker that just started waits for work, or the interval, like the others */
	if (last == 0)
		last = now;
	if (!idle)
		worked = true;
	gap = more ? 0 : !idle ? interval : worked ? Min(IDLE_GAP_MS, interval) : interval;
	since = (long) ((now - last) / 1000);
	if (since < gap)
		return gap - since;
	last = now;
	worked = false;
	/* rounds back to back while there is more, for at most ROUNDS_MS: then a batch of ticks */
	do
		more = worker_round();
	while (more && !TimestampDifferenceExceeds(now, GetCurrentTimestamp(), ROUNDS_MS));
	return more ? 0 : interval;
}
