/*
 * breaker.c
 *		Circuit breakers (issue 15): a task type defined with breaker
 *		{"failures": n, "within": interval, "cooldown": interval} stops
 *		ticking its runs for cooldown once n of its ticks failed within the
 *		interval, then lets one run through as a trial, whose success closes
 *		the breaker and whose failure opens it again.
 *
 *		The state is a row of toygun.breaker per task type, made at its
 *		first failure: 'closed' (counting failures: the times of the last
 *		ones within the window), 'open' (until open_until) or 'half_open'
 *		(trial_run is being tried, until open_until). A run held by an open
 *		breaker is not ticked: its run_at moves to open_until, with no
 *		handler call and no history row. Every held run waits for exactly
 *		that time, so the trial's success releases them by it.
 *
 *		Types without a breaker never come here (the tick tests a pointer).
 *		Times are the real clock, never the test clock: workers keep it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* The most failures a breaker counts: the window is an array of their times. */
#define MAX_BREAKER_FAILURES 1000
/* The longest within and cooldown: one year (a month is 30 days). */
#define MAX_BREAKER_INTERVAL_MS (365.0 * SECS_PER_DAY * 1000)

static SPIPlanPtr read_plan;
static SPIPlanPtr claim_plan;
static SPIPlanPtr lock_plan;
static SPIPlanPtr count_plan;
static SPIPlanPtr open_plan;
static SPIPlanPtr window_plan;
static SPIPlanPtr close_plan;
static SPIPlanPtr release_plan;
static SPIPlanPtr drop_plan;

static double
breaker_interval_ms(Interval *iv)
{
	return ((double) iv->month * DAYS_PER_MONTH + iv->day) * (SECS_PER_DAY * 1000.0) +
		(double) iv->time / 1000.0;
}

static void
bad_breaker(bool quiet, const char *label, const char *key, const char *problem)
{
	if (quiet)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("breaker of %s: %s", label, problem),
			 key ? errdetail("The key is \"%s\".", key) : 0,
			 errhint("Give breaker as {\"failures\": n, \"within\": \"1 minute\", \"cooldown\": \"5 minutes\"}: "
					 "n an integer from 1 to %d, within and cooldown intervals above zero and at most a year.",
					 MAX_BREAKER_FAILURES)));
}

/*
 * A breaker as define_task takes it: an object of exactly failures (an
 * integer from 1 to MAX_BREAKER_FAILURES), within and cooldown (interval
 * texts above zero, at most a year). A bad one is 22023 naming the key,
 * or, quiet, false.
 */
bool
toygun_breaker_parse(Jsonb *j, const char *label, ToygunBreaker *out, bool quiet)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		seen[3] = {false, false, false};
	static const char *const keys[3] = {"failures", "within", "cooldown"};
	int			i;

	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
	{
		bad_breaker(quiet, label, NULL, "it must be a JSON object");
		return false;
	}
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		int			k = -1;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (i = 0; i < 3; i++)
			if (strcmp(key, keys[i]) == 0)
				k = i;
		if (k < 0)
		{
			bad_breaker(quiet, label, key, psprintf("unknown key \"%s\"", key));
			return false;
		}
		tok = JsonbIteratorNext(&it, &v, true);
		seen[k] = true;
		if (k == 0)
		{
			char	   *digits = v.type == jbvNumeric
				? DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)))
				: NULL;
			long		n = 0;

			if (digits == NULL || strspn(digits, "0123456789") != strlen(digits) ||
				strlen(digits) > 9)
			{
				bad_breaker(quiet, label, key,
							psprintf("failures must be an integer from 1 to %d", MAX_BREAKER_FAILURES));
				return false;
			}
			n = strtol(digits, NULL, 10);
			if (n < 1 || n > MAX_BREAKER_FAILURES)
			{
				bad_breaker(quiet, label, key,
							psprintf("failures must be an integer from 1 to %d", MAX_BREAKER_FAILURES));
				return false;
			}
			out->failures = (int) n;
		}
		else
		{
			Interval	iv;
			double		ms;

			if (v.type != jbvString ||
				!toygun_parse_interval(pnstrdup(v.val.string.val, v.val.string.len), &iv))
			{
				bad_breaker(quiet, label, key, psprintf("%s must be an interval, as text", key));
				return false;
			}
			ms = breaker_interval_ms(&iv);
			if (ms <= 0 || ms > MAX_BREAKER_INTERVAL_MS)
			{
				bad_breaker(quiet, label, key,
							psprintf("%s must be above zero and at most a year", key));
				return false;
			}
			if (k == 1)
				out->within = iv;
			else
				out->cooldown = iv;
		}
	}
	for (i = 0; i < 3; i++)
		if (!seen[i])
		{
			bad_breaker(quiet, label, keys[i], psprintf("key \"%s\" is missing", keys[i]));
			return false;
		}
	return true;
}

