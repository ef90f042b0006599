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
#include "access/xact.h"
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
static SPIPlanPtr upsert_schedule_0_3_plan;
static SPIPlanPtr record_bucket_0_3_plan;
static SPIPlanPtr record_error_plan;
static SPIPlanPtr set_job_plan;
static SPIPlanPtr lock_schedule_plan;
static SPIPlanPtr prune_plan;
static SPIPlanPtr fire_plan;
static SPIPlanPtr fire_version_plan;
static SPIPlanPtr fire_priority_plan;
static SPIPlanPtr fire_flow_plan;
static SPIPlanPtr record_bucket_plan;
static SPIPlanPtr delete_schedule_plan;
static SPIPlanPtr candidates_plan;
static SPIPlanPtr claim_plan;

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
 * The resource type and task type a schedule is for; both must exist. The
 * resource type is locked as renames of it, its tasks and its states lock
 * it: a rename waits, and takes the schedule along; no schedule stays
 * behind under an old name, for the next type of that name to inherit.
 */
static ToygunDef *
schedule_def(const char *type, const char *task)
{
	toygun_lock_definition(TOYGUN_RESOURCE, type, NULL);
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
 * The resource states a periodic start starts in (argument argno): NULL for
 * every live resource; otherwise a non-empty list of the resource type's
 * states, __new__ or __panic__. A stopped resource never starts anything.
 */
static Datum
check_start_states(FunctionCallInfo fcinfo, int argno, ToygunDef *rtype, bool *isnull)
{
	char	  **states;
	int			n,
				i;

	*isnull = PG_NARGS() <= argno || PG_ARGISNULL(argno);
	if (*isnull)
		return (Datum) 0;
	states = toygun_text_array(PG_GETARG_ARRAYTYPE_P(argno), "states", &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("states must not be empty"),
				 errhint("List the resource states to start in, or leave states out (NULL) for every live resource.")));
	for (i = 0; i < n; i++)
	{
		toygun_check_name_cstr("state name", states[i]);
		if (strcmp(states[i], TOYGUN_STOP) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a periodic start cannot start in state \"%s\"", states[i]),
					 errdetail("Nothing starts on a stopped resource.")));
		if (strcmp(states[i], TOYGUN_NEW) != 0 && strcmp(states[i], TOYGUN_PANIC) != 0 &&
			!toygun_in_list(states[i], rtype->states, rtype->nstates))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("state \"%s\" is not a state of %s", states[i], toygun_def_label(rtype)),
					 errhint("Name its declared states, __new__ or __panic__.")));
	}
	return toygun_cstring_array(states, n);
}

/* Insert or replace a schedule, with the columns of 0.4 (cols, vals, sets) or without. */
#define UPSERT_SCHEDULE(cols, vals, sets) \
	"INSERT INTO toygun.schedule (resource_type, task, schedule, cron, args, owner, job_name" cols ")" \
	" VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.regrole, $7" vals ")" \
	" ON CONFLICT (resource_type, task) DO UPDATE" \
	" SET schedule = excluded.schedule, cron = excluded.cron, args = excluded.args," \
	"     owner = excluded.owner, job_name = excluded.job_name," \
	"     updated_at = pg_catalog.clock_timestamp()" sets \
	" RETURNING id"

