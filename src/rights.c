/*
 * rights.c
 *		Rights on a resource type and its task types (read, start, operate,
 *		read_secrets), granted by the type's owner with grant_type() and taken
 *		back with revoke_type(), the check every API call makes, and the
 *		resource types the current user may read (readable_types()) or start
 *		on (startable_types()).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_grant_type);
PG_FUNCTION_INFO_V1(toygun_revoke_type);
PG_FUNCTION_INFO_V1(toygun_readable_types);
PG_FUNCTION_INFO_V1(toygun_error_readable_types);
PG_FUNCTION_INFO_V1(toygun_startable_types);
PG_FUNCTION_INFO_V1(toygun_operable_types);
PG_FUNCTION_INFO_V1(toygun_secret_readable_types);

/* In ToygunRight order. */
static const char *const right_names[] = {"read", "start", "operate", "read_secrets"};

#define NRIGHTS lengthof(right_names)

const char *
toygun_right_name(ToygunRight right)
{
	return right == TOYGUN_RIGHT_READ_ERRORS ? "read" : right_names[right];
}

/*
 * Does some grant of this right on the resource type reach the caller? A
 * grant to PUBLIC is stored as role 0; it does not reach error texts, which
 * can carry what a type's owner would not show everybody (0.3 showed them
 * only to the owner, and the update to 0.4 grants read to PUBLIC on the
 * types that existed). A dropped role's grant reaches nobody:
 * has_privs_of_role() is false for a role that does not exist.
 */
static bool
granted(const char *resource_type, ToygunRight right, Oid caller)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	uint64		i;

	values[0] = CStringGetTextDatum(resource_type);
	values[1] = CStringGetTextDatum(toygun_right_name(right));
	toygun_run(toygun_plan(&plan,
						   "SELECT grantee::pg_catalog.oid FROM ONLY toygun.type_grant"
						   " WHERE resource_type = $1 AND right_name = $2",
						   2, argtypes),
			   values, NULL, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			grantee = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 1, &isnull));

		if (grantee == InvalidOid ? right != TOYGUN_RIGHT_READ_ERRORS : has_privs_of_role(caller, grantee))
			return true;
	}
	return false;
}

/*
 * May the caller use this right on def's objects? The owner of the type
 * (for a task type: of the task type, or of its resource type), and every
 * role with its privileges, has every right; others need a grant on the
 * resource type. Runs inside an API call (connected to SPI), never in the
 * worker.
 */
bool
toygun_has_right(ToygunDef *def, Oid caller, ToygunRight right)
{
	if (has_privs_of_role(caller, def->owner))
		return true;
	if (def->kind == TOYGUN_TASK)
	{
		ToygunDef  *rtype = toygun_find_def(TOYGUN_RESOURCE, def->resource_type, NULL, true);

		if (rtype != NULL && has_privs_of_role(caller, rtype->owner))
			return true;
	}
	return granted(def->resource_type, right, caller);
}

/* The end of a refusal's hint: a grant to PUBLIC does not show error texts. */
static const char *
public_note(ToygunRight right)
{
	return right == TOYGUN_RIGHT_READ_ERRORS ? " (to the role: a grant to public does not show error texts)" : "";
}

void
toygun_check_right(ToygunDef *def, Oid caller, ToygunRight right)
{
	if (toygun_has_right(def, caller, right))
		return;
	if (def->kind == TOYGUN_TASK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s: it needs right \"%s\" on resource type \"%s\"",
						toygun_def_label(def), toygun_right_name(right), def->resource_type),
				 errdetail("Role \"%s\" has neither that right nor the privileges of role \"%s\", which owns the task type.",
						   toygun_role_name(caller), toygun_role_name(def->owner)),
				 errhint("The owner of resource type \"%s\" can grant it with toygun.grant_type()%s.",
						 def->resource_type, public_note(right))));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for %s: it needs right \"%s\"",
					toygun_def_label(def), toygun_right_name(right)),
			 errdetail("Role \"%s\" has neither that right nor the privileges of role \"%s\", which owns it.",
					   toygun_role_name(caller), toygun_role_name(def->owner)),
			 errhint("Its owner can grant it with toygun.grant_type()%s.", public_note(right))));
}