/* The breaker as stored in toygun.task_type.breaker: its keys, normalized. */
char *
toygun_breaker_text(ToygunBreaker *b)
{
	return psprintf("{\"failures\": %d, \"within\": \"%s\", \"cooldown\": \"%s\"}", b->failures,
					DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&b->within))),
					DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&b->cooldown))));
}

static TimestampTz
plus_interval(TimestampTz t, Interval *iv)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(t),
												   IntervalPGetDatum(iv)));
}

/* $1 and $2 of every statement here: the task type, whose breaker's key they are. */
static void
task_type_key(Datum *values, const char *resource_type, const char *task)
{
	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(task);
}

/* A breaker's row, as read or locked. */
typedef struct BreakerRow
{
	bool		found;
	char	   *state;
	bool		has_until;
	TimestampTz open_until;
	bool		has_trial;
	pg_uuid_t	trial_run;
	bool		has_alarm_run;
	pg_uuid_t	alarm_run;
	ArrayType  *recent;			/* times of the failures counted while closed */
} BreakerRow;

#define BREAKER_COLS "state, open_until, trial_run, alarm_run, recent_failures"

static void
read_row(BreakerRow *row)
{
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;
	bool		isnull;

	row->found = SPI_processed > 0;
	if (!row->found)
		return;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->state = SPI_getvalue(tup, desc, 1);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	row->has_until = !isnull;
	row->open_until = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	row->has_trial = !isnull;
	if (!isnull)
		row->trial_run = *DatumGetUUIDP(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	row->has_alarm_run = !isnull;
	if (!isnull)
		row->alarm_run = *DatumGetUUIDP(d);
	row->recent = DatumGetArrayTypePCopy(SPI_getbinval(tup, desc, 5, &isnull));
}

/* The breaker of the run's task type, as committed (or as this transaction left it). */
static void
breaker_row(ToygunObject *obj, BreakerRow *row)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	task_type_key(values, obj->type, obj->name);
	toygun_run(toygun_plan(&read_plan,
						   "SELECT " BREAKER_COLS " FROM ONLY toygun.breaker"
						   " WHERE resource_type = $1 AND task = $2",
						   2, argtypes),
			   values, NULL, 1);
	read_row(row);
}

static bool
is_trial(BreakerRow *row, ToygunObject *obj)
{
	return strcmp(row->state, "half_open") == 0 && row->has_trial &&
		memcmp(&row->trial_run, &obj->id, sizeof(pg_uuid_t)) == 0;
}

/*
 * Whether a tick of the run goes ahead: PASS (closed, or no breaker row
 * yet), TRIAL (this run is the half-open breaker's trial), CLAIMED (in a
 * worker: this run took the trial now, the open time or the last trial's
 * having run out; it is not ticked, but due again at once, *until, after
 * the claim commits), or HOLD (*until: open, or another run's trial under
 * way). A tick by hand that would be held is refused (55000): a person's
 * tick does not get around a breaker. Called only for task types with a
 * breaker.
 */
