/*
 * toygun.h
 *		Declarations shared by toygun's C files: definitions, objects
 *		(resources and tasks), outcomes, settings and helpers.
 */
#ifndef TOYGUN_H
#define TOYGUN_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* priorities (issue 17): a run's, -100..100; TOYGUN_PRIORITY_DEFAULT: its type's */
#define TOYGUN_PRIORITY_MIN (-100)
#define TOYGUN_PRIORITY_MAX 100
#define TOYGUN_PRIORITY_LEVELS (TOYGUN_PRIORITY_MAX - TOYGUN_PRIORITY_MIN + 1)
#define TOYGUN_PRIORITY_DEFAULT PG_INT32_MIN
/* queues (issue 17): ids 0 ('default') to 255 of toygun.queue */
#define TOYGUN_MAX_QUEUES 256

/* Built-in states. */
#define TOYGUN_NEW		"__new__"
#define TOYGUN_STOP		"__stop__"
#define TOYGUN_PANIC	"__panic__"

/* The attr a panic writes. */
#define TOYGUN_PANIC_MESSAGE "panic_message"

/* Longest type, task, state and field name, in bytes. */
#define TOYGUN_NAME_MAX 63

typedef enum ToygunKind
{
	TOYGUN_RESOURCE,
	TOYGUN_TASK
} ToygunKind;

/* A resource type or a task type, as stored by define_resource/define_task. */
typedef struct ToygunDef
{
	ToygunKind	kind;
	char	   *resource_type;
	char	   *name;			/* task name; NULL for a resource type */
	int			nstates;
	char	  **states;			/* declared states, in order */
	char	   *handler;		/* qualified signature, or NULL */
	bool		has_fields;		/* false: any attrs key allowed */
	int			nfields;
	char	  **fields;
	int			nencrypted;
	char	  **encrypted;
	struct ToygunFieldTypes *field_types;	/* NULL: no typed field (fieldtype.c) */
	Oid			owner;			/* handlers run as this role */
	char	   *search_path;	/* and with this search_path */
	char	   *parent_type;	/* resource types: their parents' type, or NULL */
	char	   *alarm_handler;	/* resource types: qualified signature, or NULL */
	bool		alarm_handler_ready;
	FmgrInfo	alarm_handler_fn;
	/* a task type's retry policy; unset: the setting's (see toygun_def_*) */
	int			max_attempts;	/* 0: unset */
	int			retry_backoff_ms;	/* -1: unset */
	int			tick_timeout_ms;	/* 0: unset */
	bool		handler_ready;	/* handler_fn is resolved and checked */
	FmgrInfo	handler_fn;
	/* hooks (task types), qualified signatures or NULL: see hooks.c */
	char	   *should_start;
	char	   *should_stop;
	bool		should_start_ready;
	bool		should_stop_ready;
	FmgrInfo	should_start_fn;
	FmgrInfo	should_stop_fn;
	char	   *stop_state;		/* a first stop moves there; NULL: __stop__ */
	struct ToygunBreaker *breaker;	/* task types: the circuit breaker, or NULL (breaker.c) */
	/* resource types: their triggers, read at the first move (triggers.c); NULL: not yet */
	struct ToygunTriggers *triggers;
	/* schema version of its objects' attrs (1 without one), and the upgrade to it (versions.c) */
	int32		version;
	char	   *upgrade;		/* qualified signature, or NULL: none */
	bool		upgrade_ready;
	FmgrInfo	upgrade_fn;
	/* retention: how long stopped objects and history rows are kept (retention.c) */
	bool		keep_forever;	/* true: forever (keep NULL) */
	Interval	keep;
	/* task types: the priority of runs whose start gives none (issue 17); 0 before 0.4 */
	int16		priority;
	/* the queue whose workers claim its objects (issue 17); 0 before 0.4 */
	int16		queue_id;
	/* task types: the rate limit each tick takes a token of (issue 17, rate.c), or NULL */
	struct ToygunRate *rate;
	/* task types: their concurrency limits (issue 17, flow.c), or NULL */
	struct ToygunFlow *flow;
	/* its ticks' counters in shared memory (issue 18, metrics.c); NULL: not looked up yet */
	struct ToygunMetric *metric;
} ToygunDef;

/* A transition made in memory, written when the object is saved. */
typedef struct ToygunStep
{
	char	   *from_state;
	char	   *to_state;
	char	   *note;
	char	   *reason;			/* given to a move by hand, or NULL */
} ToygunStep;