/*
 * start_every(resource_type, task, schedule, args, states): create or update the
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
	Oid			upsert_types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, OIDOID, TEXTOID,
	TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		upsert_values[9];
	char		upsert_nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		all_states;
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
	toygun_refuse_on_citus("start_every",
						   "A periodic start fires from one pg_cron job, on this node; on Citus each node must fire its own shards (doc/citus.md, section 6).");
	def = schedule_def(type, task);
	toygun_check_right(def, call.caller, TOYGUN_RIGHT_START);
	check_starts(def);
	args = toygun_start_args(def, args);
	toygun_check_stored_args(def, args, "periodic starts", "a periodic start", "toygun.schedule");
	upsert_values[7] = check_start_states(fcinfo, 4,
										  toygun_find_def(TOYGUN_RESOURCE, type, NULL, false),
										  &all_states);
	upsert_nulls[7] = all_states ? 'n' : ' ';
	check_pg_cron();

	name = job_name(type, task);
	upsert_values[0] = CStringGetTextDatum(type);
	upsert_values[1] = CStringGetTextDatum(task);
	upsert_values[2] = CStringGetTextDatum(schedule);
	upsert_values[3] = CStringGetTextDatum(cron);
	upsert_values[4] = JsonbPGetDatum(args);
	upsert_values[5] = ObjectIdGetDatum(call.caller);
	upsert_values[6] = CStringGetTextDatum(name);
	upsert_values[8] = TimestampTzGetDatum(toygun_cron_next(&spec, GetCurrentTimestamp()));
	/* the SQL of 0.3 (fewer arguments) has a schedule without the new columns */
	if (PG_NARGS() > 4)
		toygun_run(toygun_plan(&upsert_schedule_plan,
							   UPSERT_SCHEDULE(", states, next_fire_at", ", $8, $9",
											   ", states = excluded.states, next_fire_at = excluded.next_fire_at"),
							   9, upsert_types),
				   upsert_values, upsert_nulls, 0);
	else
		toygun_run(toygun_plan(&upsert_schedule_0_3_plan, UPSERT_SCHEDULE("", "", ""), 7, upsert_types),
				   upsert_values, upsert_nulls, 0);
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
	toygun_refuse_on_citus("stop_every",
						   "A periodic start fires from one pg_cron job, on this node; on Citus each node must fire its own shards (doc/citus.md, section 6).");
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

/* A schedule being fired, as locked by run_schedule. */
typedef struct Firing
{
	ToygunDef  *def;
	const char *type;
	const char *task;
	int64		schedule_id;
	Jsonb	   *args;
	Oid			owner;
	bool		has_last;
	TimestampTz last_bucket;
	CronSpec	spec;
	TimestampTz at;
	Datum		states;			/* text[] of resource states, or 0: all */
	bool		v04;			/* the schedule table has 0.4's columns */
	TimestampTz next_fire_at;
} Firing;

/*
 * The live resources of a firing ($1 the type, $6 its states or NULL: all
 * live ones) that have no live run of its task ($2). The parameters of both
 * firings: type, task, schedule id, bucket, args, states.
 */
#define LIVE_RESOURCES_SQL \
	"SELECT r.id FROM ONLY toygun.resource r" \
	" WHERE r.type = $1 AND r.state <> '__stop__'" \
	"   AND ($6 IS NULL OR r.state = ANY ($6))" \
	"   AND NOT EXISTS (SELECT FROM ONLY toygun.task t" \
	"                    WHERE t.resource_id = r.id AND t.name = $2" \
	"                      AND t.state <> '__stop__')"
static Oid	fire_types[6] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, JSONBOID, TEXTARRAYOID};

/*
 * The firing of a task type that has a should_start: the resources a
 * set-wise firing would start on (live, in the schedule's states, with no
 * live run, locked FOR SHARE as it locks them), each claimed for the bucket
 * and then started through the start of start_task, which asks should_start
 * (acting for the schedule's maker). A resource declined stays claimed: the
 * bucket asks each resource once. Returns how many runs it started; counts
 * the declined in *declined. An error of the hook fails the firing.
 */
static int64
fire_asking(Firing *f, Datum *fire_values, char *fire_nulls, int64 *declined)
{
	Oid			claim_types[3] = {INT8OID, TIMESTAMPTZOID, UUIDOID};
	Datum		claim_values[3];
	pg_uuid_t  *ids;
	uint64		n,
				i;
	int64		started = 0;
	Jsonb	   *args = DatumGetJsonbP(fire_values[4]);
	TimestampTz bucket = DatumGetTimestampTz(fire_values[3]);

	toygun_run(toygun_plan(&candidates_plan,
						   LIVE_RESOURCES_SQL
						   "   AND NOT EXISTS (SELECT FROM ONLY toygun.schedule_start c"
						   "                    WHERE c.schedule_id = $3 AND c.bucket = $4"
						   "                      AND c.resource_id = r.id)"
						   " ORDER BY r.id FOR SHARE OF r",
						   6, fire_types),
			   fire_values, fire_nulls, 0);
	n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	*declined = 0;
	for (i = 0; i < n; i++)
	{
		pg_uuid_t  *run;

		claim_values[0] = Int64GetDatum(f->schedule_id);
		claim_values[1] = TimestampTzGetDatum(bucket);
		claim_values[2] = UUIDPGetDatum(&ids[i]);
		toygun_run(toygun_plan(&claim_plan,
							   "INSERT INTO toygun.schedule_start (schedule_id, bucket, resource_id)"
							   " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
							   3, claim_types),
				   claim_values, NULL, 0);
		if (SPI_processed == 0)
			continue;
		switch (toygun_start_run(&ids[i], f->task, args, f->owner, false, false,
								 TOYGUN_PRIORITY_DEFAULT, &run))
		{
			case TOYGUN_STARTED:
				started++;
				break;
			case TOYGUN_START_DECLINED:
				(*declined)++;
				break;
			case TOYGUN_START_FOUND_LIVE:
				break;
		}
	}
	return started;
}