ToygunBreakerCheck
toygun_breaker_check(ToygunObject *obj, ToygunDef *def, bool by_hand, TimestampTz *until)
{
	BreakerRow	row;
	TimestampTz now = GetCurrentTimestamp();

	breaker_row(obj, &row);
	if (!row.found || strcmp(row.state, "closed") == 0)
		return TOYGUN_BREAKER_PASS;
	if (is_trial(&row, obj))
		return TOYGUN_BREAKER_TRIAL;
	if (row.has_until && row.open_until <= now)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, UUIDOID, INTERVALOID};
		Datum		values[4];

		/*
		 * The first run to get here is the trial; a concurrent one waits
		 * for its row lock, finds the trial taken and is held.
		 */
		task_type_key(values, obj->type, obj->name);
		values[2] = UUIDPGetDatum(&obj->id);
		values[3] = IntervalPGetDatum(&def->breaker->cooldown);
		toygun_run(toygun_plan(&claim_plan,
							   "UPDATE ONLY toygun.breaker SET state = 'half_open', trial_run = $3,"
							   "  open_until = pg_catalog.clock_timestamp() + $4"
							   " WHERE resource_type = $1 AND task = $2 AND state <> 'closed'"
							   "   AND open_until <= pg_catalog.clock_timestamp()",
							   4, argtypes),
				   values, NULL, 0);
		if (SPI_processed > 0)
		{
			/*
			 * A worker commits the claim before the trial's tick, which may
			 * fail and roll back: the run is due again at once, and its
			 * next tick is the trial. Until then, and if it fails, the
			 * others are held. A tick by hand is the trial at once (its
			 * failure is the caller's, and rolls the claim back).
			 */
			if (by_hand)
				return TOYGUN_BREAKER_TRIAL;
			*until = now;
			return TOYGUN_BREAKER_CLAIMED;
		}
		breaker_row(obj, &row);
		if (!row.found || strcmp(row.state, "closed") == 0)
			return TOYGUN_BREAKER_PASS;
	}
	*until = row.has_until && row.open_until > now ? row.open_until : plus_interval(now, &def->breaker->cooldown);
	if (by_hand)
	{
		bool		trial = strcmp(row.state, "half_open") == 0 && row.has_trial;

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the circuit breaker of %s is %s", toygun_def_label(def), row.state),
				 trial
				 ? errdetail("Its run %s is being tried; the other runs wait until it succeeds, or until %s.",
							 toygun_uuid_text(&row.trial_run), timestamptz_to_str(*until))
				 : errdetail("Its runs are not ticked until %s; then one run is ticked as a trial.",
							 timestamptz_to_str(*until)),
				 errhint("Tick task %s after %s, or fix what its failures say (toygun.failure) and let the trial close the breaker.",
						 toygun_uuid_text(&obj->id), timestamptz_to_str(*until))));
	}
	return TOYGUN_BREAKER_HOLD;
}

/*
 * Runs held until the breaker's open_until (every held run waits for
 * exactly that time) are due now.
 */
/*
 * The held runs of a type, in its queue $4, made due again. Each claim
 * index's predicate (issue 17), so that a BitmapOr reads them: run_at = $3
 * in task_due_idx, the queue's range in task_lane_idx, the range of its
 * limit_id $5 in task_flow_idx (test/sql/claim_plans.sql).
 */
const char *const toygun_breaker_release_sql =
"UPDATE ONLY toygun.task SET run_at = pg_catalog.clock_timestamp()"
" WHERE resource_type = $1 AND name = $2"
"   AND ((run_at IS NOT NULL AND queue_id = 0 AND priority = 0 AND flow_key IS NULL AND run_at = $3)"
"        OR (run_at IS NOT NULL AND (queue_id <> 0 OR priority <> 0) AND flow_key IS NULL"
"            AND queue_id = $4 AND run_at = $3)"
"        OR (run_at IS NOT NULL AND flow_key IS NOT NULL"
"            AND flow_key >= ($5::pg_catalog.int8 << 48) AND flow_key < (($5::pg_catalog.int8 + 1) << 48)"
"            AND run_at = $3))";

