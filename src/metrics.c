/*
 * metrics.c
 *		Counters of the workers' ticks per task type and resource type
 *		(issue 18): ticks, failures, panics and a histogram of tick
 *		durations, in a fixed-size table of shared memory, for
 *		toygun.metrics() (src/install/metrics.sql), which prints them in
 *		Prometheus's text format with the rest of what toygun can tell.
 *
 * The table has toygun.metrics_types entries, found by a hash of the type's
 * name and probed linearly; an entry is never freed, so a pointer to it
 * stays good for the life of the server, and a definition caches its own
 * (ToygunDef.metric). When the table is full, a new type's ticks go to one
 * more entry, the overflow, which toygun.metrics() shows without a name.
 * A dropped or renamed type keeps its entry, under its old name, hidden
 * from everybody (nobody may read a type that does not exist).
 *
 * The tick path costs a clock reading and a few additions to this
 * process's accumulators (toygun_metrics_note); the batch adds them to
 * shared memory once, with atomic adds, after it commits
 * (toygun_metrics_flush). A batch that rolls back throws its notes away
 * (toygun_metrics_discard): its ticks are ticked again, and noted then.
 *
 * Each entry also keeps two rings of (ticks, failures) for the dashboard's
 * charts (toygun.metrics_series()): 60 one-minute buckets and 48
 * thirty-minute buckets, added to by the same flush. A bucket's counter is
 * one 64-bit word holding the period it counts (minutes or half hours since
 * 2000-01-01 UTC, PostgreSQL's epoch) above the count: the flush adds with a
 * compare-and-swap that either adds to the count of the same period or
 * replaces an older period's word with the new period and the count. A reset
 * and an add can thus never interleave (there is no moment when the stamp
 * says one period and the count holds another's), and a reader takes a word
 * whose period is not the one it asks for as zero. A flush whose period is
 * older than the word's (the clock went back an hour, or a process slept
 * that long between reading the clock and adding) is dropped.
 *
 * Everything here starts from zero when the server starts, and after a
 * crash: Prometheus takes a counter that went down as a reset.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "catalog/pg_type.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_tick_metrics);
PG_FUNCTION_INFO_V1(toygun_metrics_series);

#define METRICS_SHMEM "toygun metrics"

/* The histogram's upper bounds, in microseconds, and as Prometheus's le labels; then +Inf. */
static const int64 bucket_us[TOYGUN_METRIC_BUCKETS - 1] = {
	1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000, 10000000
};
static const char *const bucket_le[TOYGUN_METRIC_BUCKETS] = {
	"0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "10", "+Inf"
};

/*
 * The series' rings: one-minute buckets of the last hour, then thirty-minute
 * buckets of the last day, in one array of an entry. A bucket is a word per
 * counter, ticks and failures: the period above SERIES_COUNT_BITS, the count
 * below (up to 2^36, 68 billion, where it stays: 38 million ticks a second
 * for half an hour). 28 bits of minutes since 2000 last until 2510.
 */
#define SERIES_COUNT_BITS 36
#define SERIES_COUNT_MAX ((UINT64CONST(1) << SERIES_COUNT_BITS) - 1)
#define SERIES_PERIOD_MAX ((UINT64CONST(1) << (64 - SERIES_COUNT_BITS)) - 1)
#define SERIES_MINUTES 60
#define SERIES_HALF_HOURS 48
#define SERIES_BUCKETS (SERIES_MINUTES + SERIES_HALF_HOURS)

typedef struct SeriesRing
{
	const char *window;			/* as metrics_series() takes it */
	int			first;			/* its first bucket in ToygunMetric.series */
	int			buckets;
	int64		width_us;		/* of a bucket */
} SeriesRing;

static const SeriesRing rings[] = {
	{"1h", 0, SERIES_MINUTES, INT64CONST(60) * USECS_PER_SEC},
	{"24h", SERIES_MINUTES, SERIES_HALF_HOURS, INT64CONST(1800) * USECS_PER_SEC},
};

enum
{
	SERIES_TICKS,
	SERIES_FAILURES,
	SERIES_COUNTERS
};

struct ToygunMetric
{
	pg_atomic_uint32 used;		/* 1: its names are set, and never change again */
	uint32		hash;
	char		resource_type[TOYGUN_NAME_MAX + 1];
	char		task[TOYGUN_NAME_MAX + 1];	/* "" for a resource type */
	pg_atomic_uint64 failures;
	pg_atomic_uint64 panics;
	pg_atomic_uint64 sum_us;
	pg_atomic_uint64 buckets[TOYGUN_METRIC_BUCKETS];	/* per bucket, not cumulative */
	pg_atomic_uint64 series[SERIES_BUCKETS][SERIES_COUNTERS];	/* period << 36 | count */
};

