/*
 * rate.c
 *		Rate limits (issue 17, flow control): define_rate_limit,
 *		drop_rate_limit, take_token and rate_limit_status, and the token a
 *		tick of a rate-limited task type takes.
 *
 *		A limit's definition is a row of toygun.rate_limit; its bucket is a
 *		slot in shared memory, found by name: a GCRA (generic cell rate
 *		algorithm) on one atomic word, tat, the theoretical arrival time in
 *		nanoseconds since 2000. With the emission interval T = per / rate and
 *		the tolerance tau = burst * T, a take of weight w computes new =
 *		max(tat, now) + w * T; it succeeds if new - now <= tau, by a
 *		compare-and-swap of tat to new, and takes no lock. A slot that is
 *		new has tat 0, a full bucket: after a restart the buckets start full.
 *		A token taken is spent even if its transaction rolls back.
 *
 *		Each backend keeps a local cache of the definitions it read (T, tau,
 *		the owner) and of its slots. A committed define or drop bumps a
 *		shared epoch, which every take reads: a cache of another epoch is
 *		read again (one SPI read). The commit of a redefinition keeps the
 *		bucket's debt (tat), clamped to now + tau; a drop frees its slot.
 *
 *		A run of a rate-limited type that finds no token is held: its run_at
 *		moves to when a token exists, and at least one T past the last run
 *		held (the slot's horizon), so that held runs come due one T apart
 *		rather than all at once. A slot that is full with no held run left
 *		holds nothing worth keeping: when every slot is taken, those are
 *		freed.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_define_rate_limit);
PG_FUNCTION_INFO_V1(toygun_drop_rate_limit);
PG_FUNCTION_INFO_V1(toygun_take_token);
PG_FUNCTION_INFO_V1(toygun_rate_limit_status);

/* The most limits toygun.rate_limit holds; slots to spare for stale ones. */
#define MAX_RATE_LIMITS 1024
#define RATE_SLOTS (2 * MAX_RATE_LIMITS)
#define RATE_SHMEM "toygun rate limits"

#define NS_PER_US INT64CONST(1000)
/* the longest per: a year (a month is 30 days, as interval comparison says) */
#define MAX_PER_NS ((double) 365 * SECS_PER_DAY * 1000000000.0)
/* the shortest emission interval: a microsecond */
#define MIN_T_NS 1000.0
/*
 * The longest tolerance (burst * per / rate): a hundred years. tat and the
 * sums of the GCRA are nanoseconds in 64 bits; past this they could wrap.
 */
#define MAX_TAU_NS ((double) 100 * 365 * SECS_PER_DAY * 1000000000.0)

typedef struct RateSlot
{
	char		name[TOYGUN_NAME_MAX + 1];	/* "" when free; under the lock */
	pg_atomic_uint32 generation;	/* bumped when it is freed */
	pg_atomic_uint64 tat;		/* ns since 2000; 0: full */
	pg_atomic_uint64 horizon;	/* ns since 2000: the last held run's run_at */
} RateSlot;

typedef struct RateShared
{
	LWLock	   *lock;			/* slots' names; taking a token takes none */
	pg_atomic_uint64 epoch;		/* bumped by every committed define and drop */
	RateSlot	slots[RATE_SLOTS];
} RateShared;

static RateShared *rates = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A definition as this backend read it, and its slot. */
typedef struct RateLocal
{
	char		name[TOYGUN_NAME_MAX + 1];	/* the key */
	uint64		epoch;			/* shared epoch when read */
	uint64		local_epoch;	/* local_epoch when read */
	int32		rate;
	int32		burst;
	Interval	per;
	uint64		t_ns;			/* emission interval */
	uint64		tau_ns;			/* tolerance: burst * t_ns */
	Oid			owner;
	int			slot;			/* -1: none yet */
	uint32		generation;		/* the slot's when attached */
	bool		mine;			/* the row is this transaction's own write */
} RateLocal;

static HTAB *local_cache = NULL;
/* bumped by this backend's defines and drops, and at the end of their transaction */
static uint64 local_epoch = 0;

