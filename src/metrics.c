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
#include "utils/array.h"
#include "utils/builtins.h"
#include "catalog/pg_type.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_tick_metrics);

#define METRICS_SHMEM "toygun metrics"

/* The histogram's upper bounds, in microseconds, and as Prometheus's le labels; then +Inf. */
static const int64 bucket_us[TOYGUN_METRIC_BUCKETS - 1] = {
	1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000, 10000000
};
static const char *const bucket_le[TOYGUN_METRIC_BUCKETS] = {
	"0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "10", "+Inf"
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

/* Add this process's notes to shared memory. */
void
toygun_metrics_flush(void)
{
	for (int p = 0; p < npending; p++)
	{
		Pending    *n = &pending[p];
		ToygunMetric *m = n->m;

		if (n->failures)
			pg_atomic_fetch_add_u64(&m->failures, n->failures);
		if (n->panics)
			pg_atomic_fetch_add_u64(&m->panics, n->panics);
		if (n->sum_us)
			pg_atomic_fetch_add_u64(&m->sum_us, n->sum_us);
		for (int b = 0; b < TOYGUN_METRIC_BUCKETS; b++)
			if (n->buckets[b])
				pg_atomic_fetch_add_u64(&m->buckets[b], n->buckets[b]);
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
 * toygun._tick_metrics(): a row per type whose ticks were counted and that
 * the caller may read (its resource type is in toygun.readable_types()),
 * and a row for the overflow (resource_type NULL) if it counted any:
 * resource_type, task (NULL for a resource type), ticks, failures, panics,
 * duration_sum (seconds), le (the buckets' bounds) and buckets (cumulative,
 * as Prometheus has them).
 */
Datum
toygun_tick_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *readable = NULL;
	int			nreadable = 0;
	Datum		le[TOYGUN_METRIC_BUCKETS];
	ArrayType  *le_array;
	bool		isnull;
	int			i;

	toygun_require_preload("toygun._tick_metrics()");
	InitMaterializedSRF(fcinfo, 0);

	/* the types the caller may read, as the row security of the runs has them */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT toygun.readable_types()", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read toygun.readable_types()");
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

			deconstruct_array(DatumGetArrayTypePCopy(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &readable, NULL, &nreadable);
			for (i = 0; i < nreadable; i++)
				readable[i] = PointerGetDatum(text_to_cstring(DatumGetTextPP(readable[i])));
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();

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

		if (pg_atomic_read_u32(&m->used) == 0)
			continue;
		pg_read_barrier();
		if (!overflow)
		{
			for (j = 0; j < nreadable; j++)
				if (strcmp(DatumGetCString(readable[j]), m->resource_type) == 0)
					break;
			if (j == nreadable)
				continue;
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
