/*
 * queue.c
 *		Queues (issue 17, flow control): the setting toygun.queues that
 *		gives worker slots to queues, the queues a definition names (made on
 *		first use), pause_queue and resume_queue, and queue_status(). The
 *		shared flags (paused, the workers' queues) are wake.c's.
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_pause_queue);
PG_FUNCTION_INFO_V1(toygun_resume_queue);
PG_FUNCTION_INFO_V1(toygun_queue_status);

/* At most this many entries in toygun.queues. */
#define MAX_QUEUE_ENTRIES 64

/* toygun.queues as its check hook parsed it (the GUC's "extra"). */
typedef struct QueueConfig
{
	int			n;				/* 0: the setting is empty, 'default:<toygun.workers>' */
	struct
	{
		char		name[NAMEDATALEN];
		int			count;
	}			e[MAX_QUEUE_ENTRIES];
} QueueConfig;

char	   *toygun_queues = NULL;
static QueueConfig *queue_config = NULL;

/*
 * The check hook: a comma-separated list of name:count, whitespace allowed
 * around items, a name of 1 to 63 bytes, a count from 0 to
 * max_worker_processes, no name twice. Anything else is refused (a reload
 * then logs "invalid value for parameter" and keeps the old value).
 */
bool
toygun_queues_check(char **newval, void **extra, GucSource source)
{
	QueueConfig *config = (QueueConfig *) malloc(sizeof(QueueConfig));
	const char *p = *newval ? *newval : "";

	if (config == NULL)
		return false;
	memset(config, 0, sizeof(QueueConfig));
	while (isspace((unsigned char) *p))
		p++;
	while (*p != '\0')
	{
		const char *start = p;
		const char *end;
		size_t		len;
		char	   *endp;
		long		count;
		int			i;

		while (*p != '\0' && *p != ':' && *p != ',')
			p++;
		end = p;
		while (end > start && isspace((unsigned char) end[-1]))
			end--;
		len = end - start;
		if (*p != ':' || len == 0)
		{
			GUC_check_errdetail("Each entry is a queue name, a colon and a number of workers, as in 'default:2, reports:1'.");
			free(config);
			return false;
		}
		if (len >= NAMEDATALEN)
		{
			GUC_check_errdetail("A queue name is at most %d bytes long.", NAMEDATALEN - 1);
			free(config);
			return false;
		}
		if (config->n >= MAX_QUEUE_ENTRIES)
		{
			GUC_check_errdetail("At most %d queues can be listed.", MAX_QUEUE_ENTRIES);
			free(config);
			return false;
		}
		memcpy(config->e[config->n].name, start, len);
		config->e[config->n].name[len] = '\0';
		for (i = 0; i < config->n; i++)
			if (strcmp(config->e[i].name, config->e[config->n].name) == 0)
			{
				GUC_check_errdetail("Queue \"%s\" is listed twice.", config->e[i].name);
				free(config);
				return false;
			}
		p++;
		while (isspace((unsigned char) *p))
			p++;
		errno = 0;
		count = strtol(p, &endp, 10);
		if (endp == p || errno != 0 || count < 0 || count > max_worker_processes)
		{
			GUC_check_errdetail("The number of workers of queue \"%s\" must be from 0 to max_worker_processes (%d).",
								config->e[config->n].name, max_worker_processes);
			free(config);
			return false;
		}
		p = endp;
		while (isspace((unsigned char) *p))
			p++;
		if (*p == ',')
		{
			p++;
			while (isspace((unsigned char) *p))
				p++;
			if (*p == '\0')
			{
				GUC_check_errdetail("The list ends with a comma.");
				free(config);
				return false;
			}
		}
		else if (*p != '\0')
		{
			GUC_check_errdetail("Entries are separated by commas, as in 'default:2, reports:1'.");
			free(config);
			return false;
		}
		config->e[config->n].count = (int) count;
		config->n++;
	}
	*extra = config;
	return true;
}

void
toygun_queues_assign(const char *newval, void *extra)
{
	queue_config = (QueueConfig *) extra;
}

/* How many workers the launcher keeps running: the sum of the counts, or toygun.workers. */
int
toygun_queues_workers_total(void)
{
	int			total = 0;
	int			i;

	if (queue_config == NULL || queue_config->n == 0)
		return toygun_workers;
	for (i = 0; i < queue_config->n; i++)
		total += queue_config->e[i].count;
	return total;
}

