/*
 * clock.c
 *		The test clock: toygun.test_now, a session's reading of the time for
 *		its ticks by hand (when a stay's wait ends, and whether a run is due
 *		for toygun.test_tick_until), so that a test makes a wait elapse
 *		without sleeping. The workers never read it: they keep the real time.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_test_advance);

char	   *toygun_test_now = NULL;

/* the value of toygun.test_now, parsed when it is set */
typedef struct TestNow
{
	bool		on;
	TimestampTz at;
} TestNow;

static TestNow test_now = {false, 0};

/*
 * A finite timestamp with time zone, parsed as timestamptz_in parses it, but
 * returning false where it would raise: this runs in a setting's check.
 */
static bool
parse_timestamptz(const char *str, TimestampTz *result)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			tz;
	fsec_t		fsec;
	struct pg_tm tt;

	if (ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tz) != 0 ||
		dtype != DTK_DATE ||
		tm2timestamp(&tt, fsec, &tz, result) != 0)
		return false;
	return IS_VALID_TIMESTAMP(*result);
}

bool
toygun_test_now_check(char **newval, void **extra, GucSource source)
{
	TestNow    *parsed;
	TimestampTz at = 0;
	bool		on = *newval != NULL && **newval != '\0';

	if (on && !parse_timestamptz(*newval, &at))
	{
		GUC_check_errdetail("toygun.test_now is a timestamp with time zone, such as '2030-01-01 12:00:00+00', or empty for none.");
		return false;
	}
	parsed = malloc(sizeof(TestNow));
	if (parsed == NULL)
		return false;
	parsed->on = on;
	parsed->at = at;
	*extra = parsed;
	return true;
}

void
toygun_test_now_assign(const char *newval, void *extra)
{
	if (extra != NULL)
		test_now = *(TestNow *) extra;
}

/*
 * The time as a tick by hand in this session reads it: the real time, or
 * toygun.test_now when that is later. A worker reads the real time only,
 * whatever a database's defaults or a handler set.
 */
TimestampTz
toygun_clock_now(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (toygun_in_worker || !test_now.on || test_now.at < now)
		return now;
	return test_now.at;
}

/*
 * test_advance(by): moves this session's test clock on by an interval, from
 * where it reads now, and returns the new reading. A SET, so it ends with the
 * session and is undone by a rollback.
 */
Datum
toygun_test_advance(PG_FUNCTION_ARGS)
{
	Interval   *by;
	TimestampTz at;
	Interval	zero;

	toygun_check_not_null(fcinfo, 0, "by");
	by = PG_GETARG_INTERVAL_P(0);
	memset(&zero, 0, sizeof(zero));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(by), IntervalPGetDatum(&zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the test clock does not go back: toygun.test_advance(%s)",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(by)))),
				 errhint("Advance it by a positive interval; SET toygun.test_now = '' turns it off.")));
	/* past the end of time: 22008, timestamp out of range */
	at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												 TimestampTzGetDatum(toygun_clock_now()),
												 IntervalPGetDatum(by)));
	/* ISO, with a numeric offset: read back the same whatever DateStyle */
	(void) set_config_option("toygun.test_now", timestamptz_to_str(at),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
	PG_RETURN_TIMESTAMPTZ(at);
}
