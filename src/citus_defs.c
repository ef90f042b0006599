/*
 * citus_defs.c
 *		toygun's definitions when toygun.distribute() made them Citus
 *		reference tables (doc/citus.md, section 2.3): the roles a caller
 *		acts for, as the upserts' guard takes them; the trigger that tells
 *		each node's backends a definition changed; and the refusals of the
 *		definition calls that do not work there yet.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_definitions_changed_trigger);

/*
 * The roles whose privileges role has (pg_has_role(role, r, 'USAGE') for
 * each r), as an oid[], or NULL (*isnull) for a superuser, who has every
 * role's, even one dropped since: the upserts of definitions replace a row
 * only if the list is NULL or holds its owner. The list is
 * passed as a parameter instead of calling pg_has_role() in the upsert's
 * WHERE, because Citus refuses (or, in a generic plan, crashes on) a
 * function call in ON CONFLICT DO UPDATE of a reference table; an
 * equality against a constant array is the same test and plans everywhere.
 */
Datum
toygun_usable_roles(Oid role, char *isnull)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	Datum	   *oids = NULL;
	int			n = 0,
				size = 16;

	*isnull = ' ';
	if (superuser_arg(role))
	{
		*isnull = 'n';
		return (Datum) 0;
	}
	oids = palloc(size * sizeof(Datum));
	rel = table_open(AuthIdRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			r = ((Form_pg_authid) GETSTRUCT(tup))->oid;

		if (!has_privs_of_role(role, r))
			continue;
		if (n == size)
		{
			size *= 2;
			oids = repalloc(oids, size * sizeof(Datum));
		}
		oids[n++] = ObjectIdGetDatum(r);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return PointerGetDatum(construct_array(oids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/*
 * A role stored in a definition (an owner, a grantee): its OID, which on a
 * Citus cluster is the coordinator's. Roles are propagated by name, and
 * each node gives its own OID to a role, so a reference table's OID names
 * another role, or none, on the worker nodes: a handler would run as, or a
 * right go to, the wrong role there. Only the bootstrap superuser (the same
 * OID everywhere) and PUBLIC (0) are refused nothing, until the definitions
 * store role names (doc/citus.md, section 9).
 */
void
toygun_refuse_role_on_citus(Oid role, const char *what)
{
	char	   *name;

	if (role == BOOTSTRAP_SUPERUSERID || role == InvalidOid || !toygun_definitions_on_citus())
		return;
	name = GetUserNameFromId(role, true);
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s for role \"%s\" does not work on Citus yet", what, name ? name : "?"),
			 errdetail("The definition tables store role OIDs, and each node of the cluster gives a role an OID of its own: on the worker nodes it would name another role, or none."),
			 errhint("Define it as the bootstrap superuser (role \"%s\"), or grant to PUBLIC; see doc/citus.md, section 9.",
					 GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false))));
}


/*
 * definitions_changed(table), a statement trigger: toygun.distribute() puts
 * it on the definition tables as it makes them Citus reference tables, and
 * Citus copies it onto each node's shard of them. A definition written on
 * the coordinator reaches a worker node as Citus's own INSERT/UPDATE/DELETE
 * on that node's shard, in the distributed transaction: no toygun code runs
 * there, and a heap write sends no invalidation, so that node's backends
 * (its toygun worker) would keep their cached definitions. This trigger runs
 * in the backend that applies the write and sends the relcache invalidation
 * define_* sends, for the table its argument names (the relation every
 * backend's caches watch, not the shard), delivered when the transaction
 * commits (COMMIT PREPARED for Citus's two-phase commit).
 */
Datum
toygun_definitions_changed_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			relid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("toygun.definitions_changed() is a trigger function"),
				 errhint("toygun.distribute() puts it on the definition tables; do not call it.")));
	if (trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" must name one table of schema toygun",
						trigdata->tg_trigger->tgname),
				 errhint("CREATE TRIGGER ... EXECUTE FUNCTION toygun.definitions_changed('resource_type')")));
	relid = get_relname_relid(trigdata->tg_trigger->tgargs[0], get_namespace_oid("toygun", false));
	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
	return PointerGetDatum(NULL);
}

/*
 * Whether the definitions are Citus reference tables (toygun.distribute()
 * ran): for the definition calls that do not work there yet, which refuse
 * with a clear error instead of Citus's. Without Citus in the database,
 * false without a query.
 */
bool
toygun_definitions_on_citus(void)
{
	bool		isnull;
	Datum		d;

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return false;
	if (SPI_execute("SELECT pg_catalog.count(*) > 0 FROM pg_catalog.pg_dist_partition"
					" WHERE logicalrelid OPERATOR(pg_catalog.=) 'toygun.resource_type'::pg_catalog.regclass",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading pg_dist_partition failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * The error for a definition call that does not work with the definitions
 * as Citus reference tables yet (doc/citus.md, section 9).
 */
void
toygun_refuse_on_citus(const char *call, const char *why)
{
	if (toygun_definitions_on_citus())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s does not work on Citus yet", call),
				 errdetail("%s", why),
				 errhint("See doc/citus.md, section 9, for the definition calls that work on a Citus cluster.")));
}