/* Defines and drops of this transaction, applied to shared memory at commit. */
typedef struct RatePending
{
	char		name[TOYGUN_NAME_MAX + 1];
	bool		drop;
	bool		created;		/* a define that inserted the row */
	uint64		tau_ns;
	int			nest_level;
} RatePending;

static List *pending = NIL;
static bool touched = false;

/*
 * Slots this transaction attached for a limit whose row it wrote itself (a
 * define not committed yet): freed if it rolls back (or the subtransaction
 * that attached them does), or rolled-back defines would fill shared memory.
 */
typedef struct RateFresh
{
	int			slot;
	uint32		generation;
	int			nest_level;
} RateFresh;

static List *fresh = NIL;

static SPIPlanPtr read_plan;
static SPIPlanPtr owner_plan;
static SPIPlanPtr count_plan;
static SPIPlanPtr upsert_plan;
static SPIPlanPtr delete_plan;
static SPIPlanPtr named_plan;
static SPIPlanPtr use_plan;
static SPIPlanPtr status_plan;

/* shared memory */

static Size
rates_size(void)
{
	return sizeof(RateShared);
}

static void
rate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rates_size());
	RequestNamedLWLockTranche(RATE_SHMEM, 1);
}

static void
rate_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rates = ShmemInitStruct(RATE_SHMEM, rates_size(), &found);
	if (!found)
	{
		/* after a start or a crash: every bucket full */
		memset(rates, 0, rates_size());
		rates->lock = &(GetNamedLWLockTranche(RATE_SHMEM))->lock;
		pg_atomic_init_u64(&rates->epoch, 1);
		for (int i = 0; i < RATE_SLOTS; i++)
		{
			pg_atomic_init_u32(&rates->slots[i].generation, 0);
			pg_atomic_init_u64(&rates->slots[i].tat, 0);
			pg_atomic_init_u64(&rates->slots[i].horizon, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

static uint64
now_ns(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now > 0 ? (uint64) now * NS_PER_US : 0;
}

static TimestampTz
ns_timestamp(uint64 ns)
{
	return (TimestampTz) (ns / NS_PER_US);
}

static uint32
name_hash(const char *name)
{
	return hash_bytes((const unsigned char *) name, strlen(name));
}

/* The slot of name, or -1; under the lock. */
static int
find_slot(const char *name)
{
	uint32		h = name_hash(name) % RATE_SLOTS;

	for (int i = 0; i < RATE_SLOTS; i++)
	{
		int			s = (h + i) % RATE_SLOTS;

		if (rates->slots[s].name[0] != '\0' && strcmp(rates->slots[s].name, name) == 0)
			return s;
	}
	return -1;
}

static void
free_slot(RateSlot *slot)
{
	slot->name[0] = '\0';
	pg_atomic_fetch_add_u32(&slot->generation, 1);
	pg_atomic_write_u64(&slot->tat, 0);
	pg_atomic_write_u64(&slot->horizon, 0);
}

/*
 * The slot of name, made if it has none (under the exclusive lock). With
 * every slot taken, those that are full and hold no run are freed first:
 * a new slot would be the same.
 */
static int
attach_slot(const char *name, uint32 *generation, bool *created)
{
	uint32		h;
	int			s;

	LWLockAcquire(rates->lock, LW_SHARED);
	s = find_slot(name);
	*created = false;
	if (s >= 0)
		*generation = pg_atomic_read_u32(&rates->slots[s].generation);
	LWLockRelease(rates->lock);
	if (s >= 0)
		return s;

	LWLockAcquire(rates->lock, LW_EXCLUSIVE);
	s = find_slot(name);
	for (int pass = 0; s < 0 && pass < 2; pass++)
	{
		h = name_hash(name) % RATE_SLOTS;
		for (int i = 0; i < RATE_SLOTS; i++)
		{
			int			c = (h + i) % RATE_SLOTS;

			if (rates->slots[c].name[0] == '\0')
			{
				s = c;
				pg_atomic_write_u64(&rates->slots[s].tat, 0);
				pg_atomic_write_u64(&rates->slots[s].horizon, 0);
				strlcpy(rates->slots[s].name, name, sizeof(rates->slots[s].name));
				*created = true;
				break;
			}
		}
		if (s < 0 && pass == 0)
		{
			uint64		now = now_ns();

			for (int i = 0; i < RATE_SLOTS; i++)
				if (pg_atomic_read_u64(&rates->slots[i].tat) <= now &&
					pg_atomic_read_u64(&rates->slots[i].horizon) <= now)
					free_slot(&rates->slots[i]);
		}
	}
	if (s >= 0)
		*generation = pg_atomic_read_u32(&rates->slots[s].generation);
	LWLockRelease(rates->lock);
	if (s < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("no room in shared memory for the bucket of rate limit \"%s\"", name),
				 errdetail("All %d buckets hold tokens taken or runs held.", RATE_SLOTS),
				 errhint("Drop rate limits no longer used, or try again once their buckets are full.")));
	return s;
}

/* Free the slots of fresh attached at nest level min_level or deeper. */
static void
free_fresh(int min_level)
{
	ListCell   *lc;

	if (fresh == NIL)
		return;
	if (rates != NULL)
	{
		LWLockAcquire(rates->lock, LW_EXCLUSIVE);
		foreach(lc, fresh)
		{
			RateFresh  *f = lfirst(lc);

			if (f->nest_level >= min_level &&
				pg_atomic_read_u32(&rates->slots[f->slot].generation) == f->generation)
				free_slot(&rates->slots[f->slot]);
		}
		LWLockRelease(rates->lock);
	}
	foreach(lc, fresh)
		if (((RateFresh *) lfirst(lc))->nest_level >= min_level)
			fresh = foreach_delete_current(fresh, lc);
}

static bool
xact_ends_event(XactEvent event)
{
	return event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT;
}

/* end of transaction: defines and drops reach shared memory at commit */

static void
rate_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		free_fresh(0);
	if (xact_ends_event(event))
		fresh = NIL;
	if (!touched)
		return;
	if (event == XACT_EVENT_COMMIT && rates != NULL && pending != NIL)
	{
		uint64		now = now_ns();

		LWLockAcquire(rates->lock, LW_EXCLUSIVE);
		foreach(lc, pending)
		{
			RatePending *p = lfirst(lc);
			int			s = find_slot(p->name);

			if (s < 0)
				continue;
			if (p->drop)
				free_slot(&rates->slots[s]);
			else
			{
				/* a redefinition keeps the debt, up to the new tolerance */
				uint64		tat = pg_atomic_read_u64(&rates->slots[s].tat);

				while (tat > now + p->tau_ns &&
					   !pg_atomic_compare_exchange_u64(&rates->slots[s].tat, &tat, now + p->tau_ns))
					;
			}
		}
		pg_atomic_fetch_add_u64(&rates->epoch, 1);
		LWLockRelease(rates->lock);
	}
	else if (event == XACT_EVENT_PREPARE && rates != NULL && pending != NIL)
		pg_atomic_fetch_add_u64(&rates->epoch, 1);
	if (xact_ends_event(event))
	{
		/* what this backend read in the transaction may be gone */
		local_epoch++;
		pending = NIL;
		touched = false;
	}
}

static void
rate_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
		free_fresh(level);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		foreach(lc, fresh)
		{
			RateFresh  *f = lfirst(lc);

			if (f->nest_level >= level)
				f->nest_level = level - 1;
		}
	if (pending == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending)
			if (((RatePending *) lfirst(lc))->nest_level >= level)
				pending = foreach_delete_current(pending, lc);
		local_epoch++;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		foreach(lc, pending)
		{
			RatePending *p = lfirst(lc);

			if (p->nest_level >= level)
				p->nest_level = level - 1;
		}
}

