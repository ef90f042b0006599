/*
 * worker.c
 *		A worker: claims a batch of due resources and runs (FOR UPDATE SKIP
 *		LOCKED, toygun_claim_objects), ticks them and commits; when nothing is
 *		due it sleeps until the earliest run_at or until a committing
 *		transaction wakes it.
 *
 * A batch first runs without subtransactions. If a tick fails, the batch is
 * rolled back and replayed with one subtransaction per tick, so that only
 * the failing tick is lost; its failure is recorded (failure.c). A tick that
 * ends the process is recorded in inflight.c and charged by the next worker;
 * what a tick leaves in the session is undone after it (contain.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* The longest a worker sleeps with nothing due: a safety net for lost wake-ups. */
#define MAX_SLEEP_MS 60000
/* Sleep when runs are due but all locked by others (e.g. by a long tick). */
#define BUSY_SLEEP_MS 1000
/* Ticks per transaction when replaying a failed batch one subtransaction each. */
#define REPLAY_CHUNK 50
/*
 * A batch stops ticking after this long and commits; what it claimed but did
 * not tick is released and claimed again by whichever worker comes first.
 * Fast handlers get big batches; slow ones do not hold many runs locked.
 */
#define BATCH_TIME_MS 100
/* The fewest runs a batch claims (see claim_limit). */
#define MIN_CLAIM 16
/*
 * How soon a worker looks again for a parent that was held when its child
 * ended: at first soon, then twice as late each time it is still held, up to
 * the longest (a session that holds it for hours costs a query a few seconds).
 */
#define HELD_PARENT_SLEEP_MS 100
#define HELD_PARENT_MAX_SLEEP_MS 5000
/* After an error outside any tick (a cancel while claiming), wait this long. */
#define ERROR_SLEEP_MS 1000
/* A claim took a dead tick's run that another worker is charging: wait this long. */
#define DEAD_RUN_SLEEP_MS 10
/* How long a new worker waits for another to charge its slot's dead tick. */
#define CHARGE_WAIT_MS 30000
/* How often a worker whose queue does not exist yet looks for it (a define making it wakes it too). */
#define QUEUE_SLEEP_MS 5000
/*
 * On a Citus node, the longest an idle worker sleeps: a start routed from
 * another node does not wake it (doc/citus.md §5), so it looks this often.
 */
#define CITUS_MAX_SLEEP_MS 1000

static int	my_slot;

/*
 * The queue this worker claims from (issue 17): toygun.queues gives its
 * slot a queue by position; its id is looked up in toygun.queue at the
 * start, after each reload, and while it does not exist (-1).
 */
static int	my_queue = -1;
static char my_queue_name[NAMEDATALEN];
static bool queue_stale = true;
/* its shared preempt flag: a start above its batch's lowest level (issue 17) */
static volatile bool *preempt;
/* A batch a start preempted ends after at least this long (a stream of them cannot shrink batches to one tick). */
#define PREEMPT_MIN_MS 5

/* The next wait for a held parent (see HELD_PARENT_SLEEP_MS). */
static long held_sleep_ms = HELD_PARENT_SLEEP_MS;

/*
 * How many runs (and resources) the next batch claims: toygun.batch_size,
 * or, after a batch that BATCH_TIME_MS cut short, twice what it ticked,
 * doubling again with each batch ticked to its end. Slow handlers then lock
 * few runs, and the other workers' claims skip few.
 */
static int	claim_limit = 0;

/* This process is a toygun worker (it sleeps no longer than its own runs need). */
bool		toygun_in_worker = false;
static MemoryContext batch_context;
static MemoryContext tick_context;
static TimeoutId tick_timeout_id;
static TimeoutId tick_grace_id;
static volatile sig_atomic_t tick_timed_out = false;
/* The running tick's timeout, and whether its task type set it (else the setting) */
static int	tick_timeout_ms;
static ToygunDef *tick_timeout_def;

static SPIPlanPtr park_plans[2];

/* A claimed object, remembered across the rollback of a failed batch. */
typedef struct Claimed
{
	ToygunKind	kind;
	pg_uuid_t	id;
	ItemPointerData tid;		/* its row's version when claimed */
	char	   *error;			/* set when its tick failed */
	TimestampTz started_at;		/* when its failed tick began */
	TimestampTz ended_at;		/* and when it failed */
	ToygunMetric *metric;		/* its type's counters, when its tick failed (metrics.c) */
} Claimed;

/* The counters of the type of the tick under way, or NULL (metrics.c). */
static ToygunMetric *tick_metric = NULL;

