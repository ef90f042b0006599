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

/* What shared memory knows of a queue (issue 17). */
typedef struct QueueShared
{
	/*
	 * Priority levels in use, double-buffered: a commit sets its levels in
	 * both; a census clears next, reads the table, then sets cur to what it
	 * found and what next gained meanwhile. A level made due by a commit
	 * during the census is never lost.
	 */
	pg_atomic_uint64 levels_cur[TOYGUN_LEVEL_WORDS];
	pg_atomic_uint64 levels_next[TOYGUN_LEVEL_WORDS];
	/* QUEUE_UNKNOWN until a worker loads it from toygun.queue; then pause and resume set it */
	pg_atomic_uint32 paused;
} QueueShared;

#define QUEUE_UNKNOWN 0
#define QUEUE_RUNNING 1
#define QUEUE_PAUSED 2

typedef struct ToygunShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	bool		extension_missing;	/* a worker found no toygun in the database */
	QueueShared queues[TOYGUN_MAX_QUEUES];
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
		for (int q = 0; q < TOYGUN_MAX_QUEUES; q++)
		{
			for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
			{
				pg_atomic_init_u64(&toygun_shared->queues[q].levels_cur[w], 0);
				pg_atomic_init_u64(&toygun_shared->queues[q].levels_next[w], 0);
			}
			pg_atomic_init_u32(&toygun_shared->queues[q].paused, QUEUE_UNKNOWN);
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
 * Wake one idle worker of a queue, or with queue -1 one idle worker of
 * every queue (and of none yet: a worker waiting for its queue to exist);
 * if no worker is running at all, wake the launcher, which starts them.
 * Safe to call from any backend; a no-op without shared memory.
 */
void
toygun_wake_worker(int queue)
{
	Latch	   *latches[TOYGUN_MAX_QUEUES + 2];	/* one a queue, none yet, the launcher */
	int			nlatches = 0;
	bool		woken[TOYGUN_MAX_QUEUES + 1];
	bool		any_running = false;
	int			i;

	if (toygun_shared == NULL)
		return;
	memset(woken, 0, sizeof(woken));
	SpinLockAcquire(&toygun_shared->mutex);
	for (i = 0; i < toygun_shared->nslots; i++)
	{
		ToygunWorkerSlot *slot = &toygun_shared->slots[i];

		if (slot->pid == 0)
			continue;
		any_running = true;
		if (queue >= 0 && slot->queue_id != queue)
			continue;
		if (slot->idle && slot->latch != NULL && !woken[slot->queue_id + 1])
		{
			slot->idle = false;
			latches[nlatches++] = slot->latch;
			woken[slot->queue_id + 1] = true;
			if (queue >= 0)
				break;
		}
	}
	if (!any_running && toygun_shared->launcher_latch != NULL)
		latches[nlatches++] = toygun_shared->launcher_latch;
	SpinLockRelease(&toygun_shared->mutex);
	for (i = 0; i < nlatches; i++)
		SetLatch(latches[i]);
}

/*
 * A commit made runs of a queue due at a priority (issue 17): wake an idle
 * worker of the queue; if none is idle, ask the busy one whose batch
 * claimed the lowest level, below that priority, to end its batch early
 * (preemption: tick_all looks at its flag). No worker at all: the launcher.
 */
static void
wake_for(int queue, int priority)
{
	Latch	   *latch = NULL;
	ToygunWorkerSlot *idle = NULL;
	ToygunWorkerSlot *lowest = NULL;
	bool		any_running = false;
	int			i;

	SpinLockAcquire(&toygun_shared->mutex);
	for (i = 0; i < toygun_shared->nslots; i++)
	{
		ToygunWorkerSlot *slot = &toygun_shared->slots[i];

		if (slot->pid == 0)
			continue;
		any_running = true;
		if (slot->queue_id != queue)
			continue;
		if (slot->idle && slot->latch != NULL)
		{
			if (idle == NULL)
				idle = slot;
		}
		else if (!slot->idle && slot->batch_level < priority &&
				 (lowest == NULL || slot->batch_level < lowest->batch_level))
			lowest = slot;
	}
	if (idle != NULL)
	{
		/*
		 * Idle, or claiming: a claim that began before this commit may have
		 * missed the run, so above level 0 its batch ends early for it, and
		 * the busy worker below the level is preempted too (whichever
		 * claims first takes the run).
		 */
		idle->idle = false;
		latch = idle->latch;
		if (priority > 0)
			idle->preempt = true;
		else
			lowest = NULL;
	}
	if (lowest != NULL)
		lowest->preempt = true;
	if (!any_running)
		latch = toygun_shared->launcher_latch;
	SpinLockRelease(&toygun_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * This transaction made a resource or task due, or due sooner: wake a
 * worker at commit. toygun_wake_at_commit() knows no queue (one idle
 * worker of each is woken); a start knows its queue and its priority.
 */
#define WAKE_QUEUES 8
static bool wake_at_commit = false;
static int	nwake_queues = 0;
static struct
{
	int16		queue;
	int			priority;
}			wake_queues[WAKE_QUEUES];

void
toygun_wake_at_commit(void)
{
	wake_at_commit = true;
}

void
toygun_wake_queue_at_commit(int queue, int priority)
{
	int			i;

	for (i = 0; i < nwake_queues; i++)
		if (wake_queues[i].queue == queue)
		{
			wake_queues[i].priority = Max(wake_queues[i].priority, priority);
			return;
		}
	/* past a few queues: every queue */
	if (nwake_queues == WAKE_QUEUES)
	{
		wake_at_commit = true;
		return;
	}
	wake_queues[nwake_queues].queue = queue;
	wake_queues[nwake_queues].priority = priority;
	nwake_queues++;
}

/* Called once by the install script: workers should start at commit. */
Datum
toygun_wake_after_install(PG_FUNCTION_ARGS)
{
	toygun_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * The levels other than 0 this transaction started runs at, per queue
 * (issue 17), and the queues it paused or resumed.
 */
static ToygunLevels levels_at_commit[TOYGUN_MAX_QUEUES];
static bool levels_pending = false;
static int8 paused_at_commit[TOYGUN_MAX_QUEUES];	/* 0: unchanged, 1: paused, -1: resumed, 2: reload */
static int	paused_level[TOYGUN_MAX_QUEUES];	/* the nest level that set it */
static bool paused_pending = false;

static inline bool
valid_queue(int queue)
{
	return queue >= 0 && queue < TOYGUN_MAX_QUEUES;
}

void
toygun_levels_note_at_commit(int queue, int priority)
{
	int			bit = priority - TOYGUN_PRIORITY_MIN;

	if (priority == 0 || priority < TOYGUN_PRIORITY_MIN || priority > TOYGUN_PRIORITY_MAX ||
		!valid_queue(queue))
		return;
	levels_at_commit[queue].bits[bit / 64] |= UINT64CONST(1) << (bit % 64);
	levels_pending = true;
}

/*
 * The levels other than 0 of a queue that may have runs, into *out; false
 * when there is none (then a claim reads level 0 alone, as before
 * priorities): a few word reads.
 */
bool
toygun_levels_read(int queue, ToygunLevels *out)
{
	uint64		any = 0;

	memset(out, 0, sizeof(*out));
	if (toygun_shared == NULL || !valid_queue(queue))
		return false;
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		any |= out->bits[w] = pg_atomic_read_u64(&toygun_shared->queues[queue].levels_cur[w]);
	return any != 0;
}

/* A census (object.c) of a queue begins: what commits from now on is kept in next. */
void
toygun_levels_census_begin(int queue)
{
	if (toygun_shared == NULL || !valid_queue(queue))
		return;
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
		pg_atomic_write_u64(&toygun_shared->queues[queue].levels_next[w], 0);
	pg_memory_barrier();
}

/* It read the table, with a snapshot taken after census_begin: found, and what next gained. */
void
toygun_levels_census_end(int queue, ToygunLevels *found)
{
	QueueShared *q;

	if (toygun_shared == NULL || !valid_queue(queue))
		return;
	q = &toygun_shared->queues[queue];
	for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
	{
		uint64		old = pg_atomic_read_u64(&q->levels_cur[w]);

		/* a commit ORs into cur meanwhile: retry with its bits */
		while (!pg_atomic_compare_exchange_u64(&q->levels_cur[w], &old,
											   found->bits[w] | pg_atomic_read_u64(&q->levels_next[w])))
			;
	}
}

/* At commit (or prepare: a spurious level costs a probe), publish the levels. */
static void
publish_levels(void)
{
	for (int q = 0; q < TOYGUN_MAX_QUEUES; q++)
		for (int w = 0; w < TOYGUN_LEVEL_WORDS; w++)
			if (levels_at_commit[q].bits[w] != 0)
			{
				/* next first: a census that reads cur after this keeps it */
				pg_atomic_fetch_or_u64(&toygun_shared->queues[q].levels_next[w], levels_at_commit[q].bits[w]);
				pg_atomic_fetch_or_u64(&toygun_shared->queues[q].levels_cur[w], levels_at_commit[q].bits[w]);
			}
}

/* Whether a queue is paused: 1, 0, or -1 while no worker has loaded it. */
int
toygun_queue_paused(int queue)
{
	uint32		v;

	if (toygun_shared == NULL || !valid_queue(queue))
		return 0;
	v = pg_atomic_read_u32(&toygun_shared->queues[queue].paused);
	return v == QUEUE_PAUSED ? 1 : v == QUEUE_RUNNING ? 0 : -1;
}

/*
 * A worker read the queue's row: set the flag unless a pause or resume
 * committed meanwhile (it set the flag itself, and is newer).
 */
void
toygun_queue_paused_load(int queue, bool paused)
{
	uint32		expected = QUEUE_UNKNOWN;

	if (toygun_shared == NULL || !valid_queue(queue))
		return;
	(void) pg_atomic_compare_exchange_u32(&toygun_shared->queues[queue].paused, &expected,
										  paused ? QUEUE_PAUSED : QUEUE_RUNNING);
}

/* pause_queue, resume_queue: the flag changes at commit (a resume wakes the queue's workers). */
void
toygun_queue_pause_at_commit(int queue, bool paused)
{
	if (!valid_queue(queue))
		return;
	paused_at_commit[queue] = paused ? 1 : -1;
	paused_level[queue] = GetCurrentTransactionNestLevel();
	paused_pending = true;
}

/*
 * A subtransaction that paused or resumed a queue rolled back: its row is
 * as before, which this transaction cannot know without a query; at commit
 * the flag is unknown, and the queue's workers read the row again.
 */
static void
wake_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (!paused_pending)
		return;
	for (int q = 0; q < TOYGUN_MAX_QUEUES; q++)
		if (paused_at_commit[q] != 0 && paused_level[q] >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
				paused_at_commit[q] = 2;
			paused_level[q] = level - 1;
		}
}

static void
publish_paused(void)
{
	for (int q = 0; q < TOYGUN_MAX_QUEUES; q++)
		if (paused_at_commit[q] != 0)
		{
			pg_atomic_write_u32(&toygun_shared->queues[q].paused,
								paused_at_commit[q] == 2 ? QUEUE_UNKNOWN :
								paused_at_commit[q] > 0 ? QUEUE_PAUSED : QUEUE_RUNNING);
			if (paused_at_commit[q] != 1)
				toygun_wake_queue(q);
		}
}

/* Wake every idle worker of a queue (a resume). */
void
toygun_wake_queue(int queue)
{
	int			i;

	if (toygun_shared == NULL)
		return;
	for (i = 0; i < toygun_shared->nslots; i++)
	{
		Latch	   *latch = NULL;
		ToygunWorkerSlot *slot = &toygun_shared->slots[i];

		SpinLockAcquire(&toygun_shared->mutex);
		if (slot->pid != 0 && slot->queue_id == queue && slot->latch != NULL)
		{
			slot->idle = false;
			latch = slot->latch;
		}
		SpinLockRelease(&toygun_shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
}

static bool
xact_ends(XactEvent event)
{
	return event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT;
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (levels_pending)
	{
		if (toygun_shared != NULL &&
			(event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE))
			publish_levels();
		if (xact_ends(event))
		{
			memset(levels_at_commit, 0, sizeof(levels_at_commit));
			levels_pending = false;
		}
	}
	if (paused_pending)
	{
		if (toygun_shared != NULL && event == XACT_EVENT_COMMIT)
			publish_paused();
		if (xact_ends(event))
		{
			memset(paused_at_commit, 0, sizeof(paused_at_commit));
			paused_pending = false;
		}
	}
	/* at COMMIT the commit is visible to others by now (and the levels published) */
	if (event == XACT_EVENT_COMMIT && toygun_shared != NULL)
	{
		if (wake_at_commit)
			toygun_wake_worker(-1);
		for (i = 0; i < nwake_queues; i++)
			wake_for(wake_queues[i].queue, wake_queues[i].priority);
	}
	/*
	 * Whatever the end: what a prepared transaction made due becomes due
	 * when COMMIT PREPARED runs, which wakes nobody.
	 */
	if (xact_ends(event))
	{
		wake_at_commit = false;
		nwake_queues = 0;
	}
}

/* From _PG_init, preloaded or not (without shared memory nobody is woken). */
void
toygun_wake_init(void)
{
	RegisterXactCallback(wake_xact_callback, NULL);
	RegisterSubXactCallback(wake_subxact_callback, NULL);
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
	slot->queue_id = -1;
	slot->batch_level = 0;
	slot->preempt = false;
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
	int			queue;

	SpinLockAcquire(&toygun_shared->mutex);
	woken = !idle && !toygun_shared->slots[n].idle;
	toygun_shared->slots[n].idle = idle;
	if (idle)
		toygun_shared->slots[n].preempt = false;
	queue = toygun_shared->slots[n].queue_id;
	SpinLockRelease(&toygun_shared->mutex);
	if (woken)
		toygun_wake_worker(queue);
}

/* The queue slot n's worker claims from (issue 17); -1: none yet. */
void
toygun_set_queue(int n, int queue)
{
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->slots[n].queue_id = (int16) queue;
	SpinLockRelease(&toygun_shared->mutex);
}

/*
 * Slot n's batch claimed down to level: a start above it may preempt the
 * batch. Its preempt flag was cleared when it went idle before the claim.
 */
void
toygun_set_batch_level(int n, int level)
{
	SpinLockAcquire(&toygun_shared->mutex);
	toygun_shared->slots[n].batch_level = (int16) level;
	SpinLockRelease(&toygun_shared->mutex);
}

/* Slot n's preempt flag: its worker reads it between ticks, without the lock. */
volatile bool *
toygun_preempt_flag(int n)
{
	return &toygun_shared->slots[n].preempt;
}

/* Whether toygun was preloaded (shared memory exists). */
bool
toygun_preloaded(void)
{
	return toygun_shared != NULL;
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
