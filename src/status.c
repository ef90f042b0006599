/*
 * status.c
 *		toygun.worker_status(): the running workers as shared memory tells
 *		of them: a copy of wake.c's slots, and each slot's deaths from
 *		inflight.c. And toygun_claim_sql, for tests only: the text of the
 *		claim statements, whose plans test/sql/claim_plans.sql checks.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_worker_status);
PG_FUNCTION_INFO_V1(toygun_claim_sql);

/*
 * One row per running worker (pid, slot, idle, started_at, ticks, failures,
 * last_tick_at, transactions, deaths, queue).
 */
Datum
toygun_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ToygunWorkerSlot *copy;
	int			n,
				i;

	toygun_require_preload("toygun.worker_status()");
	InitMaterializedSRF(fcinfo, 0);

	copy = toygun_copy_slots(&n);
	for (i = 0; i < n; i++)
	{
		Datum		values[10];
		bool		nulls[10] = {false, false, false, false, false, false, false, false, false, false};
		const char *queue = toygun_queue_of_slot(i);

		if (copy[i].pid == 0)
			continue;
		values[0] = Int32GetDatum(copy[i].pid);
		values[1] = Int32GetDatum(i);
		values[2] = BoolGetDatum(copy[i].idle);
		values[3] = TimestampTzGetDatum(copy[i].started_at);
		values[4] = Int64GetDatum(copy[i].ticks);
		values[5] = Int64GetDatum(copy[i].failures);
		values[6] = TimestampTzGetDatum(copy[i].last_tick_at);
		nulls[6] = copy[i].last_tick_at == 0;
		values[7] = Int64GetDatum(copy[i].transactions);
		values[8] = Int64GetDatum(toygun_inflight_deaths(i));
		/* the queue toygun.queues gives its slot (issue 17); NULL: a surplus worker stopping */
		values[9] = queue ? CStringGetTextDatum(queue) : (Datum) 0;
		nulls[9] = queue == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * toygun_claim_sql(which text) RETURNS text, for tests only (no install
 * script declares it; test/sql/claim_plans.sql does, in its transaction):
 * the very text of a statement the workers run, so that its generic plan
 * can be checked against the partial indexes. which: task_due, task_lane,
 * resource_due, resource_queue, census, next_due, breaker_release.
 */
Datum
toygun_claim_sql(PG_FUNCTION_ARGS)
{
	char	   *which;
	const char *sql;

	toygun_check_not_null(fcinfo, 0, "which");
	which = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sql = strcmp(which, "breaker_release") == 0 ? toygun_breaker_release_sql
		: toygun_claim_sql_text(which);
	if (sql == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no claim statement is called \"%s\"", which),
				 errhint("One of task_due, task_lane, resource_due, resource_queue, census, next_due, breaker_release.")));
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}
