/*
 * schedule.c
 *		Periodic starts on pg_cron: schedules (cron expressions or intervals)
 *		and the buckets they fire in, start_every/stop_every, and the firing
 *		that starts a task on every live resource of a type once per bucket.
 */
#include "postgres.h"

#include <ctype.h>
#include <sodium.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_start_every);
PG_FUNCTION_INFO_V1(toygun_stop_every);
PG_FUNCTION_INFO_V1(toygun_run_schedule);
PG_FUNCTION_INFO_V1(toygun_schedule_bucket);

/* Longest schedule text accepted, in bytes. */
#define SCHEDULE_MAX 255

/*
 * A cron expression as pg_cron 1.4.2 reads it: one bit per allowed value.
 * When the day-of-month or the day-of-week field starts with '*', a day must
 * match both; when neither does, it must match either (vixie cron's rule,
 * which pg_cron keeps).
 */
typedef struct CronSpec
{
	uint64		minutes;		/* bit m: minute m, 0-59 */
	uint64		hours;			/* bit h: hour h, 0-23 */
	uint64		days;			/* bit d: day of month d, 1-31 */
	uint64		months;			/* bit m: month m, 1-12 */
	uint64		weekdays;		/* bit w: weekday w, 0 (Sunday) to 6 */
	bool		days_star;
	bool		weekdays_star;
} CronSpec;

typedef struct CronField
{
	const char *name;
	int			low;
	int			high;
	const char *const *names;	/* names of low, low + 1, ...; or NULL */
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun",
	"jul", "aug", "sep", "oct", "nov", "dec", NULL
};
static const char *const weekday_names[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL
};

/* Day of week 7 is Sunday again, as in pg_cron. */
static const CronField cron_fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day-of-month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day-of-week", 0, 7, weekday_names}
};

#define CRON_HINT \
	"Use a cron expression of five fields, minute (0-59), hour (0-23), day of month (1-31), " \
	"month (1-12 or jan-dec) and day of week (0-7 or sun-sat), such as '0 3 * * *', " \
	"or an interval such as '5 minutes'."

/* pg_cron's named schedules, as the five fields they stand for. */
static const char *const cron_specials[][2] = {
	{"hourly", "0 * * * *"},
	{"daily", "0 0 * * *"},
	{"midnight", "0 0 * * *"},
	{"weekly", "0 0 * * 0"},
	{"monthly", "0 0 1 * *"},
	{"yearly", "0 0 1 1 *"},
	{"annually", "0 0 1 1 *"},
	{NULL, NULL}
};

/* The most days a bucket can lie back: one Gregorian cycle of 400 years. */
#define CYCLE_DAYS 146097

static SPIPlanPtr upsert_schedule_plan;
static SPIPlanPtr set_job_plan;
static SPIPlanPtr lock_schedule_plan;
static SPIPlanPtr prune_plan;
static SPIPlanPtr fire_plan;
static SPIPlanPtr record_bucket_plan;
static SPIPlanPtr delete_schedule_plan;

/*
 * Read one value of a field: a number, or a name where the field has names.
 * Returns the position after it, or NULL with *problem set.
 */
static const char *
cron_value(const char *p, const CronField *f, int *value, char **problem)
{
	const char *start = p;
	int			len;
	int			i;

	while (isalnum((unsigned char) *p))
		p++;
	len = p - start;
	if (len == 0)
	{
		*problem = *start
			? psprintf("has an unexpected \"%c\"", *start)
			: pstrdup("ends where a value should be");
		return NULL;
	}
	if (isdigit((unsigned char) *start))
	{
		*value = 0;
		for (i = 0; i < len; i++)
		{
			if (!isdigit((unsigned char) start[i]))
			{
				*problem = psprintf("has \"%.*s\", which is not a number", len, start);
				return NULL;
			}
			if (*value > f->high)
			{
				*problem = psprintf("has %.*s, outside %d-%d", len, start, f->low, f->high);
				return NULL;
			}
			*value = *value * 10 + (start[i] - '0');
		}
		if (*value < f->low || *value > f->high)
		{
			*problem = psprintf("has %d, outside %d-%d", *value, f->low, f->high);
			return NULL;
		}
		return p;
	}
	for (i = 0; f->names && f->names[i]; i++)
		if (len == (int) strlen(f->names[i]) && pg_strncasecmp(start, f->names[i], len) == 0)
		{
			*value = f->low + i;
			return p;
		}
	*problem = f->names
		? psprintf("has \"%.*s\", which is neither a number nor a name such as %s",
				   len, start, f->names[0])
		: psprintf("has \"%.*s\", which is not a number", len, start);
	return NULL;
}