/*
 * Fire a locked schedule's bucket of f->at: check that its maker may still
 * start, prune older buckets' claims, start the runs and record the bucket.
 * Returns how many runs it started.
 */
static int64
fire(Firing *f)
{
	ToygunDef  *def = f->def;
	TimestampTz bucket;
	Jsonb	   *args;
	bool		isnull;
	int64		started;
	Oid			prune_types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		prune_values[2];
	Datum		fire_values[9];
	char		fire_nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			record_types[5] = {INT8OID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID, INT8OID};
	Datum		record_values[5];
	int64		declined = 0;

	/*
	 * The firing acts for whoever called start_every, who must still be
	 * allowed to, and the task type's owner for the resource type's.
	 */
	if (!toygun_has_right(def, f->owner, TOYGUN_RIGHT_START))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s: it needs right \"start\" on resource type \"%s\"",
						toygun_def_label(def), def->resource_type),
				 errdetail("Its periodic start was made by role \"%s\", which no longer has that right nor the privileges of its owner, role \"%s\".",
						   toygun_role_name(f->owner), toygun_role_name(def->owner)),
				 errhint("Grant it with toygun.grant_type(), call toygun.start_every() again as a role that has it, or toygun.stop_every().")));
	check_starts(def);
	args = toygun_start_args(def, f->args);
	toygun_check_stored_args(def, args, "periodic starts", "a periodic start", "toygun.schedule");
	bucket = toygun_cron_bucket(&f->spec, f->at);

	/*
	 * A bucket older than the last one is a firing that came too late: a
	 * newer one has already run, and its records of the older one are gone.
	 */
	if (f->has_last && bucket < f->last_bucket)
	{
		ereport(NOTICE,
				(errmsg("bucket %s of task \"%s\" of resource type \"%s\" is older than its last bucket %s; nothing was started",
						pstrdup(timestamptz_to_str(bucket)), f->task, f->type,
						pstrdup(timestamptz_to_str(f->last_bucket)))));
		return 0;
	}

	/* A new bucket: the records of older ones are no longer needed. */
	if (!f->has_last || bucket > f->last_bucket)
	{
		prune_values[0] = Int64GetDatum(f->schedule_id);
		prune_values[1] = TimestampTzGetDatum(bucket);
		toygun_run(toygun_plan(&prune_plan,
							   "DELETE FROM ONLY toygun.schedule_start WHERE schedule_id = $1 AND bucket < $2",
							   2, prune_types),
				   prune_values, NULL, 0);
	}

	/*
	 * One statement for every resource (in the states the schedule names,
	 * $6, or all live ones). The resources are locked FOR SHARE, as
	 * start_task locks one, so a concurrent stop_resource() either waits
	 * for this firing and parks the new runs, or makes this firing wait and
	 * skip the stopped resource. Claiming the (schedule, bucket, resource)
	 * first makes a repeated or overlapping firing of the bucket skip the
	 * resource, even once the run started here has stopped; the live-run
	 * index leaves a run still live from an earlier bucket (or started by
	 * hand meanwhile) alone.
	 */
	fire_values[0] = CStringGetTextDatum(f->type);
	fire_values[1] = CStringGetTextDatum(f->task);
	fire_values[2] = Int64GetDatum(f->schedule_id);
	fire_values[3] = TimestampTzGetDatum(bucket);
	fire_values[4] = JsonbPGetDatum(args);
	fire_values[5] = f->states;
	fire_nulls[5] = f->states == (Datum) 0 ? 'n' : ' ';
	if (def->should_start != NULL)
	{
		started = fire_asking(f, fire_values, fire_nulls, &declined);
		goto record;
	}
	/*
	 * the runs start at their type's schema version (issue 16): 1, the default,
	 * or $7; their ids are UUIDv7 (toygun._new_id(), issue 18) where the schema
	 * has it, as the ids of runs started by hand, so that the runs list's
	 * newest-first order (by id) holds them too; a schema not yet updated to
	 * 0.4 keeps the random ids it had
	 */
