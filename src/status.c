/*
 * status.c
 *		toygun.worker_status(): the running workers as shared memory tells
 *		of them: a copy of wake.c's slots, and each slot's deaths from
 *		inflight.c.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_worker_status);

/*
 * One row per running worker (pid, slot, idle, started_at, ticks, failures,
 * last_tick_at, transactions, deaths).
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
		Datum		values[9];
		bool		nulls[9] = {false, false, false, false, false, false, false, false, false};

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
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