#define TOYGUN_MAX_STEPS 4

/*
 * A resource or task row, locked FOR UPDATE by this transaction. Changes are
 * made in memory and written together by toygun_save_object().
 */
typedef struct ToygunObject
{
	ToygunKind	kind;
	pg_uuid_t	id;
	Datum		row;			/* the row as read, as a composite datum */
	char	   *state;
	Jsonb	   *attrs;
	int64		step;			/* as stored: the step of the next transition */
	int32		attempts;
	char	   *last_error;
	char	   *type;			/* the resource type */
	pg_uuid_t	resource_id;	/* tasks: the owning resource */
	char	   *name;			/* tasks: the task name */
	char	   *resource_state; /* tasks: the owning resource's state, if read */
	bool		due;			/* run_at <= now() when read */
	TimestampTz due_at;			/* run_at when read; DT_NOEND if NULL */
	ItemPointerData tid;		/* where the row version read is, if known */
	uint64		generation;		/* toygun_store_generation() when read */
	Oid			actor;			/* made_by of its history rows: the user when
								 * read, or the caller of a call by hand */
	int32		version;		/* the schema version its attrs are in (1 before 0.4) */

	/* pending changes */
	int			nsteps;
	ToygunStep	steps[TOYGUN_MAX_STEPS];
	bool		has_run_at;		/* false: run_at follows from the new state */
	TimestampTz run_at;
	bool		run_at_null;
} ToygunObject;

/* What a handler returned. */
typedef enum ToygunNextKind
{
	TOYGUN_NEXT_GO,
	TOYGUN_NEXT_STAY,
	TOYGUN_NEXT_STOP,
	TOYGUN_NEXT_PANIC
} ToygunNextKind;

typedef struct ToygunNext
{
	ToygunNextKind kind;
	char	   *state;
	Jsonb	   *attrs;
	Interval   *wait;
	char	   *message;
} ToygunNext;

/* toygun.c: settings */
extern char *toygun_database_name;
extern int	toygun_workers;
extern int	toygun_batch_size;
extern int	toygun_poll_interval_ms;
extern int	toygun_tick_timeout_ms;
extern int	toygun_tick_grace_ms;
extern int	toygun_worker_memory_kb;
extern int	toygun_max_attempts;
extern int	toygun_retry_backoff_ms;
extern int	toygun_failures_kept;
extern bool toygun_paused;
extern bool toygun_direct_writes;
extern char *toygun_keep;
extern int	toygun_history_partition_s;
extern int	toygun_prune_batch;
extern int	toygun_maintain_interval_ms;
extern char *toygun_queues;

/*
 * queue.c: queues (issue 17). toygun.queues, parsed by its check hook:
 * worker slot n serves the queue whose running count of workers covers n.
 */
extern bool toygun_queues_check(char **newval, void **extra, GucSource source);
extern void toygun_queues_assign(const char *newval, void *extra);
extern int	toygun_queues_workers_total(void);
extern const char *toygun_queue_of_slot(int n);
extern int	toygun_queue_lookup(const char *name, bool *paused);
extern int16 toygun_queue_for_define(Datum name, const char *label);
extern void toygun_check_priority(int priority, const char *label);

/*
 * The retry policy of a definition: its task type's own, or the setting.
 * Inline, since the tick path reads the timeout of every tick.
 */
static inline int
toygun_def_max_attempts(ToygunDef *def)
{
	return def->max_attempts > 0 ? def->max_attempts : toygun_max_attempts;
}

static inline int
toygun_def_retry_backoff_ms(ToygunDef *def)
{
	return def->retry_backoff_ms >= 0 ? def->retry_backoff_ms : toygun_retry_backoff_ms;
}

static inline int
toygun_def_tick_timeout_ms(ToygunDef *def)
{
	return def->tick_timeout_ms > 0 ? def->tick_timeout_ms : toygun_tick_timeout_ms;
}

/*
 * wake.c: shared memory of the launcher and workers, and waking them. A
 * worker slot, as toygun_copy_slots() copies it.
 */