static void
note_pending(const char *name, bool drop, bool created, uint64 tau_ns)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	RatePending *p = palloc0(sizeof(RatePending));

	strlcpy(p->name, name, sizeof(p->name));
	p->drop = drop;
	p->created = created;
	p->tau_ns = tau_ns;
	p->nest_level = GetCurrentTransactionNestLevel();
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
	touched = true;
	local_epoch++;
}

/* From _PG_init: the end-of-transaction work, and shared memory when preloaded. */
void
toygun_rate_init(bool preloaded)
{
	RegisterXactCallback(rate_xact_callback, NULL);
	RegisterSubXactCallback(rate_subxact_callback, NULL);
	if (!preloaded)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rate_shmem_startup;
}

/* definitions */

static double
interval_ns(Interval *iv)
{
	return (((double) iv->month * DAYS_PER_MONTH + iv->day) * SECS_PER_DAY) * 1000000000.0 +
		(double) iv->time * 1000.0;
}

static void
derive(RateLocal *r)
{
	double		t = interval_ns(&r->per) / r->rate;

	r->t_ns = (uint64) Min(Max(t, MIN_T_NS), MAX_TAU_NS);
	/* in doubles, then capped: a row written by hand must not wrap the sums */
	r->tau_ns = (uint64) Min((double) r->t_ns * r->burst, MAX_TAU_NS);
}

