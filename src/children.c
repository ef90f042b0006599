/*
 * children.c
 *		Waiting for children. A run that a handler starts records the run
 *		that started it (task.parent_run). When it stops or panics, a
 *		message says so to the parent, which is made due at once, so a
 *		handler that fans out can stay with a long wait and be woken by
 *		each child's end. Waking the parent must not wait for its row lock:
 *		a worker's batch can hold the parent while another's holds the
 *		child, and the parent's handler may touch the child. So the parent
 *		is taken with SKIP LOCKED; if it is locked, the message is left
 *		unswept, and the workers' next batch makes the parent due
 *		(toygun_sweep_children()), once whoever held it has let it go.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "toygun.h"

/*
 * The parent run of a task, from its row as read: parent_run, when the row
 * has it (an install not yet updated to 0.4 does not) and it is not null.
 */
static bool
parent_of(ToygunObject *obj, pg_uuid_t *parent)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(obj->row);
	TupleDesc	desc;
	HeapTupleData tmp;
	bool		isnull = true;
	Datum		d = (Datum) 0;
	int			i;

	/* most runs have none: a null in its column, as toygun made the table */
	if (HeapTupleHeaderGetNatts(td) == TOYGUN_TASK_NATTS && (td->t_infomask & HEAP_HASNULL) &&
		att_isnull(TOYGUN_TASK_PARENT_RUN - 1, td->t_bits))
		return false;
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td), HeapTupleHeaderGetTypMod(td));
	tmp.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tmp.t_self);
	tmp.t_tableOid = InvalidOid;
	tmp.t_data = td;
	for (i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), "parent_run") == 0)
		{
			d = heap_getattr(&tmp, i + 1, desc, &isnull);
			break;
		}
	ReleaseTupleDesc(desc);
	if (isnull)
		return false;
	*parent = *DatumGetUUIDP(d);
	return true;
}

/*
 * A task moved into __stop__ or __panic__ in this transaction: tell its
 * parent, if it has one, and make the parent due if it is waiting and not
 * locked by someone else.
 */
void
toygun_child_ended(ToygunObject *obj)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr type_plan = NULL;
	static SPIPlanPtr due_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	pg_uuid_t	parent;
	Oid			argtypes[5] = {UUIDOID, TEXTOID, JSONBOID, OIDOID, BOOLOID};
	Datum		values[5];
	bool		locked;
	bool		isnull;
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	if (obj->kind != TOYGUN_TASK || !parent_of(obj, &parent))
		return;
	values[0] = UUIDPGetDatum(&parent);
	toygun_run(toygun_plan(&lock_plan,
						   "SELECT resource_type, run_at > pg_catalog.clock_timestamp()"
						   "       AND state NOT IN ('__stop__', '__panic__')"
						   "  FROM ONLY toygun.task WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
						   1, argtypes),
			   values, NULL, 1);
	locked = SPI_processed > 0;
	if (locked)
	{
		bool		waiting = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

		values[1] = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		if (waiting && !isnull)
			toygun_run(toygun_plan(&due_plan,
								   "UPDATE ONLY toygun.task SET run_at = pg_catalog.clock_timestamp() WHERE id = $1",
								   1, argtypes),
					   values, NULL, 0);
	}
	else
	{
		toygun_run(toygun_plan(&type_plan, "SELECT resource_type FROM ONLY toygun.task WHERE id = $1",
							   1, argtypes),
				   values, NULL, 1);
		if (SPI_processed == 0)
			return;				/* the parent is gone */
		values[1] = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	}

	/* {"child": id, "task": name, "state": state} */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	v.type = jbvString;
	k.val.string.val = "child";
	k.val.string.len = 5;
	v.val.string.val = pstrdup(toygun_uuid_text(&obj->id));
	v.val.string.len = strlen(v.val.string.val);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	k.val.string.val = "task";
	k.val.string.len = 4;
	v.val.string.val = obj->name;
	v.val.string.len = strlen(obj->name);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	k.val.string.val = "state";
	k.val.string.len = 5;
	v.val.string.val = obj->state;
	v.val.string.len = strlen(obj->state);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	values[2] = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
	values[3] = ObjectIdGetDatum(obj->actor);
	values[4] = BoolGetDatum(locked);
	toygun_run(toygun_plan(&insert_plan,
						   "INSERT INTO toygun.message (run_id, resource_type, message, sent_by, swept)"
						   " VALUES ($1, $2, $3, $4::pg_catalog.regrole, $5)",
						   5, argtypes),
			   values, NULL, 0);
	/* a worker sees to what is left unswept, and ticks what is due */
	if (!toygun_in_worker)
		toygun_wake_at_commit();
}