typedef struct ToygunWorkerSlot
{
	pid_t		pid;			/* 0: free */
	Latch	   *latch;
	bool		idle;			/* waiting for work: a waker may claim it */
	TimestampTz started_at;
	int64		ticks;
	int64		failures;
	TimestampTz last_tick_at;
	int64		transactions;	/* committed by this worker */
	int16		queue_id;		/* the queue it claims from (issue 17); -1: none yet */
	int16		batch_level;	/* the lowest priority its batch claimed */
	bool		preempt;		/* a start above batch_level: end the batch early */
} ToygunWorkerSlot;

extern void toygun_shmem_init(void);
extern int	toygun_slot_count(void);
extern pid_t toygun_slot_pid(int n);
extern void toygun_require_preload(const char *what);
extern bool toygun_preloaded(void);
extern void toygun_wake_worker(int queue);
extern void toygun_wake_at_commit(void);
/*
 * Priority levels in use (issue 17): a hint in shared memory of the levels
 * other than 0 that may have scheduled runs. A start at level p notes it at
 * commit; a worker's census (toygun_levels_census) recomputes the set from
 * task_lane_idx. A level missing from the set delays its runs until the
 * next census; a level in it that has none costs one probe.
 */
#define TOYGUN_LEVEL_WORDS ((TOYGUN_PRIORITY_LEVELS + 63) / 64)
typedef struct ToygunLevels
{
	uint64		bits[TOYGUN_LEVEL_WORDS];	/* bit p - TOYGUN_PRIORITY_MIN */
} ToygunLevels;
extern void toygun_levels_note_at_commit(int queue, int priority);
extern bool toygun_levels_read(int queue, ToygunLevels *out);
extern void toygun_levels_census_begin(int queue);
extern void toygun_levels_census_end(int queue, ToygunLevels *found);
/*
 * Queues (issue 17): a worker serves one queue (toygun_set_queue); wakes
 * name the queue (-1: one idle worker of every queue). A queue's paused
 * flag lives in shared memory: unknown until a worker loads it from
 * toygun.queue, then set by pause_queue and resume_queue at commit.
 */
extern void toygun_wake_queue_at_commit(int queue, int priority);
extern void toygun_wake_queue(int queue);
extern void toygun_set_queue(int n, int queue);
extern void toygun_set_batch_level(int n, int level);
extern volatile bool *toygun_preempt_flag(int n);
extern int	toygun_queue_paused(int queue);	/* 1, 0, or -1: unknown */
extern void toygun_queue_paused_load(int queue, bool paused);
extern void toygun_queue_pause_at_commit(int queue, bool paused);
extern void toygun_wake_init(void);
extern void toygun_claim_slot(int n);
extern void toygun_release_slot(int n);
extern void toygun_set_idle(int n, bool idle);
extern void toygun_count_batch(int n, int64 ticks, int64 failures);
extern void toygun_count_transaction(void);
extern void toygun_launcher_attach(void);
extern void toygun_report_extension_missing(void);
extern bool toygun_take_extension_missing(void);
extern ToygunWorkerSlot *toygun_copy_slots(int *n);

/* waits.c: toygun.wait(), and the saves and commits that wake its waiters */
extern void toygun_waits_init(bool preloaded);
extern void toygun_waits_note(pg_uuid_t *id);

/* inflight.c: which run each worker slot is ticking, kept in a mapped file */
typedef enum ToygunEnded
{
	TOYGUN_ENDED_UNKNOWN,		/* no word: SIGKILL, or a crash it could not report */
	TOYGUN_ENDED_BY_EXIT,		/* a FATAL error or an exit; detail is the exit code */
	TOYGUN_ENDED_BY_SIGNAL,		/* a crash; detail is the signal */
	TOYGUN_ENDED_TIMED_OUT,		/* still running after tick_timeout and its grace */
	TOYGUN_ENDED_BY_SERVER		/* a shutdown, a stop by the launcher, or another's crash */
} ToygunEnded;

typedef struct ToygunInflight
{
	uint32		magic;
	volatile uint32 ticking;	/* set after kind and id, cleared first */
	int32		kind;
	pg_uuid_t	id;
	ItemPointerData version;	/* the row version the tick began from */
	Oid			dboid;
	int32		pid;			/* the worker that wrote it */
	int64		lifetime;		/* the life of the server it ran in */
	TimestampTz started_at;		/* when the tick began */
	volatile TimestampTz ended_at;	/* when its worker ended; 0 if it said nothing */
	volatile int32 timeout_ms;	/* TIMED_OUT: the tick's timeout */
	volatile int32 timeout_of_type; /* TIMED_OUT: its task type's, not the setting */
	volatile int32 how;			/* ToygunEnded */
	volatile int32 detail;
	volatile int32 died;		/* ended during a tick; cleared by the launcher */
	volatile int32 recycled;	/* exited on purpose, to be started again at once */
	int32		deaths;			/* deaths in a row in this slot: counted by the launcher,
								 * cleared by a worker that commits a batch */
	char		message[160];	/* the FATAL message that ended it */
} ToygunInflight;