#define FIRE_SQL(newid, cols, vals) \
	"WITH live AS (" \
	LIVE_RESOURCES_SQL \
	"     FOR SHARE OF r" \
	"), claimed AS (" \
	"  INSERT INTO toygun.schedule_start (schedule_id, bucket, resource_id)" \
	"  SELECT $3, $4, live.id FROM live" \
	"  ON CONFLICT (schedule_id, bucket, resource_id) DO NOTHING" \
	"  RETURNING resource_id" \
	"), started AS (" \
	"  INSERT INTO toygun.task (id, resource_id, resource_type, name, attrs, run_at" cols ")" \
	"  SELECT " newid ", claimed.resource_id, $1, $2, $5," \
	"         pg_catalog.clock_timestamp()" vals \
	"    FROM claimed" \
	"  ON CONFLICT (resource_id, name) WHERE state <> '__stop__' DO NOTHING" \
	"  RETURNING 1" \
	")" \
	" SELECT pg_catalog.count(*) FROM started"
	/* and at its default priority (issue 17) */
	if (toygun_has_queues())
	{
		Oid			types[9];

		memcpy(types, fire_types, sizeof(fire_types));
		types[6] = INT4OID;
		types[7] = INT2OID;
		types[8] = INT2OID;
		fire_values[6] = Int32GetDatum(def->version);
		fire_values[7] = Int16GetDatum(def->priority);
		fire_values[8] = Int16GetDatum(def->queue_id);
		/* a limited type's runs with their keys (issue 17): per resource with '$root' */
		if (def->flow != NULL)
			toygun_run(toygun_plan(&fire_flow_plan,
								   FIRE_SQL("toygun._new_id()", ", version, priority, queue_id, flow_key",
											", $7, $8, $9, toygun._flow_key($1, $2, claimed.resource_id, $5)"),
								   9, types),
					   fire_values, fire_nulls, 0);
		else
			toygun_run(toygun_plan(&fire_priority_plan, FIRE_SQL("toygun._new_id()", ", version, priority, queue_id", ", $7, $8, $9"), 9, types),
					   fire_values, fire_nulls, 0);
	}
	else if (def->version > 1)
	{
		Oid			types[7];

		memcpy(types, fire_types, sizeof(fire_types));
		types[6] = INT4OID;
		fire_values[6] = Int32GetDatum(def->version);
		toygun_run(toygun_plan(&fire_version_plan, FIRE_SQL("pg_catalog.gen_random_uuid()", ", version", ", $7"), 7, types),
				   fire_values, fire_nulls, 0);
	}
	else
		toygun_run(toygun_plan(&fire_plan, FIRE_SQL("pg_catalog.gen_random_uuid()", "", ""), 6, fire_types),
				   fire_values, fire_nulls, 0);
	started = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

record:
	record_values[0] = Int64GetDatum(f->schedule_id);
	record_values[1] = TimestampTzGetDatum(bucket);
	record_values[2] = Int64GetDatum(started);
	record_values[3] = TimestampTzGetDatum(f->next_fire_at);
	record_values[4] = Int64GetDatum(declined);
#define RECORD_BUCKET_SQL(sets) \
	"UPDATE ONLY toygun.schedule" \
	"   SET last_started = CASE WHEN last_bucket = $2 THEN last_started + $3 ELSE $3 END," \
	"       last_bucket = $2, last_fired_at = pg_catalog.clock_timestamp()" sets \
	" WHERE id = $1"
	if (f->v04)
		toygun_run(toygun_plan(&record_bucket_plan,
							   RECORD_BUCKET_SQL(", last_error = NULL, next_fire_at = $4,"
												 "  last_declined = CASE WHEN last_bucket = $2"
												 "                  THEN last_declined + $5 ELSE $5 END"),
							   5, record_types),
				   record_values, NULL, 0);
	else
		toygun_run(toygun_plan(&record_bucket_0_3_plan, RECORD_BUCKET_SQL(""), 3, record_types),
				   record_values, NULL, 0);
	if (started > 0)
	{
		toygun_levels_note_at_commit(def->queue_id, def->priority);
		toygun_wake_queue_at_commit(def->queue_id, def->priority);
	}
	return started;
}

/*
 * Fire in a subtransaction, and keep an error of the firing in the
 * schedule's last_error rather than raising it: a firing runs from pg_cron,
 * whose records of it only pg_cron's privileged roles read. Returns false
 * after such an error. An error that is not the firing's own (a cancel, a
 * deadlock or serialization failure, no resources left) is raised.
 */
