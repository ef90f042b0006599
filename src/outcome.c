/*
 * outcome.c
 *		The toygun.next outcome: the constructors go/stay/stop/panic that
 *		handlers return, and reading one back when a tick applies it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_go);
PG_FUNCTION_INFO_V1(toygun_stay);
PG_FUNCTION_INFO_V1(toygun_stop);
PG_FUNCTION_INFO_V1(toygun_panic);

/* Columns of toygun.next. */
enum
{
	NEXT_KIND,
	NEXT_STATE,
	NEXT_ATTRS,
	NEXT_WAIT,
	NEXT_MESSAGE,
	NEXT_NATTS
};

static void
check_attrs(Jsonb *attrs)
{
	if (attrs != NULL)
		toygun_check_object_attrs("attrs", attrs);
}

/*
 * The longest wait: 1000 years, in days, counting a month as 31 days. Far
 * beyond any use, and well inside what a timestamp can hold whichever way
 * the parts of an interval point, so that adding a wait to the current
 * time never overflows.
 */
#define MAX_WAIT_DAYS	(1000 * 12 * 31)

static const char *
interval_text(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
}

static void
check_wait(Interval *wait)
{
	Interval	zero = {0, 0, 0};
	const int64 limit = (int64) MAX_WAIT_DAYS * USECS_PER_DAY;

	if (wait == NULL)
		return;
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(wait),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must not be negative"),
				 errdetail("It was %s.", interval_text(wait))));

	/* each part bounded first, so that the sum cannot overflow */
	if (Abs((int64) wait->month) * 31 > MAX_WAIT_DAYS ||
		Abs((int64) wait->day) > MAX_WAIT_DAYS ||
		wait->time > limit || wait->time < -limit ||
		(Abs((int64) wait->month) * 31 + Abs((int64) wait->day)) * USECS_PER_DAY +
		Abs(wait->time) > limit)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("wait is too long"),
				 errdetail("It was %s; the limit is 1000 years.", interval_text(wait)),
				 errhint("To stop ticking for good, return toygun.stop().")));
}

/* Build a toygun.next; the row type is looked up once per call site. */
static Datum
make_next(FunctionCallInfo fcinfo, const char *kind, Datum state, Datum attrs,
		  Datum wait, Datum message)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	Datum		values[NEXT_NATTS];
	bool		nulls[NEXT_NATTS];

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "toygun.next is not a composite type");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		fcinfo->flinfo->fn_extra = desc;
		MemoryContextSwitchTo(old);
	}
	values[NEXT_KIND] = CStringGetTextDatum(kind);
	nulls[NEXT_KIND] = false;
	values[NEXT_STATE] = state;
	nulls[NEXT_STATE] = state == (Datum) 0;
	values[NEXT_ATTRS] = attrs;
	nulls[NEXT_ATTRS] = attrs == (Datum) 0;
	values[NEXT_WAIT] = wait;
	nulls[NEXT_WAIT] = wait == (Datum) 0;
	values[NEXT_MESSAGE] = message;
	nulls[NEXT_MESSAGE] = message == (Datum) 0;
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

#define ARG_OR_NULL(n) (PG_ARGISNULL(n) ? (Datum) 0 : PG_GETARG_DATUM(n))

/* go(state, attrs): transition to state, merging attrs. */
Datum
toygun_go(PG_FUNCTION_ARGS)
{
	toygun_check_not_null(fcinfo, 0, "state");
	if (!PG_ARGISNULL(1))
		check_attrs(PG_GETARG_JSONB_P(1));
	PG_RETURN_DATUM(make_next(fcinfo, "go", PG_GETARG_DATUM(0), ARG_OR_NULL(1),
							  (Datum) 0, (Datum) 0));
}

/* stay(attrs, wait): no transition; tick again after wait. */
Datum
toygun_stay(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		check_attrs(PG_GETARG_JSONB_P(0));
	if (!PG_ARGISNULL(1))
		check_wait(PG_GETARG_INTERVAL_P(1));
	PG_RETURN_DATUM(make_next(fcinfo, "stay", (Datum) 0, ARG_OR_NULL(0),
							  ARG_OR_NULL(1), (Datum) 0));
}