extern void toygun_inflight_init(void);
extern int	toygun_inflight_count(void);
extern bool toygun_inflight_read(int n, ToygunInflight *out);
extern void toygun_inflight_note_exit(int n, int deaths);
extern void toygun_inflight_attach(void);
extern void toygun_inflight_start(int slot, Oid dboid);
extern void toygun_inflight_begin(ToygunKind kind, pg_uuid_t *id, ItemPointer version,
								  TimestampTz started_at);
extern void toygun_inflight_end(void);
extern void toygun_inflight_timed_out(int timeout_ms, bool of_type);
extern void toygun_inflight_recycle(void);
extern void toygun_inflight_worked(void);
extern bool toygun_inflight_pending(int n);
extern bool toygun_inflight_take(int n, ToygunInflight *out, bool *restarted);
extern int	toygun_inflight_charge_failed(int n);
extern void toygun_inflight_done(int n, ToygunInflight *taken, bool charged, bool culprit,
								 bool give_up);
extern void toygun_inflight_forget_charges(void);
extern bool toygun_inflight_is_dead_run(pg_uuid_t *id);
extern bool toygun_inflight_charges_pending(void);
extern void toygun_inflight_settle_pending(void);
extern int64 toygun_inflight_deaths(int n);
extern bool toygun_inflight_this_life(ToygunInflight *rec);

/* failure.c: a failed tick, what it raised or how its worker died */
typedef struct ToygunFailure
{
	const char *error;
	TimestampTz started_at;		/* when the tick began */
	TimestampTz ended_at;		/* when it failed; 0 if unknown (a death without a word) */
	int			worker_pid;		/* the worker that ran it */
} ToygunFailure;

extern bool toygun_record_failure(ToygunKind kind, pg_uuid_t *id, ToygunFailure *failure,
								  bool may_panic, bool wait, ItemPointer version);
extern bool toygun_charge_dead_ticks(int my_slot);

/* contain.c: what a tick may leave behind in a worker, undone before the next */
extern void toygun_contain_start(void);
extern void toygun_contain_begin_tick(void);
extern bool toygun_contain_end_tick(void);
extern void toygun_bar_tenant_code(bool bar);
extern bool toygun_tenant_code_barred(void);

/* launcher.c, worker.c */
extern void toygun_register_launcher(void);
extern PGDLLEXPORT void toygun_launcher_main(Datum arg);
extern PGDLLEXPORT void toygun_worker_main(Datum arg);
extern bool toygun_in_worker;

/* security.c: running as another role, and who may act for whom */
typedef struct ToygunCall
{
	Oid			caller;
	Oid			save_userid;
	int			save_sec_context;
	int			guc_nestlevel;
	struct ToygunShardGroup *citus_group;	/* suspended while user code runs (citus.c) */
} ToygunCall;

extern Oid	toygun_extension_owner(void);
extern void toygun_begin_call(ToygunCall *call);
extern void toygun_end_call(ToygunCall *call);
extern void toygun_begin_handler_call(ToygunCall *call, ToygunDef *def);
extern void toygun_end_handler_call(ToygunCall *call);
extern char *toygun_role_name(Oid role);
extern void toygun_check_acting_for(ToygunDef *def, Oid caller);
extern void toygun_check_task_owner(ToygunDef *rtype, const char *task_label, Oid task_owner);

/* rights.c: rights on a resource type and its task types */
typedef enum ToygunRight
{
	TOYGUN_RIGHT_READ,
	TOYGUN_RIGHT_START,
	TOYGUN_RIGHT_OPERATE,
	TOYGUN_RIGHT_READ_SECRETS,
	/* read, to see error texts: a grant to PUBLIC does not reach them */
	TOYGUN_RIGHT_READ_ERRORS
} ToygunRight;

extern const char *toygun_right_name(ToygunRight right);
extern bool toygun_has_right(ToygunDef *def, Oid caller, ToygunRight right);
extern void toygun_check_right(ToygunDef *def, Oid caller, ToygunRight right);

