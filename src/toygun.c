/*
 * toygun.c
 *		Module load: the settings, then each module's own init (its
 *		end-of-transaction work), and shared memory (the workers' and the
 *		waiters'), the in-flight records
 *		and the launcher when preloaded.
 */
#include "postgres.h"

#include <sodium.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "toygun.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings; see the settings table in README.md */
char	   *toygun_database_name = NULL;
int			toygun_workers = 2;
int			toygun_batch_size = 1000;
int			toygun_poll_interval_ms = 10000;
int			toygun_tick_timeout_ms = 60000;
int			toygun_tick_grace_ms = 5000;
int			toygun_worker_memory_kb = 131072;
int			toygun_max_attempts = 10;
int			toygun_retry_backoff_ms = 1000;
int			toygun_failures_kept = 20;
bool		toygun_paused = false;
char	   *toygun_keep = NULL;
int			toygun_history_partition_s = 86400;
int			toygun_prune_batch = 1000;
int			toygun_maintain_interval_ms = 60000;

static void
define_settings(void)
{
	/* settings of the server's start exist only when loaded at server start */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("toygun.database_name",
								   "Database in which toygun's workers tick due runs.",
								   NULL,
								   &toygun_database_name,
								   "postgres",
								   PGC_POSTMASTER,
								   GUC_SUPERUSER_ONLY,
								   NULL, NULL, NULL);
	/* metrics (issue 18): metrics.c */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("toygun.metrics_types",
								"Task types and resource types whose ticks toygun.metrics() counts one by one.",
								"Past that many, the ticks of further types are counted together, as toygun_metrics_overflow_ticks_total. Each takes about 2 kB of shared memory.",
								&toygun_metrics_types,
								1024, 16, 1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.workers",
							"Number of worker processes that tick due runs.",
							"0 stops ticking in the background; each worker uses one of max_worker_processes.",
							&toygun_workers,
							2, 0, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	/* queues (issue 17): queue.c */
	DefineCustomStringVariable("toygun.queues",
							   "Worker processes per queue, as 'default:2, reports:1'.",
							   "Empty means 'default:' toygun.workers. Worker slots are given to the queues in the order listed.",
							   &toygun_queues,
							   "",
							   PGC_SIGHUP,
							   0,
							   toygun_queues_check, toygun_queues_assign, NULL);
	DefineCustomIntVariable("toygun.batch_size",
							"Most runs a worker claims and ticks in one transaction.",
							"A batch also stops ticking after 100 ms and commits.",
							&toygun_batch_size,
							1000, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.poll_interval",
							"How long stay() without a wait waits before the next tick.",
							NULL,
							&toygun_poll_interval_ms,
							10000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.tick_timeout",
							"Longest a tick may run in a worker before it is cancelled and counted as a failure.",
							"0 means no limit.",
							&toygun_tick_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.tick_grace",
							"How long a tick may run on after toygun.tick_timeout cancelled it before its worker is ended.",
							"A handler can catch the cancel, never the end of its process; the tick is charged to its run.",
							&toygun_tick_grace_ms,
							5000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.worker_memory",
							"Memory past which a worker starts afresh after its batch.",
							"It bounds the plans and compiled functions a worker caches for every owner's handlers. 0 means no limit.",
							&toygun_worker_memory_kb,
							131072, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.max_attempts",
							"Failed ticks in a row after which a run panics.",
							NULL,
							&toygun_max_attempts,
							10, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.retry_backoff",
							"Wait before retrying a failed tick; doubles with each failure in a row, up to an hour.",
							NULL,
							&toygun_retry_backoff_ms,
							1000, 1, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.failures_kept",
							"Failed ticks kept in toygun.failure for each resource and run; older ones are deleted.",
							"0 keeps none.",
							&toygun_failures_kept,
							20, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("toygun.paused",
							 "Stops the workers from ticking until it is turned off again.",
							 NULL,
							 &toygun_paused,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("toygun.keyring_file",
							   "File with the numbered keys that encrypt secrets and encrypted fields.",
							   "Each line is a key number and a base64-encoded 32-byte key. "
							   "The file must be readable only by the server's operating system user.",
							   &toygun_keyring_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, toygun_keyring_assign, NULL);
	DefineCustomStringVariable("toygun.test_now",
							   "The time a session's ticks by hand read, for tests: when a stay's wait ends, what is due.",
							   "A timestamp with time zone, or empty for the real time; an earlier one than the real time has no effect. "
							   "Workers ignore it. toygun.test_advance() moves it on.",
							   &toygun_test_now,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   toygun_test_now_check, toygun_test_now_assign, NULL);
	/* retention (issue 16): retention.c */
	DefineCustomStringVariable("toygun.keep",
							   "How long a type defined without keep keeps its stopped objects and history.",
							   "forever, or a positive interval such as '30 days'; read by define_resource and define_task.",
							   &toygun_keep,
							   "forever",
							   PGC_SIGHUP,
							   0,
							   toygun_keep_check, NULL, NULL);
	DefineCustomIntVariable("toygun.history_partition",
							"Time range of each partition of toygun.transition, by expiry, counted from the Unix epoch.",
							"Expired history goes a partition at a time: a row goes within this long after it expired.",
							&toygun_history_partition_s,
							86400, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.prune_batch",
							"Most stopped runs, and most stopped resources, one round of maintenance removes in a transaction.",
							NULL,
							&toygun_prune_batch,
							1000, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("toygun.maintain_interval",
							"Longest time between two rounds of maintenance by the workers, even when they are busy.",
							"They also run one when nothing is due. 0 means the workers never do: call toygun.maintain().",
							&toygun_maintain_interval_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	/* for measuring what the direct writes buy (bench/README.md) */
	DefineCustomBoolVariable("toygun.direct_writes",
							 "Lets ticks write rows straight to the tables rather than through SQL.",
							 NULL,
							 &toygun_direct_writes,
							 true,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("toygun");
}

void
_PG_init(void)
{
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libsodium")));
	define_settings();
	toygun_relcache_init();
	toygun_define_init();
	toygun_object_init();
	toygun_store_init();
	toygun_flow_init();
	toygun_wake_init();
	toygun_waits_init(process_shared_preload_libraries_in_progress && !IsBinaryUpgrade);
	toygun_rate_init(process_shared_preload_libraries_in_progress && !IsBinaryUpgrade);
	toygun_metrics_init(process_shared_preload_libraries_in_progress && !IsBinaryUpgrade);

	/* Without preloading, everything but the background ticking and wait() works. */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	toygun_shmem_init();
	toygun_inflight_init();
	toygun_register_launcher();
}
