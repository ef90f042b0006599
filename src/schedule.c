/*
 * schedule.c
 *		Periodic starts on pg_cron: start_every/stop_every, the pg_cron job
 *		they keep, and the firing that starts a task on every live resource
 *		of a type once per bucket. Schedules and buckets are cron.c's.
 */
#include "postgres.h"

#include <sodium.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "cron.h"
#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_start_every);
PG_FUNCTION_INFO_V1(toygun_stop_every);
PG_FUNCTION_INFO_V1(toygun_run_schedule);
PG_FUNCTION_INFO_V1(toygun_schedule_bucket);

static SPIPlanPtr upsert_schedule_plan;
static SPIPlanPtr set_job_plan;
static SPIPlanPtr lock_schedule_plan;
static SPIPlanPtr prune_plan;
static SPIPlanPtr fire_plan;
static SPIPlanPtr record_bucket_plan;
static SPIPlanPtr delete_schedule_plan;

/*
 * A name as a part of a job name: as it is, or, if it holds a dot or a
 * double quote, double-quoted with its quotes doubled, so that no two
 * (type, task) pairs make the same job name ("a.b", "c" and "a", "b.c").
 */
static void
append_job_name_part(StringInfo buf, const char *name)
{
	const char *p;

	if (strpbrk(name, ".\"") == NULL)
	{
		appendStringInfoString(buf, name);
		return;
	}
	appendStringInfoChar(buf, '"');
	for (p = name; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * The pg_cron job of a schedule: "toygun:type.task", recognisable in
 * cron.job. Job names are at most NAMEDATALEN - 1 bytes, so a longer one is
 * clipped and ends in 64 bits of a cryptographic hash of the whole, which
 * nobody can make another schedule's name match.
 */
static char *
job_name(const char *type, const char *task)
{
	StringInfoData full;
	unsigned char hash[crypto_generichash_BYTES_MIN];
	char		suffix[2 + 2 * 8];
	int			keep;
	int			i;

	initStringInfo(&full);
	appendStringInfoString(&full, "toygun:");
	append_job_name_part(&full, type);
	appendStringInfoChar(&full, '.');
	append_job_name_part(&full, task);
	if (full.len < NAMEDATALEN)
		return full.data;
	crypto_generichash(hash, sizeof(hash), (const unsigned char *) full.data, full.len, NULL, 0);
	suffix[0] = '~';
	for (i = 0; i < 8; i++)
		snprintf(suffix + 1 + 2 * i, 3, "%02x", hash[i]);
	keep = pg_mbcliplen(full.data, full.len, NAMEDATALEN - 1 - strlen(suffix));
	return psprintf("%.*s%s", keep, full.data, suffix);
}

/* The command of a schedule's job; it names the schedule unambiguously. */
static char *
job_command(const char *type, const char *task)
{
	return psprintf("SELECT toygun.run_schedule(%s, %s)",
					quote_literal_cstr(type), quote_literal_cstr(task));
}

/*
 * pg_cron must be installed in this database, which must be the one its
 * scheduler reads (cron.database_name); the job is created here.
 */
static void
check_pg_cron(void)
{
	const char *cron_db = GetConfigOption("cron.database_name", true, false);
	char	   *here = get_database_name(MyDatabaseId);

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
	{
		if (cron_db == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_cron is not installed in database \"%s\"", here),
					 errdetail("Periodic starts are pg_cron jobs in the database of the toygun extension."),
					 errhint("Add pg_cron to shared_preload_libraries and set cron.database_name = '%s' in postgresql.conf, restart the server, then run CREATE EXTENSION pg_cron in database \"%s\".",
							 here, here)));
		if (strcmp(cron_db, here) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_cron is not installed in database \"%s\"", here),
					 errdetail("Periodic starts are pg_cron jobs in the database of the toygun extension."),
					 errhint("Run CREATE EXTENSION pg_cron in database \"%s\", the one cron.database_name names.",
							 here)));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not installed in database \"%s\"", here),
				 errdetail("Periodic starts are pg_cron jobs in the database of the toygun extension, and pg_cron runs jobs only in database \"%s\", the one cron.database_name names.",
						   cron_db),
				 errhint("Set cron.database_name = '%s' in postgresql.conf, restart the server, then run CREATE EXTENSION pg_cron in database \"%s\".",
						 here, here)));
	}
	if (cron_db != NULL && strcmp(cron_db, here) != 0)
		ereport(WARNING,
				(errmsg("pg_cron runs jobs only in database \"%s\", not in \"%s\"", cron_db, here),
				 errdetail("The job is created, but pg_cron's scheduler will not run it."),
				 errhint("Set cron.database_name = '%s' in postgresql.conf and restart the server.",
						 here)));
}