/*
 * The queue worker slot n serves, by its position: for 'default:2,
 * reports:1', slots 0 and 1 serve default, slot 2 reports; NULL past the
 * sum of the counts.
 */
const char *
toygun_queue_of_slot(int n)
{
	int			i;

	if (queue_config == NULL || queue_config->n == 0)
		return n < toygun_workers ? "default" : NULL;
	for (i = 0; i < queue_config->n; i++)
	{
		if (n < queue_config->e[i].count)
			return queue_config->e[i].name;
		n -= queue_config->e[i].count;
	}
	return NULL;
}

/* How many workers toygun.queues gives a queue. */
static int
queue_workers(const char *name)
{
	int			i;

	if (queue_config == NULL || queue_config->n == 0)
		return strcmp(name, "default") == 0 ? toygun_workers : 0;
	for (i = 0; i < queue_config->n; i++)
		if (strcmp(queue_config->e[i].name, name) == 0)
			return queue_config->e[i].count;
	return 0;
}

/*
 * The id of the queue of that name, and whether it is paused; -1 if there
 * is none (yet). Before the update to 0.4 there is only 'default'. Inside
 * a transaction, connected to SPI.
 */
int
toygun_queue_lookup(const char *name, bool *paused)
{
	static SPIPlanPtr plan;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	int			id;

	*paused = false;
	if (!toygun_has_queues())
		return strcmp(name, "default") == 0 ? 0 : -1;
	values[0] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&plan, "SELECT id, paused FROM ONLY toygun.queue WHERE name = $1", 1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return -1;
	id = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*paused = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return id;
}

/*
 * The queue a definition names (define_resource's or define_task's queue;
 * NULL: 'default'), made if it does not exist, with the lowest free id. A
 * 257th queue is refused. A queue toygun.queues gives no worker is a
 * WARNING: its objects would never be ticked in the background. Inside a
 * toygun call.
 */
int16
toygun_queue_for_define(Datum name_datum, const char *label)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	char	   *name;
	bool		paused;
	int			id;
	int			attempt;

	if (name_datum == (Datum) 0)
		return 0;
	name = toygun_check_name("queue name", DatumGetTextPP(name_datum));
	id = toygun_queue_lookup(name, &paused);
	/*
	 * Two defines making two queues at once may pick the same id: the
	 * second waits for the first, inserts nothing, and tries again with a
	 * new snapshot (or finds the queue, if the first made the same one).
	 */
	for (attempt = 0; id < 0 && attempt < 8; attempt++)
	{
		values[0] = CStringGetTextDatum(name);
		/* planned with its value: Citus plans this INSERT ... SELECT only so */
		toygun_run_once("INSERT INTO toygun.queue (id, name)"
						" SELECT i, $1 FROM pg_catalog.generate_series(0, 255) AS i"
						"  WHERE NOT EXISTS (SELECT FROM ONLY toygun.queue q WHERE q.id = i)"
						"  ORDER BY i LIMIT 1"
						" ON CONFLICT DO NOTHING RETURNING id",
						1, argtypes, values, NULL, 0);
		if (SPI_processed > 0)
		{
			bool		isnull;

			id = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			/* a worker waiting for its queue to exist looks again at commit */
			toygun_wake_at_commit();
			break;
		}
		id = toygun_queue_lookup(name, &paused);
	}
	if (id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("queue \"%s\" of %s cannot be made: there are %d queues already",
						name, label, TOYGUN_MAX_QUEUES),
				 errhint("Give the type one of the queues in toygun.queue.")));
	if (queue_workers(name) == 0 &&
		(strcmp(name, "default") != 0 || (toygun_queues != NULL && toygun_queues[0] != '\0')))
		ereport(WARNING,
				(errmsg("queue \"%s\" has no workers in toygun.queues; its runs will not be ticked", name),
				 errhint("Add \"%s:1\" to toygun.queues in postgresql.conf and reload.", name)));
	return (int16) id;
}

/*
 * A priority (issue 17) given to define_task (label, the type's) or to
 * start_task (label NULL): -100..100.
 */