static bool
local_valid(RateLocal *r)
{
	return r->epoch == pg_atomic_read_u64(&rates->epoch) && r->local_epoch == local_epoch &&
		r->slot >= 0 && pg_atomic_read_u32(&rates->slots[r->slot].generation) == r->generation;
}

/*
 * r's slot, attached; one made for a row this transaction wrote is noted,
 * to be freed if the define rolls back.
 */
static void
attach(RateLocal *r, bool mine)
{
	bool		created;

	r->slot = attach_slot(r->name, &r->generation, &created);
	if (created && mine)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		RateFresh  *f = palloc(sizeof(RateFresh));

		ListCell   *lc;

		f->slot = r->slot;
		f->generation = r->generation;
		/*
		 * Freed with the define that made the limit: a take in a savepoint
		 * rolled back stays spent, and so does one of a limit redefined.
		 */
		f->nest_level = INT_MAX;
		foreach(lc, pending)
		{
			RatePending *p = lfirst(lc);

			if (p->created && strcmp(p->name, r->name) == 0)
				f->nest_level = Min(f->nest_level, p->nest_level);
		}
		if (f->nest_level == INT_MAX)
		{
			pfree(f);
			MemoryContextSwitchTo(old);
			return;
		}
		fresh = lappend(fresh, f);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The definition of a limit, as this transaction sees it, with its slot:
 * from the local cache while no define or drop committed since it was read,
 * else read again (SPI connected). Unknown: 42704, or NULL if missing_ok.
 */
static RateLocal *
rate_lookup(const char *name, bool missing_ok)
{
	RateLocal  *r;
	bool		found;
	uint64		epoch;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (local_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = TOYGUN_NAME_MAX + 1;
		ctl.entrysize = sizeof(RateLocal);
		local_cache = hash_create("toygun rate limits", 16, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	r = hash_search(local_cache, name, HASH_ENTER, &found);
	if (!found)
		r->epoch = 0;			/* never valid (the shared one starts at 1) until read */
	if (found && r->epoch == pg_atomic_read_u64(&rates->epoch) && r->local_epoch == local_epoch)
	{
		if (!local_valid(r))
			attach(r, r->mine);
		return r;
	}
	/* read after the epoch: a define committed meanwhile is read again next time */
	epoch = pg_atomic_read_u64(&rates->epoch);
	values[0] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&read_plan,
						   "SELECT rate, per, burst, owner::pg_catalog.oid, xmin FROM ONLY toygun.rate_limit"
						   " WHERE name = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
	{
		hash_search(local_cache, name, HASH_REMOVE, NULL);
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rate limit \"%s\" does not exist", name),
				 errhint("Define it with toygun.define_rate_limit().")));
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	r->rate = Max(DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull)), 1);
	r->per = *DatumGetIntervalP(SPI_getbinval(tup, desc, 2, &isnull));
	r->burst = Max(DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull)), 1);
	r->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	/* a row this transaction wrote: its define may yet roll back */
	r->mine = TransactionIdIsCurrentTransactionId(DatumGetTransactionId(SPI_getbinval(tup, desc, 5, &isnull)));
	derive(r);
	r->epoch = epoch;
	r->local_epoch = local_epoch;
	/* read in the transaction's snapshot: good for this transaction only */
	if (IsolationUsesXactSnapshot())
		touched = true;
	attach(r, r->mine);
	return r;
}