static void
tick_timeout_handler(void)
{
	tick_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * The tick caught its cancel and still runs: end it with the process (a
 * FATAL no handler can catch); the next worker charges it to the run.
 */
static void
tick_grace_handler(void)
{
	toygun_inflight_timed_out(tick_timeout_ms, tick_timeout_def != NULL);
	ProcDiePending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/* The timeout of a tick of def: its task type's, or toygun.tick_timeout. */
static void
start_tick_timeouts(ToygunDef *def)
{
	EnableTimeoutParams t[2];

	tick_timeout_ms = toygun_def_tick_timeout_ms(def);
	tick_timeout_def = def->tick_timeout_ms > 0 ? def : NULL;
	if (tick_timeout_ms <= 0)
		return;
	t[0].id = tick_timeout_id;
	t[0].type = TMPARAM_AFTER;
	t[0].delay_ms = tick_timeout_ms;
	t[1].id = tick_grace_id;
	t[1].type = TMPARAM_AFTER;
	t[1].delay_ms = (int) Min((int64) tick_timeout_ms + toygun_tick_grace_ms, INT_MAX);
	enable_timeouts(t, 2);
}

/*
 * What last_error says of a tick its timeout cancelled: which timeout, so
 * that a type's own is not mistaken for the setting. The definition is the
 * batch's, valid until its transaction ends.
 */
static char *
cancelled_message(void)
{
	if (tick_timeout_def != NULL)
		return psprintf("tick cancelled after the tick_timeout of %s (%d ms)",
						toygun_def_label(tick_timeout_def), tick_timeout_ms);
	return psprintf("tick cancelled after toygun.tick_timeout (%d ms)", tick_timeout_ms);
}

/* Code that caught its timeout's cancel and returned fails all the same. */
static void
fail_if_timed_out(void)
{
	if (tick_timed_out)
	{
		QueryCancelPending = false;
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg_internal("%s", cancelled_message())));
	}
}

static void
stop_tick_timeouts(void)
{
	DisableTimeoutParams t[2];

	t[0].id = tick_timeout_id;
	t[0].keep_indicator = false;
	t[1].id = tick_grace_id;
	t[1].keep_indicator = false;
	disable_timeouts(t, 2);
}

static void
release_slot(int code, Datum arg)
{
	toygun_inflight_forget_charges();
	toygun_release_slot(DatumGetInt32(arg));
}

/*
 * Where the claims of each kind start in the index on run_at. Rows already
 * ticked leave dead entries at its low end until they are vacuumed; while a
 * worker keeps finding full batches it starts each claim at the run_at of
 * the previous claim's first row instead of walking over them again, or of
 * its last row once the batch ticked every row it claimed and committed. A
 * row that became visible late with an older run_at (its transaction
 * committed long after setting it), or that another session held locked
 * while it was passed over, is found when the floor is dropped: after a
 * claim that was not full, and at least every CLAIM_FLOOR_MS.
 */
#define CLAIM_FLOOR_MS 1000
static TimestampTz claim_floor[2] = {DT_NOBEGIN, DT_NOBEGIN};
static TimestampTz claim_floor_since[2];
static TimestampTz claim_last[2] = {DT_NOBEGIN, DT_NOBEGIN};

/* Claim up to n due objects of one kind, oldest due first, from the claim floor on. */
static int
claim(ToygunKind kind, int n, Claimed *out, ToygunObject **objs)
{
	TimestampTz now = GetCurrentTimestamp();
	int			got;
	int			i;

	if (claim_floor[kind] != DT_NOBEGIN &&
		TimestampDifferenceExceeds(claim_floor_since[kind], now, CLAIM_FLOOR_MS))
		claim_floor[kind] = DT_NOBEGIN;
	got = toygun_claim_objects(kind, my_queue, n, claim_floor[kind], objs);
	for (i = 0; i < got; i++)
	{
		out[i].kind = kind;
		out[i].id = objs[i]->id;
		out[i].tid = objs[i]->tid;
		out[i].error = NULL;
	}
	claim_last[kind] = DT_NOBEGIN;
	if (got == 0 || got < n)
		claim_floor[kind] = DT_NOBEGIN;
	else
	{
		if (claim_floor[kind] == DT_NOBEGIN)
			claim_floor_since[kind] = now;
		claim_floor[kind] = objs[0]->due_at;
		claim_last[kind] = objs[got - 1]->due_at;
	}
	return got;
}

/* Claimed entries for objs[from..to), claimed by toygun_claim_level(). */
static void
note_claimed(Claimed *out, ToygunObject **objs, int from, int to)
{
	int			i;

	for (i = from; i < to; i++)
	{
		out[i].kind = TOYGUN_TASK;
		out[i].id = objs[i]->id;
		out[i].tid = objs[i]->tid;
		out[i].error = NULL;
	}
}

/*
 * How often a busy worker recomputes the priority levels in use (issue 17):
 * the net for runs made due at a level no start noted (a run re-armed by
 * its resource, or a level a census dropped while its runs were parked).
 * An idle worker recomputes them each time it goes idle.
 */
#define LEVELS_CENSUS_MS 1000
static TimestampTz levels_census_at = 0;