/* A step: a number of at least 1. */
static const char *
cron_step(const char *p, int *step, char **problem)
{
	const char *start = p;

	*step = 0;
	while (isdigit((unsigned char) *p) && *step <= 1000)
		*step = *step * 10 + (*p++ - '0');
	if (p == start || *step < 1 || isalnum((unsigned char) *p))
	{
		*problem = pstrdup("has a step that is not a number of at least 1");
		return NULL;
	}
	return p;
}

/*
 * One field: a comma-separated list of '*', values and ranges, each with an
 * optional step ('*' and ranges only, as pg_cron requires). Sets *bits.
 */
static bool
cron_field(const char *text, const CronField *f, uint64 *bits, char **problem)
{
	const char *p = text;

	*bits = 0;
	for (;;)
	{
		int			first,
					last,
					step = 1,
					v;
		bool		ranged = false;

		if (*p == ',' || *p == '\0')
		{
			*problem = pstrdup("has an empty list item");
			return false;
		}
		if (*p == '*')
		{
			first = f->low;
			last = f->high;
			ranged = true;
			p++;
		}
		else
		{
			if ((p = cron_value(p, f, &first, problem)) == NULL)
				return false;
			last = first;
			if (*p == '-')
			{
				if ((p = cron_value(p + 1, f, &last, problem)) == NULL)
					return false;
				if (last < first)
				{
					*problem = psprintf("has the range %d-%d, which runs backwards", first, last);
					return false;
				}
				ranged = true;
			}
		}
		if (*p == '/')
		{
			if (!ranged)
			{
				*problem = pstrdup("has a step without * or a range before it, as in */5 or 0-30/5");
				return false;
			}
			if ((p = cron_step(p + 1, &step, problem)) == NULL)
				return false;
		}
		for (v = first; v <= last; v += step)
			*bits |= UINT64CONST(1) << (f->names == weekday_names && v == 7 ? 0 : v);
		if (*p == '\0')
			return true;
		if (*p != ',')
		{
			*problem = psprintf("has an unexpected \"%c\"", *p);
			return false;
		}
		p++;
	}
}

/* Days in a month, counting February as 29: a schedule may fire in leap years only. */
static int
longest_month(int month)
{
	static const int lengths[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return lengths[month - 1];
}

/*
 * Parse the five fields of a cron expression. Returns false with *problem
 * set, and *field_no the field it is in, if they are not valid.
 */
static bool
parse_cron(char **fields, CronSpec *spec, int *field_no, char **problem)
{
	uint64	   *bits[5];
	int			i;

	bits[0] = &spec->minutes;
	bits[1] = &spec->hours;
	bits[2] = &spec->days;
	bits[3] = &spec->months;
	bits[4] = &spec->weekdays;
	for (i = 0; i < 5; i++)
	{
		*field_no = i;
		if (!cron_field(fields[i], &cron_fields[i], bits[i], problem))
			return false;
	}
	spec->days_star = fields[2][0] == '*';
	spec->weekdays_star = fields[4][0] == '*';
	return true;
}

/*
 * Whether a spec ever fires. When either day field may match, it does:
 * every month has every weekday. When both must match, a chosen day of a
 * chosen month falls on every weekday in some year, so it never fires only
 * if no chosen month has any chosen day (say, February 30).
 */
static bool
cron_ever_fires(const CronSpec *spec)
{
	int			m,
				d;

	if (!spec->days_star && !spec->weekdays_star)
		return true;
	for (m = 1; m <= 12; m++)
		if (spec->months & (UINT64CONST(1) << m))
			for (d = 1; d <= longest_month(m); d++)
				if (spec->days & (UINT64CONST(1) << d))
					return true;
	return false;
}

/* An interval in PostgreSQL's input syntax, or false if it is not one. */
static bool
parse_interval(const char *s, Interval *out)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype = 0;
	struct pg_itm_in itm;
	int			dterr;

	dterr = ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(pstrdup(s), &dtype, &itm);
	if (dterr != 0 || dtype != DTK_DELTA)
		return false;
	return itmin2interval(&itm, out) == 0;
}

