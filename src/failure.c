/*
 * failure.c
 *		A failed tick, recorded on its run: one more attempt, the error in
 *		last_error, a retry after an exponential backoff, and a panic after
 *		toygun.max_attempts (or the task type's own retry_backoff and
 *		max_attempts). A failure is an error the tick raised (caught by
 *		the worker), or a tick that ended its worker's process (charged here
 *		from the in-flight records of inflight.c by the next worker). Each
 *		failure is also kept as a row of toygun.failure, up to
 *		toygun.failures_kept per object, in the same transaction: a
 *		successful tick writes nothing here.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "toygun.h"

/* The longest wait between retries of a failing tick. */
#define MAX_BACKOFF_MS (3600 * 1000)
/* How long charging a dead tick waits for the dead worker's row lock to go. */
#define CHARGE_LOCK_TIMEOUT "5s"
/* Tries to charge a dead tick before it is given up (and logged). */
#define CHARGE_TRIES 10

static SPIPlanPtr keep_failure_plan;

/*
 * Keep a failed tick as the object's next row of toygun.failure, numbered
 * after its last one (failure_no never restarts, where attempts does after
 * a successful tick or a move by hand), and delete its rows older than the
 * last toygun.failures_kept. The object's row is locked by the caller, so
 * no other failure of it is being kept meanwhile. With failures_kept 0 the
 * object keeps none.
 */
static void
keep_failure(ToygunObject *obj, int attempt, ToygunFailure *failure)
{
	Oid			argtypes[8] = {UUIDOID, TEXTOID, INT4OID, TIMESTAMPTZOID, INTERVALOID,
	TEXTOID, INT4OID, INT4OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz started = failure->started_at != 0 ? failure->started_at : GetCurrentTimestamp();
	Interval   *duration = palloc0(sizeof(Interval));

	/*
	 * The SQL of 0.3 runs on this library until ALTER EXTENSION UPDATE: it
	 * has no table to keep failures in, and the failure is recorded without.
	 */
	if (!OidIsValid(get_relname_relid("failure", get_namespace_oid("toygun", false))))
		return;
	values[0] = UUIDPGetDatum(&obj->id);
	values[1] = CStringGetTextDatum(obj->type);
	values[2] = Int32GetDatum(attempt);
	values[3] = TimestampTzGetDatum(started);
	duration->time = failure->ended_at - started;
	values[4] = IntervalPGetDatum(duration);
	nulls[4] = failure->ended_at != 0 && failure->ended_at >= started ? ' ' : 'n';
	values[5] = CStringGetTextDatum(failure->error);
	values[6] = Int32GetDatum(failure->worker_pid);
	nulls[6] = failure->worker_pid != 0 ? ' ' : 'n';
	values[7] = Int32GetDatum(toygun_failures_kept);
	toygun_run(toygun_plan(&keep_failure_plan,
						   "WITH next AS (SELECT COALESCE(pg_catalog.max(f.failure_no), 0) + 1 AS no"
						   "                FROM ONLY toygun.failure f WHERE f.object_id = $1),"
						   "     kept AS (INSERT INTO toygun.failure"
						   "                (object_id, failure_no, resource_type, attempt, at, duration, error, worker_pid)"
						   "              SELECT $1, next.no, $2, $3, $4, $5, $6, $7"
						   "                FROM next WHERE $8 > 0)"
						   " DELETE FROM ONLY toygun.failure f USING next"
						   "  WHERE f.object_id = $1 AND f.failure_no <= next.no - $8",
						   8, argtypes),
			   values, nulls, 0);
}

/*
 * Record a failed tick of an object in the current transaction. With
 * may_panic false (a crash it did not cause) it never panics. With a
 * version, only if the row is still that version (not ticked or moved
 * since, nor charged already). Returns false if the object is gone,
 * finished, changed, or locked by someone else (when !wait): it is no
 * longer ours to charge.
 */
bool		toygun_failure_panicked = false;

bool
toygun_record_failure(ToygunKind kind, pg_uuid_t *id, ToygunFailure *failure,
					  bool may_panic, bool wait, ItemPointer version)
{
	const char *error = failure->error;
	ToygunObject *obj = toygun_lock_object(kind, id, true, !wait);
	ToygunDef	none;
	ToygunDef  *def;
	int			attempts;
	int			max_attempts;

	toygun_failure_panicked = false;
	if (obj == NULL || strcmp(obj->state, TOYGUN_STOP) == 0 ||
		strcmp(obj->state, TOYGUN_PANIC) == 0 ||
		(version != NULL && !ItemPointerEquals(&obj->tid, version)))
		return false;

	/*
	 * The type's definition seals panic_message if it declares it
	 * encrypted; without one (dropped meanwhile) a panic needs none, since
	 * __panic__ is always a valid target.
	 */
	def = toygun_find_def(kind, obj->type, obj->name, true);
	if (def == NULL)
	{
		memset(&none, 0, sizeof(none));
		none.kind = kind;
		none.retry_backoff_ms = -1;
		def = &none;
	}
	/* the task type's retry policy, or the settings */
	max_attempts = toygun_def_max_attempts(def);
	attempts = obj->attempts + 1;
	ereport(LOG,
			(errmsg("toygun: tick of %s %s (%s) failed (attempt %d of %d): %s",
					toygun_kind_name(kind), toygun_uuid_text(id),
					def == &none ? obj->type : toygun_def_label(def),
					attempts, max_attempts, error)));
	if (may_panic && attempts >= max_attempts)
	{
		/*
		 * last_error is readable only with the owner's privileges; attrs
		 * are readable by everybody unless the field is encrypted.
		 */
		const char *message = toygun_in_list(TOYGUN_PANIC_MESSAGE, def->encrypted, def->nencrypted)
			? error
			: psprintf("panicked after %d failed ticks (the last error is in last_error)", attempts);

		toygun_transition(obj, def, TOYGUN_PANIC, toygun_panic_attrs(message),
						  psprintf("panicked after %d failed ticks", attempts));
		toygun_failure_panicked = true;
	}
	else
	{
		double		backoff = (double) toygun_def_retry_backoff_ms(def) * pow(2.0, Min(attempts, 40) - 1);

		obj->has_run_at = true;
		obj->run_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  (int64) Min(backoff, (double) MAX_BACKOFF_MS));
	}
	obj->attempts = attempts;
	obj->last_error = pstrdup(error);
	(void) toygun_save_object(obj, def, obj->step);
	keep_failure(obj, attempts, failure);
	/* a failure the run caused counts on its task type's circuit breaker */
	if (def->breaker != NULL && may_panic)
		toygun_breaker_failed(obj, def);
	return true;
}