/*
 * A periodic start's args are stored in toygun.schedule, which everybody may
 * read, and encrypted fields are sealed per run, bound to its id: so they
 * cannot be passed this way. Checked again at each firing, as the task type
 * may have been redefined since.
 */
static void
check_no_encrypted(ToygunDef *def, Jsonb *args)
{
	int			i;

	for (i = 0; i < def->nencrypted; i++)
		if (getKeyJsonValueFromContainer(&args->root, def->encrypted[i],
										 strlen(def->encrypted[i]), NULL) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("periodic starts cannot pass encrypted field \"%s\"", def->encrypted[i]),
					 errdetail("The args of a periodic start are stored in toygun.schedule, which every role that may read the type can read."),
					 errhint("Keep the value in an encrypted field of the resource, or start the task with toygun.start_task().")));
}

/* The resource type and task type a schedule is for; both must exist. */
static ToygunDef *
schedule_def(const char *type, const char *task)
{
	(void) toygun_find_def(TOYGUN_RESOURCE, type, NULL, false);
	return toygun_find_def(TOYGUN_TASK, type, task, false);
}

/* Runs of the task type start only while its owner may act for the resource type's. */
static void
check_starts(ToygunDef *def)
{
	toygun_check_task_owner(toygun_find_def(TOYGUN_RESOURCE, def->resource_type, NULL, false),
							toygun_def_label(def), def->owner);
}

/*
 * start_every(resource_type, task, schedule, args): create or update the
 * periodic start of a task on every live resource of a type, and its pg_cron
 * job. Returns the job's id.
 */