/*
 * Take weight tokens of r's bucket now: true, or false with *wait_ns, the
 * time until they exist. Lock-free: a compare-and-swap of tat.
 */
static bool
gcra_take(RateLocal *r, int weight, uint64 now, uint64 *wait_ns)
{
	RateSlot   *slot = &rates->slots[r->slot];
	uint64		tat = pg_atomic_read_u64(&slot->tat);

	for (;;)
	{
		uint64		next = Max(tat, now) + (uint64) weight * r->t_ns;

		if (next - now > r->tau_ns)
		{
			*wait_ns = next - r->tau_ns - now;
			return false;
		}
		if (pg_atomic_compare_exchange_u64(&slot->tat, &tat, next))
			return true;
	}
}

/* Whole tokens a take could have now. */
static int
tokens_now(RateLocal *r, uint64 tat, uint64 now)
{
	uint64		debt = tat > now ? tat - now : 0;

	if (debt >= r->tau_ns)
		return 0;
	return (int) Min((r->tau_ns - debt) / r->t_ns, (uint64) r->burst);
}

static void
require_owner_privileges(const char *name, Oid owner, Oid role, const char *what)
{
	if (!has_privs_of_role(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not %s rate limit \"%s\"", toygun_role_name(role), what, name),
				 errdetail("Rate limit \"%s\" is owned by role \"%s\".", name, toygun_role_name(owner)),
				 errhint("Ask role \"%s\" to grant you its privileges, or use a rate limit of your own.",
						 toygun_role_name(owner))));
}

/* The owner of limit name, or InvalidOid if there is none (SPI connected). */
static Oid
limit_owner(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&owner_plan,
						   "SELECT owner::pg_catalog.oid FROM ONLY toygun.rate_limit WHERE name = $1",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		return InvalidOid;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* A write that left the row alone: another role defined the limit meanwhile. */
static void
check_written(const char *name, Oid caller, const char *what)
{
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not %s rate limit \"%s\"", toygun_role_name(caller), what, name),
				 errdetail("Another role defined it concurrently."),
				 errhint("Use a rate limit of your own.")));
}

static char *
check_limit_name(FunctionCallInfo fcinfo, int argno)
{
	toygun_check_not_null(fcinfo, argno, "name");
	return toygun_check_name("rate limit name", PG_GETARG_TEXT_PP(argno));
}

