/*
 * toygun.c
 *		Module load: settings, and the commit hook that wakes the worker when
 *		a transaction has made something due.
 */
#include "postgres.h"

#include <sodium.h>

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "toygun.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings */
int			toygun_poll_interval_ms = 10000;

/* This transaction made a resource or task due: wake a worker at commit. */
static bool wake_at_commit = false;

void
toygun_note_due(void)
{
	wake_at_commit = true;
}

static void
toygun_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

void
_PG_init(void)
{
	DefineCustomIntVariable("toygun.poll_interval",
							"How long stay() without a wait waits before the next tick.",
							NULL,
							&toygun_poll_interval_ms,
							10000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("toygun.keyring_file",
							   "File with the numbered keys that encrypt secrets and encrypted fields.",
							   "Each line is a key number and a base64-encoded 32-byte key. "
							   "The file must be readable only by the server's operating system user.",
							   &toygun_keyring_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, toygun_keyring_assign, NULL);
	MarkGUCPrefixReserved("toygun");

	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libsodium")));
	RegisterXactCallback(toygun_xact_callback, NULL);
}
