/*
 * inflight.c
 *		Which run each worker is ticking, in a small file of the data
 *		directory (pg_toygun/inflight) that the postmaster maps into memory
 *		and every worker inherits. A tick that ends its worker's process (a
 *		FATAL it cannot catch, a crash, a kill) leaves its record there, and
 *		a worker charges it to that run as a failed attempt. The file outlives
 *		a crash of any process, when the postmaster rebuilds shared memory: a
 *		plain store into a shared mapping is in the kernel's page cache at
 *		once. A power loss may lose it: the run is then just ticked again.
 *
 * A record is written before each tick (the run's id and when the tick
 * began, then "ticking") and cleared after it, stores into memory: no
 * system call on the tick path. How and when the worker ended is added by
 * its signal handlers and exit callback.
 *
 * Charging the dead ticks also needs a little shared memory, this file's
 * own and written only here: which worker is charging a slot's record, its
 * failed tries, the slot's deaths, and whether any record may need a charge.
 */
#include "postgres.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "toygun.h"

#define INFLIGHT_DIR	"pg_toygun"
#define INFLIGHT_FILE	"pg_toygun/inflight"
/* "tyg", and the record's size: a file of another layout starts empty */
#define INFLIGHT_MAGIC	(0x74796700 ^ (uint32) sizeof(ToygunInflight))

static ToygunInflight *records = NULL;
static int	nrecords = 0;
static ToygunInflight *mine = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * This postmaster's life: set when it maps the file, inherited by every
 * process it starts, kept through its restarts after crashes. PIDs are no
 * good for this: in a container the postmaster's, and its workers', may
 * well be the same after a restart.
 */
static int64 lifetime = 0;

/* The postmaster sent this process SIGTERM: a shutdown, or the launcher stopping it. */
static volatile sig_atomic_t stopped_by_server = false;

/*
 * Per worker slot, what charging its dead ticks needs. Unlike the records,
 * it starts empty after a crash, as wake.c's slots do.
 */
typedef struct InflightSlot
{
	pid_t		charger;		/* a worker charging this slot's dead tick, or 0 */
	int			charge_tries;	/* failed tries in a row to charge it */
	int64		deaths;			/* ticks in this slot that ended their worker */
} InflightSlot;

/*
 * The lock guards this memory, and the writes that start, take and give
 * back a record (toygun_inflight_start, _take, _done); a worker's writes to
 * its own record (its ticks' begin and end, how it ended) and the
 * launcher's notes take none.
 *
 * Whether a record is a dead tick depends on wake.c's slot too (which
 * process holds it): dead_tick() reads it with toygun_slot_pid(), which
 * takes wake.c's spinlock, while holding this lock. So the one lock order
 * is this lock, then wake.c's; never the reverse, since wake.c calls
 * nothing here (test/lib/calls.sh fails if two files call each other).
 * This lock is an LWLock because spinlocks must not nest: where they are
 * emulated, two may share one semaphore.
 */
typedef struct InflightShared
{
	LWLock	   *lock;
	bool		charges_pending;	/* a worker ended during a tick: charge it */
	int			nslots;
	InflightSlot slots[FLEXIBLE_ARRAY_MEMBER];
} InflightShared;

#define INFLIGHT_SHMEM	"toygun inflight"

static InflightShared *shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * In the postmaster, at start and again after a crash (from the shared
 * memory startup hook): map the file, once, a record for each possible
 * worker. After a crash the mapping, and what the dead processes wrote into
 * it, is kept.
 */
static void
inflight_map(int n)
{
	Size		size = sizeof(ToygunInflight) * n;
	struct stat st;
	void	   *p;
	int			fd;
	int			i;

	if (records != NULL)
		return;
	if (mkdir(INFLIGHT_DIR, pg_dir_create_mode) < 0 && errno != EEXIST)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("toygun could not create directory \"%s\": %m", INFLIGHT_DIR),
				 errdetail("Ticks that end their worker's process will not be charged to their runs.")));
		return;
	}
	fd = open(INFLIGHT_FILE, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
	if (fd < 0 || fstat(fd, &st) < 0 ||
		(st.st_size != (off_t) size && ftruncate(fd, size) < 0))
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("toygun could not open file \"%s\": %m", INFLIGHT_FILE),
				 errdetail("Ticks that end their worker's process will not be charged to their runs.")));
		if (fd >= 0)
			close(fd);
		return;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
	{
		ereport(LOG,
				(errmsg("toygun could not map file \"%s\": %m", INFLIGHT_FILE),
				 errdetail("Ticks that end their worker's process will not be charged to their runs.")));
		return;
	}
	records = p;
	nrecords = n;
	lifetime = GetCurrentTimestamp();
	/* a new file, or one of another layout: start empty */
	for (i = 0; i < n; i++)
		if (records[i].magic != INFLIGHT_MAGIC)
		{
			memset(&records[i], 0, sizeof(ToygunInflight));
			records[i].magic = INFLIGHT_MAGIC;
		}
}