/*
 * Forget where the last claims stopped and which priority levels are in
 * use: the queue changed, or (on Citus) the next batch reads another shard
 * group, whose due runs may be older than the last group's floor.
 */
static void
forget_claims(void)
{
	claim_floor[TOYGUN_RESOURCE] = claim_floor[TOYGUN_TASK] = DT_NOBEGIN;
	claim_last[TOYGUN_RESOURCE] = claim_last[TOYGUN_TASK] = DT_NOBEGIN;
	levels_census_at = 0;
}

/* Recompute the levels of the queue in use, with a snapshot taken after the census begins. */
static void
levels_census(void)
{
	ToygunLevels found;

	toygun_levels_census_begin(my_queue);
	toygun_levels_census(my_queue, &found);
	toygun_levels_census_end(my_queue, &found);
	levels_census_at = GetCurrentTimestamp();
}

static inline bool
level_in(ToygunLevels *levels, int p)
{
	int			bit = p - TOYGUN_PRIORITY_MIN;

	return (levels->bits[bit / 64] & (UINT64CONST(1) << (bit % 64))) != 0;
}

/*
 * Claim up to n due runs of the levels in use from level from down to
 * level to, 0 left out, highest first, into out[0..] and objs[0..].
 * *lowest, if given: the lowest level claimed.
 */
static int
claim_levels(ToygunLevels *levels, int from, int to, int n, Claimed *out, ToygunObject **objs,
			 int *lowest)
{
	int			got = 0;
	int			p;

	for (p = from; p >= to && got < n; p--)
		if (p != 0 && level_in(levels, p))
		{
			int			k = toygun_claim_level(my_queue, p, n - got, DT_NOBEGIN, objs + got);

			note_claimed(out, objs, got, got + k);
			got += k;
			if (k > 0 && lowest != NULL)
				*lowest = p;
		}
	return got;
}

/*
 * Claim up to n due runs of the worker's queue (issue 17): each priority
 * level above 0, highest first, then level 0 (as before priorities, with
 * its claim floor), then each level below 0, each from what is left of n.
 * While no level but 0 is in use (the shared set is empty) this is level
 * 0's claim alone. Levels other than 0 are claimed without a floor (left
 * for later: per-level floors). *lowest: the lowest level claimed.
 */
static int
claim_tasks(int n, Claimed *out, ToygunObject **objs, int *lowest)
{
	ToygunLevels levels;
	bool		any = toygun_levels_read(my_queue, &levels);
	int			got = 0;
	int			k;

	claim_last[TOYGUN_TASK] = DT_NOBEGIN;
	if (any)
		got += claim_levels(&levels, TOYGUN_PRIORITY_MAX, 1, n, out, objs, lowest);
	/* runs of types with concurrency limits, at level 0 with slots (issue 17): a bool and an int test without */
	if (got < n && toygun_flow_limited(my_queue))
	{
		k = toygun_flow_claim(my_queue, n - got, objs + got);
		note_claimed(out, objs, got, got + k);
		got += k;
		if (k > 0)
			*lowest = 0;
	}
	if (got < n)
	{
		k = claim(TOYGUN_TASK, n - got, out + got, objs + got);
		got += k;
		if (k > 0)
			*lowest = 0;
	}
	if (any && got < n)
		got += claim_levels(&levels, -1, TOYGUN_PRIORITY_MIN, n - got, out + got, objs + got, lowest);
	return got;
}

/*
 * Up to n due runs of the levels above level, and above 0 (a preempted
 * batch's, issue 17), highest first. Below 0 a batch preempted by a level
 * 0 start ends as it would without preemption: level 0's claim is not
 * repeated inside a batch.
 */
static int
claim_above(int level, int n, Claimed *out, ToygunObject **objs)
{
	ToygunLevels levels;

	if (!toygun_levels_read(my_queue, &levels))
		return 0;
	return claim_levels(&levels, TOYGUN_PRIORITY_MAX, Max(level, 0) + 1, n, out, objs, NULL);
}

/* The batch ticked every row it claimed, and committed: claim after them next. */
static void
claimed_all_ticked(void)
{
	int			kind;

	for (kind = 0; kind < 2; kind++)
		if (claim_last[kind] != DT_NOBEGIN && claim_floor[kind] != DT_NOBEGIN)
			claim_floor[kind] = claim_last[kind];
}