static bool
fire_keeping_error(Firing *f, int64 *started)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;
	int			category;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		*started = fire(f);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	if (edata == NULL)
		return true;
	category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	if (category == ERRCODE_TO_CATEGORY(ERRCODE_T_R_SERIALIZATION_FAILURE) ||
		category == ERRCODE_TO_CATEGORY(ERRCODE_INSUFFICIENT_RESOURCES) ||
		category == ERRCODE_TO_CATEGORY(ERRCODE_QUERY_CANCELED) ||
		category == ERRCODE_TO_CATEGORY(ERRCODE_SYSTEM_ERROR))
		ReThrowError(edata);

	{
		Oid			types[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
		Datum		values[3];

		values[0] = Int64GetDatum(f->schedule_id);
		values[1] = CStringGetTextDatum(psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode),
												 edata->message));
		values[2] = TimestampTzGetDatum(f->next_fire_at);
		toygun_run(toygun_plan(&record_error_plan,
							   "UPDATE ONLY toygun.schedule SET last_error = $2,"
							   "       last_fired_at = pg_catalog.clock_timestamp(), next_fire_at = $3"
							   " WHERE id = $1",
							   3, types),
				   values, NULL, 0);
	}
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("periodic start of task \"%s\" of resource type \"%s\" failed: %s",
					f->task, f->type, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("The error is kept in toygun.schedule.last_error until a firing succeeds.")));
	return false;
}

/*
 * run_schedule(resource_type, task, at): the firing, the command of the
 * pg_cron job. Starts the task on every live resource of the type (in the
 * schedule's states) that has no live run of it and has not been started in
 * the bucket of at (default: now), in one set-based statement. Returns how
 * many runs it started. A firing at the current time (at NULL: pg_cron's)
 * that fails keeps its error in the schedule's last_error, warns, and
 * returns NULL; with an explicit at, errors are raised.
 */
Datum
toygun_run_schedule(PG_FUNCTION_ARGS)
{
	ToygunCall	call;
	Firing		f;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *cron;
	int			col;
	int64		started = 0;
	bool		fired = true;
	Oid			lock_types[2] = {TEXTOID, TEXTOID};
	Datum		lock_values[2];

	memset(&f, 0, sizeof(f));
	toygun_check_not_null(fcinfo, 0, "resource_type");
	f.type = toygun_check_name("resource type name", PG_GETARG_TEXT_PP(0));
	toygun_check_not_null(fcinfo, 1, "task");
	f.task = toygun_check_name("task name", PG_GETARG_TEXT_PP(1));
	f.at = PG_ARGISNULL(2) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(2);
	if (!TIMESTAMP_NOT_FINITE(f.at) && f.at > GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must not be in the future"),
				 errdetail("A firing for a future bucket would make the schedule skip every bucket until then.")));

	toygun_begin_call(&call);

	/*
	 * Whoever fires it must have the right to start the task type, before
	 * it takes any lock: a role without it must not hold up firings.
	 */
	f.def = toygun_find_def(TOYGUN_TASK, f.type, f.task, false);
	toygun_check_right(f.def, call.caller, TOYGUN_RIGHT_START);

	/*
	 * Overlapping firings of one schedule take turns here. s.* for the
	 * columns of 0.4, read by name: 0.3's SQL runs on this library too.
	 */
	lock_values[0] = CStringGetTextDatum(f.type);
	lock_values[1] = CStringGetTextDatum(f.task);
	toygun_run(toygun_plan(&lock_schedule_plan,
						   "SELECT id, cron, args, owner::pg_catalog.oid, last_bucket, s.* FROM ONLY toygun.schedule s"
						   " WHERE resource_type = $1 AND task = $2 FOR NO KEY UPDATE",
						   2, lock_types),
			   lock_values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" of resource type \"%s\" has no periodic start", f.task, f.type),
				 errhint("Create one with toygun.start_every().")));
	/*
	 * The name's use, as start_task takes it, and the definition read again
	 * under it: a redefinition into another queue (issue 17) or a rename
	 * waits for the runs this inserts, or they read it as it committed.
	 */
	toygun_lock_name_use(TOYGUN_TASK, f.type, f.task, false);
	f.def = toygun_find_def(TOYGUN_TASK, f.type, f.task, false);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	f.schedule_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	cron = SPI_getvalue(tup, desc, 2);
	f.args = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	f.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	f.last_bucket = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	f.has_last = !isnull;
	col = SPI_fnumber(desc, "states");
	f.v04 = col > 0;
	if (f.v04)
	{
		Datum		d = SPI_getbinval(tup, desc, col, &isnull);

		f.states = isnull ? (Datum) 0 : SPI_datumTransfer(d, false, -1);
	}
	if (toygun_parse_schedule(cron, &f.spec) == NULL)
		elog(ERROR, "stored schedule \"%s\" is invalid", cron);
	f.next_fire_at = toygun_cron_next(&f.spec, GetCurrentTimestamp());

	if (f.v04 && PG_ARGISNULL(2))
		fired = fire_keeping_error(&f, &started);
	else
		started = fire(&f);
	toygun_end_call(&call);
	if (!fired)
		PG_RETURN_NULL();
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

