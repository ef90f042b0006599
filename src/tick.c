/*
 * tick.c
 *		One tick of a resource or task: enter the first state if new, run the
 *		current state's handler as the role that defined the type, and apply
 *		the outcome, all in the caller's transaction.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "toygun.h"



/*
 * Set by a tick whose work must commit before the next tick (a worker's
 * claim of a breaker's trial): the worker ends its batch after it.
 */
bool		toygun_tick_commit_now = false;

/* Objects being ticked right now, innermost last: a handler may not tick itself. */
#define MAX_TICK_DEPTH 16
static pg_uuid_t ticking[MAX_TICK_DEPTH];
static int	tick_depth = 0;

typedef struct TickContext
{
	ToygunObject *obj;
	ToygunDef  *def;
} TickContext;

static void
tick_error_context(void *arg)
{
	TickContext *tc = (TickContext *) arg;

	errcontext("toygun tick of %s %s (%s) in state \"%s\"",
			   toygun_kind_name(tc->obj->kind), toygun_uuid_text(&tc->obj->id),
			   toygun_def_label(tc->def), tc->obj->state);
}

/*
 * A task type's owner must still have the privileges of the owner of the
 * resource type it was defined on, checked at every tick: a revoked
 * membership takes effect at once. (toygun_def_handler checks EXECUTE.)
 */
static void
check_may_run(ToygunDef *def)
{
	ToygunDef  *rtype;

	if (def->kind != TOYGUN_TASK)
		return;
	rtype = toygun_find_def(TOYGUN_RESOURCE, def->resource_type, NULL, true);
	if (rtype != NULL)
		toygun_check_task_owner(rtype, toygun_def_label(def), def->owner);
}

/*
 * Run the handler for the object's current state as the type's owner
 * (security.c says how), and read what it returned.
 */
static void
call_handler(ToygunObject *obj, ToygunDef *def, ToygunNext *next)
{
	FmgrInfo   *flinfo = toygun_def_handler(def);
	LOCAL_FCINFO(fcinfo, 1);
	ToygunCall	call;
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = toygun_object_row(obj);
	fcinfo->args[0].isnull = false;

	check_may_run(def);
	toygun_begin_handler_call(&call, def);
	result = FunctionCallInvoke(fcinfo);
	toygun_end_handler_call(&call);

	if (fcinfo->isnull)
	{
		/* NULL means stay() */
		memset(next, 0, sizeof(ToygunNext));
		next->kind = TOYGUN_NEXT_STAY;
	}
	else
		toygun_read_next(result, next);
}

/* Apply what the handler returned, in memory. */
static void
apply_next(ToygunObject *obj, ToygunDef *def, ToygunNext *next)
{
	switch (next->kind)
	{
		case TOYGUN_NEXT_GO:
			toygun_transition(obj, def, next->state, next->attrs, NULL);
			break;
		case TOYGUN_NEXT_STAY:
			{
				Interval	poll;
				TimestampTz now;

				toygun_merge_attrs(obj, def, next->attrs);
				if (next->wait == NULL)
				{
					poll.month = 0;
					poll.day = 0;
					poll.time = (int64) toygun_poll_interval_ms * 1000;
				}
				/* the test clock, in a session's ticks by hand */
				now = toygun_clock_now();
				obj->has_run_at = true;
				obj->run_at = DatumGetTimestampTz(
												  DirectFunctionCall2(timestamptz_pl_interval,
																	  TimestampTzGetDatum(now),
																	  IntervalPGetDatum(next->wait ? next->wait : &poll)));
				/* '1 month -30 days' is no wait at all in a short month */
				if (obj->run_at < now)
					obj->run_at = now;
				break;
			}
		case TOYGUN_NEXT_STOP:
			toygun_transition(obj, def, TOYGUN_STOP, next->attrs, NULL);
			break;
		case TOYGUN_NEXT_PANIC:
			toygun_transition(obj, def, TOYGUN_PANIC, toygun_panic_attrs(next->message),
							  next->message);
			break;
	}
}

/*
 * A run held by its breaker or its rate limit: not ticked, due again at
 * until. No handler call, no history row, its attempts as they were.
 */
static void
hold(ToygunObject *obj, ToygunDef *def, TimestampTz until, int64 expected_step, Datum *saved)
{
	obj->has_run_at = true;
	obj->run_at_null = false;
	obj->run_at = until;
	*saved = toygun_save_object(obj, def, expected_step);
}

