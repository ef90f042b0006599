/*
 * waits.c
 *		toygun.wait(id, timeout, states): a session sleeps on its latch until
 *		a run's committed state is one of states, or the timeout. Shared
 *		memory has one slot per backend (MyBackendId) naming the run it waits
 *		for, and a count of waiters. A save of a run (object.c) notes the
 *		run's id for its transaction while anybody waits; the commit sets the
 *		latch of each waiter of a noted run. With nobody waiting, a save costs
 *		one atomic read. wake.c is the workers' wake; this is the sessions'.
 *
 * No lost wake-up: a waiter takes its slot and counts itself before it
 * reads the run with a fresh snapshot. A transaction whose change that
 * read did not see commits after the read's snapshot was taken, and reads
 * the count after its commit: it sees the waiter. If it saved the run
 * while the count was still 0, it did not note the run's id, only that it
 * left a save unnoted: its commit then wakes every waiter, which each read
 * their run again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_wait);

typedef struct WaitSlot
{
	pg_uuid_t	id;				/* the run waited for, while active */
	Latch	   *latch;
	pg_atomic_uint32 active;	/* set after id and latch, cleared first */
} WaitSlot;

typedef struct WaitShared
{
	pg_atomic_uint32 waiters;	/* active slots */
	int			nslots;
	WaitSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WaitShared;

#define WAITS_SHMEM "toygun waits"

static WaitShared *waits = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction's saved runs, noted while anybody waited. */
static pg_uuid_t *noted = NULL;
static int	nnoted = 0;
static int	noted_max = 0;

/* This transaction saved a run while nobody waited. */
static bool unnoted = false;

/* This backend's slot is active (for the exit callback). */
static bool slot_active = false;
static bool exit_callback_set = false;

static Size
waits_size(void)
{
	return add_size(offsetof(WaitShared, slots), mul_size(MaxBackends, sizeof(WaitSlot)));
}

static void
waits_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(waits_size());
}

static void
waits_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	waits = ShmemInitStruct(WAITS_SHMEM, waits_size(), &found);
	if (!found)
	{
		memset(waits, 0, waits_size());
		waits->nslots = MaxBackends;
		pg_atomic_init_u32(&waits->waiters, 0);
		for (i = 0; i < waits->nslots; i++)
			pg_atomic_init_u32(&waits->slots[i].active, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * A run (a task) was saved in this transaction: note it if anybody waits.
 * On every save, the tick's too: one atomic read when nobody does.
 */
void
toygun_waits_note(pg_uuid_t *id)
{
	if (waits == NULL)
		return;
	if (pg_atomic_read_u32(&waits->waiters) == 0)
	{
		unnoted = true;
		return;
	}
	if (nnoted >= noted_max)
	{
		int			n = noted_max > 0 ? noted_max * 2 : 16;

		noted = noted == NULL
			? MemoryContextAlloc(TopTransactionContext, sizeof(pg_uuid_t) * n)
			: repalloc(noted, sizeof(pg_uuid_t) * n);
		noted_max = n;
	}
	noted[nnoted++] = *id;
}

static int
uuid_order(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(pg_uuid_t));
}

/* At commit, which is visible to others by now: wake the waiters of the runs it changed. */
static void
wake_waiters(void)
{
	int			i;

	/* our commit is visible before we read who waits (see the top) */
	pg_memory_barrier();
	if (pg_atomic_read_u32(&waits->waiters) == 0)
		return;
	if (nnoted > 1)
		qsort(noted, nnoted, sizeof(pg_uuid_t), uuid_order);
	for (i = 0; i < waits->nslots; i++)
	{
		WaitSlot   *slot = &waits->slots[i];
		pg_uuid_t	id;
		Latch	   *latch;

		if (pg_atomic_read_u32(&slot->active) == 0)
			continue;
		pg_read_barrier();
		id = slot->id;
		latch = slot->latch;
		if (unnoted || (nnoted > 0 && bsearch(&id, noted, nnoted, sizeof(pg_uuid_t), uuid_order)))
			SetLatch(latch);
	}
}

static void
waits_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && waits != NULL && (nnoted > 0 || unnoted))
		wake_waiters();
	/*
	 * Whatever the end. A prepared transaction's COMMIT PREPARED wakes
	 * nobody: its waiters see the change at their timeout.
	 */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		noted = NULL;			/* in TopTransactionContext, gone */
		nnoted = 0;
		noted_max = 0;
		unnoted = false;
	}
}