/* toygun.define_rate_limit(name, rate, per, burst DEFAULT NULL): burst NULL is rate. */
Datum
toygun_define_rate_limit(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *name = check_limit_name(fcinfo, 0);
	RateLocal	def;
	double		per_ns;
	Oid			argtypes[6] = {TEXTOID, INT4OID, INTERVALOID, INT4OID, OIDOID, OIDARRAYOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			owner;

	toygun_check_not_null(fcinfo, 1, "rate");
	toygun_check_not_null(fcinfo, 2, "per");
	memset(&def, 0, sizeof(def));
	def.rate = PG_GETARG_INT32(1);
	def.per = *PG_GETARG_INTERVAL_P(2);
	def.burst = PG_ARGISNULL(3) ? def.rate : PG_GETARG_INT32(3);
	if (def.rate < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate of rate limit \"%s\" must be at least 1", name),
				 errdetail("It is %d.", def.rate),
				 errhint("Give rate as the tokens let through per interval per.")));
	if (def.burst < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("burst of rate limit \"%s\" must be at least 1", name),
				 errdetail("It is %d.", def.burst),
				 errhint("Give burst as the most tokens taken at once, or NULL for rate.")));
	per_ns = interval_ns(&def.per);
	if (!(per_ns > 0) || per_ns > MAX_PER_NS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per of rate limit \"%s\" must be above zero and at most a year", name),
				 errhint("Give per as an interval such as '1 second' or '1 hour'.")));
	if (per_ns / def.rate < MIN_T_NS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate of rate limit \"%s\" is too high: per / rate must be at least a microsecond", name),
				 errdetail("%d tokens per %s is one every %.3f ns.", def.rate,
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&def.per))),
						   per_ns / def.rate),
				 errhint("Give a lower rate, or a longer per.")));
	if (per_ns / def.rate * def.burst > MAX_TAU_NS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("burst of rate limit \"%s\" is too large for its rate: burst * per / rate must be at most 100 years", name),
				 errdetail("A burst of %d at %d per %s takes %.0f years to fill.", def.burst, def.rate,
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&def.per))),
						   per_ns / def.rate * def.burst / (365.0 * SECS_PER_DAY * 1e9)),
				 errhint("Give a lower burst, or a higher rate.")));
	derive(&def);

	toygun_begin_call(&call);
	values[0] = CStringGetTextDatum(name);
	/* checked before the row is locked: a stranger holds no lock on another's limit */
	owner = limit_owner(name);
	if (OidIsValid(owner))
	{
		require_owner_privileges(name, owner, call.caller, "redefine");
		toygun_refuse_on_citus("define_rate_limit of an existing rate limit",
							   "Each node keeps its limits' buckets and cached definitions in its own memory, which only a change made on that node resets; a change made on the coordinator reaches the other nodes' rows, not their buckets (doc/citus.md, section 9).");
	}
	else
	{
		toygun_run(toygun_plan(&count_plan, "SELECT FROM ONLY toygun.rate_limit", 0, NULL),
				   NULL, NULL, MAX_RATE_LIMITS);
		if (SPI_processed >= MAX_RATE_LIMITS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many rate limits to define rate limit \"%s\"", name),
					 errdetail("There are %d; the limit is %d.", MAX_RATE_LIMITS, MAX_RATE_LIMITS),
					 errhint("Drop rate limits no longer used with toygun.drop_rate_limit().")));
	}
	values[1] = Int32GetDatum(def.rate);
	values[2] = IntervalPGetDatum(&def.per);
	values[3] = Int32GetDatum(def.burst);
	values[4] = ObjectIdGetDatum(call.caller);
	values[5] = toygun_usable_roles(call.caller, &nulls[5]);
	toygun_refuse_role_on_citus(call.caller, psprintf("rate limit \"%s\"", name));

	/*
	 * A row another role made meanwhile is left as it is: refused below. No
	 * function call in DO UPDATE (Citus refuses it on a reference table):
	 * defined_at is the default's now(), the owner one of the caller's roles.
	 */
	toygun_run(toygun_plan(&upsert_plan,
						   "INSERT INTO toygun.rate_limit AS l (name, rate, per, burst, owner)"
						   " VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole)"
						   " ON CONFLICT (name) DO UPDATE SET rate = excluded.rate, per = excluded.per,"
						   "  burst = excluded.burst, defined_at = excluded.defined_at"
						   " WHERE $6 IS NULL OR l.owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($6)"
						   " RETURNING l.xmax = 0",
						   6, argtypes),
			   values, nulls, 0);
	check_written(name, call.caller, "redefine");
	{
		bool		isnull;

		note_pending(name, false,
					 DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
					 def.tau_ns);
	}
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* toygun.drop_rate_limit(name): refused while a task type names it. */
Datum
toygun_drop_rate_limit(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *name = check_limit_name(fcinfo, 0);
	Oid			argtypes[2] = {TEXTOID, OIDARRAYOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Oid			owner;
	char	   *types;

	toygun_begin_call(&call);
	values[0] = CStringGetTextDatum(name);
	owner = limit_owner(name);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rate limit \"%s\" does not exist", name),
				 errhint("toygun.rate_limit_status() lists the rate limits you own.")));
	require_owner_privileges(name, owner, call.caller, "drop");
	toygun_refuse_on_citus("drop_rate_limit", "Each node keeps its limits' buckets and cached definitions in its own memory, which only a change made on that node resets; a change made on the coordinator reaches the other nodes' rows, not their buckets (doc/citus.md, section 9).");
	/* the owner one of the caller's roles, as in define_rate_limit's upsert */
	values[1] = toygun_usable_roles(call.caller, &nulls[1]);
	toygun_run(toygun_plan(&delete_plan,
						   "DELETE FROM ONLY toygun.rate_limit WHERE name = $1"
						   "   AND ($2 IS NULL OR owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($2))",
						   2, argtypes),
			   values, nulls, 0);
	check_written(name, call.caller, "drop");
	/* after the delete's row lock: a define_task naming it committed meanwhile is seen */
	toygun_run(toygun_plan(&named_plan,
						   "SELECT pg_catalog.string_agg(pg_catalog.format('%s.%s', resource_type, name), ', '"
						   "                             ORDER BY resource_type, name)"
						   "  FROM ONLY toygun.task_type WHERE rate_limit = $1",
						   1, argtypes),
			   values, NULL, 1);
	types = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (types != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("rate limit \"%s\" is used by task types", name),
				 errdetail("Task types naming it: %s.", types),
				 errhint("Define those task types again without rate_limit, then drop it.")));
	note_pending(name, true, false, 0);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* The cached definition of name, read in a call of our own on a miss. */