/* not inlined: toygun_tick's saved lives across its PG_TRY */
static pg_noinline void
tick_inner(ToygunObject *obj, ToygunDef *def, Datum *saved)
{
	ErrorContextCallback errcb;
	TickContext tc;
	ToygunNext	next;
	int64		expected_step = obj->step;
	bool		trial = false;

	tc.obj = obj;
	tc.def = def;
	errcb.callback = tick_error_context;
	errcb.arg = &tc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/*
	 * A task type's concurrency limits (flow.c), before anything else: the
	 * run's slots, taken by the worker's claim or now. At the limit, a tick
	 * by hand (or a handler's tick of another run) is refused, and a
	 * worker's (its replay of a failed batch) leaves the run untouched for
	 * a later claim. Types without limits pay a pointer test.
	 */
	if (def->flow != NULL && !toygun_flow_take(obj, def, !toygun_in_worker || tick_depth > 1))
	{
		error_context_stack = errcb.previous;
		return;
	}

	/*
	 * A task type's circuit breaker (breaker.c), read before anything else:
	 * open, the run is not ticked (no handler, hook or history row) but
	 * waits until it may be; a tick by hand is refused. Types without one
	 * pay a pointer test.
	 */
	if (def->breaker != NULL)
	{
		TimestampTz until;
		ToygunBreakerCheck check = toygun_breaker_check(obj, def, !toygun_in_worker, &until);

		if (check == TOYGUN_BREAKER_HOLD || check == TOYGUN_BREAKER_CLAIMED)
		{
			hold(obj, def, until, expected_step, saved);
			/* the trial's claim commits before its tick, which may fail */
			if (check == TOYGUN_BREAKER_CLAIMED)
				toygun_tick_commit_now = true;
			error_context_stack = errcb.previous;
			return;
		}
		trial = check == TOYGUN_BREAKER_TRIAL;
	}

	/*
	 * A task type's rate limit (rate.c), after the breaker (an open breaker
	 * spends no token): each tick takes a token. Without one, a worker
	 * holds the run until its token exists, as a breaker holds it; a tick
	 * by hand is refused. Types without one pay a pointer test.
	 */
	if (def->rate != NULL)
	{
		TimestampTz until;

		if (!toygun_rate_check(obj, def, !toygun_in_worker, &until))
		{
			hold(obj, def, until, expected_step, saved);
			error_context_stack = errcb.previous;
			return;
		}
	}

	/*
	 * An object below its type's schema version has its attrs upgraded
	 * first (versions.c), so that should_stop and the handler see them as
	 * the type now has them; a failing upgrade fails the tick. Every other
	 * tick pays this comparison.
	 */
	if (obj->version < def->version)
		toygun_upgrade_object(obj, def);

	/*
	 * A task type's should_stop, asked before every tick, the first too:
	 * true stops the run now, without its handler. An error fails the tick.
	 * Types without one pay a pointer test.
	 */
	if (def->should_stop != NULL)
	{
		check_may_run(def);
		if (toygun_should_stop(obj, def))
		{
			toygun_transition(obj, def, TOYGUN_STOP, NULL, "should_stop");
			goto save;
		}
	}

	/*
	 * The first tick enters the first state, and runs it; a type that
	 * declares __new__ (first) has its handler run in __new__ instead.
	 */
	if (strcmp(obj->state, TOYGUN_NEW) == 0 && strcmp(def->states[0], TOYGUN_NEW) != 0)
		toygun_transition(obj, def, def->states[0], NULL, NULL);
	if (!toygun_state_declared(def, obj->state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s %s is in state \"%s\", which %s does not declare",
						toygun_kind_name(obj->kind), toygun_uuid_text(&obj->id),
						obj->state, toygun_def_label(def)),
				 errhint("Move it with toygun.transition_%s(), or declare the state again.",
						 toygun_kind_name(obj->kind))));
	if (def->handler != NULL)
	{
		call_handler(obj, def, &next);
		apply_next(obj, def, &next);
	}
save:
	obj->attempts = 0;
	obj->last_error = NULL;
	*saved = toygun_save_object(obj, def, expected_step);
	/* the trial of a half-open breaker succeeded: it closes */
	if (trial)
		toygun_breaker_trial_passed(obj, def);

	error_context_stack = errcb.previous;
}

/* The object being ticked right now, innermost, if any. */
bool
toygun_ticking_top(pg_uuid_t *id)
{
	if (tick_depth == 0)
		return false;
	*id = ticking[tick_depth - 1];
	return true;
}

/* Is this the object being ticked right now, innermost? */
bool
toygun_ticking_now(pg_uuid_t *id)
{
	return tick_depth > 0 && memcmp(&ticking[tick_depth - 1], id, sizeof(pg_uuid_t)) == 0;
}

/*
 * Tick a locked object in the current transaction. A stopped object is left
 * as it is; a panicked one is refused. Returns the saved row (in the SPI
 * context of the current call).
 */
Datum
toygun_tick(ToygunObject *obj, ToygunDef *def)
{
	Datum		saved = obj->row;
	int			i;

	if (strcmp(obj->state, TOYGUN_STOP) == 0)
		return saved;
	if (strcmp(obj->state, TOYGUN_PANIC) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s %s is panicked", toygun_kind_name(obj->kind), toygun_uuid_text(&obj->id)),
				 errdetail("Panicked objects are not ticked until a person moves them."),
				 errhint("Move it with toygun.transition_%s()%s.", toygun_kind_name(obj->kind),
						 obj->kind == TOYGUN_TASK ? ", toygun.rewind_task() or toygun.stop_task()" : "")));

	for (i = 0; i < tick_depth; i++)
		if (memcmp(&ticking[i], &obj->id, sizeof(pg_uuid_t)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("%s %s is already being ticked", toygun_kind_name(obj->kind),
							toygun_uuid_text(&obj->id)),
					 errdetail("A handler cannot tick the object it is running for.")));
	if (tick_depth >= MAX_TICK_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("ticks are nested too deeply"),
				 errdetail("A handler ticked other objects more than %d levels deep.", MAX_TICK_DEPTH)));

	ticking[tick_depth++] = obj->id;
	PG_TRY();
	{
		tick_inner(obj, def, &saved);
	}
	PG_FINALLY();
	{
		tick_depth--;
	}
	PG_END_TRY();
	return saved;
}