/* util.c: plans, a worker's unit of work, checks and conversions */
extern SPIPlanPtr toygun_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern int	toygun_run(SPIPlanPtr plan, Datum *values, const char *nulls, long count);
extern pg_uuid_t *toygun_run_ids(SPIPlanPtr plan, pg_uuid_t *arg, uint64 *n);
extern void toygun_begin_work(void);
extern void toygun_end_work(void);

extern void toygun_check_name_cstr(const char *what, const char *s);
extern char *toygun_check_name(const char *what, text *name);
extern void toygun_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char **toygun_text_array(ArrayType *arr, const char *what, int *n);
extern Datum toygun_cstring_array(char **items, int n);
extern bool toygun_in_list(const char *s, char **list, int n);
extern const char *toygun_kind_name(ToygunKind kind);
extern const char *toygun_def_label(ToygunDef *def);
extern const char *toygun_uuid_text(pg_uuid_t *id);
extern pg_uuid_t *toygun_new_uuid(void);
extern bool toygun_has_queues(void);
extern bool toygun_has_column(const char *table, const char *column);
extern void toygun_check_object_attrs(const char *what, Jsonb *attrs);
extern Oid	toygun_type_oid(const char *typname);
extern bool toygun_parse_interval(const char *str, Interval *out);

/* define.c */
extern ToygunDef *toygun_find_def(ToygunKind kind, const char *resource_type,
								  const char *name, bool missing_ok);
extern FmgrInfo *toygun_def_handler(ToygunDef *def);
extern FmgrInfo *toygun_def_hook(ToygunDef *def, const char *hook);
extern FmgrInfo *toygun_def_upgrade(ToygunDef *def);
extern FmgrInfo *toygun_def_alarm_handler(ToygunDef *def);
extern void toygun_define_init(void);
extern void toygun_lock_definition(ToygunKind kind, const char *resource_type, const char *name);
extern void toygun_lock_name_use(ToygunKind kind, const char *resource_type, const char *name,
								 bool rename);
extern void toygun_definitions_changed(ToygunKind kind);
extern Datum toygun_usable_roles(Oid role, char *isnull);
extern int	toygun_run_once(const char *sql, int nargs, Oid *argtypes, Datum *values,
							const char *nulls, long count);
extern bool toygun_definitions_on_citus(void);
extern void toygun_refuse_on_citus(const char *call, const char *why);
extern void toygun_refuse_role_on_citus(Oid role, const char *what);

/* object.c: the object model (commands.c has the SQL functions on objects) */
extern ToygunObject *toygun_lock_object(ToygunKind kind, pg_uuid_t *id, bool missing_ok, bool skip_locked);
extern int	toygun_claim_objects(ToygunKind kind, int queue, int limit, TimestampTz from, ToygunObject **objs);
extern int	toygun_claim_level(int queue, int priority, int limit, TimestampTz from, ToygunObject **objs);
extern void toygun_levels_census(int queue, ToygunLevels *found);
extern bool toygun_next_due(int queue, ToygunLevels *levels, TimestampTz *next);
extern const char *toygun_claim_sql_text(const char *which);
extern int	toygun_flow_keys(int64 from, int64 end, int limit, int64 *keys, TimestampTz *at);
extern int	toygun_claim_flow_key(int64 key, int limit, ToygunObject **objs);
extern ToygunDef *toygun_object_def(ToygunObject *obj);
extern ToygunDef *toygun_locked_def(ToygunObject *obj);
extern ToygunDef *toygun_def_for_caller(ToygunKind kind, pg_uuid_t *id, Oid caller,
										 ToygunRight right, bool missing_ok);
extern bool toygun_state_declared(ToygunDef *def, const char *state);
extern bool toygun_in_stop_state(ToygunObject *obj, ToygunDef *def);
extern Jsonb *toygun_without_nulls(Jsonb *base, Jsonb *attrs);
extern void toygun_restart(ToygunObject *obj, const char *note);
extern void toygun_transition(ToygunObject *obj, ToygunDef *def, const char *to_state,
							  Jsonb *attrs, const char *note);
extern void toygun_merge_attrs(ToygunObject *obj, ToygunDef *def, Jsonb *attrs);
extern Jsonb *toygun_start_args(ToygunDef *def, Jsonb *args);
extern Datum toygun_save_object(ToygunObject *obj, ToygunDef *def, int64 expected_step);
extern Datum toygun_object_row(ToygunObject *obj);
extern Jsonb *toygun_panic_attrs(const char *message);
extern void toygun_object_init(void);