/* How long until the earliest run_at: how long an idle worker sleeps. */
static long
next_due_ms(void)
{
	TimestampTz next;
	TimestampTz now = GetCurrentTimestamp();
	long		ms;
	ToygunLevels levels;

	/* through each claim index of the queue (issue 17) */
	(void) toygun_levels_read(my_queue, &levels);
	if (!toygun_next_due(my_queue, &levels, &next))
		next = DT_NOEND;
	/* on a Citus node, the other shard groups too: one with runs due is claimed next */
	if (toygun_citus_in_use())
	{
		int			ngroups = toygun_citus_ngroups();

		for (int g = 0; g < ngroups; g++)
		{
			TimestampTz at;

			if (toygun_citus_is_batch_group(g))
				continue;
			toygun_citus_use_group(g);
			if (toygun_next_due(my_queue, &levels, &at))
			{
				if (at <= now)
				{
					toygun_citus_resume();
					return 0;
				}
				next = Min(next, at);
			}
		}
		toygun_citus_resume();
		if (next == DT_NOEND || TimestampDifferenceExceeds(now, next, CITUS_MAX_SLEEP_MS))
			return CITUS_MAX_SLEEP_MS;
	}
	/* limited runs (issue 17): as the last claim saw them, or a short wait for a slot */
	ms = toygun_flow_sleep_ms();
	if (ms >= 0)
		next = Min(next, TimestampTzPlusMilliseconds(now, ms));
	if (next == DT_NOEND)
		return MAX_SLEEP_MS;
	/*
	 * Due, yet not claimed: locked by another worker (look again later), or
	 * due only since the claim looked (its now() is the transaction's
	 * start): claim again at once. Runs a rate limit holds come due one
	 * emission interval apart, often between a claim and this read.
	 */
	if (next <= now)
		return next > GetCurrentTransactionStartTimestamp() ? 0 : BUSY_SLEEP_MS;
	ms = TimestampDifferenceMilliseconds(now, next) + 1;
	return Min(ms, MAX_SLEEP_MS);
}

/* Not due for a tick at all: stop, panic, or a task of a stopped resource. */
static void
park(ToygunObject *obj)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		values[1];

	values[0] = UUIDPGetDatum(&obj->id);
	toygun_run(toygun_plan(&park_plans[obj->kind],
						   obj->kind == TOYGUN_TASK
						   ? "UPDATE ONLY toygun.task SET run_at = NULL WHERE id = $1"
						   : "UPDATE ONLY toygun.resource SET run_at = NULL WHERE id = $1",
						   1, argtypes),
			   values, NULL, 0);
}

/* pg_stat_activity.query of a worker: what it is ticking (no allocation). */
static void
report_tick(ToygunObject *obj, ToygunDef *def)
{
	static const char hex[] = "0123456789abcdef";
	char		id[37];
	char		activity[256];
	int			i,
				j = 0;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			id[j++] = '-';
		id[j++] = hex[obj->id.data[i] >> 4];
		id[j++] = hex[obj->id.data[i] & 0x0f];
	}
	id[j] = '\0';
	if (obj->kind == TOYGUN_TASK)
		snprintf(activity, sizeof(activity), "tick task %s (%s.%s) in state %s",
				 id, def->resource_type, def->name, obj->state);
	else
		snprintf(activity, sizeof(activity), "tick resource %s (%s) in state %s",
				 id, def->resource_type, obj->state);
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Tick one claimed object, under its timeout, in a memory context
 * of its own that is emptied afterwards: a batch does not grow with its
 * ticks. started_at is the clock as the tick begins, for the in-flight
 * record. Returns true when the batch must commit after this tick.
 */
static bool
tick_claimed(ToygunObject *obj, TimestampTz started_at)
{
	MemoryContext old;
	ToygunDef  *def;
	bool		end_batch;

	if (strcmp(obj->state, TOYGUN_STOP) == 0 || strcmp(obj->state, TOYGUN_PANIC) == 0 ||
		(obj->resource_state != NULL && strcmp(obj->resource_state, TOYGUN_STOP) == 0))
	{
		park(obj);
		return false;
	}
	old = MemoryContextSwitchTo(tick_context);
	def = toygun_object_def(obj);
	tick_metric = toygun_metric_of(def);
	report_tick(obj, def);
	tick_timed_out = false;
	toygun_inflight_begin(obj->kind, &obj->id, &obj->tid, started_at);
	toygun_contain_begin_tick();
	start_tick_timeouts(def);
	(void) toygun_tick(obj, def);
	/* what the tick left behind is undone under its timeout and record too */
	end_batch = toygun_contain_end_tick();
	/* a breaker's trial claimed: committed before the trial's tick */
	if (toygun_tick_commit_now)
	{
		toygun_tick_commit_now = false;
		end_batch = true;
	}
	stop_tick_timeouts();
	/* a handler that caught the cancel and returned fails all the same */
	fail_if_timed_out();
	toygun_inflight_end();
	/* counted in shared memory once the batch commits (toygun_metrics_flush) */
	toygun_metrics_note(tick_metric, GetCurrentTimestamp() - started_at, false,
						strcmp(obj->state, TOYGUN_PANIC) == 0);
	tick_metric = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(tick_context);
	return end_batch;
}