static void
release_held(const char *resource_type, const char *task, int queue, int limit_id,
			 TimestampTz held_until)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT2OID, INT2OID};
	Datum		values[5];

	task_type_key(values, resource_type, task);
	values[2] = TimestampTzGetDatum(held_until);
	values[3] = Int16GetDatum((int16) queue);
	/* a limited type's runs are in its range of task_flow_idx (issue 17); 0: none */
	values[4] = Int16GetDatum((int16) limit_id);
	toygun_run(toygun_plan(&release_plan,
						   toygun_breaker_release_sql,
						   5, argtypes),
			   values, NULL, 0);
	if (SPI_processed > 0)
		toygun_wake_at_commit();
}

/*
 * The trial's tick succeeded: the breaker closes, its alarm closes, and the
 * runs it held are due now. In the trial tick's transaction, which holds
 * the breaker's row lock since it took the trial.
 */
void
toygun_breaker_trial_passed(ToygunObject *obj, ToygunDef *def)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, UUIDOID};
	Datum		values[3];
	BreakerRow	row;

	task_type_key(values, obj->type, obj->name);
	values[2] = UUIDPGetDatum(&obj->id);
	toygun_run(toygun_plan(&close_plan,
						   "UPDATE ONLY toygun.breaker b SET state = 'closed', trial_run = NULL, open_until = NULL,"
						   "  recent_failures = '{}', closed_at = pg_catalog.clock_timestamp()"
						   " FROM (SELECT open_until FROM ONLY toygun.breaker"
						   "        WHERE resource_type = $1 AND task = $2 FOR UPDATE) old"
						   " WHERE b.resource_type = $1 AND b.task = $2 AND b.state = 'half_open'"
						   "   AND b.trial_run = $3"
						   " RETURNING b.state, old.open_until, b.trial_run, b.alarm_run, b.recent_failures",
						   3, argtypes),
			   values, NULL, 0);
	read_row(&row);
	if (!row.found)
		return;
	if (row.has_until)
		release_held(obj->type, obj->name, def->queue_id, def->flow ? def->flow->limit_id : 0,
					 row.open_until);
	if (row.has_alarm_run)
		toygun_alarm_close(&row.alarm_run, TOYGUN_BREAKER_KIND,
						   psprintf("the circuit breaker closed: trial run %s succeeded",
									toygun_uuid_text(&obj->id)),
						   obj->actor);
}

/*
 * A failed tick of a run of a type with a breaker, recorded by failure.c
 * in its transaction (the run is locked). Closed: the failure is counted;
 * the failures-th within the window opens the breaker for cooldown and
 * raises an alarm of kind 'breaker' on this run. Open past its time, or
 * half-open (the trial's failure: the trial it took was rolled back with
 * its tick, or it is this run): open again for another cooldown, the
 * alarm raised again. Open, before its time: a tick that began before it
 * opened, and counts for nothing.
 */