/*
 * What last_error says of a tick that ended its worker, and whether it was
 * the run's doing: a crash, a FATAL or the grace period ending it are, even
 * if the server restarted since; a shutdown, the launcher, another
 * process's crash are not, nor a death without a word (SIGKILL) in an
 * earlier life of the server, which may be a power loss or an immediate
 * stop.
 */
static char *
death_message(ToygunInflight *rec, bool restarted, bool *culprit)
{
	*culprit = true;
	switch (rec->how)
	{
		case TOYGUN_ENDED_TIMED_OUT:
			return psprintf("the worker was ended: this tick still ran %d ms after %s (%d ms)",
							toygun_tick_grace_ms,
							rec->timeout_of_type ? "its task type's tick_timeout" : "toygun.tick_timeout",
							rec->timeout_ms);
		case TOYGUN_ENDED_BY_SIGNAL:
			return psprintf("the worker died during this tick: signal %d (%s)",
							rec->detail, pg_strsignal(rec->detail));
		case TOYGUN_ENDED_BY_EXIT:
			if (rec->message[0] != '\0')
				return psprintf("the worker died during this tick: %s (exit code %d)",
								rec->message, rec->detail);
			return psprintf("the worker died during this tick (exit code %d)", rec->detail);
		case TOYGUN_ENDED_BY_SERVER:
			*culprit = false;
			return pstrdup(restarted ? "the server restarted during this tick"
						   : "the worker was stopped by the server during this tick");
		default:
			if (restarted)
			{
				*culprit = false;
				return pstrdup("the server restarted during this tick");
			}
			return pstrdup("the worker died during this tick without a word (killed by SIGKILL, e.g. by the OOM killer, or crashed)");
	}
}

/*
 * Charge one dead tick in a transaction of its own; false if that failed.
 * *culprit says whether the run was charged as the cause of its worker's
 * death (false too when it had changed since, and was not charged).
 */
static bool
charge_one(ToygunInflight *rec, bool restarted, bool *culprit)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		char	   *message;
		ToygunFailure failure;
		bool		charged;

		toygun_begin_work();
		(void) set_config_option("lock_timeout", CHARGE_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		message = death_message(rec, restarted, culprit);
		/* the dead worker's: when its tick began, and when it died if it said */
		failure.error = message;
		failure.started_at = rec->started_at;
		failure.ended_at = rec->ended_at;
		failure.worker_pid = rec->pid;
		/* no tick's limits here: no tenant's code either (contain.c) */
		toygun_bar_tenant_code(true);

		/*
		 * On a Citus node the run is in one of the node's shard groups
		 * (citus.c): charged there, under the group's lock; if no group
		 * here holds it, its shard moved away and it is not charged.
		 */
		if (toygun_citus_round() && !toygun_citus_find_object(rec->kind, &rec->id))
			charged = false;
		else
			charged = toygun_record_failure(rec->kind, &rec->id, &failure, *culprit, true, &rec->version);
		toygun_citus_end_batch(false);
		toygun_bar_tenant_code(false);
		if (!charged)
		{
			*culprit = false;
			ereport(LOG,
					(errmsg("toygun: %s %s was no longer as its dead tick left it, so it is not charged: %s",
							toygun_kind_name(rec->kind), toygun_uuid_text(&rec->id), message)));
		}
		toygun_end_work();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		toygun_bar_tenant_code(false);
		toygun_citus_end_batch(true);
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("toygun: could not yet charge %s %s with the tick that ended its worker: %s",
						toygun_kind_name(rec->kind), toygun_uuid_text(&rec->id), edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	return ok;
}

/*
 * Charge every tick whose worker ended during it, each in a transaction of
 * its own. Returns true while this worker's own slot still holds one (a
 * worker does not overwrite a record that is not charged).
 */
bool
toygun_charge_dead_ticks(int my_slot)
{
	int			n = toygun_inflight_count();
	int			i;

	for (i = 0; i < n; i++)
	{
		ToygunInflight rec;
		bool		restarted;
		bool		culprit = false;
		bool		charged;
		bool		give_up = false;

		if (!toygun_inflight_take(i, &rec, &restarted))
			continue;
		charged = charge_one(&rec, restarted, &culprit);
		if (!charged && toygun_inflight_charge_failed(i) >= CHARGE_TRIES)
		{
			ereport(LOG,
					(errmsg("toygun: gave up charging %s %s with the tick that ended its worker, after %d tries",
							toygun_kind_name(rec.kind), toygun_uuid_text(&rec.id), CHARGE_TRIES)));
			give_up = true;
		}
		toygun_inflight_done(i, &rec, charged, culprit, give_up);
	}
	toygun_inflight_settle_pending();
	return toygun_inflight_pending(my_slot);
}
