/*
 * message.c
 *		Signals to a run: toygun.send() stores a message for a run in the
 *		sender's transaction and makes the run due; its handler takes its
 *		messages with toygun.receive(), in order, in the tick's transaction,
 *		so a tick that fails leaves them for the next one.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_send);
PG_FUNCTION_INFO_V1(toygun_receive);

/*
 * send(run, message): store the message, then make the run due now if it
 * is waiting. The update waits for a tick in progress and looks at what
 * it left: a tick that ended in a long stay after it took its messages
 * is due again at once, so no message waits out a stay. A panicked run
 * keeps its messages until a person moves it; a stopped one takes none.
 */
Datum
toygun_send(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr run_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr due_plan = NULL;
	ToygunCall	call;
	pg_uuid_t  *run;
	Jsonb	   *message;
	Oid			argtypes[4] = {UUIDOID, JSONBOID, TEXTOID, OIDOID};
	Datum		values[4];
	bool		isnull;
	char	   *state;
	int64		seq;

	toygun_check_not_null(fcinfo, 0, "run");
	run = PG_GETARG_UUID_P(0);
	toygun_check_not_null(fcinfo, 1, "message");
	message = PG_GETARG_JSONB_P(1);

	toygun_begin_call(&call);
	if (toygun_def_for_caller(TOYGUN_TASK, run, call.caller, TOYGUN_RIGHT_OPERATE, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("task %s does not exist", toygun_uuid_text(run))));
	values[0] = UUIDPGetDatum(run);
	toygun_run(toygun_plan(&run_plan,
						   "SELECT state, resource_type FROM ONLY toygun.task WHERE id = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("task %s does not exist", toygun_uuid_text(run))));
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	values[2] = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	if (strcmp(state, TOYGUN_STOP) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task %s is stopped", toygun_uuid_text(run)),
				 errdetail("A stopped run receives no messages.")));

	values[1] = JsonbPGetDatum(message);
	values[3] = ObjectIdGetDatum(call.caller);
	toygun_run(toygun_plan(&insert_plan,
						   "INSERT INTO toygun.message (run_id, resource_type, message, sent_by)"
						   " VALUES ($1, $3, $2, $4::pg_catalog.regrole) RETURNING seq",
						   4, argtypes),
			   values, NULL, 1);
	seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	toygun_run(toygun_plan(&due_plan,
						   "UPDATE ONLY toygun.task SET run_at = pg_catalog.clock_timestamp()"
						   " WHERE id = $1 AND run_at > pg_catalog.clock_timestamp()"
						   "   AND state NOT IN ('__stop__', '__panic__')",
						   1, argtypes),
			   values, NULL, 0);
	if (SPI_processed > 0)
		toygun_wake_at_commit();
	toygun_end_call(&call);
	PG_RETURN_INT64(seq);
}

/*
 * receive(t): the messages of the run being ticked, oldest first, taken
 * in the tick's transaction. Only the handler of that very tick may take
 * them (not a handler it ticks in turn, which may be another owner's).
 */
Datum
toygun_receive(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HeapTupleHeader t = PG_GETARG_HEAPTUPLEHEADER(0);
	ToygunCall	call;
	Datum		id;
	bool		isnull;
	Oid			argtypes[1] = {UUIDOID};
	uint64		i;

	id = GetAttributeByName(t, "id", &isnull);
	if (isnull || !toygun_ticking_now(DatumGetUUIDP(id)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("toygun.receive() is called outside its run's tick"),
				 errdetail("Only the handler ticking a run takes its messages."),
				 errhint("Call it in the handler, on the run it was given.")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	toygun_begin_call(&call);
	toygun_run(toygun_plan(&plan,
						   "WITH taken AS (DELETE FROM ONLY toygun.message WHERE run_id = $1"
						   "                RETURNING seq, message)"
						   " SELECT message FROM taken ORDER BY seq",
						   1, argtypes),
			   &id, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	toygun_end_call(&call);
	PG_RETURN_NULL();
}
