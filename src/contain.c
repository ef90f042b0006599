/*
 * contain.c
 *		A worker runs the ticks of many owners, many to a transaction, in one
 *		session. What a tick may leave behind there is undone before the next
 *		one (see "What one tick leaves to the next" in README.md), and the
 *		worker runs with its own values of the settings a database owner
 *		could use to stop or break it.
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/portal.h"

#include "toygun.h"

/*
 * Settings a database's or a role's defaults (ALTER DATABASE ... SET) must
 * not give a worker: they would make every batch fail, or end the worker.
 */
static const char *const worker_settings[][2] = {
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_deferrable", "off"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"idle_session_timeout", "0"},
	{"exit_on_error", "off"},
	{"session_replication_role", "origin"},
	{"standard_conforming_strings", "on"},
	{"transform_null_equals", "off"},
	/* the test clock is for a session's ticks by hand (clock.c reads it not in a worker either) */
	{"toygun.test_now", ""},
	/* internal queries are qualified; handlers set their own search_path */
	{"search_path", "pg_catalog, pg_temp"},
};

static ProcessUtility_hook_type prev_utility_hook = NULL;
static bool in_tick = false;
static bool tick_set_constraints = false;
static bool tenant_code_barred = false;

/*
 * Notes a SET CONSTRAINTS in a tick: its mode lasts until the transaction
 * ends. (Handlers run as security-restricted operations, where PostgreSQL
 * refuses PREPARE, LISTEN, temporary tables, role changes and deferred
 * trigger events: none of these can outlast a tick.)
 */
static void
contain_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (in_tick && IsA(pstmt->utilityStmt, ConstraintsSetStmt))
		tick_set_constraints = true;
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/* At a worker's start, once connected: its own settings, and the hook. */
void
toygun_contain_start(void)
{
	int			i;

	for (i = 0; i < lengthof(worker_settings); i++)
		SetConfigOption(worker_settings[i][0], worker_settings[i][1], PGC_SUSET, PGC_S_SESSION);
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = contain_utility;
}

void
toygun_contain_begin_tick(void)
{
	in_tick = true;
}

/*
 * After a tick, done or rolled back: close the cursors it left open (WITH
 * HOLD too) and release its session-level advisory locks. Its settings are
 * reverted by the tick itself; its transaction-level advisory locks are
 * held, like its row locks, until the batch commits what they guard.
 * Returns true when the tick changed what only the end of the transaction
 * undoes (SET CONSTRAINTS): the batch must commit after it.
 */
bool
toygun_contain_end_tick(void)
{
	bool		end_batch = tick_set_constraints;

	in_tick = false;
	tick_set_constraints = false;
	PortalHashTableDeleteAll();
	LockReleaseSession(USER_LOCKMETHOD);
	return end_batch;
}

/*
 * While a dead tick is charged (failure.c), no tenant's code runs: the
 * charge is not a tick, with no tick timeout and no in-flight record, so a
 * hook, trigger or alarm handler that loops there would hold the worker
 * with nothing to end it. A panic charged so raises its alarm without
 * offering it to alarm handlers (alarms.c) and fires no trigger
 * (triggers.c).
 */
void
toygun_bar_tenant_code(bool bar)
{
	tenant_code_barred = bar;
}

bool
toygun_tenant_code_barred(void)
{
	return tenant_code_barred;
}