static Size
shared_size(void)
{
	return add_size(offsetof(InflightShared, slots),
					mul_size(max_worker_processes, sizeof(InflightSlot)));
}

static void
inflight_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche(INFLIGHT_SHMEM, 1);
}

static void
inflight_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct(INFLIGHT_SHMEM, shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		shared->lock = &(GetNamedLWLockTranche(INFLIGHT_SHMEM))->lock;
		shared->nslots = max_worker_processes;
	}
	LWLockRelease(AddinShmemInitLock);
	/* in the postmaster only: the workers inherit the mapping */
	if (!IsUnderPostmaster)
		inflight_map(max_worker_processes);
}

/* From _PG_init when preloaded. */
void
toygun_inflight_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = inflight_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = inflight_shmem_startup;
}

/* A copy of slot n's record (for the launcher); false if there are none. */
bool
toygun_inflight_read(int n, ToygunInflight *out)
{
	if (records == NULL || n >= nrecords)
		return false;
	memcpy(out, &records[n], sizeof(ToygunInflight));
	return true;
}

/* The launcher has seen slot n's worker end, and counts its deaths in a row. */
void
toygun_inflight_note_exit(int n, int deaths)
{
	if (records != NULL && n < nrecords)
	{
		records[n].died = 0;
		records[n].recycled = 0;
		records[n].deaths = deaths;
	}
}

/* --- in a worker ----------------------------------------------------- */

/*
 * SIGTERM: the postmaster's (a shutdown, or the launcher stopping a surplus
 * worker) is not the run's doing; anybody else's (pg_terminate_backend(),
 * from the handler itself or from a DBA) is.
 */
static void
inflight_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	if (info != NULL && info->si_pid == PostmasterPid)
		stopped_by_server = true;
	errno = save_errno;
	die(signo);
}

/* SIGQUIT: the postmaster ends every process after a crash, or at an immediate stop. */
static void
inflight_sigquit(int signo)
{
	if (mine != NULL && mine->ticking)
	{
		mine->how = TOYGUN_ENDED_BY_SERVER;
		mine->ended_at = GetCurrentTimestamp();
		mine->died = 1;
	}
	SignalHandlerForCrashExit(signo);
}

/* A crash: say which signal, then die of it as we would have. */
static void
inflight_crash(int signo)
{
	if (mine != NULL && mine->ticking)
	{
		mine->how = TOYGUN_ENDED_BY_SIGNAL;
		mine->detail = signo;
		mine->ended_at = GetCurrentTimestamp();
		mine->died = 1;
	}
	signal(signo, SIG_DFL);
	raise(signo);
}