Datum
toygun_start_every(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	char	   *type;
	char	   *task;
	char	   *schedule;
	char	   *cron;
	char	   *name;
	char	   *command;
	Jsonb	   *args;
	CronSpec	spec;
	int64		schedule_id;
	int64		job_id;
	bool		isnull;
	Oid			upsert_types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, OIDOID, TEXTOID};
	Datum		upsert_values[7];
	Oid			cron_types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		cron_values[3];
	Oid			job_types[2] = {INT8OID, INT8OID};
	Datum		job_values[2];

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "task");
	task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	toygun_check_not_null(fcinfo, 2, "schedule");
	schedule = text_to_cstring(PG_GETARG_TEXT_PP(2));
	toygun_check_not_null(fcinfo, 3, "args");
	args = PG_GETARG_JSONB_P(3);
	toygun_check_object_attrs("args", args);
	cron = toygun_parse_schedule(schedule, &spec);

	toygun_begin_call(&call);
	def = schedule_def(type, task);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_START);
	check_starts(def);
	args = toygun_start_args(def, args);
	check_no_encrypted(def, args);
	check_pg_cron();

	name = job_name(type, task);
	upsert_values[0] = CStringGetTextDatum(type);
	upsert_values[1] = CStringGetTextDatum(task);
	upsert_values[2] = CStringGetTextDatum(schedule);
	upsert_values[3] = CStringGetTextDatum(cron);
	upsert_values[4] = JsonbPGetDatum(args);
	upsert_values[5] = ObjectIdGetDatum(call.caller);
	upsert_values[6] = CStringGetTextDatum(name);
	toygun_run(toygun_plan(&upsert_schedule_plan,
						   "INSERT INTO toygun.schedule (resource_type, task, schedule, cron, args, owner, job_name)"
						   " VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.regrole, $7)"
						   " ON CONFLICT (resource_type, task) DO UPDATE"
						   " SET schedule = excluded.schedule, cron = excluded.cron, args = excluded.args,"
						   "     owner = excluded.owner, job_name = excluded.job_name,"
						   "     updated_at = pg_catalog.clock_timestamp()"
						   " RETURNING id",
						   7, upsert_types),
			   upsert_values, NULL, 0);
	schedule_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/*
	 * pg_cron's named schedule() creates the job, or updates the one of the
	 * same name and owner (the extension's owner: we run as it), keeping its
	 * id. Not a kept plan: pg_cron may be dropped and created again.
	 */
	command = job_command(type, task);
	cron_values[0] = CStringGetTextDatum(name);
	cron_values[1] = CStringGetTextDatum(command);

	/*
	 * schedule() would take over a job of the same name that fires another
	 * schedule: names are made not to collide, and this makes sure.
	 */
	if (SPI_execute_with_args("SELECT FROM cron.job WHERE jobname = $1 AND username = CURRENT_USER"
							  "   AND command <> $2",
							  2, cron_types, cron_values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading cron.job failed");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pg_cron job \"%s\" runs another command", name),
				 errdetail("It does not fire the periodic start of task \"%s\" of resource type \"%s\".",
						   task, type),
				 errhint("Remove that job with cron.unschedule() if it is not needed.")));
	cron_values[1] = CStringGetTextDatum(cron);
	cron_values[2] = CStringGetTextDatum(command);
	if (SPI_execute_with_args("SELECT cron.schedule($1, $2, $3)", 3, cron_types,
							  cron_values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "cron.schedule() failed");
	job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	job_values[0] = Int64GetDatum(schedule_id);
	job_values[1] = Int64GetDatum(job_id);
	toygun_run(toygun_plan(&set_job_plan,
						   "UPDATE ONLY toygun.schedule SET job_id = $2 WHERE id = $1",
						   2, job_types),
			   job_values, NULL, 0);
	toygun_end_call(&call);
	PG_RETURN_INT64(job_id);
}

/*
 * stop_every(resource_type, task): remove the periodic start and its pg_cron
 * job. Returns whether there was one. Works without pg_cron, so leftovers
 * can be cleaned up after pg_cron was dropped.
 */
Datum
toygun_stop_every(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	char	   *type;
	char	   *task;
	bool		existed;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "task");
	task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));

	toygun_begin_call(&call);
	def = schedule_def(type, task);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_START);

	values[0] = CStringGetTextDatum(type);
	values[1] = CStringGetTextDatum(task);
	toygun_run(toygun_plan(&delete_schedule_plan,
						   "WITH gone AS (DELETE FROM ONLY toygun.schedule WHERE resource_type = $1 AND task = $2"
						   "              RETURNING id),"
						   " starts AS (DELETE FROM ONLY toygun.schedule_start s USING gone WHERE s.schedule_id = gone.id)"
						   " SELECT FROM gone",
						   2, types),
			   values, NULL, 0);
	existed = SPI_processed > 0;

	if (OidIsValid(get_extension_oid("pg_cron", true)))
	{
		Oid			name_type[2] = {TEXTOID, TEXTOID};
		Datum		name_value[2];

		name_value[0] = CStringGetTextDatum(job_name(type, task));
		name_value[1] = CStringGetTextDatum(job_command(type, task));
		if (SPI_execute_with_args("SELECT cron.unschedule(jobid) FROM cron.job"
								  " WHERE jobname = $1 AND username = CURRENT_USER AND command = $2",
								  2, name_type, name_value, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "cron.unschedule() failed");
		existed = existed || SPI_processed > 0;
	}
	toygun_end_call(&call);
	PG_RETURN_BOOL(existed);
}

