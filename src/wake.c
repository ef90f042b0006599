/*
 * wake.c
 *		Shared memory of the launcher and workers: who is idle, their
 *		latches and counters, written only by the functions here. A
 *		transaction that made work due says so (toygun_wake_at_commit), and
 *		its commit sets the latch of an idle worker here, instead of a NOTIFY.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_wake_after_install);

typedef struct ToygunShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	bool		extension_missing;	/* a worker found no toygun in the database */
	/*
	 * Priority levels in use (issue 17), double-buffered: a commit sets its
	 * levels in both; a census clears next, reads the table, then sets
	 * cur to what it found and what next gained meanwhile. A level made
	 * due by a commit during the census is never lost.
	 */
	pg_atomic_uint64 levels_cur[TOYGUN_LEVEL_WORDS];
	pg_atomic_uint64 levels_next[TOYGUN_LEVEL_WORDS];
	int			nslots;
	ToygunWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} ToygunShared;

static ToygunShared *toygun_shared = NULL;

/* The slot this process holds, if it is a worker. */
static int	my_slot = -1;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
shared_size(void)
{
	return add_size(offsetof(ToygunShared, slots),
					mul_size(max_worker_processes, sizeof(ToygunWorkerSlot)));
}

static void
toygun_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
}

static void
toygun_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	toygun_shared = ShmemInitStruct("toygun", shared_size(), &found);
	if (!found)
	{
		memset(toygun_shared, 0, shared_size());
		SpinLockInit(&toygun_shared->mutex);
		for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		{
			pg_atomic_init_u64(&toygun_shared->levels_cur[w], 0);
			pg_atomic_init_u64(&toygun_shared->levels_next[w], 0);
		}
		toygun_shared->nslots = max_worker_processes;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init when preloaded. */
void
toygun_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = toygun_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = toygun_shmem_startup;
}

/* How many worker slots there are (max_worker_processes). */
int
toygun_slot_count(void)
{
	return toygun_shared->nslots;
}

/*
 * The process that holds slot n, or 0. Read under the lock, so that a
 * caller holding a lock of its own around it sees the slot as it is at
 * one moment (inflight.c's dead_tick).
 */
pid_t
toygun_slot_pid(int n)
{
	pid_t		pid;

	if (n < 0 || n >= toygun_shared->nslots)
		return 0;
	SpinLockAcquire(&toygun_shared->mutex);
	pid = toygun_shared->slots[n].pid;
	SpinLockRelease(&toygun_shared->mutex);
	return pid;
}

