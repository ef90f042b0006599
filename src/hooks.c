/*
 * hooks.c
 *		A type's hooks (should_start, should_stop): functions of its owner
 *		that toygun consults, called as a handler is (as the owner,
 *		security-restricted, with the owner's search_path), with an error
 *		context naming the hook, the type and the object. Where they are
 *		consulted is the caller's business: the start of a run (commands.c),
 *		the tick (tick.c).
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "toygun.h"

typedef struct HookContext
{
	const char *hook;
	ToygunDef  *def;
	const char *object;			/* "resource <id>", "task <id>" */
} HookContext;

static void
hook_error_context(void *arg)
{
	HookContext *hc = (HookContext *) arg;

	errcontext("toygun %s hook of %s for %s", hc->hook, toygun_def_label(hc->def), hc->object);
}

/*
 * Call hook (a name toygun_def_hook() knows) of def with nargs arguments,
 * as def's owner, on the object named by object. NULL reads as false.
 */
static bool
call_hook(ToygunDef *def, const char *hook, const char *object, int nargs, Datum *args)
{
	ErrorContextCallback errcb;
	HookContext hc;
	FmgrInfo   *flinfo;
	LOCAL_FCINFO(fcinfo, 2);
	ToygunCall	call;
	Datum		result;
	int			i;

	hc.hook = hook;
	hc.def = def;
	hc.object = object;
	errcb.callback = hook_error_context;
	errcb.arg = &hc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	flinfo = toygun_def_hook(def, hook);
	InitFunctionCallInfoData(*fcinfo, flinfo, nargs, InvalidOid, NULL, NULL);
	for (i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = false;
	}
	toygun_begin_handler_call(&call, def);
	result = FunctionCallInvoke(fcinfo);
	toygun_end_handler_call(&call);

	error_context_stack = errcb.previous;
	return !fcinfo->isnull && DatumGetBool(result);
}

/*
 * should_start(resource, args) of a task type that has one: may a run of it
 * start on the resource (its row, as locked by the start) with args?
 */
bool
toygun_should_start(ToygunDef *def, Datum resource_row, pg_uuid_t *resource_id, Jsonb *args)
{
	Datum		hook_args[2];

	hook_args[0] = resource_row;
	hook_args[1] = JsonbPGetDatum(args);
	return call_hook(def, "should_start", psprintf("resource %s", toygun_uuid_text(resource_id)),
					 2, hook_args);
}

/*
 * should_stop(run) of a task type that has one: must the locked run stop
 * now, before its tick? It sees the run as its handler would.
 */
bool
toygun_should_stop(ToygunObject *obj, ToygunDef *def)
{
	Datum		hook_args[1];

	hook_args[0] = toygun_object_row(obj);
	return call_hook(def, "should_stop", psprintf("task %s", toygun_uuid_text(&obj->id)),
					 1, hook_args);
}