static void
inexpressible(const char *schedule, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("interval \"%s\" cannot be expressed as a pg_cron schedule", schedule),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint)));
}

/*
 * The cron expression that fires every interval, evenly: pg_cron 1.4.2
 * fires on whole minutes (GMT), so the interval must be whole minutes that
 * divide an hour, whole hours that divide a day, one day, one week, or
 * months that divide a year.
 */
static char *
interval_cron(const char *schedule, Interval *iv)
{
	int64		usecs;
	int64		minutes;

	if (iv->month != 0)
	{
		if (iv->day != 0 || iv->time != 0)
			inexpressible(schedule,
						  "Months have different lengths, so an interval of months cannot also have days or a time.",
						  "Use whole months that divide a year, or a cron expression such as '0 3 1 * *'.");
		if (iv->month < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("interval \"%s\" is not positive", schedule)));
		if (iv->month == 1)
			return pstrdup("0 0 1 * *");
		if (iv->month == 12)
			return pstrdup("0 0 1 1 *");
		if (iv->month < 12 && 12 % iv->month == 0)
			return psprintf("0 0 1 */%d *", iv->month);
		inexpressible(schedule,
					  psprintf("%d months do not divide a year evenly.", iv->month),
					  "Use 1, 2, 3, 4, 6 or 12 months, or a cron expression.");
	}
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, iv->time, &usecs))
		inexpressible(schedule, "It is too long.", "Use a cron expression.");
	if (usecs <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("interval \"%s\" is not positive", schedule)));
	if (usecs % USECS_PER_MINUTE != 0)
		inexpressible(schedule,
					  usecs < USECS_PER_MINUTE
					  ? "pg_cron 1.4.2 runs jobs at most once a minute, on the minute."
					  : "pg_cron 1.4.2 runs jobs on whole minutes; it has no schedules in seconds.",
					  "Use a whole number of minutes, such as '1 minute' or '5 minutes'.");
	minutes = usecs / USECS_PER_MINUTE;
	if (minutes < 60)
	{
		if (60 % minutes != 0)
			inexpressible(schedule,
						  psprintf(INT64_FORMAT " minutes do not divide an hour evenly.", minutes),
						  "Use a number of minutes that divides 60, such as 5, 10, 15 or 30, or a cron expression such as '*/7 * * * *' (which restarts each hour).");
		return minutes == 1 ? pstrdup("* * * * *") : psprintf("*/" INT64_FORMAT " * * * *", minutes);
	}
	if (minutes < 24 * 60)
	{
		int64		hours = minutes / 60;

		if (minutes % 60 != 0)
			inexpressible(schedule,
						  "It is longer than an hour but not a whole number of hours.",
						  "Use a number of hours that divides 24, or a cron expression.");
		if (24 % hours != 0)
			inexpressible(schedule,
						  psprintf(INT64_FORMAT " hours do not divide a day evenly.", hours),
						  "Use a number of hours that divides 24, such as 2, 3, 4, 6, 8 or 12, or a cron expression.");
		return hours == 1 ? pstrdup("0 * * * *") : psprintf("0 */" INT64_FORMAT " * * *", hours);
	}
	if (minutes == 24 * 60)
		return pstrdup("0 0 * * *");
	if (minutes == 7 * 24 * 60)
		return pstrdup("0 0 * * 0");
	inexpressible(schedule,
				  "Longer than a day, only 1 week repeats evenly: months have different lengths.",
				  "Use '1 day', '1 week', a number of months, or a cron expression such as '0 0 */2 * *' (which restarts each month).");
	return NULL;				/* not reached */
}