static RateLocal *
lookup_in_call(const char *name)
{
	RateLocal  *r;

	if (local_cache != NULL)
	{
		r = hash_search(local_cache, name, HASH_FIND, NULL);
		if (r != NULL && local_valid(r))
			return r;
	}
	{
		ToygunCall	call;

		toygun_begin_call(&call);
		r = rate_lookup(name, false);
		toygun_end_call(&call);
	}
	return r;
}

/* toygun.take_token(name, weight DEFAULT 1): true if weight tokens were taken. */
Datum
toygun_take_token(PG_FUNCTION_ARGS)
{
	char	   *name = check_limit_name(fcinfo, 0);
	Oid			caller = GetUserId();
	RateLocal  *r;
	int			weight;
	uint64		wait;

	toygun_check_not_null(fcinfo, 1, "weight");
	weight = PG_GETARG_INT32(1);
	if (weight < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight of a take of rate limit \"%s\" must be at least 1", name),
				 errdetail("It is %d.", weight)));
	toygun_require_preload("toygun.take_token()");
	r = lookup_in_call(name);
	require_owner_privileges(name, r->owner, caller, "take tokens of");
	if (weight > r->burst)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight %d is more than the burst of rate limit \"%s\"", weight, name),
				 errdetail("Its burst is %d: a take of %d could never succeed.", r->burst, weight),
				 errhint("Take at most %d tokens at once, or define the limit again with a larger burst.",
						 r->burst)));
	PG_RETURN_BOOL(gcra_take(r, weight, now_ns(), &wait));
}

/*
 * The tick of a run of a rate-limited task type (def->rate) takes one
 * token: true. Without one, false and *until, when the run is due again: in
 * a worker the run is held (tick.c moves its run_at there, as a breaker's
 * hold does: no handler, no attempt, no history row); a tick by hand is
 * refused (55000). SPI is connected.
 */
