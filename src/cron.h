/*
 * cron.h
 *		Schedules as pg_cron reads them (cron.c): a cron expression or an
 *		interval, parsed into the minutes it fires, and the bucket of a firing.
 */
#ifndef TOYGUN_CRON_H
#define TOYGUN_CRON_H

#include "postgres.h"

#include "datatype/timestamp.h"

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

extern char *toygun_parse_schedule(const char *schedule, CronSpec *spec);
extern TimestampTz toygun_cron_bucket(const CronSpec *spec, TimestampTz at);
extern TimestampTz toygun_cron_next(const CronSpec *spec, TimestampTz at);

#endif							/* TOYGUN_CRON_H */