static void
invalid_schedule(const char *schedule, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid schedule \"%s\"", schedule),
			 detail ? errdetail_internal("%s", detail) : 0,
			 errhint(CRON_HINT)));
}

/* Parse a cron expression made here (from an interval or a name): valid by construction. */
static void
parse_generated(const char *cron, CronSpec *spec)
{
	char	   *copy = pstrdup(cron);
	char	   *words[5];
	char	   *problem = NULL;
	char	   *p;
	int			field_no;
	int			n = 0;

	for (p = strtok(copy, " "); p != NULL && n < 5; p = strtok(NULL, " "))
		words[n++] = p;
	memset(spec, 0, sizeof(CronSpec));
	if (n != 5 || !parse_cron(words, spec, &field_no, &problem))
		elog(ERROR, "invalid generated cron expression \"%s\"", cron);
}

/* Whether a word looks like a cron field: digits, *, ranges, steps, lists. */
static bool
cron_like(const char *word)
{
	for (; *word; word++)
		if (!isdigit((unsigned char) *word) && strchr("*,-/", *word) == NULL)
			return false;
	return true;
}

/*
 * Read a schedule, a cron expression or an interval, into a spec. Returns
 * the cron expression to give pg_cron: the five fields separated by single
 * spaces, or the expression an interval or a named schedule stands for.
 */
static char *
parse_schedule(const char *schedule, CronSpec *spec)
{
	char	   *copy;
	char	   *words[6];
	int			nwords = 0;
	bool		all_cron_like = true;
	char	   *p;
	char	   *cron = NULL;
	char	   *problem = NULL;
	int			field_no = 0;
	Interval	iv;
	int			i;

	if (strlen(schedule) > SCHEDULE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule is too long"),
				 errdetail("It is %zu bytes long; the limit is %d bytes.",
						   strlen(schedule), SCHEDULE_MAX)));
	copy = pstrdup(schedule);
	p = copy;
	for (;;)
	{
		char	   *word;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		word = p;
		while (*p && !isspace((unsigned char) *p))
			p++;
		if (*p)
			*p++ = '\0';
		if (nwords < 6)
			words[nwords] = word;
		all_cron_like = all_cron_like && cron_like(word);
		nwords++;
	}
	if (nwords == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule must not be empty"),
				 errhint(CRON_HINT)));

	/* pg_cron's named schedules: @daily and friends */
	if (words[0][0] == '@' && isalpha((unsigned char) words[0][1]))
	{
		if (nwords == 1)
			for (i = 0; cron_specials[i][0]; i++)
				if (pg_strcasecmp(words[0] + 1, cron_specials[i][0]) == 0)
					cron = pstrdup(cron_specials[i][1]);
		if (cron == NULL)
			invalid_schedule(schedule,
							 pg_strcasecmp(words[0], "@reboot") == 0
							 ? "@reboot does not repeat, so it has no buckets."
							 : "The named schedules are @hourly, @daily, @midnight, @weekly, @monthly, @yearly and @annually.");
		parse_generated(cron, spec);
		return cron;
	}

	if (nwords == 5)
	{
		memset(spec, 0, sizeof(CronSpec));
		if (parse_cron(words, spec, &field_no, &problem))
		{
			if (!cron_ever_fires(spec))
				invalid_schedule(schedule,
								 "None of its months has any of its days of the month, so it never fires.");
			return psprintf("%s %s %s %s %s", words[0], words[1], words[2], words[3], words[4]);
		}
	}

	/* not a valid cron expression: perhaps an interval */
	if (!all_cron_like && parse_interval(schedule, &iv))
	{
		cron = interval_cron(schedule, &iv);
		parse_generated(cron, spec);
		return cron;
	}
	if (problem != NULL)
		invalid_schedule(schedule,
						 psprintf("The %s field \"%s\" %s.", cron_fields[field_no].name,
								  words[field_no], problem));
	invalid_schedule(schedule,
					 all_cron_like
					 ? psprintf("A cron expression has five fields; this one has %d.", nwords)
					 : NULL);
	return NULL;				/* not reached */
}