void
toygun_check_priority(int priority, const char *label)
{
	if (priority >= TOYGUN_PRIORITY_MIN && priority <= TOYGUN_PRIORITY_MAX)
		return;
	if (label != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority of %s must be between %d and %d, not %d", label,
						TOYGUN_PRIORITY_MIN, TOYGUN_PRIORITY_MAX, priority),
				 errhint("Higher priorities are claimed first; leave priority out (NULL) for 0.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("priority must be between %d and %d, not %d",
					TOYGUN_PRIORITY_MIN, TOYGUN_PRIORITY_MAX, priority),
			 errhint("Higher priorities are claimed first; leave priority out (NULL) for the task type's default.")));
}

/* pause_queue and resume_queue: the extension's owner only; idempotent. */
static void
set_paused(FunctionCallInfo fcinfo, bool paused)
{
	static SPIPlanPtr plan;
	ToygunCall	call;
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		values[2];
	char	   *name;
	bool		isnull;

	toygun_check_not_null(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	toygun_begin_call(&call);
	toygun_refuse_on_citus(paused ? "pause_queue" : "resume_queue",
						   "A node's workers read whether a queue is paused once, into shared memory, which only a pause or resume committed on that node changes; Citus applies the coordinator's to the other nodes' rows in a prepared transaction (doc/citus.md, section 9).");
	/* inside the call, the user is the extension's owner */
	if (!has_privs_of_role(call.caller, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s queue \"%s\"", paused ? "pause" : "resume", name),
				 errdetail("A queue holds the runs of every owner's types: only the extension's owner pauses and resumes it."),
				 errhint("Act as role \"%s\", which owns extension toygun, or as a superuser.",
						 toygun_role_name(GetUserId()))));
	values[0] = CStringGetTextDatum(name);
	values[1] = BoolGetDatum(paused);
	toygun_run(toygun_plan(&plan,
						   "UPDATE ONLY toygun.queue SET paused = $2 WHERE name = $1 RETURNING id",
						   2, argtypes),
			   values, NULL, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name),
				 errhint("Queues are made by define_resource and define_task (queue => ...); see toygun.queue_status().")));
	toygun_queue_pause_at_commit(DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull)),
								 paused);
	toygun_end_call(&call);
}

Datum
toygun_pause_queue(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

Datum
toygun_resume_queue(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, false);
	PG_RETURN_VOID();
}

/*
 * queue_status(): each queue of toygun.queue, then each toygun.queues
 * names that is not one yet: (queue, id, workers, running, busy, paused).
 */
Datum
toygun_queue_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ToygunWorkerSlot *slots = NULL;
	int			nslots = 0;
	int			nrows;
	char	  **names;
	int		   *ids;
	bool	   *paused;
	int			i,
				k;
	uint64		r;

	InitMaterializedSRF(fcinfo, 0);
	if (toygun_preloaded())
		slots = toygun_copy_slots(&nslots);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (toygun_has_queues())
		SPI_execute("SELECT name, id, paused FROM ONLY toygun.queue ORDER BY id", true, 0);
	else
		SPI_execute("SELECT 'default'::pg_catalog.text, 0::pg_catalog.int2, false", true, 0);
	nrows = (int) SPI_processed + (queue_config ? queue_config->n : 0);
	names = palloc(sizeof(char *) * (nrows + 1));
	ids = palloc(sizeof(int) * (nrows + 1));
	paused = palloc(sizeof(bool) * (nrows + 1));
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		names[r] = pstrdup(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
		ids[r] = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
		paused[r] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
	}
	nrows = (int) SPI_processed;
	SPI_finish();
	/* the setting's queues no type named yet */
	for (i = 0; queue_config != NULL && i < queue_config->n; i++)
	{
		for (k = 0; k < nrows; k++)
			if (strcmp(names[k], queue_config->e[i].name) == 0)
				break;
		if (k < nrows)
			continue;
		names[nrows] = queue_config->e[i].name;
		ids[nrows] = -1;
		paused[nrows] = false;
		nrows++;
	}
	for (k = 0; k < nrows; k++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		int			running = 0,
					busy = 0;

		for (i = 0; i < nslots && ids[k] >= 0; i++)
			if (slots[i].pid != 0 && slots[i].queue_id == ids[k])
			{
				running++;
				if (!slots[i].idle)
					busy++;
			}
		values[0] = CStringGetTextDatum(names[k]);
		values[1] = Int16GetDatum((int16) ids[k]);
		nulls[1] = ids[k] < 0;
		values[2] = Int32GetDatum(queue_workers(names[k]));
		values[3] = Int32GetDatum(running);
		values[4] = Int32GetDatum(busy);
		values[5] = BoolGetDatum(paused[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