/* The message a failed tick leaves in last_error. */
static char *
failure_message(ErrorData *edata)
{
	bool		timed_out = tick_timed_out;

	tick_timed_out = false;
	if (timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		return cancelled_message();
	return pstrdup(edata->message ? edata->message : "unknown error");
}

/*
 * After an error in or around a tick: no timeout left armed, no record of a
 * tick in flight, no cancel left pending for the next tick to trip over.
 */
static ErrorData *
catch_error(void)
{
	ErrorData  *edata;

	stop_tick_timeouts();
	QueryCancelPending = false;
	toygun_inflight_end();
	MemoryContextSwitchTo(batch_context);
	edata = CopyErrorData();
	FlushErrorState();
	return edata;
}

/* The failure of c's tick, as failure.c records it. */
static ToygunFailure
failure_of(Claimed *c)
{
	ToygunFailure failure;

	failure.error = c->error;
	failure.started_at = c->started_at;
	failure.ended_at = c->ended_at;
	failure.worker_pid = MyProcPid;
	return failure;
}

/*
 * Run body(c) in a subtransaction of its own, contained as a tick is, its
 * result in *result. Returns NULL if it succeeded, else its error, rolled
 * back (catch_error()).
 */
static ErrorData *
in_subtransaction(bool (*body) (Claimed *c), Claimed *c, bool *result)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		*result = body(c);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		edata = catch_error();
		/* on Citus, the abort makes the group user code suspended active again (citus.c) */
		RollbackAndReleaseCurrentSubTransaction();
		(void) toygun_contain_end_tick();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return edata;
}

/* retick()'s subtransaction: tick c if it is still due and nobody took it. */
static bool
retick_body(Claimed *c)
{
	ToygunObject *obj = toygun_lock_object(c->kind, &c->id, true, true);

	/* skip what someone else took, or ticked, meanwhile */
	return obj != NULL && obj->due && tick_claimed(obj, c->started_at);
}

/*
 * Tick one claimed object again in a subtransaction; on failure keep the
 * error. Returns true when the transaction must commit after this tick.
 */
static bool
retick(Claimed *c)
{
	bool		end_batch = false;
	ErrorData  *edata;

	c->started_at = GetCurrentTimestamp();
	tick_metric = NULL;
	edata = in_subtransaction(retick_body, c, &end_batch);
	if (edata != NULL)
	{
		c->error = failure_message(edata);
		c->ended_at = GetCurrentTimestamp();
		c->metric = tick_metric;
	}
	tick_metric = NULL;
	return end_batch;
}

/* record_failure()'s subtransaction: the failure with its panic, under a tick's timeout. */
static bool
record_failure_body(Claimed *c)
{
	ToygunDef	setting;
	ToygunFailure failure = failure_of(c);

	memset(&setting, 0, sizeof(setting));
	tick_timed_out = false;
	toygun_contain_begin_tick();
	toygun_inflight_begin(c->kind, &c->id, &c->tid, GetCurrentTimestamp());
	start_tick_timeouts(&setting);
	(void) toygun_record_failure(c->kind, &c->id, &failure, true, false, NULL);
	(void) toygun_contain_end_tick();
	stop_tick_timeouts();
	fail_if_timed_out();
	toygun_inflight_end();
	return false;
}

/*
 * Record the failed tick of a claimed object. The panic of one whose
 * attempts ran out runs its owners' code (the starts of its __panic__
 * triggers, should_start among them; its panic alarm's handlers): that runs
 * as a tick does, under toygun.tick_timeout and contained, in a
 * subtransaction. If it fails or times out, the failure is recorded without
 * the panic, which runs nobody's code: the object is retried after its
 * backoff, its last_error saying why it did not panic. Nothing a tenant's
 * code does here can stall the worker or lose the failure (and with it the
 * other ticks of the chunk). Code that catches its cancel is ended with the
 * worker at the grace, as a tick is: the object is in flight meanwhile, so
 * the next worker charges it, and that charge runs no tenant's code.
 */
static void
record_failure(Claimed *c)
{
	bool		unused;
	ErrorData  *edata = in_subtransaction(record_failure_body, c, &unused);

	if (edata != NULL)
	{
		ToygunFailure failure = failure_of(c);

		failure.error = psprintf("%s (its panic failed: %s)", c->error, failure_message(edata));
		FreeErrorData(edata);
		(void) toygun_record_failure(c->kind, &c->id, &failure, false, false, NULL);
	}
}

/*
 * Replay a failed batch: tick every claimed object but the failed ones
 * again, each in its own subtransaction, a chunk of them per transaction,
 * and record the failures. Returns the number of failures.
 */