/*
 * The role a grant names, as GRANT reads it: "public" (unquoted, any case)
 * is everybody, stored as 0; anything else must be the name of an existing
 * role, quoted or not. Not regrolein(): it reads digits as an OID, which it
 * does not check (a grant could wait for a future role, or reach another
 * role than the one named "123"), and "-" as 0, PUBLIC.
 */
static Oid
grantee_oid(text *role)
{
	char	   *name = text_to_cstring(role);
	List	   *names;

	if (pg_strcasecmp(name, "public") == 0)
		return InvalidOid;
	names = stringToQualifiedNameList(name);
	if (list_length(names) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid role name \"%s\"", name)));
	return get_role_oid(strVal(linitial(names)), false);
}

/* The rights named, checked; NULL for none given (every right). */
static Datum
rights_array(FunctionCallInfo fcinfo, int argno)
{
	char	  **rights;
	int			n,
				i,
				j;

	if (PG_ARGISNULL(argno))
		return (Datum) 0;
	rights = toygun_text_array(PG_GETARG_ARRAYTYPE_P(argno), "rights", &n);
	for (i = 0; i < n; i++)
	{
		for (j = 0; j < NRIGHTS; j++)
			if (strcmp(rights[i], right_names[j]) == 0)
				break;
		if (j == NRIGHTS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown right \"%s\"", rights[i]),
					 errhint("The rights are read, start, operate and read_secrets.")));
	}
	return toygun_cstring_array(rights, n);
}

/*
 * The arguments grant_type() and revoke_type() share, resource_type and
 * role (*grantee), checked, and the call begun. Grants and revokes on a
 * type are for roles with the privileges of its owner; nobody holds a
 * grant option. The grants of dropped roles on the type are deleted on the
 * way: they reach nobody, and their OID could be given to a new role.
 * Returns the type's name.
 */
static char *
begin_grant(FunctionCallInfo fcinfo, ToygunCall *call, Oid *grantee)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	ToygunDef  *def;
	char	   *type;

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "role");
	*grantee = grantee_oid(PG_GETARG_TEXT_PP(1));
	toygun_begin_call(call);
	/*
	 * Locked as renames lock the type: a rename waits, and takes the grant
	 * along; no grant stays behind under an old name, for the next type of
	 * that name (anyone's) to inherit.
	 */
	toygun_lock_definition(TOYGUN_RESOURCE, type, NULL);
	def = toygun_find_def(TOYGUN_RESOURCE, type, NULL, false);
	toygun_check_acting_for(def, call->caller);
	values[0] = CStringGetTextDatum(type);
	/* planned with its value: Citus plans this subquery only so */
	toygun_run_once("DELETE FROM ONLY toygun.type_grant g WHERE g.resource_type = $1"
					"   AND g.grantee::pg_catalog.oid <> 0"
					"   AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r"
					"                    WHERE r.oid = g.grantee::pg_catalog.oid)",
					1, argtypes, values, NULL, 0);
	return type;
}

