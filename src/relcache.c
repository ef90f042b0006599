/*
 * relcache.c
 *		One relcache callback for all of toygun's caches.
 *
 * PostgreSQL gives a backend ten relcache callbacks (MAX_RELCACHE_CALLBACKS).
 * Citus takes most of them, and a callback asked for later, the first
 * time a cache of toygun's is filled (the alarm routes when a run first
 * panics), failed the worker with FATAL "out of relcache_callback_list
 * slots". toygun takes one slot, at load, and calls its caches' own
 * callbacks from it.
 */
#include "postgres.h"

#include "utils/inval.h"

#include "toygun.h"

/* store, definitions, flow, outbox: room to spare */
#define MAX_CALLBACKS 8

static RelcacheCallbackFunction callbacks[MAX_CALLBACKS];
static int	ncallbacks = 0;

static void
relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < ncallbacks; i++)
		callbacks[i] ((Datum) 0, relid);
}

/* From _PG_init: toygun's one slot. */
void
toygun_relcache_init(void)
{
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
}

/* Call f at every relcache invalidation, as CacheRegisterRelcacheCallback would. */
void
toygun_on_relcache(RelcacheCallbackFunction f)
{
	if (ncallbacks >= MAX_CALLBACKS)
		elog(FATAL, "out of toygun relcache callback slots");
	callbacks[ncallbacks++] = f;
}