typedef struct MetricsShared
{
	LWLock	   *lock;			/* taken to add an entry; reads take none */
	int			size;
	ToygunMetric entries[FLEXIBLE_ARRAY_MEMBER];	/* size of them, then the overflow */
} MetricsShared;

static MetricsShared *metrics = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

int			toygun_metrics_types = 1024;

/* This process's notes since the last flush: a few types per batch. */
#define PENDING_MAX 16
typedef struct Pending
{
	ToygunMetric *m;
	uint64		failures;
	uint64		panics;
	uint64		sum_us;
	uint64		buckets[TOYGUN_METRIC_BUCKETS];
} Pending;

static Pending pending[PENDING_MAX];
static int	npending = 0;

static Size
metrics_size(void)
{
	return add_size(offsetof(MetricsShared, entries),
					mul_size(toygun_metrics_types + 1, sizeof(ToygunMetric)));
}

static void
metrics_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(metrics_size());
	RequestNamedLWLockTranche(METRICS_SHMEM, 1);
}

static void
metrics_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	metrics = ShmemInitStruct(METRICS_SHMEM, metrics_size(), &found);
	if (!found)
	{
		/* at a start, or after a crash: every counter from zero */
		memset(metrics, 0, metrics_size());
		metrics->lock = &(GetNamedLWLockTranche(METRICS_SHMEM))->lock;
		metrics->size = toygun_metrics_types;
		for (int i = 0; i <= metrics->size; i++)
		{
			ToygunMetric *m = &metrics->entries[i];

			pg_atomic_init_u32(&m->used, 0);
			pg_atomic_init_u64(&m->failures, 0);
			pg_atomic_init_u64(&m->panics, 0);
			pg_atomic_init_u64(&m->sum_us, 0);
			for (int b = 0; b < TOYGUN_METRIC_BUCKETS; b++)
				pg_atomic_init_u64(&m->buckets[b], 0);
			for (int b = 0; b < SERIES_BUCKETS; b++)
				for (int c = 0; c < SERIES_COUNTERS; c++)
					pg_atomic_init_u64(&m->series[b][c], 0);
		}
		/* the overflow: no name, always in use */
		pg_atomic_write_u32(&metrics->entries[metrics->size].used, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, after the settings are defined. */
void
toygun_metrics_init(bool preloaded)
{
	if (!preloaded)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
}

static uint32
key_hash(const char *resource_type, const char *task)
{
	uint32		h = hash_bytes((const unsigned char *) resource_type, strlen(resource_type));

	return hash_combine(h, hash_bytes((const unsigned char *) task, strlen(task)));
}

/* The entry of (resource_type, task), or -1; probes until a free entry. */
static int
find_entry(uint32 hash, const char *resource_type, const char *task, int *free_at)
{
	int			size = metrics->size;
	int			i = hash % size;

	*free_at = -1;
	for (int n = 0; n < size; n++, i = (i + 1) % size)
	{
		ToygunMetric *m = &metrics->entries[i];

		if (pg_atomic_read_u32(&m->used) == 0)
		{
			*free_at = i;
			return -1;
		}
		pg_read_barrier();
		if (m->hash == hash && strcmp(m->resource_type, resource_type) == 0 &&
			strcmp(m->task, task) == 0)
			return i;
	}
	return -1;
}

/*
 * The counters of a definition's ticks: found (or added) once, then cached
 * in the definition. NULL without shared memory (not preloaded).
 */
ToygunMetric *
toygun_metric_of(ToygunDef *def)
{
	const char *task;
	uint32		hash;
	int			i,
				free_at;

	if (def->metric != NULL)
		return def->metric;
	if (metrics == NULL)
		return NULL;
	task = def->kind == TOYGUN_TASK && def->name ? def->name : "";
	hash = key_hash(def->resource_type, task);
	i = find_entry(hash, def->resource_type, task, &free_at);
	if (i < 0)
	{
		LWLockAcquire(metrics->lock, LW_EXCLUSIVE);
		i = find_entry(hash, def->resource_type, task, &free_at);
		if (i < 0 && free_at >= 0)
		{
			ToygunMetric *m = &metrics->entries[free_at];

			m->hash = hash;
			strlcpy(m->resource_type, def->resource_type, sizeof(m->resource_type));
			strlcpy(m->task, task, sizeof(m->task));
			pg_write_barrier();
			pg_atomic_write_u32(&m->used, 1);
			i = free_at;
		}
		LWLockRelease(metrics->lock);
	}
	/* full: the overflow */
	def->metric = &metrics->entries[i >= 0 ? i : metrics->size];
	return def->metric;
}

/* Add n to a series counter for period: see the head of this file. */
static void
series_add(pg_atomic_uint64 *word, uint64 period, uint64 n)
{
	uint64		old = pg_atomic_read_u64(word);
	uint64		new;

	do
	{
		uint64		old_period = old >> SERIES_COUNT_BITS;

		if (old_period > period)
			return;				/* the bucket counts a later period already */
		if (old_period == period)
			new = old + Min(n, SERIES_COUNT_MAX - (old & SERIES_COUNT_MAX));
		else
			new = (period << SERIES_COUNT_BITS) | Min(n, SERIES_COUNT_MAX);
	} while (!pg_atomic_compare_exchange_u64(word, &old, new));
}

/* The count of a series counter for period: zero if it counts another. */
static uint64
series_read(pg_atomic_uint64 *word, uint64 period)
{
	uint64		v = pg_atomic_read_u64(word);

	return v >> SERIES_COUNT_BITS == period ? v & SERIES_COUNT_MAX : 0;
}

/* Add this process's notes to shared memory. */
void
toygun_metrics_flush(void)
{
	TimestampTz now;
	uint64		periods[lengthof(rings)];

	if (npending == 0)
		return;
	/* the current period of each ring; 0 (never a bucket's) before 2000 or after 2510 */
	now = GetCurrentTimestamp();
	for (int r = 0; r < lengthof(rings); r++)
		periods[r] = now > 0 && now / rings[r].width_us <= SERIES_PERIOD_MAX ? now / rings[r].width_us : 0;
	for (int p = 0; p < npending; p++)
	{
		Pending    *n = &pending[p];
		ToygunMetric *m = n->m;
		uint64		ticks = 0;

		if (n->failures)
			pg_atomic_fetch_add_u64(&m->failures, n->failures);
		if (n->panics)
			pg_atomic_fetch_add_u64(&m->panics, n->panics);
		if (n->sum_us)
			pg_atomic_fetch_add_u64(&m->sum_us, n->sum_us);
		for (int b = 0; b < TOYGUN_METRIC_BUCKETS; b++)
			if (n->buckets[b])
			{
				pg_atomic_fetch_add_u64(&m->buckets[b], n->buckets[b]);
				ticks += n->buckets[b];
			}
		for (int r = 0; r < lengthof(rings); r++)
		{
			uint64		period = periods[r];
			int			b = rings[r].first + period % rings[r].buckets;

			if (period == 0)
				continue;
			if (ticks)
				series_add(&m->series[b][SERIES_TICKS], period, ticks);
			if (n->failures)
				series_add(&m->series[b][SERIES_FAILURES], period, n->failures);
		}
	}
	npending = 0;
}

/* Forget the notes since the last flush: their transaction rolled back. */
void
toygun_metrics_discard(void)
{
	npending = 0;
}

/*
 * Note a tick of m's type that took duration_us, failed or not, and that
 * panicked its object or not. Added to shared memory at the next flush.
 */
void
toygun_metrics_note(ToygunMetric *m, int64 duration_us, bool failed, bool panicked)
{
	Pending    *n = NULL;
	int			b;

	if (m == NULL)
		return;
	for (int p = npending - 1; p >= 0; p--)
		if (pending[p].m == m)
		{
			n = &pending[p];
			break;
		}
	if (n == NULL)
	{
		if (npending == PENDING_MAX)
			toygun_metrics_flush();
		n = &pending[npending++];
		memset(n, 0, sizeof(Pending));
		n->m = m;
	}
	if (duration_us < 0)
		duration_us = 0;
	for (b = 0; b < TOYGUN_METRIC_BUCKETS - 1 && duration_us > bucket_us[b]; b++)
		;
	n->failures += failed;
	n->panics += panicked;
	n->sum_us += duration_us;
	n->buckets[b]++;
}

/*
 * Which entries the caller may read, by index, the overflow last: a type's
 * if its resource type is in toygun.readable_types(), as the row security
 * of the runs has it; the overflow, which mixes every owner's types, only
 * with the privileges of the extension's owner (a superuser has them). An
 * entry added after this reads as unreadable. Allocated in the caller's
 * memory context.
 */
static bool *
readable_entries(void)
{
	MemoryContext caller = CurrentMemoryContext;
	bool	   *readable = palloc0(sizeof(bool) * (metrics->size + 1));
	ArrayType  *array = NULL;
	Datum	   *names = NULL;
	int			nnames = 0;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT toygun.readable_types()", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read toygun.readable_types()");
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			array = DatumGetArrayTypePCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	if (array != NULL)
	{
		deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &nnames);
		for (int j = 0; j < nnames; j++)
			names[j] = PointerGetDatum(text_to_cstring(DatumGetTextPP(names[j])));
	}

	for (int i = 0; i < metrics->size; i++)
	{
		ToygunMetric *m = &metrics->entries[i];

		if (pg_atomic_read_u32(&m->used) == 0)
			continue;
		pg_read_barrier();
		for (int j = 0; j < nnames && !readable[i]; j++)
			readable[i] = strcmp(DatumGetCString(names[j]), m->resource_type) == 0;
	}
	readable[metrics->size] = has_privs_of_role(GetUserId(), toygun_extension_owner());
	return readable;
}