static int
replay(Claimed *claimed, int n)
{
	int			failures = 0;
	int			i = 0,
				j,
				end;

	while (i < n)
	{
		toygun_begin_work();
		/* on a Citus node, each transaction holds its shard group's metadata lock */
		if (toygun_citus_in_use() && !toygun_citus_lock_batch_group())
		{
			/* the group left the node: its runs are claimed where it went */
			toygun_end_work();
			break;
		}
		for (end = i; end < n && end < i + REPLAY_CHUNK; end++)
			if (claimed[end].error == NULL && retick(&claimed[end]))
			{
				end++;
				break;
			}
		/* failures are recorded after the ticks, in the same transaction */
		for (j = i; j < end; j++)
			if (claimed[j].error != NULL)
			{
				record_failure(&claimed[j]);
				toygun_metrics_note(claimed[j].metric, claimed[j].ended_at - claimed[j].started_at,
									true, toygun_failure_panicked);
				failures++;
			}
		toygun_end_work();
		i = end;
	}
	return failures;
}

/*
 * Tick the claimed objects (as many as BATCH_TIME_MS allows) and commit,
 * without subtransactions. Returns how many were ticked; on a failure,
 * rolls back, marks the failing object and returns -1.
 *
 * Preempted (issue 17: a start above level committed, at least
 * PREEMPT_MIN_MS into the batch), the batch claims the runs above its level
 * in place of the ones it has not ticked (released at its commit), ticks
 * them, and commits: the higher runs wait for neither this batch's commit
 * nor the next claim. *n becomes what the batch holds: claimed[0..*n).
 */
static int
tick_all(Claimed *claimed, ToygunObject **objs, int *n, int level, bool *preempted)
{
	volatile int failing = -1;
	volatile int ticked = 0;
	volatile TimestampTz tick_started;
	int			i;
	TimestampTz started = GetCurrentTimestamp();

	PG_TRY();
	{
		for (i = 0; i < *n; i++)
		{
			bool		end_batch;

			/* one clock reading: the batch's time so far, and the tick's start */
			tick_started = i == 0 ? started : GetCurrentTimestamp();
			if (i > 0 && TimestampDifferenceExceeds(started, tick_started, BATCH_TIME_MS))
				break;
			/* a start above the batch's lowest level (issue 17): a word read */
			if (*preempt && !*preempted && i > 0 &&
				TimestampDifferenceExceeds(started, tick_started, PREEMPT_MIN_MS))
			{
				Claimed		higher[MIN_CLAIM];
				ToygunObject *higher_objs[MIN_CLAIM];
				int			k;

				*preempted = true;
				/* aside first: a claim that fails leaves claimed[0..*n) whole */
				k = claim_above(level, Min(*n - i, MIN_CLAIM), higher, higher_objs);
				memcpy(&claimed[i], higher, sizeof(Claimed) * k);
				memcpy(&objs[i], higher_objs, sizeof(ToygunObject *) * k);
				*n = i + k;
				if (k == 0)
					break;
				tick_started = GetCurrentTimestamp();
			}
			failing = i;
			end_batch = tick_claimed(objs[i], tick_started);
			failing = -1;
			ticked = i + 1;
			if (end_batch)
				break;
		}
		toygun_end_work();
	}
	PG_CATCH();
	{
		ErrorData  *edata = catch_error();

		/* the failing tick; none if the commit itself failed */
		if (failing >= 0)
		{
			claimed[failing].error = failure_message(edata);
			claimed[failing].started_at = tick_started;
			claimed[failing].ended_at = GetCurrentTimestamp();
			claimed[failing].metric = tick_metric;
		}
		else
			ereport(LOG, (errmsg("toygun: a batch failed to commit: %s", edata->message)));
		AbortCurrentTransaction();
		(void) toygun_contain_end_tick();
		toygun_citus_resume();
		/* the batch's ticks rolled back: replay() ticks them again, and notes them then */
		toygun_metrics_discard();
		tick_metric = NULL;
		ticked = -1;
	}
	PG_END_TRY();
	return ticked;
}

/* Whether the claim took the run of a tick that ended its worker, not charged yet. */
static bool
claimed_dead_run(Claimed *claimed, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (toygun_inflight_is_dead_run(&claimed[i].id))
			return true;
	return false;
}

/*
 * Look up the id of the queue toygun.queues gives this worker's slot, and
 * load its paused flag into shared memory (unless a pause or resume set it
 * already). Moved to another queue by a reload, the worker starts its
 * claims afresh. Inside the batch's transaction.
 */
static void
resolve_queue(void)
{
	const char *name = toygun_queue_of_slot(my_slot);
	bool		paused = false;
	int			id = -1;

	if (name != NULL)
		id = toygun_queue_lookup(name, &paused);
	if (id >= 0)
		toygun_queue_paused_load(id, paused);
	if (id != my_queue || name == NULL || strcmp(name, my_queue_name) != 0)
	{
		forget_claims();
		claim_limit = 0;
	}
	strlcpy(my_queue_name, name ? name : "", sizeof(my_queue_name));
	my_queue = id;
	toygun_set_queue(my_slot, id);
	queue_stale = id < 0;
}