/*
 * In a worker's batch, before it claims: make due the parents whose
 * children's ends were left unswept, those no one else holds now. Returns
 * true if some are still held by someone, so that the worker looks again
 * soon rather than sleeping until its next due run.
 */
bool
toygun_sweep_children(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	/* an install not yet updated to 0.4 has no messages */
	if (!OidIsValid(get_relname_relid("message", get_namespace_oid("toygun", false))))
		return false;
	/*
	 * On a Citus node the sweep is per shard group (citus.c), and the
	 * messages a node's local table (not distributed) holds are for the
	 * parents of any of its groups: a message is for this group only if
	 * its parent is in the group's shard, and one whose parent is not
	 * here is not known to be gone (it is in another group), so it stays.
	 */
	if (toygun_citus_group != NULL)
	{
		static SPIPlanPtr citus_plan = NULL;

		toygun_run(toygun_plan(&citus_plan,
							   "WITH pending AS (SELECT DISTINCT m.run_id FROM ONLY toygun.message m WHERE NOT m.swept"
							   "                    AND EXISTS (SELECT FROM ONLY toygun.task t WHERE t.id = m.run_id)),"
							   " held AS (SELECT t.id, t.run_at > pg_catalog.clock_timestamp()"
							   "                 AND t.state NOT IN ('__stop__', '__panic__') AS waiting"
							   "            FROM ONLY toygun.task t WHERE t.id IN (SELECT run_id FROM pending)"
							   "             FOR NO KEY UPDATE SKIP LOCKED),"
							   " woken AS (UPDATE ONLY toygun.task t SET run_at = pg_catalog.clock_timestamp()"
							   "             FROM held h WHERE t.id = h.id AND h.waiting RETURNING t.id),"
							   " swept AS (UPDATE ONLY toygun.message m SET swept = true"
							   "            WHERE NOT m.swept AND m.run_id IN (SELECT id FROM held)"
							   "           RETURNING m.run_id)"
							   " SELECT EXISTS (SELECT FROM pending p WHERE p.run_id NOT IN (SELECT id FROM held))",
							   0, NULL),
				   NULL, NULL, 1);
		return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	toygun_run(toygun_plan(&plan,
						   "WITH pending AS (SELECT DISTINCT m.run_id FROM ONLY toygun.message m WHERE NOT m.swept),"
						   " held AS (SELECT t.id, t.run_at > pg_catalog.clock_timestamp()"
						   "                 AND t.state NOT IN ('__stop__', '__panic__') AS waiting"
						   "            FROM ONLY toygun.task t WHERE t.id IN (SELECT run_id FROM pending)"
						   "             FOR NO KEY UPDATE SKIP LOCKED),"
						   " woken AS (UPDATE ONLY toygun.task t SET run_at = pg_catalog.clock_timestamp()"
						   "             FROM held h WHERE t.id = h.id AND h.waiting RETURNING t.id),"
						   " swept AS (UPDATE ONLY toygun.message m SET swept = true"
						   "            WHERE NOT m.swept AND (m.run_id IN (SELECT id FROM held)"
						   "                  OR NOT EXISTS (SELECT FROM ONLY toygun.task t WHERE t.id = m.run_id))"
						   "           RETURNING m.run_id)"
						   " SELECT EXISTS (SELECT FROM pending p WHERE p.run_id NOT IN (SELECT id FROM held)"
						   "                  AND EXISTS (SELECT FROM ONLY toygun.task t WHERE t.id = p.run_id))",
						   0, NULL),
			   NULL, NULL, 1);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}