/*
 * toygun._tick_metrics(): a row per type whose ticks were counted and that
 * the caller may read (readable_entries()), and a row for the overflow
 * (resource_type NULL) if it counted any and the caller may read it:
 * resource_type, task (NULL for a resource type), ticks, failures, panics,
 * duration_sum (seconds), le (the buckets' bounds) and buckets (cumulative,
 * as Prometheus has them).
 */
Datum
toygun_tick_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool	   *readable;
	Datum		le[TOYGUN_METRIC_BUCKETS];
	ArrayType  *le_array;
	int			i;

	toygun_require_preload("toygun._tick_metrics()");
	InitMaterializedSRF(fcinfo, 0);
	readable = readable_entries();

	for (i = 0; i < TOYGUN_METRIC_BUCKETS; i++)
		le[i] = CStringGetTextDatum(bucket_le[i]);
	le_array = construct_array(le, TOYGUN_METRIC_BUCKETS, TEXTOID, -1, false, TYPALIGN_INT);

	for (i = 0; i <= metrics->size; i++)
	{
		ToygunMetric *m = &metrics->entries[i];
		bool		overflow = i == metrics->size;
		Datum		values[8];
		bool		nulls[8] = {false, false, false, false, false, false, false, false};
		Datum		cumulative[TOYGUN_METRIC_BUCKETS];
		uint64		sum = 0;
		int			j;

		if (!readable[i])
			continue;
		if (!overflow)
		{
			values[0] = CStringGetTextDatum(m->resource_type);
			values[1] = CStringGetTextDatum(m->task);
			nulls[1] = m->task[0] == '\0';
		}
		else
			nulls[0] = nulls[1] = true;
		/* the count is the +Inf bucket's: never out of step with the buckets */
		for (j = 0; j < TOYGUN_METRIC_BUCKETS; j++)
		{
			sum += pg_atomic_read_u64(&m->buckets[j]);
			cumulative[j] = Int64GetDatum((int64) sum);
		}
		if (overflow && sum == 0)
			continue;
		values[2] = Int64GetDatum((int64) sum);
		values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&m->failures));
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&m->panics));
		values[5] = Float8GetDatum((double) pg_atomic_read_u64(&m->sum_us) / 1000000.0);
		values[6] = PointerGetDatum(le_array);
		values[7] = PointerGetDatum(construct_array(cumulative, TOYGUN_METRIC_BUCKETS, INT8OID,
													8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * toygun.metrics_series(window): the series' buckets of the window that
 * counted something, oldest first, of the entries the caller may read
 * (readable_entries()): '1h', the one-minute buckets of the last hour (the
 * current minute's and the 59 before), or '24h', the thirty-minute buckets
 * of the last 24 hours. Rows: at (the bucket's start), resource_type, task
 * (NULL for a resource type; both NULL for the overflow), ticks, failures.
 */
Datum
toygun_metrics_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *window = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	const SeriesRing *ring = NULL;
	bool	   *readable;
	uint64		last;

	for (int r = 0; r < lengthof(rings) && window != NULL; r++)
		if (strcmp(window, rings[r].window) == 0)
			ring = &rings[r];
	if (ring == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("toygun.metrics_series() has no window %s",
						window ? quote_literal_cstr(window) : "NULL"),
				 errhint("Use '1h' for the one-minute buckets of the last hour, or '24h' for the thirty-minute buckets of the last 24 hours.")));
	toygun_require_preload("toygun.metrics_series()");
	InitMaterializedSRF(fcinfo, 0);
	readable = readable_entries();

	last = GetCurrentTimestamp() / ring->width_us;
	for (uint64 period = last - ring->buckets + 1; period <= last; period++)
	{
		int			b = ring->first + period % ring->buckets;

		for (int i = 0; i <= metrics->size; i++)
		{
			ToygunMetric *m = &metrics->entries[i];
			Datum		values[5];
			bool		nulls[5] = {false, false, false, false, false};
			uint64		ticks,
						failures;

			if (!readable[i])
				continue;
			ticks = series_read(&m->series[b][SERIES_TICKS], period);
			failures = series_read(&m->series[b][SERIES_FAILURES], period);
			if (ticks == 0 && failures == 0)
				continue;
			values[0] = TimestampTzGetDatum((TimestampTz) (period * ring->width_us));
			if (i < metrics->size)
			{
				values[1] = CStringGetTextDatum(m->resource_type);
				values[2] = CStringGetTextDatum(m->task);
				nulls[2] = m->task[0] == '\0';
			}
			else
				nulls[1] = nulls[2] = true;
			values[3] = Int64GetDatum((int64) ticks);
			values[4] = Int64GetDatum((int64) failures);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