/*
 * One batch: claim due resources and runs, tick them, commit. Returns how
 * many were claimed; when none, *sleep_ms says how long to sleep.
 */
static int
run_batch(long *sleep_ms, bool *full)
{
	int			limit = claim_limit > 0 ? Min(claim_limit, toygun_batch_size) : toygun_batch_size;
	Claimed    *claimed;
	ToygunObject **objs;
	int			n;
	int			ticked;
	int			failures = 0;
	bool		held;
	bool		preempted = false;
	int			lowest = TOYGUN_PRIORITY_MAX;

	MemoryContextReset(batch_context);
	MemoryContextSwitchTo(batch_context);
	/* notes of a batch that ended in an error (run_batch_safely) never committed */
	toygun_metrics_discard();
	tick_metric = NULL;
	claimed = palloc(sizeof(Claimed) * 2 * limit);
	objs = palloc(sizeof(ToygunObject *) * 2 * limit);

	toygun_begin_work();
	pgstat_report_activity(STATE_RUNNING, "claiming due runs");
	/* the queue of the worker's slot (issue 17): none yet, look again in a while */
	if (queue_stale)
		resolve_queue();
	if (my_queue < 0)
	{
		toygun_end_work();
		*sleep_ms = QUEUE_SLEEP_MS;
		return 0;
	}
	/*
	 * On a Citus node (citus.c): this batch works on one of the node's
	 * shard groups, round-robin, under its shards' metadata lock; every
	 * statement below is on the group's shard tables. A node with none
	 * (a coordinator) has nothing to claim.
	 */
	if (toygun_citus_round())
	{
		if (!toygun_citus_begin_batch())
		{
			toygun_end_work();
			*sleep_ms = CITUS_MAX_SLEEP_MS;
			return 0;
		}
		/* where the last claims stopped, and the levels in use, were another group's */
		forget_claims();
	}
	held = toygun_sweep_children();
	if (!held)
		held_sleep_ms = HELD_PARENT_SLEEP_MS;
	/* the priority levels in use (issue 17): at least every LEVELS_CENSUS_MS */
	if (levels_census_at == 0 ||
		TimestampDifferenceExceeds(levels_census_at, GetCurrentTimestamp(), LEVELS_CENSUS_MS))
		levels_census();
	n = claim(TOYGUN_RESOURCE, limit, claimed, objs);
	if (n > 0)
		lowest = 0;
	n += claim_tasks(limit, claimed + n, objs + n, &lowest);
	*full = n >= limit;
	if (n == 0)
	{
		/* idle: the levels afresh, then sleep until the earliest run_at of any */
		levels_census();
		*sleep_ms = next_due_ms();
		/* a parent someone held when its child ended: look again soon */
		if (held)
		{
			*sleep_ms = Min(*sleep_ms, held_sleep_ms);
			held_sleep_ms = Min(held_sleep_ms * 2, HELD_PARENT_MAX_SLEEP_MS);
		}
		toygun_end_work();
		toygun_citus_end_batch(false);
		return 0;
	}
	/*
	 * A worker that died during a tick set charges_pending before its row
	 * locks went: if we claimed its run before it was charged, let it go,
	 * and charge it first (the main loop does, at once).
	 */
	if (toygun_inflight_charges_pending() && claimed_dead_run(claimed, n))
	{
		toygun_end_work();
		toygun_citus_end_batch(false);
		*sleep_ms = DEAD_RUN_SLEEP_MS;
		return 0;
	}
	/* busy: a commit's wake-up now goes to another worker, a start above lowest preempts */
	toygun_set_batch_level(my_slot, lowest);
	toygun_set_idle(my_slot, false);
	ticked = tick_all(claimed, objs, &n, lowest, &preempted);
	if (ticked < 0)
	{
		failures = replay(claimed, n);
		ticked = n - failures;
	}
	else
	{
		/* a preempted batch was not too slow: its limit stays */
		if (!preempted)
			claim_limit = ticked < n ? Max(MIN_CLAIM, 2 * ticked) : Min(toygun_batch_size, 2 * limit);
		if (ticked == n && !preempted)
			claimed_all_ticked();
	}
	toygun_citus_end_batch(false);
	toygun_count_batch(my_slot, ticked, failures);
	toygun_metrics_flush();
	return n;
}

/* Is the extension installed in this database? Tells the launcher if not. */
static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("toygun", true));
	CommitTransactionCommand();
	toygun_count_transaction();
	if (!installed)
		toygun_report_extension_missing();
	return installed;
}

/*
 * Before its first tick, a worker charges the tick that ended the previous
 * worker of its slot (and any other worker's), or waits a while for the
 * worker charging it: its own record must not be overwritten uncharged.
 */