bool
toygun_rate_check(ToygunObject *obj, ToygunDef *def, bool by_hand, TimestampTz *until)
{
	RateLocal  *r;
	uint64		now,
				wait,
				h,
				at;
	RateSlot   *slot;

	if (rates == NULL)
		toygun_require_preload(psprintf("a tick of %s, which takes tokens of rate limit \"%s\",",
										toygun_def_label(def), def->rate->name));
	r = rate_lookup(def->rate->name, false);
	now = now_ns();
	if (gcra_take(r, 1, now, &wait))
		return true;
	if (by_hand)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rate limit \"%s\" of %s has no token now", def->rate->name, toygun_def_label(def)),
				 errdetail("It lets %d through per %s, %d at once.", r->rate,
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&r->per))),
						   r->burst),
				 errhint("Tick task %s again in %.3f s, after %s.", toygun_uuid_text(&obj->id),
						 (double) wait / 1e9, timestamptz_to_str(ns_timestamp(now + wait)))));

	/*
	 * Held until its token exists, and at least one T after the last run
	 * held: runs held together come due one T apart, not in a herd.
	 */
	slot = &rates->slots[r->slot];
	h = pg_atomic_read_u64(&slot->horizon);
	for (;;)
	{
		/* at > h: a horizon moved meanwhile is read again */
		at = h < now ? now + wait : Max(now + wait, h + r->t_ns);
		if (pg_atomic_compare_exchange_u64(&slot->horizon, &h, at))
			break;
	}
	*until = ns_timestamp(at);
	return false;
}

/*
 * define_task(rate_limit => name): the limit exists (42704), and the task
 * type's owner has the privileges of its owner (42501). Locks its row
 * against a concurrent drop until the define commits. SPI is connected.
 */
void
toygun_rate_check_use(const char *name, Oid type_owner, const char *label)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Oid			owner;

	toygun_check_name_cstr("rate limit name", name);
	values[0] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&use_plan,
						   "SELECT owner::pg_catalog.oid FROM ONLY toygun.rate_limit WHERE name = $1"
						   " FOR KEY SHARE",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rate limit \"%s\" of %s does not exist", name, label),
				 errhint("Define it with toygun.define_rate_limit() first.")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(type_owner, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not use rate limit \"%s\" for %s", toygun_role_name(type_owner),
						name, label),
				 errdetail("Rate limit \"%s\" is owned by role \"%s\"; the task type's owner needs its privileges.",
						   name, toygun_role_name(owner)),
				 errhint("Name a rate limit the task type's owner owns.")));
}

/* toygun.rate_limit_status(): the limits the caller has the owner's privileges of. */
Datum
toygun_rate_limit_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ToygunCall	call;
	uint64		now = now_ns();

	InitMaterializedSRF(fcinfo, 0);
	toygun_begin_call(&call);
	toygun_run(toygun_plan(&status_plan,
						   "SELECT name, rate, per, burst, owner::pg_catalog.oid FROM ONLY toygun.rate_limit"
						   " ORDER BY name",
						   0, NULL),
			   NULL, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, true, true};
		bool		isnull;
		RateLocal	r;
		char	   *name = SPI_getvalue(tup, desc, 1);

		if (!has_privs_of_role(call.caller, DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull))))
			continue;
		memset(&r, 0, sizeof(r));
		r.rate = Max(DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull)), 1);
		r.per = *DatumGetIntervalP(SPI_getbinval(tup, desc, 3, &isnull));
		r.burst = Max(DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull)), 1);
		derive(&r);
		values[0] = CStringGetTextDatum(name);
		values[1] = Int32GetDatum(r.rate);
		values[2] = IntervalPGetDatum(&r.per);
		values[3] = Int32GetDatum(r.burst);
		if (rates != NULL)
		{
			uint64		tat = 0,
						horizon = 0;
			int			s;

			LWLockAcquire(rates->lock, LW_SHARED);
			s = find_slot(name);
			if (s >= 0)
			{
				tat = pg_atomic_read_u64(&rates->slots[s].tat);
				horizon = pg_atomic_read_u64(&rates->slots[s].horizon);
			}
			LWLockRelease(rates->lock);
			values[4] = Int32GetDatum(tokens_now(&r, tat, now));
			nulls[4] = false;
			values[5] = TimestampTzGetDatum(ns_timestamp(horizon));
			nulls[5] = horizon <= now;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	toygun_end_call(&call);
	return (Datum) 0;
}