/* Errors with a hint unless toygun was loaded by shared_preload_libraries. */
void
toygun_require_preload(const char *what)
{
	if (toygun_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs toygun in shared_preload_libraries", what),
				 errhint("Add toygun to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Wake one idle worker; if no worker is running at all, wake the launcher,
 * which starts them. Safe to call from any backend; a no-op without shared
 * memory.
 */
void
toygun_wake_worker(void)
{
	Latch	   *latch = NULL;
	bool		any_running = false;
	int			i;

	if (toygun_shared == NULL)
		return;
	SpinLockAcquire(&toygun_shared->mutex);
	for (i = 0; i < toygun_shared->nslots; i++)
	{
		ToygunWorkerSlot *slot = &toygun_shared->slots[i];

		if (slot->pid == 0)
			continue;
		any_running = true;
		if (slot->idle && slot->latch != NULL)
		{
			slot->idle = false;
			latch = slot->latch;
			break;
		}
	}
	if (!any_running)
		latch = toygun_shared->launcher_latch;
	SpinLockRelease(&toygun_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* This transaction made a resource or task due, or due sooner: wake a worker at commit. */
static bool wake_at_commit = false;

void
toygun_wake_at_commit(void)
{
	wake_at_commit = true;
}

/* Called once by the install script: workers should start at commit. */
Datum
toygun_wake_after_install(PG_FUNCTION_ARGS)
{
	toygun_wake_at_commit();
	PG_RETURN_VOID();
}

/* The levels other than 0 this transaction started runs at (issue 17). */
static ToygunLevels levels_at_commit;
static bool levels_pending = false;

void
toygun_levels_note_at_commit(int priority)
{
	int			bit = priority - TOYGUN_PRIORITY_MIN;

	if (priority == 0 || priority < TOYGUN_PRIORITY_MIN || priority > TOYGUN_PRIORITY_MAX)
		return;
	levels_at_commit.bits[bit / 64] |= UINT64CONST(1) << (bit % 64);
	levels_pending = true;
}

/*
 * The levels other than 0 that may have runs, into *out; false when there
 * is none (then a claim reads level 0 alone, as before priorities): a few
 * word reads.
 */
bool
toygun_levels_read(ToygunLevels *out)
{
	uint64		any = 0;

	if (toygun_shared == NULL)
		return false;
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		any |= out->bits[w] = pg_atomic_read_u64(&toygun_shared->levels_cur[w]);
	return any != 0;
}

/* A census (object.c) begins: what commits from now on is kept in next. */
void
toygun_levels_census_begin(void)
{
	if (toygun_shared == NULL)
		return;
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		pg_atomic_write_u64(&toygun_shared->levels_next[w], 0);
	pg_memory_barrier();
}

/* It read the table, with a snapshot taken after census_begin: found, and what next gained. */
void
toygun_levels_census_end(ToygunLevels *found)
{
	if (toygun_shared == NULL)
		return;
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
	{
		uint64		old = pg_atomic_read_u64(&toygun_shared->levels_cur[w]);

		/* a commit ORs into cur meanwhile: retry with its bits */
		while (!pg_atomic_compare_exchange_u64(&toygun_shared->levels_cur[w], &old,
											   found->bits[w] |
											   pg_atomic_read_u64(&toygun_shared->levels_next[w])))
			;
	}
}

/* At commit (or prepare: a spurious level costs a probe), publish the levels. */
static void
publish_levels(void)
{
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		if (levels_at_commit.bits[w] != 0)
		{
			/* next first: a census that reads cur after this keeps it */
			pg_atomic_fetch_or_u64(&toygun_shared->levels_next[w], levels_at_commit.bits[w]);
			pg_atomic_fetch_or_u64(&toygun_shared->levels_cur[w], levels_at_commit.bits[w]);
		}
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	if (levels_pending)
	{
		if (toygun_shared != NULL &&
			(event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE))
			publish_levels();
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
			event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		{
			memset(&levels_at_commit, 0, sizeof(levels_at_commit));
			levels_pending = false;
		}
	}
	/* at COMMIT the commit is visible to others by now */
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		toygun_wake_worker();
	/*
	 * Whatever the end: what a prepared transaction made due becomes due
	 * when COMMIT PREPARED runs, which wakes nobody.
	 */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

/* From _PG_init, preloaded or not (without shared memory nobody is woken). */
void
toygun_wake_init(void)
{
	RegisterXactCallback(wake_xact_callback, NULL);
}

/* A worker takes slot n for itself, or gives it back (on exit). */
void
toygun_claim_slot(int n)
{
	ToygunWorkerSlot *slot = &toygun_shared->slots[n];

	SpinLockAcquire(&toygun_shared->mutex);
	if (slot->pid != 0 && slot->pid != MyProcPid)
	{
		SpinLockRelease(&toygun_shared->mutex);
		ereport(ERROR,
				(errmsg("toygun worker slot %d is already taken by process %d", n, (int) slot->pid)));
	}
	my_slot = n;
	slot->pid = MyProcPid;
	slot->idle = false;
	slot->ticks = 0;
	slot->failures = 0;
	slot->last_tick_at = 0;
	slot->transactions = 0;
	slot->latch = MyLatch;
	slot->started_at = GetCurrentTimestamp();
	SpinLockRelease(&toygun_shared->mutex);
}

void
toygun_release_slot(int n)
{
	ToygunWorkerSlot *slot = &toygun_shared->slots[n];

	SpinLockAcquire(&toygun_shared->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		slot->idle = false;
	}
	SpinLockRelease(&toygun_shared->mutex);
}

/*
 * A worker is idle from before its claim (a commit after the claim wakes
 * it) until it has claimed something: then it is busy, and wake-ups go to
 * another. One that arrived meanwhile is passed on, lest it wait for the
 * batch.
 */
void
toygun_set_idle(int n, bool idle)
{
	bool		woken;

	SpinLockAcquire(&toygun_shared->mutex);
	woken = !idle && !toygun_shared->slots[n].idle;
	toygun_shared->slots[n].idle = idle;
	SpinLockRelease(&toygun_shared->mutex);
	if (woken)
		toygun_wake_worker();
}

/* Add a batch's results to slot n's counters. */
void
toygun_count_batch(int n, int64 ticks, int64 failures)
{
	ToygunWorkerSlot *slot = &toygun_shared->slots[n];

	SpinLockAcquire(&toygun_shared->mutex);
	slot->ticks += ticks;
	slot->failures += failures;
	if (ticks + failures > 0)
		slot->last_tick_at = GetCurrentTimestamp();
	SpinLockRelease(&toygun_shared->mutex);
}

/* A worker committed a transaction of its own. */
void
toygun_count_transaction(void)
{
	if (my_slot < 0)
		return;
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->slots[my_slot].transactions++;
	SpinLockRelease(&toygun_shared->mutex);
}

/*
 * The launcher is up: a wake-up when no worker runs goes to it, until it
 * exits; it has heard of no missing extension yet.
 */
static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->launcher_latch = NULL;
	SpinLockRelease(&toygun_shared->mutex);
}

void
toygun_launcher_attach(void)
{
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->launcher_latch = MyLatch;
	toygun_shared->extension_missing = false;
	SpinLockRelease(&toygun_shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);
}

/* A worker found no toygun extension in its database: the launcher stops them all. */
void
toygun_report_extension_missing(void)
{
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->extension_missing = true;
	SpinLockRelease(&toygun_shared->mutex);
}

/* For the launcher: whether a worker reported the extension missing since it last asked. */
bool
toygun_take_extension_missing(void)
{
	bool		missing;

	SpinLockAcquire(&toygun_shared->mutex);
	missing = toygun_shared->extension_missing;
	toygun_shared->extension_missing = false;
	SpinLockRelease(&toygun_shared->mutex);
	return missing;
}

/* A copy of every slot, taken at one moment (for toygun.worker_status()). */
ToygunWorkerSlot *
toygun_copy_slots(int *n)
{
	ToygunWorkerSlot *copy;

	*n = toygun_shared->nslots;
	copy = palloc(sizeof(ToygunWorkerSlot) * *n);
	SpinLockAcquire(&toygun_shared->mutex);
	memcpy(copy, toygun_shared->slots, sizeof(ToygunWorkerSlot) * *n);
	SpinLockRelease(&toygun_shared->mutex);
	return copy;
}