static void
charge_before_start(void)
{
	TimestampTz started = GetCurrentTimestamp();

	while (toygun_charge_dead_ticks(my_slot) &&
		   !TimestampDifferenceExceeds(started, GetCurrentTimestamp(), CHARGE_WAIT_MS))
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
	}
}

/* Another worker ended during a tick: charge it before claiming anything. */
static void
charge_if_pending(void)
{
	if (toygun_inflight_charges_pending())
		(void) toygun_charge_dead_ticks(my_slot);
}

/*
 * A worker's memory holds every tenant's cached plans and compiled
 * functions. Past toygun.worker_memory it exits after its batch, and the
 * launcher starts a fresh one at once.
 */
static void
recycle_if_large(void)
{
	Size		used;

	if (toygun_worker_memory_kb <= 0)
		return;
	used = MemoryContextMemAllocated(TopMemoryContext, true);
	if (used <= (Size) toygun_worker_memory_kb * 1024)
		return;
	ereport(LOG,
			(errmsg("toygun worker %d is starting afresh: it holds %zu kB of memory, more than toygun.worker_memory (%d kB)",
					my_slot, used / 1024, toygun_worker_memory_kb)));
	toygun_inflight_recycle();
	proc_exit(0);
}

/* One batch, and whatever error it raises outside a tick: logged, not fatal. */
static int
run_batch_safely(long *sleep_ms, bool *full)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile int n = 0;

	*full = false;
	PG_TRY();
	{
		n = run_batch(sleep_ms, full);
	}
	PG_CATCH();
	{
		stop_tick_timeouts();
		toygun_inflight_end();
		MemoryContextSwitchTo(oldcontext);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		(void) toygun_contain_end_tick();
		toygun_citus_end_batch(true);
		*sleep_ms = ERROR_SLEEP_MS;
		n = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	return n;
}

void
toygun_worker_main(Datum arg)
{
	Oid			dboid;

	my_slot = DatumGetInt32(arg);
	toygun_in_worker = true;
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	toygun_inflight_attach();	/* SIGTERM, SIGQUIT and crashes */
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("toygun worker");

	toygun_claim_slot(my_slot);
	before_shmem_exit(release_slot, Int32GetDatum(my_slot));
	preempt = toygun_preempt_flag(my_slot);
	tick_timeout_id = RegisterTimeout(USER_TIMEOUT, tick_timeout_handler);
	tick_grace_id = RegisterTimeout(USER_TIMEOUT, tick_grace_handler);
	batch_context = AllocSetContextCreate(TopMemoryContext, "toygun batch",
										  ALLOCSET_DEFAULT_SIZES);
	tick_context = AllocSetContextCreate(TopMemoryContext, "toygun tick",
										 ALLOCSET_DEFAULT_SIZES);
	toygun_contain_start();

	if (!extension_installed())
		proc_exit(0);
	charge_before_start();
	toygun_inflight_start(my_slot, dboid);

	for (;;)
	{
		long		sleep_ms = MAX_SLEEP_MS;
		int			n;
		bool		full;

		/* a cancel (pg_cancel_backend) between batches has nothing to cancel */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* toygun.queues may give the slot another queue (issue 17) */
			queue_stale = true;
		}

		/* a paused queue, or one not loaded yet: its flag in shared memory, a word read */
		if (!queue_stale && toygun_queue_paused(my_queue) < 0)
			queue_stale = true;
		if (toygun_paused || toygun_queue_of_slot(my_slot) == NULL ||
			(!queue_stale && toygun_queue_paused(my_queue) > 0))
		{
			/* until the setting changes (the launcher stops surplus workers), or a resume */
			pgstat_report_activity(STATE_IDLE, "paused");
			toygun_set_idle(my_slot, true);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		charge_if_pending();
		/* idle from before the claim: a commit after it will wake us */
		toygun_set_idle(my_slot, true);
		n = run_batch_safely(&sleep_ms, &full);
		if (n > 0)
		{
			toygun_inflight_worked();
			recycle_if_large();
			/*
			 * a full batch: there may be more, so get another worker going;
			 * so does a batch whose commit gave back slots (issue 17): a
			 * worker may wait for one
			 */
			if (toygun_flow_batch_held() || full)
				toygun_wake_worker(my_queue);
			/* retention: busy, a round at least every toygun.maintain_interval (not on Citus nodes) */
			if (!toygun_citus_in_use())
				(void) toygun_maintain_in_worker(false);
			continue;
		}

		/* retention: nothing due, a round (retention.c), and sleep no longer than until the next */
		if (!toygun_citus_in_use())
		{
			long		next = toygun_maintain_in_worker(true);

			if (next == 0)
				continue;
			if (next > 0)
				sleep_ms = Min(sleep_ms, next);
		}

		pgstat_report_activity(STATE_IDLE, "waiting for due runs");
		pgstat_report_stat(true);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