/* From _PG_init; shared memory only when preloaded (otherwise wait() refuses). */
void
toygun_waits_init(bool preloaded)
{
	RegisterXactCallback(waits_xact_callback, NULL);
	if (!preloaded)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = waits_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = waits_shmem_startup;
}

static WaitSlot *
my_slot(void)
{
	if (MyBackendId == InvalidBackendId || MyBackendId > waits->nslots)
		elog(ERROR, "toygun.wait(): backend id %d has no wait slot", MyBackendId);
	return &waits->slots[MyBackendId - 1];
}

/* Give the slot back: on return, on error, and on exit. */
static void
release_slot(void)
{
	WaitSlot   *slot;

	if (!slot_active)
		return;
	slot = my_slot();
	pg_atomic_write_u32(&slot->active, 0);
	pg_atomic_fetch_sub_u32(&waits->waiters, 1);
	slot_active = false;
}

static void
release_slot_at_exit(int code, Datum arg)
{
	release_slot();
}

/* Take the slot for run id; then, and only then, may the run be read. */
static void
take_slot(pg_uuid_t *id)
{
	WaitSlot   *slot = my_slot();

	if (!exit_callback_set)
	{
		before_shmem_exit(release_slot_at_exit, (Datum) 0);
		exit_callback_set = true;
	}
	slot->id = *id;
	slot->latch = MyLatch;
	pg_write_barrier();
	pg_atomic_write_u32(&slot->active, 1);
	slot_active = true;
	/* a full barrier: the count is up before the read's snapshot is taken */
	pg_atomic_fetch_add_u32(&waits->waiters, 1);
}

/* A timeout as microseconds, which must not be negative; huge ones are capped. */
static int64
timeout_usec(Interval *timeout)
{
	double		usec = (double) timeout->time +
		((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) * (double) USECS_PER_DAY;

	if (usec < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative"),
				 errhint("Give an interval of 0 or more, such as '30 s'; 0 reads the run's state once.")));
	/* a hundred years is as good as forever */
	return usec > 100.0 * 365 * USECS_PER_DAY ? (int64) (100.0 * 365 * USECS_PER_DAY) : (int64) usec;
}

/* The row with last_error null, for a caller who may not read error texts. */
static Datum
without_last_error(Datum row)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1];
	Datum		values[1];
	bool		isnull;

	argtypes[0] = toygun_type_oid("task");
	values[0] = row;
	toygun_run(toygun_plan(&plan,
						   "SELECT pg_catalog.jsonb_populate_record($1, '{\"last_error\": null}')",
						   1, argtypes),
			   values, NULL, 1);
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/* The columns of a waiter's read of its run. */
enum
{
	W_ROW = 1,
	W_STATE,
	W_XMIN,
	W_TYPE,
	W_NAME,
	W_STARTED					/* step 0 and created in this transaction's time */
};

/*
 * Read the run with a snapshot taken now (not the statement's): its row
 * and state, or false if there is no such run.
 */
static bool
read_run(pg_uuid_t *id, HeapTuple *tup, TupleDesc *desc)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];
	int			rc;

	values[0] = UUIDPGetDatum(id);
	rc = SPI_execute_snapshot(toygun_plan(&plan,
										  "SELECT t, t.state, t.xmin, t.resource_type, t.name,"
										  " t.step = 0 AND t.created_at >= pg_catalog.now()"
										  " FROM ONLY toygun.task t WHERE t.id = $1",
										  1, argtypes),
							  values, NULL, GetLatestSnapshot(), InvalidSnapshot, true, false, 1);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;
	*tup = SPI_tuptable->vals[0];
	*desc = SPI_tuptable->tupdesc;
	return true;
}

static void
no_such_run(pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("task %s does not exist", toygun_uuid_text(id))));
}

/*
 * The caller may read the run (otherwise it does not exist, as for an
 * unknown id: wait() does not tell whether an id exists), and states are
 * its type's or toygun's own.
 */