/* store.c */
extern bool toygun_store_update(ToygunObject *obj, ToygunDef *def, Datum run_at, bool run_at_null,
								int64 expected_step, Datum *saved);
extern uint64 toygun_store_generation(void);
extern void toygun_store_init(void);

/* outcome.c */
extern void toygun_read_next(Datum next, ToygunNext *out);

/* hooks.c: a type's hooks, called as its owner */
extern bool toygun_should_start(ToygunDef *def, Datum resource_row, pg_uuid_t *resource_id,
								Jsonb *args);
extern bool toygun_should_stop(ToygunObject *obj, ToygunDef *def);

/* commands.c: a run started, as start_task, periodic starts and triggers start one */
typedef enum ToygunStarted
{
	TOYGUN_STARTED,				/* a new run */
	TOYGUN_START_FOUND_LIVE,	/* the live run, unchanged */
	TOYGUN_START_DECLINED		/* the task type's should_start said no */
} ToygunStarted;

extern ToygunStarted toygun_start_run(pg_uuid_t *resource, const char *name, Jsonb *args,
									  Oid caller, bool error_if_live, bool notice, int priority,
									  pg_uuid_t **id);

/* clock.c: the test clock of ticks by hand (toygun.test_now) */
extern char *toygun_test_now;
extern bool toygun_test_now_check(char **newval, void **extra, GucSource source);
extern void toygun_test_now_assign(const char *newval, void *extra);
extern TimestampTz toygun_clock_now(void);

/* alarms.c: alarms, their escalation, and a panic's alarm */
extern void toygun_alarm_panic_moved(ToygunObject *obj, ToygunStep *step, bool entered);
extern void toygun_alarm_raise(pg_uuid_t *object, const char *kind, const char *message);
extern void toygun_alarm_close(pg_uuid_t *object, const char *kind, const char *reason, Oid actor);

/* breaker.c: a task type's circuit breaker */
extern const char *const toygun_breaker_release_sql;
#define TOYGUN_BREAKER_KIND "breaker"	/* the kind of the alarm an opening raises */
typedef struct ToygunBreaker
{
	int			failures;		/* failed ticks within within open it */
	Interval	within;
	Interval	cooldown;		/* how long it stays open */
} ToygunBreaker;

typedef enum ToygunBreakerCheck
{
	TOYGUN_BREAKER_PASS,		/* closed: tick */
	TOYGUN_BREAKER_TRIAL,		/* half-open, and this run is the trial: tick */
	TOYGUN_BREAKER_CLAIMED,		/* a worker took the trial for this run: commit first */
	TOYGUN_BREAKER_HOLD			/* open, or another run's trial: not ticked until then */
} ToygunBreakerCheck;

extern bool toygun_breaker_parse(Jsonb *j, const char *label, ToygunBreaker *out, bool quiet);
extern char *toygun_breaker_text(ToygunBreaker *b);
extern ToygunBreakerCheck toygun_breaker_check(ToygunObject *obj, ToygunDef *def, bool by_hand,
											   TimestampTz *until);
extern void toygun_breaker_trial_passed(ToygunObject *obj, ToygunDef *def);
extern void toygun_breaker_failed(ToygunObject *obj, ToygunDef *def);
extern void toygun_breaker_dropped(const char *resource_type, const char *task, int queue,
								   int limit_id);

/*
 * rate.c: rate limits (issue 17), token buckets in shared memory. A task
 * type naming one has def->rate; the tick takes a token of it (types
 * without one pay a pointer test).
 */
typedef struct ToygunRate
{
	char	   *name;			/* a toygun.rate_limit's */
} ToygunRate;

extern void toygun_rate_init(bool preloaded);
extern bool toygun_rate_check(ToygunObject *obj, ToygunDef *def, bool by_hand, TimestampTz *until);
extern void toygun_rate_check_use(const char *name, Oid type_owner, const char *label);

/*
 * flow.c: concurrency limits (issue 17). A task type with max_running or
 * max_per_key has def->flow; its runs' slots are locks of the lock manager
 * (types without one pay a pointer test).
 */
