/*
 * launcher.c
 *		The launcher: one background worker per server that keeps
 *		toygun.workers workers running in toygun.database_name. It sleeps
 *		until something changes (a worker starts or stops, a reload, a wake-up
 *		when no worker runs) and runs no transaction otherwise.
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* How long to wait before starting a worker again after it stopped. */
#define RESTART_DELAY_MS 1000
/*
 * A worker that died during a tick is started again after a delay that
 * doubles with each such death in a row in its slot, up to this.
 */
#define MAX_RESTART_DELAY_MS 60000
/* How often to look again for a missing database or extension. */
#define RECHECK_MS 30000

/* Per worker slot: its handle, and when it may be started again. */
static int	nslots;
static BackgroundWorkerHandle **handles;
static TimestampTz *start_after;

void
toygun_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "toygun");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "toygun_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "toygun launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "toygun launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * The database's OID, or InvalidOid if it does not exist (yet). Without a
 * database of our own only a plain scan of pg_database works, as in
 * autovacuum.
 */
static Oid
find_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), toygun_database_name) == 0 && db->datallowconn)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return dboid;
}

/*
 * How long until slot n's worker starts again, from the in-flight record of
 * the one that ended: at once if it left to start afresh
 * (toygun.worker_memory); later and later if it keeps dying during ticks,
 * even through the server's restarts after crashes; else after "normal".
 */
static long
restart_delay(int n, long normal)
{
	ToygunInflight rec;
	bool		died;
	long		delay;

	/* a worker that holds the slot is not dead (a launcher restarted beside it) */
	if (!toygun_inflight_read(n, &rec) || toygun_slot_pid(n) != 0)
		return normal;
	/* a SIGKILL leaves no word, but a record still ticking */
	died = toygun_inflight_this_life(&rec) && rec.how != TOYGUN_ENDED_BY_SERVER &&
		(rec.died || rec.ticking);
	toygun_inflight_note_exit(n, died ? rec.deaths + 1 : 0);
	if (rec.recycled)
		return 0;
	if (!died)
		return normal;
	/* the first death in a row restarts as usual; the next ones after 2 s, 4 s ... */
	delay = rec.deaths == 0 ? normal
		: Max(normal, (long) Min((double) RESTART_DELAY_MS * pow(2.0, Min(rec.deaths, 20)),
								 (double) MAX_RESTART_DELAY_MS));
	ereport(LOG,
			(errmsg("toygun worker %d died during a tick of %s %s (%d in a row); starting it again in %ld ms",
					n, toygun_kind_name(rec.kind), toygun_uuid_text(&rec.id), rec.deaths + 1, delay),
			 errdetail("The tick is charged to its run as a failed attempt.")));
	return delay;
}

static bool
start_worker(int n, Oid dboid)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "toygun");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "toygun_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "toygun worker %d", n);
	snprintf(worker.bgw_type, BGW_MAXLEN, "toygun worker");
	worker.bgw_main_arg = Int32GetDatum(n);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handles[n]))
	{
		handles[n] = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("toygun could not start worker %d: out of background worker slots", n),
				 errhint("You might need to increase max_worker_processes.")));
		return false;
	}
	return true;
}

/*
 * Start the workers that should run and are not running, and stop those
 * beyond toygun.queues (or toygun.workers). Returns how long to sleep before a worker may be
 * started again (-1: until woken).
 */
static long
manage_workers(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = -1;
	/* toygun.queues' sum, or toygun.workers (issue 17) */
	int			wanted = Min(toygun_queues_workers_total(), nslots);
	Oid			dboid = InvalidOid;
	static bool reported_missing_db = false;
	int			i;

	for (i = 0; i < nslots; i++)
	{
		pid_t		pid;

		if (handles[i] != NULL &&
			GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
		{
			pfree(handles[i]);
			handles[i] = NULL;
			start_after[i] = TimestampTzPlusMilliseconds(now, restart_delay(i, RESTART_DELAY_MS));
		}
		if (i >= wanted)
		{
			if (handles[i] != NULL)
				TerminateBackgroundWorker(handles[i]);
			continue;
		}
		if (handles[i] != NULL)
			continue;
		if (start_after[i] > now)
		{
			long		wait = TimestampDifferenceMilliseconds(now, start_after[i]) + 1;

			sleep_ms = sleep_ms < 0 ? wait : Min(sleep_ms, wait);
			continue;
		}
		/* looked up for each round of starts: it may have been recreated */
		if (!OidIsValid(dboid))
			dboid = find_database();
		if (!OidIsValid(dboid))
		{
			if (!reported_missing_db)
				ereport(LOG,
						(errmsg("toygun launcher is waiting for database \"%s\" to exist",
								toygun_database_name),
						 errhint("Create it, or set toygun.database_name and restart the server.")));
			reported_missing_db = true;
			return RECHECK_MS;
		}
		reported_missing_db = false;
		if (!start_worker(i, dboid))
		{
			start_after[i] = TimestampTzPlusMilliseconds(now, RECHECK_MS);
			sleep_ms = sleep_ms < 0 ? RECHECK_MS : Min(sleep_ms, RECHECK_MS);
		}
	}
	return sleep_ms;
}

static void
stop_all_workers(void)
{
	int			i;

	for (i = 0; i < nslots; i++)
		if (handles[i] != NULL)
			TerminateBackgroundWorker(handles[i]);
}

void
toygun_launcher_main(Datum arg)
{
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	toygun_launcher_attach();

	/* Shared catalogs only: the database may not exist yet. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("toygun launcher");

	nslots = toygun_slot_count();
	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * nslots);
	start_after = MemoryContextAllocZero(TopMemoryContext,
										 sizeof(TimestampTz) * nslots);
	/* after a crash, the worker whose tick caused it starts later */
	for (i = 0; i < nslots; i++)
		start_after[i] = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), restart_delay(i, 0));

	for (;;)
	{
		long		sleep_ms = -1;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (toygun_take_extension_missing())
		{
			/*
			 * A worker found no toygun extension there. Wait until woken (the
			 * first start of a task wakes us when no worker runs) or a while.
			 */
			stop_all_workers();
			sleep_ms = RECHECK_MS;
		}
		else
			sleep_ms = manage_workers();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (sleep_ms >= 0 ? WL_TIMEOUT : 0),
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