/*
 * A rename (issue 16): the schedules of resource type old_type (of its task
 * old_task, or of all its tasks when old_task is NULL) follow it to new_type
 * and new_task, and so do their pg_cron jobs, whose name and command name
 * the type and task: each is unscheduled and scheduled again under the new
 * name (a new job id, kept in the schedule). Without pg_cron, the rows alone.
 */
void
toygun_rename_schedules(const char *old_type, const char *new_type,
						const char *old_task, const char *new_task)
{
	static SPIPlanPtr rename_plan = NULL;
	static SPIPlanPtr job_plan = NULL;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Oid			job_types[3] = {INT8OID, TEXTOID, INT8OID};
	bool		has_cron = OidIsValid(get_extension_oid("pg_cron", true));
	SPITupleTable *renamed;
	uint64		n,
				i;

	values[0] = CStringGetTextDatum(old_type);
	values[1] = CStringGetTextDatum(new_type);
	values[2] = old_task ? CStringGetTextDatum(old_task) : (Datum) 0;
	nulls[2] = old_task ? ' ' : 'n';
	values[3] = new_task ? CStringGetTextDatum(new_task) : (Datum) 0;
	nulls[3] = new_task ? ' ' : 'n';
	toygun_run(toygun_plan(&rename_plan,
						   "UPDATE ONLY toygun.schedule s SET resource_type = $2,"
						   "       task = CASE WHEN s.task = $3 THEN $4 ELSE s.task END"
						   " WHERE s.resource_type = $1 AND ($3 IS NULL OR s.task = $3)"
						   " RETURNING s.id, s.task, s.cron",
						   4, argtypes),
			   values, nulls, 0);
	renamed = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = renamed->vals[i];
		TupleDesc	desc = renamed->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *task = SPI_getvalue(tup, desc, 2);
		char	   *old_name = job_name(old_type, old_task ? old_task : task);
		char	   *name = job_name(new_type, task);
		Datum		job_values[3];
		char		job_nulls[3] = {' ', ' ', 'n'};

		if (has_cron)
		{
			Oid			cron_types[3] = {TEXTOID, TEXTOID, TEXTOID};
			Datum		cron_values[3];

			cron_values[0] = CStringGetTextDatum(old_name);
			cron_values[1] = CStringGetTextDatum(job_command(old_type, old_task ? old_task : task));
			if (SPI_execute_with_args("SELECT cron.unschedule(jobid) FROM cron.job"
									  " WHERE jobname = $1 AND username = CURRENT_USER AND command = $2",
									  2, cron_types, cron_values, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "cron.unschedule() failed");
			cron_values[0] = CStringGetTextDatum(name);
			cron_values[1] = CStringGetTextDatum(SPI_getvalue(tup, desc, 3));
			cron_values[2] = CStringGetTextDatum(job_command(new_type, task));
			if (SPI_execute_with_args("SELECT cron.schedule($1, $2, $3)", 3, cron_types,
									  cron_values, NULL, false, 1) != SPI_OK_SELECT ||
				SPI_processed != 1)
				elog(ERROR, "cron.schedule() failed");
			job_values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			job_nulls[2] = ' ';
		}
		job_values[0] = Int64GetDatum(id);
		job_values[1] = CStringGetTextDatum(name);
		toygun_run(toygun_plan(&job_plan,
							   "UPDATE ONLY toygun.schedule SET job_name = $2, job_id = COALESCE($3, job_id),"
							   "       updated_at = pg_catalog.clock_timestamp() WHERE id = $1",
							   3, job_types),
				   job_values, job_nulls, 0);
	}
}