static ToygunDef *
check_first_read(pg_uuid_t *id, HeapTuple tup, TupleDesc desc, Oid caller,
				 char **states, int nstates)
{
	bool		isnull;
	ToygunDef  *def;
	int			i;

	def = toygun_find_def(TOYGUN_TASK, SPI_getvalue(tup, desc, W_TYPE),
						  SPI_getvalue(tup, desc, W_NAME), true);
	if (def == NULL || !toygun_has_right(def, caller, TOYGUN_RIGHT_READ))
		no_such_run(id);
	for (i = 0; i < nstates; i++)
	{
		if (strcmp(states[i], TOYGUN_NEW) == 0 || strcmp(states[i], TOYGUN_STOP) == 0 ||
			strcmp(states[i], TOYGUN_PANIC) == 0 || toygun_in_list(states[i], def->states, def->nstates))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state \"%s\" is not declared by %s", states[i], toygun_def_label(def)),
				 errhint("Wait for its declared states, " TOYGUN_NEW ", " TOYGUN_STOP " or " TOYGUN_PANIC ".")));
	}
	/* written by this very transaction: nobody else can move it on before it ends */
	if (TransactionIdIsCurrentTransactionId(DatumGetTransactionId(SPI_getbinval(tup, desc, W_XMIN, &isnull))))
	{
		bool		started = DatumGetBool(SPI_getbinval(tup, desc, W_STARTED, &isnull));

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %s was %s in this transaction, which has not committed",
						toygun_uuid_text(id), started ? "started" : "changed"),
				 errdetail("No tick or other session can move it on before this transaction ends."),
				 errhint("Commit first; wait() sees only committed states.")));
	}
	return def;
}

/*
 * Read the run until its state is one of states or the deadline has
 * passed, sleeping on the latch in between; the row, out of SPI.
 */
static Datum
wait_for_state(pg_uuid_t *id, Oid caller, char **states, int nstates, TimestampTz deadline)
{
	ToygunDef  *def = NULL;
	bool		may_read_errors = false;

	for (;;)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		char	   *state;
		TimestampTz now;
		long		ms;

		if (!read_run(id, &tup, &desc))
			no_such_run(id);
		if (def == NULL)
		{
			def = check_first_read(id, tup, desc, caller, states, nstates);
			may_read_errors = toygun_has_right(def, caller, TOYGUN_RIGHT_READ_ERRORS);
		}
		state = SPI_getvalue(tup, desc, W_STATE);
		now = GetCurrentTimestamp();
		if (toygun_in_list(state, states, nstates) || now >= deadline)
		{
			bool		isnull;
			Datum		row = SPI_getbinval(tup, desc, W_ROW, &isnull);

			if (!may_read_errors)
				row = without_last_error(row);
			return SPI_datumTransfer(row, false, -1);
		}
		SPI_freetuptable(SPI_tuptable);
		ms = (long) Min((deadline - now + 999) / 1000, (int64) INT_MAX);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * wait(id, timeout, states): the run once its committed state is one of
 * states, or at the timeout as it is then.
 */
Datum
toygun_wait(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	pg_uuid_t  *id;
	int64		usec;
	char	  **states;
	int			nstates;
	TimestampTz deadline;
	pg_uuid_t	ticking;
	volatile Datum result = (Datum) 0;

	toygun_require_preload("toygun.wait()");

	/*
	 * Not in a handler: its tick holds its run (and a worker's batch holds
	 * every run it claimed) until the handler returns, and a worker's latch
	 * is its wake-up, which the wait would take. Refused before anything is
	 * read, whatever the id.
	 */
	if (toygun_in_worker || toygun_ticking_top(&ticking))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("toygun.wait() is called in a handler"),
				 errdetail("A handler's tick holds its run, and a worker's batch every run it claimed, until the handler returns."),
				 errhint("Return toygun.stay() with a wait instead: toygun.send() and a child's end make a waiting run due.")));
	toygun_check_not_null(fcinfo, 0, "id");
	toygun_check_not_null(fcinfo, 1, "timeout");
	toygun_check_not_null(fcinfo, 2, "states");
	id = PG_GETARG_UUID_P(0);
	usec = timeout_usec(PG_GETARG_INTERVAL_P(1));
	states = toygun_text_array(PG_GETARG_ARRAYTYPE_P(2), "states", &nstates);
	if (nstates == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("states must name at least one state"),
				 errhint("The default is '{" TOYGUN_STOP "," TOYGUN_PANIC "}': until the run has ended.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("toygun.wait() cannot run in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("It reads states committed after the transaction's snapshot, which this isolation level must not see."),
				 errhint("Call toygun.wait() in a READ COMMITTED transaction.")));
	deadline = GetCurrentTimestamp() + usec;

	toygun_begin_call(&call);
	take_slot(id);
	PG_TRY();
	{
		result = wait_for_state(id, call.caller, states, nstates, deadline);
	}
	PG_FINALLY();
	{
		release_slot();
	}
	PG_END_TRY();
	toygun_end_call(&call);
	PG_RETURN_DATUM(result);
}