#define TOYGUN_ROOT_KEY "$root"
#define TOYGUN_FLOW_MAX_LIMIT 10000 /* the highest max_running and max_per_key */
#define TOYGUN_FLOW_MAX_TYPES 64	/* task types with a limit at once */
typedef struct ToygunFlow
{
	int16		limit_id;		/* 1..TOYGUN_FLOW_MAX_TYPES: its runs' flow_key >> 48 */
	int32		max_running;	/* 0: none */
	int32		max_per_key;	/* 0: none */
	char	   *key;			/* an attrs field, TOYGUN_ROOT_KEY, or NULL: one key */
} ToygunFlow;

extern void toygun_flow_init(void);
extern int64 toygun_flow_key_of(int16 limit_id, const char *key);
extern int64 toygun_flow_key(ToygunDef *def, pg_uuid_t *resource, Jsonb *attrs);
extern bool toygun_flow_parse(FunctionCallInfo fcinfo, int argno, const char *label, char **fields,
							  int nfields, bool has_fields, char **encrypted, int nencrypted,
							  int priority, ToygunFlow *out);
extern void toygun_flow_refuse_priority(const char *label);
extern int16 toygun_flow_assign(const char *resource_type, const char *name, const char *label);
extern void toygun_flow_rekey(const char *resource_type, const char *name, int16 queue_id,
							  bool limited);
extern bool toygun_flow_take(ToygunObject *obj, ToygunDef *def, bool by_hand);
extern bool toygun_flow_limited(int queue);
extern int	toygun_flow_claim(int queue, int budget, ToygunObject **objs);
extern long toygun_flow_sleep_ms(void);
extern bool toygun_flow_batch_held(void);

/* outbox.c: notifications of alarms, by route and channel */
extern void toygun_outbox_alarm(pg_uuid_t *alarm_id, const char *kind, const char *resource_type,
								const char *event);

/*
 * metrics.c: counters of the workers' ticks per type (issue 18), in shared
 * memory: noted per tick in the worker, added to shared memory per batch,
 * to totals and to the last hour's and day's buckets (metrics_series()).
 */
#define TOYGUN_METRIC_BUCKETS 10	/* the tick duration histogram's, +Inf included */
typedef struct ToygunMetric ToygunMetric;
extern int	toygun_metrics_types;
extern void toygun_metrics_init(bool preloaded);
extern ToygunMetric *toygun_metric_of(ToygunDef *def);
extern void toygun_metrics_note(ToygunMetric *m, int64 duration_us, bool failed, bool panicked);
extern void toygun_metrics_flush(void);
extern void toygun_metrics_discard(void);
/* failure.c: set by toygun_record_failure when the failure panicked its object */
extern bool toygun_failure_panicked;

/* tick.c */
/* children.c: waiting for children */
#define TOYGUN_TASK_NATTS 18	/* columns of toygun.task as toygun makes it */
#define TOYGUN_TASK_PARENT_RUN 14	/* its column parent_run */
#define TOYGUN_TASK_FLOW_KEY 18	/* its column flow_key (issue 17) */
extern void toygun_child_ended(ToygunObject *obj);
extern bool toygun_sweep_children(void);
extern bool toygun_is_task(pg_uuid_t *id);
extern bool toygun_ticking_now(pg_uuid_t *id);
extern bool toygun_ticking_top(pg_uuid_t *id);
extern Datum toygun_tick(ToygunObject *obj, ToygunDef *def);
extern bool toygun_tick_commit_now;

/* keyring.c: numbered keys from the file named by toygun.keyring_file */
#define TOYGUN_KEY_BYTES 32
extern char *toygun_keyring_file;
extern void toygun_keyring_assign(const char *newval, void *extra);
extern const unsigned char *toygun_keyring_current(uint32 *number);
extern const unsigned char *toygun_keyring_key(uint32 number);

/* secret.c: toygun.secret, an encrypted jsonb value (a varlena) */
typedef struct varlena ToygunSecret;

/* What a secret is bound to: its domain, and the context bytes. */
#define TOYGUN_CONTEXT_USER		'u' /* toygun.encrypt()'s context text */
#define TOYGUN_CONTEXT_RESOURCE 'r' /* a resource's id and field name */
#define TOYGUN_CONTEXT_TASK		't' /* a task's id and field name */

typedef struct ToygunContext
{
	char		domain;
	const char *data;
	size_t		len;
} ToygunContext;