/*
 * run_schedule(resource_type, task, at): the firing, the command of the
 * pg_cron job. Starts the task on every live resource of the type that has
 * no live run of it and has not been started in the bucket of at (default:
 * now), in one set-based statement. Returns how many runs it started.
 */
Datum
toygun_run_schedule(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	ToygunDef  *def;
	char	   *type;
	char	   *task;
	TimestampTz at;
	TimestampTz bucket;
	CronSpec	spec;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		schedule_id;
	char	   *cron;
	Jsonb	   *args;
	Oid			owner;
	bool		has_last;
	TimestampTz last_bucket = 0;
	int64		started;
	Oid			lock_types[2] = {TEXTOID, TEXTOID};
	Datum		lock_values[2];
	Oid			prune_types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		prune_values[2];
	Oid			fire_types[5] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, JSONBOID};
	Datum		fire_values[5];
	Oid			record_types[3] = {INT8OID, TIMESTAMPTZOID, INT8OID};
	Datum		record_values[3];

	toygun_check_not_null(fcinfo, 0, "resource_type");
	type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "task");
	task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	at = PG_ARGISNULL(2) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(2);
	if (!TIMESTAMP_NOT_FINITE(at) && at > GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must not be in the future"),
				 errdetail("A firing for a future bucket would make the schedule skip every bucket until then.")));

	toygun_begin_call(&call);

	/*
	 * Whoever fires it must have the right to start the task type, before
	 * it takes any lock: a role without it must not hold up firings.
	 */
	def = toygun_find_def(TOYGUN_TASK, type, task, false);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_START);

	/* Overlapping firings of one schedule take turns here. */
	lock_values[0] = CStringGetTextDatum(type);
	lock_values[1] = CStringGetTextDatum(task);
	toygun_run(toygun_plan(&lock_schedule_plan,
						   "SELECT id, cron, args, owner::pg_catalog.oid, last_bucket FROM ONLY toygun.schedule"
						   " WHERE resource_type = $1 AND task = $2 FOR NO KEY UPDATE",
						   2, lock_types),
			   lock_values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" of resource type \"%s\" has no periodic start", task, type),
				 errhint("Create one with toygun.start_every().")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	schedule_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	cron = SPI_getvalue(tup, desc, 2);
	args = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	last_bucket = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	has_last = !isnull;

	/*
	 * The firing acts for whoever called start_every, who must still be
	 * allowed to, and the task type's owner for the resource type's.
	 */
	if (!toygun_has_right(def, owner, TOYGUN_RIGHT_START))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s: it needs right \"start\" on resource type \"%s\"",
						toygun_def_label(def), def->resource_type),
				 errdetail("Its periodic start was made by role \"%s\", which no longer has that right nor the privileges of its owner, role \"%s\".",
						   toygun_role_name(owner), toygun_role_name(def->owner)),
				 errhint("Grant it with toygun.grant_type(), call toygun.start_every() again as a role that has it, or toygun.stop_every().")));
	check_starts(def);
	args = toygun_start_args(def, args);
	check_no_encrypted(def, args);

	if (toygun_parse_schedule(cron, &spec) == NULL)
		elog(ERROR, "stored schedule \"%s\" is invalid", cron);
	bucket = toygun_cron_bucket(&spec, at);

	/*
	 * A bucket older than the last one is a firing that came too late: a
	 * newer one has already run, and its records of the older one are gone.
	 */
	if (has_last && bucket < last_bucket)
	{
		ereport(NOTICE,
				(errmsg("bucket %s of task \"%s\" of resource type \"%s\" is older than its last bucket %s; nothing was started",
						pstrdup(timestamptz_to_str(bucket)), task, type,
						pstrdup(timestamptz_to_str(last_bucket)))));
		toygun_end_call(&call);
		PG_RETURN_INT64(0);
	}

	/* A new bucket: the records of older ones are no longer needed. */
	if (!has_last || bucket > last_bucket)
	{
		prune_values[0] = Int64GetDatum(schedule_id);
		prune_values[1] = TimestampTzGetDatum(bucket);
		toygun_run(toygun_plan(&prune_plan,
							   "DELETE FROM ONLY toygun.schedule_start WHERE schedule_id = $1 AND bucket < $2",
							   2, prune_types),
				   prune_values, NULL, 0);
	}

	/*
	 * One statement for every resource. The resources are locked FOR SHARE,
	 * as start_task locks one, so a concurrent stop_resource() either waits
	 * for this firing and parks the new runs, or makes this firing wait and
	 * skip the stopped resource. Claiming the (schedule, bucket, resource)
	 * first makes a repeated or overlapping firing of the bucket skip the
	 * resource, even once the run started here has stopped; the live-run
	 * index leaves a run still live from an earlier bucket (or started by
	 * hand meanwhile) alone.
	 */
	fire_values[0] = CStringGetTextDatum(type);
	fire_values[1] = CStringGetTextDatum(task);
	fire_values[2] = Int64GetDatum(schedule_id);
	fire_values[3] = TimestampTzGetDatum(bucket);
	fire_values[4] = JsonbPGetDatum(args);
	toygun_run(toygun_plan(&fire_plan,
						   "WITH live AS ("
						   "  SELECT r.id FROM ONLY toygun.resource r"
						   "   WHERE r.type = $1 AND r.state <> '__stop__'"
						   "     AND NOT EXISTS (SELECT FROM ONLY toygun.task t"
						   "                      WHERE t.resource_id = r.id AND t.name = $2"
						   "                        AND t.state <> '__stop__')"
						   "     FOR SHARE OF r"
						   "), claimed AS ("
						   "  INSERT INTO toygun.schedule_start (schedule_id, bucket, resource_id)"
						   "  SELECT $3, $4, live.id FROM live"
						   "  ON CONFLICT (schedule_id, bucket, resource_id) DO NOTHING"
						   "  RETURNING resource_id"
						   "), started AS ("
						   "  INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at)"
						   "  SELECT pg_catalog.gen_random_uuid(), claimed.resource_id, $1, $2, $5,"
						   "         pg_catalog.clock_timestamp()"
						   "    FROM claimed"
						   "  ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING"
						   "  RETURNING 1"
						   ")"
						   " SELECT pg_catalog.count(*) FROM started",
						   5, fire_types),
			   fire_values, NULL, 0);
	started = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	record_values[0] = Int64GetDatum(schedule_id);
	record_values[1] = TimestampTzGetDatum(bucket);
	record_values[2] = Int64GetDatum(started);
	toygun_run(toygun_plan(&record_bucket_plan,
						   "UPDATE ONLY toygun.schedule"
						   "   SET last_started = CASE WHEN last_bucket = $2 THEN last_started + $3 ELSE $3 END,"
						   "       last_bucket = $2, last_fired_at = pg_catalog.clock_timestamp()"
						   " WHERE id = $1",
						   3, record_types),
			   record_values, NULL, 0);
	if (started > 0)
		toygun_wake_at_commit();
	toygun_end_call(&call);
	PG_RETURN_INT64(started);
}

/*
 * schedule_bucket(schedule, at): the bucket a firing at time at belongs to;
 * also a way to check a schedule without pg_cron.
 */
Datum
toygun_schedule_bucket(PG_FUNCTION_ARGS)
{
	CronSpec	spec;

	toygun_check_not_null(fcinfo, 0, "schedule");
	toygun_check_not_null(fcinfo, 1, "at");
	(void) toygun_parse_schedule(text_to_cstring(PG_GETARG_TEXT_PP(0)), &spec);
	PG_RETURN_TIMESTAMPTZ(toygun_cron_bucket(&spec, PG_GETARG_TIMESTAMPTZ(1)));
}
