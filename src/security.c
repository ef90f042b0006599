/*
 * security.c
 *		The security boundary: every place toygun runs as another role. API
 *		calls run as the extension's owner with a fixed search_path, after
 *		checking that the caller may act for the type's owner; handlers run
 *		as their type's owner, restricted, with its search_path.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "toygun.h"

/* Internal queries run with this search_path; every name in them is qualified. */
#define TOYGUN_INTERNAL_SEARCH_PATH "pg_catalog, pg_temp"

/* The role that owns toygun's tables: the one that created the extension. */
Oid
toygun_extension_owner(void)
{
	Oid			nsp = get_namespace_oid("toygun", false);
	Oid			rel = get_relname_relid("task", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(rel))
		elog(ERROR, "table toygun.task does not exist");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Remember the caller and its role, then run as role with search_path and
 * the given security context flags, settings made from here on saved to be
 * reverted. The (sub)transaction's abort restores both if what runs fails.
 */
static void
become(ToygunCall *call, Oid role, const char *search_path, int flags)
{
	call->caller = GetUserId();
	GetUserIdAndSecContext(&call->save_userid, &call->save_sec_context);
	call->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(role, call->save_sec_context | flags);
}

/*
 * Start an API call: remember the caller (for permission checks), then run
 * as the extension's owner with a fixed search_path, connected to SPI. The
 * user id and settings are restored by toygun_end_call(), or by the
 * (sub)transaction abort if the call fails.
 */
void
toygun_begin_call(ToygunCall *call)
{
	become(call, toygun_extension_owner(), TOYGUN_INTERNAL_SEARCH_PATH, SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
toygun_end_call(ToygunCall *call)
{
	SPI_finish();
	SetUserIdAndSecContext(call->save_userid, call->save_sec_context);
	AtEOXact_GUC(true, call->guc_nestlevel);
}

/*
 * Run a handler as its type's owner, with the owner's search_path, as a
 * security-restricted operation (no temporary objects, no role changes).
 * toygun_end_handler_call() reverts every setting the handler changed, so
 * that one handler cannot affect the next; an error reverts them too.
 */
void
toygun_begin_handler_call(ToygunCall *call, ToygunDef *def)
{
	become(call, def->owner, def->search_path,
		   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	/*
	 * On a Citus node, user code's statements go through Citus, which
	 * routes them to whichever node holds what they address: the rewrite
	 * of toygun's statements for the tick's shard group is not for them.
	 * An error in user code ends with the abort of the subtransaction it
	 * ran in, which makes the group active again (citus.c).
	 */
	call->citus_group = toygun_citus_suspend();
	/* and user code may not write to the shard tables directly, as the worker may */
	if (toygun_citus_in_use())
		(void) set_config_option("citus.enable_manual_changes_to_shards", "off",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
toygun_end_handler_call(ToygunCall *call)
{
	SetUserIdAndSecContext(call->save_userid, call->save_sec_context);
	AtEOXact_GUC(false, call->guc_nestlevel);
	toygun_citus_unsuspend(call->citus_group);
}

char *
toygun_role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("(dropped role %u)", role);
}

/*
 * The caller may act on a type's objects only with the privileges of the
 * role that defined it: its handler runs as that role, with what the caller
 * passes in.
 */
void
toygun_check_acting_for(ToygunDef *def, Oid caller)
{
	if (!has_privs_of_role(caller, def->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", toygun_def_label(def)),
				 errdetail("It is owned by role \"%s\", and its handler runs as that role.",
						   toygun_role_name(def->owner)),
				 errhint("Act as a member of role \"%s\".", toygun_role_name(def->owner))));
}

/*
 * A task type's handler runs as its owner on resources of another type,
 * with what their handler's owner wrote: the task type's owner must still
 * have the privileges of the resource type's owner. Membership granted when
 * the task type was defined may have been revoked since.
 */
void
toygun_check_task_owner(ToygunDef *rtype, const char *task_label, Oid task_owner)
{
	if (!has_privs_of_role(task_owner, rtype->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\", owner of %s, may not act for role \"%s\", owner of %s",
						toygun_role_name(task_owner), task_label,
						toygun_role_name(rtype->owner), toygun_def_label(rtype)),
				 errdetail("A task type's handler runs as its owner on the resources of its resource type, which needs the privileges of the resource type's owner."),
				 errhint("Grant role \"%s\" to role \"%s\", or define the task type again as role \"%s\".",
						 toygun_role_name(rtype->owner), toygun_role_name(task_owner),
						 toygun_role_name(rtype->owner))));
}