extern ToygunSecret *toygun_encrypt_value(Jsonb *value, ToygunContext *ctx);
extern Jsonb *toygun_decrypt_value(ToygunSecret *s, ToygunContext *ctx);
extern Jsonb *toygun_decrypt_quietly(ToygunSecret *s, ToygunContext *ctx, const char **why);
extern ToygunSecret *toygun_secret_parse(const char *s, size_t len, const char **problem);
extern ToygunSecret *toygun_secret_from_text(const char *s, size_t len);
extern char *toygun_secret_to_text(ToygunSecret *s);
extern uint32 toygun_secret_key(ToygunSecret *s);

/* field.c: encrypted fields */
#define TOYGUN_SEALED_KEY "$secret"
extern Jsonb *toygun_seal_attrs(ToygunDef *def, pg_uuid_t *id, Jsonb *attrs);
extern void toygun_check_fields(ToygunDef *def, Jsonb *attrs);
extern void toygun_check_stored_args(ToygunDef *def, Jsonb *args, const char *plural,
									 const char *one, const char *table);

/* fieldtype.c: field types, a check on the JSON value of a typed field */
typedef struct ToygunFieldType
{
	char	   *name;
	int			kind;			/* fieldtype.c's FieldKind */
	bool		array;			/* an array of kind */
} ToygunFieldType;

typedef struct ToygunFieldTypes
{
	int			n;
	ToygunFieldType *types;
} ToygunFieldTypes;

extern ToygunFieldTypes *toygun_field_types_parse(Jsonb *j, const char *label, bool quiet);
extern ToygunFieldType *toygun_field_type_of(ToygunFieldTypes *ft, const char *key, int len);
extern void toygun_check_field_type(ToygunDef *def, ToygunFieldType *t, const char *name,
									int namelen, JsonbValue *v, bool encrypted);

/* schedule.c: the schedules of a renamed resource type or task (issue 16) */
extern void toygun_rename_schedules(const char *old_type, const char *new_type,
									const char *old_task, const char *new_task);

/* triggers.c: tasks started when a resource enters a state */
extern void toygun_fire_triggers(ToygunObject *obj, ToygunDef *def);

/* versions.c: schema versions, an object's attrs brought up to its type's version */
extern void toygun_upgrade_object(ToygunObject *obj, ToygunDef *def);

/* retention.c: keep, the history's partitions, and removing what has expired */
extern bool toygun_keep_check(char **newval, void **extra, GucSource source);
extern bool toygun_keep_valid(Interval *keep);
extern TimestampTz toygun_expires_at(ToygunDef *def, TimestampTz at);
extern long toygun_maintain_in_worker(bool idle);

/* redefine.c: safe redefinition (move_states), handlers kept from DROP */
typedef struct ToygunRedefine
{
	bool		active;			/* the objects' table is locked, the states checked */
	int			nmoves;			/* move_states: from[i] moves to to[i] */
	char	  **from;
	char	  **to;
} ToygunRedefine;

extern void toygun_redefine_check(ToygunKind kind, const char *resource_type, const char *name,
								  const char *label, ToygunDef *existing, char **states,
								  int nstates, Jsonb *moves, ToygunRedefine *r);
extern void toygun_redefine_move(ToygunDef *def, ToygunRedefine *r, Oid caller);

/* citus.c: a worker on a Citus node works one local shard group at a time */
typedef struct ToygunShardGroup ToygunShardGroup;
extern PGDLLIMPORT ToygunShardGroup *toygun_citus_group;
extern ToygunShardGroup *toygun_citus_suspend(void);
extern void toygun_citus_unsuspend(ToygunShardGroup *saved);
extern SPIPlanPtr toygun_citus_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern bool toygun_citus_round(void);
extern bool toygun_citus_in_use(void);
extern bool toygun_citus_begin_batch(void);
extern bool toygun_citus_lock_batch_group(void);
extern void toygun_citus_end_batch(bool failed);
extern void toygun_citus_resume(void);
extern int	toygun_citus_ngroups(void);
extern void toygun_citus_use_group(int i);
extern bool toygun_citus_is_batch_group(int i);
extern bool toygun_citus_find_object(ToygunKind kind, pg_uuid_t *id);

/* relcache.c: toygun's one relcache callback slot */
extern void toygun_relcache_init(void);
extern void toygun_on_relcache(void (*f) (Datum arg, Oid relid));

#endif							/* TOYGUN_H */
