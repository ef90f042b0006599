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
#include "utils/jsonb.h"
#include "utils/uuid.h"

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
	Oid			owner;			/* handlers run as this role */
	char	   *search_path;	/* and with this search_path */
} ToygunDef;

/* A transition made in memory, written when the object is saved. */
typedef struct ToygunStep
{
	char	   *from_state;
	char	   *to_state;
	char	   *note;
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
	char	   *resource_state; /* tasks: the owning resource's state */

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
extern int	toygun_poll_interval_ms;

/* util.c: running API calls as the extension's owner */
typedef struct ToygunCall
{
	Oid			caller;
	Oid			save_userid;
	int			save_sec_context;
	int			guc_nestlevel;
} ToygunCall;

extern void toygun_begin_call(ToygunCall *call);
extern void toygun_end_call(ToygunCall *call);
extern SPIPlanPtr toygun_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern int	toygun_run(SPIPlanPtr plan, Datum *values, const char *nulls, long count);

/* util.c: checks and conversions */
extern char *toygun_check_name(const char *what, text *name);
extern void toygun_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char **toygun_text_array(ArrayType *arr, const char *what, int *n);
extern Datum toygun_cstring_array(char **items, int n);
extern bool toygun_in_list(const char *s, char **list, int n);
extern const char *toygun_kind_name(ToygunKind kind);
extern const char *toygun_def_label(ToygunDef *def);
extern const char *toygun_uuid_text(pg_uuid_t *id);
extern pg_uuid_t *toygun_new_uuid(void);
extern char *toygun_role_name(Oid role);
extern void toygun_check_acting_for(ToygunDef *def, Oid caller);
extern void toygun_check_object_attrs(const char *what, Jsonb *attrs);
extern Oid	toygun_type_oid(const char *typname);

/* define.c */
extern ToygunDef *toygun_find_def(ToygunKind kind, const char *resource_type,
								  const char *name, bool missing_ok);

/* object.c */
extern ToygunObject *toygun_lock_object(ToygunKind kind, pg_uuid_t *id, bool missing_ok, bool skip_locked);
extern ToygunDef *toygun_object_def(ToygunObject *obj);
extern bool toygun_state_declared(ToygunDef *def, const char *state);
extern void toygun_transition(ToygunObject *obj, ToygunDef *def, const char *to_state,
							  Jsonb *attrs, const char *note);
extern void toygun_merge_attrs(ToygunObject *obj, ToygunDef *def, Jsonb *attrs);
extern Jsonb *toygun_start_args(ToygunDef *def, Jsonb *args);
extern Datum toygun_save_object(ToygunObject *obj, ToygunDef *def, int64 expected_step);
extern Datum toygun_object_row(ToygunObject *obj);
extern Jsonb *toygun_panic_attrs(const char *message);

/* toygun.c */
extern void toygun_note_due(void);

/* outcome.c */
extern void toygun_read_next(Datum next, ToygunNext *out);

/* tick.c */
extern Datum toygun_tick(ToygunObject *obj, ToygunDef *def);

#endif							/* TOYGUN_H */