/* The message of the FATAL error that ends a tick's process. */
static void
inflight_emit_log(ErrorData *edata)
{
	if (mine != NULL && mine->ticking && edata->elevel >= FATAL && edata->message != NULL)
	{
		int			len = pg_mbcliplen(edata->message, strlen(edata->message),
									   sizeof(mine->message) - 1);

		memcpy(mine->message, edata->message, len);
		mine->message[len] = '\0';
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* A worker's exit in the middle of a tick: say so, and have the others charge it. */
static void
inflight_exit(int code, Datum arg)
{
	if (mine == NULL || !mine->ticking)
		return;
	if (stopped_by_server)
		mine->how = TOYGUN_ENDED_BY_SERVER;
	else if (mine->how == TOYGUN_ENDED_UNKNOWN)
		mine->how = TOYGUN_ENDED_BY_EXIT;
	if (mine->how != TOYGUN_ENDED_TIMED_OUT)
		mine->detail = code;
	if (mine->ended_at == 0)
		mine->ended_at = GetCurrentTimestamp();
	mine->died = 1;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->charges_pending = true;
	LWLockRelease(shared->lock);
	toygun_wake_worker(-1);
}

/*
 * Install the handlers that tell how a worker ended. Call before
 * BackgroundWorkerUnblockSignals(). They write nothing until the worker
 * has a record of its own (toygun_inflight_start). SIGFPE keeps
 * PostgreSQL's handler, which raises an ordinary error.
 */
void
toygun_inflight_attach(void)
{
	struct sigaction act;

	memset(&act, 0, sizeof(act));
	act.sa_sigaction = inflight_sigterm;
	act.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&act.sa_mask);
	sigaction(SIGTERM, &act, NULL);
	pqsignal(SIGQUIT, inflight_sigquit);

	memset(&act, 0, sizeof(act));
	act.sa_handler = inflight_crash;
	act.sa_flags = SA_NODEFER | SA_RESETHAND;
	sigemptyset(&act.sa_mask);
	sigaction(SIGSEGV, &act, NULL);
	sigaction(SIGBUS, &act, NULL);
	sigaction(SIGILL, &act, NULL);
	sigaction(SIGABRT, &act, NULL);

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = inflight_emit_log;
}

/*
 * Once the slot's earlier record is charged (or given up on): this worker's
 * own, empty. Its exit callback runs before the transaction of a tick it
 * ends is aborted, so the others know to charge it before they can claim
 * its run.
 */
void
toygun_inflight_start(int slot, Oid dboid)
{
	ToygunInflight *rec;

	if (records == NULL || slot >= nrecords)
		return;
	rec = &records[slot];
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	rec->ticking = 0;
	rec->pid = MyProcPid;
	rec->lifetime = lifetime;
	rec->dboid = dboid;
	rec->how = TOYGUN_ENDED_UNKNOWN;
	rec->detail = 0;
	rec->died = 0;
	rec->recycled = 0;
	rec->message[0] = '\0';
	/* deaths: the launcher's */
	shared->slots[slot].charger = 0;
	LWLockRelease(shared->lock);
	mine = rec;
	before_shmem_exit(inflight_exit, (Datum) 0);
}

/*
 * started_at is the worker's clock reading before the tick, taken anyway
 * for its batch's time limit: the record costs no system call.
 */
void
toygun_inflight_begin(ToygunKind kind, pg_uuid_t *id, ItemPointer version,
					  TimestampTz started_at)
{
	if (mine == NULL)
		return;
	mine->kind = kind;
	mine->id = *id;
	mine->version = *version;
	mine->started_at = started_at;
	mine->ended_at = 0;
	pg_compiler_barrier();
	mine->ticking = 1;
	pg_compiler_barrier();
}

void
toygun_inflight_end(void)
{
	if (mine == NULL)
		return;
	pg_compiler_barrier();
	mine->ticking = 0;
}

/*
 * The tick ran past its grace period: it is ended with its process (in a
 * signal handler). Its timeout, the setting's or its task type's, is for
 * the message it is charged with.
 */
void
toygun_inflight_timed_out(int timeout_ms, bool of_type)
{
	if (mine != NULL && mine->ticking)
	{
		mine->timeout_ms = timeout_ms;
		mine->timeout_of_type = of_type;
		mine->how = TOYGUN_ENDED_TIMED_OUT;
	}
}

/*
 * This worker committed a batch: it is not one that keeps dying, and a
 * death of its slot's next worker starts the launcher's count again.
 */
void
toygun_inflight_worked(void)
{
	if (mine != NULL && mine->deaths != 0)
		mine->deaths = 0;
}

/* This worker exits on purpose, to be started again at once. */
void
toygun_inflight_recycle(void)
{
	if (mine != NULL)
		mine->recycled = 1;
}

/*
 * Slot n holds a tick whose worker ended during it (the caller holds the
 * lock): it said so as it died, or it ran in an earlier life of the server,
 * or its slot is no longer its own.
 *
 * The slot's pid is read first. The record's writer took the slot before it
 * wrote the record (toygun_claim_slot, then toygun_inflight_start, which
 * takes our lock and so is done by now): another pid there means that the
 * writer has left for good (it released the slot after its exit callback
 * marked a tick it died in, or shared memory was rebuilt after a crash),
 * not that it is yet to come. Read after the record, it could show a worker
 * that finished its tick and left in between, and a finished tick would
 * look dead.
 */
static bool
dead_tick(int n)
{
	ToygunInflight *rec = &records[n];
	pid_t		holder = toygun_slot_pid(n);

	pg_read_barrier();
	if (!rec->ticking || rec->magic != INFLIGHT_MAGIC)
		return false;
	if (rec->lifetime != lifetime)
		return true;
	return rec->pid != MyProcPid && (rec->died || rec->pid != holder);
}

/* Slot n's record is a dead tick not charged yet. */
bool
toygun_inflight_pending(int n)
{
	bool		pending;

	if (records == NULL || n >= nrecords || n >= shared->nslots)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	pending = dead_tick(n);
	LWLockRelease(shared->lock);
	return pending;
}

/*
 * Take slot n's record to charge it, if it is a tick whose worker ended and
 * nobody else is charging it; false otherwise. *restarted says whether it
 * ran in an earlier life of the server.
 */
bool
toygun_inflight_take(int n, ToygunInflight *out, bool *restarted)
{
	bool		taken = false;

	if (records == NULL || n >= nrecords || n >= shared->nslots)
		return false;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (dead_tick(n) && shared->slots[n].charger == 0)
	{
		shared->slots[n].charger = MyProcPid;
		memcpy(out, &records[n], sizeof(ToygunInflight));
		*restarted = records[n].lifetime != lifetime;
		taken = true;
	}
	LWLockRelease(shared->lock);
	return taken;
}

/*
 * The charge of slot n's record, taken by this worker, failed: how many
 * times in a row it has now. toygun_inflight_done() starts the count again
 * once the record is charged or given up on.
 */
int
toygun_inflight_charge_failed(int n)
{
	int			tries;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	tries = ++shared->slots[n].charge_tries;
	LWLockRelease(shared->lock);
	return tries;
}

/*
 * Give back a record taken by toygun_inflight_take(): charged, or given up
 * on, or to be tried again later. A record another worker of the slot has
 * overwritten meanwhile is left alone.
 */
void
toygun_inflight_done(int n, ToygunInflight *taken, bool charged, bool culprit, bool give_up)
{
	ToygunInflight *rec = &records[n];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (rec->pid == taken->pid && rec->lifetime == taken->lifetime)
	{
		if (charged || give_up)
			rec->ticking = 0;
		else
			shared->charges_pending = true;
	}
	if (charged && culprit)
		shared->slots[n].deaths++;
	if (charged || give_up)
		shared->slots[n].charge_tries = 0;
	shared->slots[n].charger = 0;
	LWLockRelease(shared->lock);
}

/* Whether run id is the run of a dead tick not charged yet. */
bool
toygun_inflight_is_dead_run(pg_uuid_t *id)
{
	bool		dead = false;
	int			i;

	if (records == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < nrecords && i < shared->nslots && !dead; i++)
		dead = dead_tick(i) && memcmp(&records[i].id, id, sizeof(pg_uuid_t)) == 0;
	LWLockRelease(shared->lock);
	return dead;
}

/*
 * Whether some record may hold a dead tick. Read without the lock, once a
 * batch: a dying worker sets it before its transaction ends, so a worker
 * that claimed one of its runs since (which waited for that end) sees it.
 */
bool
toygun_inflight_charges_pending(void)
{
	return shared != NULL && shared->charges_pending;
}

/*
 * charges_pending says that some record may hold a dead tick: set by a
 * dying worker, cleared here only when none does (one being charged still
 * counts), so that a claim never takes a dead tick's run uncharged.
 */
void
toygun_inflight_settle_pending(void)
{
	bool		any = false;
	int			i;

	if (records == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < nrecords && i < shared->nslots && !any; i++)
		any = dead_tick(i);
	shared->charges_pending = any;
	LWLockRelease(shared->lock);
}

/* A worker exits: a charge it had begun is anybody's again. */
void
toygun_inflight_forget_charges(void)
{
	int			i;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < shared->nslots; i++)
		if (shared->slots[i].charger == MyProcPid)
		{
			shared->slots[i].charger = 0;
			shared->charges_pending = true;
		}
	LWLockRelease(shared->lock);
}

/* How many ticks in slot n ended their worker (for toygun.worker_status()). */
int64
toygun_inflight_deaths(int n)
{
	int64		deaths;

	if (shared == NULL || n < 0 || n >= shared->nslots)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	deaths = shared->slots[n].deaths;
	LWLockRelease(shared->lock);
	return deaths;
}

/* Whether a record ran in this life of the server (for the launcher). */
bool
toygun_inflight_this_life(ToygunInflight *rec)
{
	return rec->lifetime == lifetime;
}

int
toygun_inflight_count(void)
{
	return nrecords;
}