void
toygun_breaker_failed(ToygunObject *obj, ToygunDef *def)
{
	Oid			argtypes[7] = {TEXTOID, TEXTOID, TIMESTAMPTZARRAYOID, INT4OID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, UUIDOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	BreakerRow	row;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz since = now - (TimestampTz) (breaker_interval_ms(&def->breaker->within) * 1000.0);
	TimestampTz until;
	Datum	   *times;
	bool	   *tnulls;
	int			n,
				kept = 0,
				i;
	bool		reopen;
	pg_uuid_t	alarm_on;
	const char *message;

	task_type_key(values, obj->type, obj->name);
	/* made at the type's first failure; the lock orders concurrent failures */
	toygun_run(toygun_plan(&lock_plan,
						   "INSERT INTO toygun.breaker (resource_type, task) VALUES ($1, $2)"
						   " ON CONFLICT DO NOTHING",
						   2, argtypes),
			   values, NULL, 0);
	toygun_run(toygun_plan(&count_plan,
						   "SELECT " BREAKER_COLS " FROM ONLY toygun.breaker"
						   " WHERE resource_type = $1 AND task = $2 FOR UPDATE",
						   2, argtypes),
			   values, NULL, 1);
	read_row(&row);
	if (!row.found)
		return;
	if (strcmp(row.state, "closed") == 0)
	{
		/* the failures within the window, this one last, at most failures of them */
		deconstruct_array(row.recent, TIMESTAMPTZOID, sizeof(TimestampTz), true, TYPALIGN_DOUBLE,
						  &times, &tnulls, &n);
		times = repalloc(times, sizeof(Datum) * (n + 1));
		for (i = 0; i < n; i++)
			if (!tnulls[i] && DatumGetTimestampTz(times[i]) > since)
				times[kept++] = times[i];
		times[kept++] = TimestampTzGetDatum(now);
		if (kept > def->breaker->failures)
		{
			memmove(times, times + kept - def->breaker->failures, sizeof(Datum) * def->breaker->failures);
			kept = def->breaker->failures;
		}
		if (kept < def->breaker->failures)
		{
			values[2] = PointerGetDatum(construct_array(times, kept, TIMESTAMPTZOID, sizeof(TimestampTz),
														true, TYPALIGN_DOUBLE));
			toygun_run(toygun_plan(&window_plan,
								   "UPDATE ONLY toygun.breaker SET recent_failures = $3"
								   " WHERE resource_type = $1 AND task = $2",
								   3, argtypes),
					   values, NULL, 0);
			return;
		}
		reopen = false;
	}
	else if (row.has_until && row.open_until > now && !is_trial(&row, obj))
		return;
	else
		reopen = true;

	until = plus_interval(now, &def->breaker->cooldown);
	alarm_on = reopen && row.has_alarm_run ? row.alarm_run : obj->id;
	values[2] = PointerGetDatum(construct_empty_array(TIMESTAMPTZOID));
	values[3] = Int32GetDatum(reopen ? 1 : kept);
	values[4] = TimestampTzGetDatum(now);
	values[5] = TimestampTzGetDatum(until);
	values[6] = UUIDPGetDatum(&alarm_on);
	toygun_run(toygun_plan(&open_plan,
						   "UPDATE ONLY toygun.breaker SET state = 'open', recent_failures = $3,"
						   "  failures_at_open = $4, opened_at = $5, open_until = $6, trial_run = NULL,"
						   "  alarm_run = $7, opens = opens + 1, closed_at = NULL"
						   " WHERE resource_type = $1 AND task = $2",
						   7, argtypes),
			   values, nulls, 0);
	if (reopen)
		message = psprintf("the circuit breaker of %s opened again: its trial run %s failed; its runs are held until %s",
						   toygun_def_label(def), toygun_uuid_text(&obj->id), timestamptz_to_str(until));
	else
		message = psprintf("the circuit breaker of %s opened after %d failed ticks within %s; its runs are held until %s",
						   toygun_def_label(def), kept,
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(&def->breaker->within))),
						   timestamptz_to_str(until));
	ereport(LOG, (errmsg("toygun: %s", message)));
	toygun_alarm_raise(&alarm_on, TOYGUN_BREAKER_KIND, message);
}

/*
 * A task type defined again without a breaker: its breaker's row goes, and
 * the runs it held are due now (limit_id: the type's, before the define).
 */
void
toygun_breaker_dropped(const char *resource_type, const char *task, int queue, int limit_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	Datum		d;

	task_type_key(values, resource_type, task);
	toygun_run(toygun_plan(&drop_plan,
						   "DELETE FROM ONLY toygun.breaker WHERE resource_type = $1 AND task = $2"
						   " RETURNING open_until",
						   2, argtypes),
			   values, NULL, 0);
	if (SPI_processed == 0)
		return;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		release_held(resource_type, task, queue, limit_id, DatumGetTimestampTz(d));
}