/* grant_type(resource_type, role, rights): idempotent. */
Datum
toygun_grant_type(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	char	   *type;
	Oid			grantee;
	Datum		rights;
	Oid			argtypes[4] = {TEXTOID, OIDOID, TEXTARRAYOID, OIDOID};
	Datum		values[4];

	toygun_check_not_null(fcinfo, 2, "rights");
	rights = rights_array(fcinfo, 2);
	type = begin_grant(fcinfo, &call, &grantee);
	toygun_refuse_role_on_citus(grantee, "grant_type");
	toygun_refuse_role_on_citus(call.caller, "grant_type");
	values[0] = CStringGetTextDatum(type);
	values[1] = ObjectIdGetDatum(grantee);
	values[2] = rights;
	values[3] = ObjectIdGetDatum(call.caller);
	/* planned with its values: Citus plans this INSERT ... SELECT only so */
	toygun_run_once("INSERT INTO toygun.type_grant (resource_type, grantee, right_name, granted_by)"
					" SELECT $1, $2::pg_catalog.regrole, r, $4::pg_catalog.regrole"
					"   FROM pg_catalog.unnest($3) r"
					" ON CONFLICT DO NOTHING",
					4, argtypes, values, NULL, 0);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* revoke_type(resource_type, role, rights): rights NULL takes back every right. */
Datum
toygun_revoke_type(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	char	   *type;
	Oid			grantee;
	Datum		rights;
	Oid			argtypes[3] = {TEXTOID, OIDOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	rights = rights_array(fcinfo, 2);
	type = begin_grant(fcinfo, &call, &grantee);
	values[0] = CStringGetTextDatum(type);
	values[1] = ObjectIdGetDatum(grantee);
	values[2] = rights;
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	toygun_run(toygun_plan(&plan,
						   "DELETE FROM ONLY toygun.type_grant"
						   " WHERE resource_type = $1 AND grantee::pg_catalog.oid = $2"
						   "   AND ($3 IS NULL OR right_name = ANY ($3))",
						   3, argtypes),
			   values, nulls, 0);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * readable_types(): the resource types whose rows the current user may
 * read: those whose owner's privileges it has, and those on which it, or
 * PUBLIC, was granted read; sorted by name. One call answers for a whole
 * query: row filters use it as an InitPlan, never once per row, written
 * = ANY (((SELECT toygun.readable_types()))::text[]) (without the cast,
 * ANY reads the subquery as a set of arrays). Task types owned by another
 * role than their resource type's owner are not in it: their owner needs a
 * grant to read their rows through it.
 */
static Datum
types_with_right(ToygunRight right)
{
	static SPIPlanPtr types_plan = NULL;
	bool		errors = right == TOYGUN_RIGHT_READ_ERRORS;
	ToygunCall	call;
	char	  **names;
	int			n = 0;
	uint64		i;
	bool		isnull;
	Datum		result;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(toygun_right_name(right));
	toygun_begin_call(&call);
	toygun_run(toygun_plan(&types_plan,
						   "SELECT d.name, d.owner::pg_catalog.oid FROM ONLY toygun.resource_type d"
						   " UNION ALL"
						   " SELECT g.resource_type, g.grantee::pg_catalog.oid FROM ONLY toygun.type_grant g"
						   "  WHERE g.right_name = $1",
						   1, argtypes),
			   values, NULL, 0);
	names = palloc(sizeof(char *) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		Oid			role = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		char	   *name;
		int			j;

		if (role == InvalidOid ? errors : !has_privs_of_role(call.caller, role))
			continue;
		name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		for (j = 0; j < n; j++)
			if (strcmp(names[j], name) == 0)
				break;
		if (j == n)
			names[n++] = name;
	}
	qsort(names, n, sizeof(char *), compare_names);
	result = SPI_datumTransfer(toygun_cstring_array(names, n), false, -1);
	toygun_end_call(&call);
	return result;
}

Datum
toygun_readable_types(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(types_with_right(TOYGUN_RIGHT_READ));
}

/*
 * error_readable_types(): the resource types whose error texts the current
 * user may read: as readable_types(), without the grants to PUBLIC.
 */
Datum
toygun_error_readable_types(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(types_with_right(TOYGUN_RIGHT_READ_ERRORS));
}

/*
 * startable_types(): the resource types on which the current user may start
 * runs (as owner, or by a grant of start to it or to PUBLIC), sorted; row
 * filters use it as readable_types(), once per query. toygun.schedule shows
 * a periodic start to the roles that may start it.
 */
Datum
toygun_startable_types(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(types_with_right(TOYGUN_RIGHT_START));
}

/*
 * operable_types(), secret_readable_types(): the resource types on which the
 * current user has operate, read_secrets (as owner, or by a grant to it or to
 * PUBLIC), sorted; what the operator's tools may offer (issue 18). The calls
 * themselves still check each right on the task type.
 */
Datum
toygun_operable_types(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(types_with_right(TOYGUN_RIGHT_OPERATE));
}

Datum
toygun_secret_readable_types(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(types_with_right(TOYGUN_RIGHT_READ_SECRETS));
}