/* Whether a day matches, by pg_cron's rule for the two day fields. */
static bool
day_matches(const CronSpec *spec, int month, int day, int weekday)
{
	bool		dom = (spec->days & (UINT64CONST(1) << day)) != 0;
	bool		dow = (spec->weekdays & (UINT64CONST(1) << weekday)) != 0;

	if ((spec->months & (UINT64CONST(1) << month)) == 0)
		return false;
	if (spec->days_star || spec->weekdays_star)
		return dom && dow;
	return dom || dow;
}

/*
 * The bucket of a firing at time at: the latest minute at or before it that
 * the spec matches, in GMT, as pg_cron 1.4.2 fires.
 */
static TimestampTz
cron_bucket(const CronSpec *spec, TimestampTz at)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			jd;
	int			back;

	if (TIMESTAMP_NOT_FINITE(at) ||
		timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("time is out of range for a schedule")));
	jd = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday);
	for (back = 0; back <= CYCLE_DAYS; back++, jd--)
	{
		int			year,
					month,
					day,
					hour;

		j2date(jd, &year, &month, &day);
		if (!day_matches(spec, month, day, j2day(jd)))
			continue;
		for (hour = back == 0 ? tm.tm_hour : 23; hour >= 0; hour--)
		{
			int			minute;

			if ((spec->hours & (UINT64CONST(1) << hour)) == 0)
				continue;
			for (minute = back == 0 && hour == tm.tm_hour ? tm.tm_min : 59; minute >= 0; minute--)
			{
				struct pg_tm b;
				Timestamp	result;

				if ((spec->minutes & (UINT64CONST(1) << minute)) == 0)
					continue;
				memset(&b, 0, sizeof(b));
				b.tm_year = year;
				b.tm_mon = month;
				b.tm_mday = day;
				b.tm_hour = hour;
				b.tm_min = minute;
				if (tm2timestamp(&b, 0, NULL, &result) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("time is out of range for a schedule")));
				return result;
			}
		}
	}
	elog(ERROR, "no fire time of the schedule in the 400 years before the firing");
	return 0;					/* not reached */
}

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
					 errdetail("The args of a periodic start are stored in toygun.schedule, which everybody may read."),
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
	cron = parse_schedule(schedule, &spec);

	toygun_begin_call(&call);
	def = schedule_def(type, task);
	toygun_check_acting_for(def, call.caller);
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
	toygun_check_acting_for(def, call.caller);

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
	 * Whoever fires it must be allowed to act for the task type, before it
	 * takes any lock: a role without privileges must not hold up firings.
	 */
	def = toygun_find_def(TOYGUN_TASK, type, task, false);
	toygun_check_acting_for(def, call.caller);

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
	if (!has_privs_of_role(owner, def->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", toygun_def_label(def)),
				 errdetail("Its periodic start was made by role \"%s\", which no longer has the privileges of its owner, role \"%s\".",
						   toygun_role_name(owner), toygun_role_name(def->owner)),
				 errhint("Call toygun.start_every() again as a member of role \"%s\", or toygun.stop_every().",
						 toygun_role_name(def->owner))));
	check_starts(def);
	args = toygun_start_args(def, args);
	check_no_encrypted(def, args);

	if (parse_schedule(cron, &spec) == NULL)
		elog(ERROR, "stored schedule \"%s\" is invalid", cron);
	bucket = cron_bucket(&spec, at);

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
	(void) parse_schedule(text_to_cstring(PG_GETARG_TEXT_PP(0)), &spec);
	PG_RETURN_TIMESTAMPTZ(cron_bucket(&spec, PG_GETARG_TIMESTAMPTZ(1)));
}
