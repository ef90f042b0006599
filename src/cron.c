/*
 * cron.c
 *		Schedules as pg_cron 1.4.2 reads them, apart from the scheduling: the
 *		grammar of cron expressions, intervals turned into the cron expression
 *		that fires evenly, and the bucket (latest fire time) of a firing.
 *		Pure: no catalog, no SPI; schedule.c calls it, never the other way.
 */
#include "postgres.h"

#include <ctype.h>

#include "common/int.h"
#include "mb/pg_wchar.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "cron.h"

/* Longest schedule text accepted, in bytes. */
#define SCHEDULE_MAX 255

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

/*
 * The problem of an unexpected character at p: the whole character, never
 * one byte of a multibyte one, which would make the detail invalid text in
 * the database's encoding; a control character (C0, DEL and, in UTF-8, C1),
 * which would not show, by its code.
 */
static char *
unexpected_char(const char *p)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			len = pg_mbcliplen(p, strlen(p), pg_mblen(p));
	pg_wchar	c = utf8 ? utf8_to_unicode((const unsigned char *) p) : (unsigned char) *p;

	if (c < 0x20 || c == 0x7f || (utf8 && c >= 0x80 && c <= 0x9f))
		return psprintf("has an unexpected control character U+%04X", (unsigned int) c);
	return psprintf("has an unexpected \"%.*s\"", len, p);
}

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
			? unexpected_char(start)
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
			*problem = unexpected_char(p);
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
char *
toygun_parse_schedule(const char *schedule, CronSpec *spec)
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

/* A minute of a day, in GMT, as a timestamp. */
static TimestampTz
minute_timestamp(int year, int month, int day, int hour, int minute)
{
	struct pg_tm b;
	Timestamp	result;

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
 * The fire time nearest to at in direction dir: with dir -1, the latest
 * minute at or before at that the spec matches; with dir +1, the earliest
 * minute after at's minute. In GMT, as pg_cron 1.4.2 fires.
 */
static TimestampTz
cron_search(const CronSpec *spec, TimestampTz at, int dir)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			jd;
	int			n;

	if (TIMESTAMP_NOT_FINITE(at) ||
		timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("time is out of range for a schedule")));
	jd = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday);
	for (n = 0; n <= CYCLE_DAYS; n++, jd += dir)
	{
		int			year,
					month,
					day,
					hour;

		j2date(jd, &year, &month, &day);
		if (!day_matches(spec, month, day, j2day(jd)))
			continue;
		for (hour = n == 0 ? tm.tm_hour : (dir < 0 ? 23 : 0); hour >= 0 && hour < 24; hour += dir)
		{
			int			minute;

			if ((spec->hours & (UINT64CONST(1) << hour)) == 0)
				continue;
			if (n == 0 && hour == tm.tm_hour)
				minute = dir < 0 ? tm.tm_min : tm.tm_min + 1;
			else
				minute = dir < 0 ? 59 : 0;
			for (; minute >= 0 && minute < 60; minute += dir)
				if ((spec->minutes & (UINT64CONST(1) << minute)) != 0)
					return minute_timestamp(year, month, day, hour, minute);
		}
	}
	elog(ERROR, "no fire time of the schedule within 400 years of %s", timestamptz_to_str(at));
	return 0;					/* not reached */
}

/* The bucket of a firing at time at: the latest fire time at or before it. */
TimestampTz
toygun_cron_bucket(const CronSpec *spec, TimestampTz at)
{
	return cron_search(spec, at, -1);
}

/*
 * The next fire time of the spec after time at: the earliest minute after
 * at's minute that the spec matches. What next_fire_at shows.
 */
TimestampTz
toygun_cron_next(const CronSpec *spec, TimestampTz at)
{
	return cron_search(spec, at, 1);
}