/* stop(attrs): transition to __stop__. */
Datum
toygun_stop(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		check_attrs(PG_GETARG_JSONB_P(0));
	PG_RETURN_DATUM(make_next(fcinfo, "stop", (Datum) 0, ARG_OR_NULL(0),
							  (Datum) 0, (Datum) 0));
}

/* panic(message): transition to __panic__, recording the message. */
Datum
toygun_panic(PG_FUNCTION_ARGS)
{
	toygun_check_not_null(fcinfo, 0, "message");
	PG_RETURN_DATUM(make_next(fcinfo, "panic", (Datum) 0, (Datum) 0, (Datum) 0,
							  PG_GETARG_DATUM(0)));
}

static void
invalid_outcome(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("handler returned an invalid outcome"),
			 errdetail("%s", detail),
			 errhint("Return toygun.go(), toygun.stay(), toygun.stop() or toygun.panic().")));
}

/*
 * Read a toygun.next a handler returned. It may have been built by hand, so
 * everything the constructors check is checked again.
 */
void
toygun_read_next(Datum next, ToygunNext *out)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(next);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
											  HeapTupleHeaderGetTypMod(td));
	HeapTupleData tmp;
	Datum		values[NEXT_NATTS];
	bool		nulls[NEXT_NATTS];
	char	   *kind;

	if (desc->natts != NEXT_NATTS ||
		TupleDescAttr(desc, NEXT_KIND)->atttypid != TEXTOID ||
		TupleDescAttr(desc, NEXT_STATE)->atttypid != TEXTOID ||
		TupleDescAttr(desc, NEXT_ATTRS)->atttypid != JSONBOID ||
		TupleDescAttr(desc, NEXT_WAIT)->atttypid != INTERVALOID ||
		TupleDescAttr(desc, NEXT_MESSAGE)->atttypid != TEXTOID)
		elog(ERROR, "toygun.next does not have the columns (kind text, state text, attrs jsonb, wait interval, message text)");
	tmp.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tmp.t_self);
	tmp.t_tableOid = InvalidOid;
	tmp.t_data = td;
	heap_deform_tuple(&tmp, desc, values, nulls);
	ReleaseTupleDesc(desc);

	memset(out, 0, sizeof(ToygunNext));
	if (nulls[NEXT_KIND])
		invalid_outcome("Its kind is null.");
	kind = TextDatumGetCString(values[NEXT_KIND]);
	if (!nulls[NEXT_STATE])
		out->state = TextDatumGetCString(values[NEXT_STATE]);
	if (!nulls[NEXT_ATTRS])
	{
		out->attrs = DatumGetJsonbP(values[NEXT_ATTRS]);
		check_attrs(out->attrs);
	}
	if (!nulls[NEXT_WAIT])
	{
		out->wait = DatumGetIntervalP(values[NEXT_WAIT]);
		check_wait(out->wait);
	}
	if (!nulls[NEXT_MESSAGE])
		out->message = TextDatumGetCString(values[NEXT_MESSAGE]);

	if (strcmp(kind, "go") == 0)
	{
		out->kind = TOYGUN_NEXT_GO;
		if (out->state == NULL)
			invalid_outcome("A \"go\" outcome needs a state.");
	}
	else if (strcmp(kind, "stay") == 0)
		out->kind = TOYGUN_NEXT_STAY;
	else if (strcmp(kind, "stop") == 0)
		out->kind = TOYGUN_NEXT_STOP;
	else if (strcmp(kind, "panic") == 0)
	{
		out->kind = TOYGUN_NEXT_PANIC;
		if (out->message == NULL)
			invalid_outcome("A \"panic\" outcome needs a message.");
	}
	else
		invalid_outcome(psprintf("Its kind is \"%.*s\"%s; it must be go, stay, stop or panic.",
								 pg_mbcliplen(kind, strlen(kind), TOYGUN_NAME_MAX), kind,
								 strlen(kind) > TOYGUN_NAME_MAX ? "..." : ""));
}
