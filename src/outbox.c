/*
 * outbox.c
 *		Notifications (issue 15): channels (where alarms are sent: a webhook,
 *		Slack, PagerDuty, email) and routes (which alarms go to a channel: by
 *		alarm kind or by resource type); and the outbox, written when an alarm
 *		opens, re-opens or closes (alarms.c calls toygun_outbox_alarm()): one
 *		row per channel its routes match, the payload already in the
 *		channel kind's shape, and a NOTIFY toygun_outbox with the row's id,
 *		delivered at commit. Nothing here sends anything: a deliverer outside
 *		PostgreSQL reads the outbox.
 *
 *		Channels hold secrets, so channels, routes and the outbox are the
 *		extension owner's: only the owner (or a member, or a superuser)
 *		defines them, and none of the tables is granted to PUBLIC.
 *
 *		The routes are cached per backend, invalidated by a relcache
 *		invalidation of toygun.route that every change sends: with no route,
 *		an alarm costs a test of the cache, never a query.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_define_channel);
PG_FUNCTION_INFO_V1(toygun_drop_channel);
PG_FUNCTION_INFO_V1(toygun_define_route);
PG_FUNCTION_INFO_V1(toygun_drop_route);

/* The NOTIFY channel a deliverer listens on. */
#define OUTBOX_NOTIFY_CHANNEL "toygun_outbox"

/* ---------------------------------------------------------------------------
 * The routes, cached
 */
typedef struct Route
{
	bool		by_kind;		/* kind:..., else type:... */
	char	   *value;			/* NULL for '*' */
	char	   *channel;
} Route;

static Route *routes = NULL;
static int	nroutes = 0;
static bool routes_valid = false;
static MemoryContext routes_cxt = NULL;
static Oid	route_relid = InvalidOid;

static void
routes_relcache_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == route_relid)
		routes_valid = false;
}

/* Tell every backend, this one included, that the routes changed. */
static void
routes_changed(void)
{
	route_relid = get_relname_relid("route", get_namespace_oid("toygun", false));
	CacheInvalidateRelcacheByRelid(route_relid);
	routes_valid = false;
}

/* A pattern's parts; refuses one that is neither kind:<name> nor type:<name> (or *). */
static void
parse_pattern(const char *pattern, bool *by_kind, const char **value)
{
	if ((strncmp(pattern, "kind:", 5) != 0 && strncmp(pattern, "type:", 5) != 0) || pattern[5] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route pattern \"%s\" is not valid", pattern),
				 errdetail("A pattern is kind:<alarm kind> or type:<resource type>, with * for every one."),
				 errhint("Write kind:panic, type:database, or kind:* for every alarm.")));
	*by_kind = pattern[0] == 'k';
	*value = strcmp(pattern + 5, "*") == 0 ? NULL : pattern + 5;
	if (*value != NULL)
		toygun_check_name_cstr(*by_kind ? "alarm kind of a route pattern" :
							   "resource type of a route pattern", *value);
}

/* Read the routes into the cache. Called connected to SPI. */
static void
load_routes(void)
{
	static bool callback_registered = false;
	static SPIPlanPtr plan = NULL;
	uint64		i;

	if (!callback_registered)
	{
		toygun_on_relcache(routes_relcache_inval);
		callback_registered = true;
	}
	route_relid = get_relname_relid("route", get_namespace_oid("toygun", false));
	nroutes = 0;
	routes = NULL;
	if (routes_cxt == NULL)
		routes_cxt = AllocSetContextCreate(CacheMemoryContext, "toygun routes", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(routes_cxt);
	if (!OidIsValid(route_relid))
		return;					/* an older install: none, and nothing to cache */
	/* an invalidation that arrives while reading makes the next alarm read again */
	routes_valid = true;
	toygun_run(toygun_plan(&plan, "SELECT pattern, channel FROM ONLY toygun.route ORDER BY channel, pattern",
						   0, NULL),
			   NULL, NULL, 0);
	if (SPI_processed == 0)
		return;
	routes = MemoryContextAlloc(routes_cxt, sizeof(Route) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *pattern = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		const char *value;
		Route	   *r = &routes[nroutes];

		/* define_route() checked it; a row written behind its back routes nothing */
		if (strncmp(pattern, "kind:", 5) != 0 && strncmp(pattern, "type:", 5) != 0)
			continue;
		r->by_kind = pattern[0] == 'k';
		value = pattern + 5;
		r->value = strcmp(value, "*") == 0 ? NULL : MemoryContextStrdup(routes_cxt, value);
		r->channel = MemoryContextStrdup(routes_cxt,
										 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		nroutes++;
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * An alarm opened ('open'), was re-opened ('reopen') or closed ('close'):
 * write one outbox row for each channel a route matches (once, however many
 * match), shaped for the channel's kind, and NOTIFY toygun_outbox with each
 * row's id. Called by alarms.c, connected to SPI, in the transaction that
 * changed the alarm, after the change. With no routes: a test of the cache.
 */
void
toygun_outbox_alarm(pg_uuid_t *alarm_id, const char *kind, const char *resource_type,
					const char *event)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {UUIDOID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	char	  **channels;
	int			n = 0;
	int			i;
	uint64		j;

	if (!routes_valid)
		load_routes();
	if (nroutes == 0)
		return;
	channels = palloc(sizeof(char *) * nroutes);
	for (i = 0; i < nroutes; i++)
	{
		Route	   *r = &routes[i];

		if (r->value != NULL && strcmp(r->value, r->by_kind ? kind : resource_type) != 0)
			continue;
		if (!toygun_in_list(r->channel, channels, n))
			channels[n++] = pstrdup(r->channel);
	}
	if (n == 0)
		return;

	values[0] = UUIDPGetDatum(alarm_id);
	values[1] = CStringGetTextDatum(event);
	values[2] = toygun_cstring_array(channels, n);
	toygun_run(toygun_plan(&plan,
						   "INSERT INTO toygun.outbox (channel, alarm_id, event, payload)"
						   " SELECT c.name, a.id, $2, CASE c.kind"
						   "   WHEN 'webhook' THEN pg_catalog.jsonb_build_object('event', $2, 'alarm', pg_catalog.to_jsonb(a))"
						   "   WHEN 'slack' THEN pg_catalog.jsonb_build_object('text', s.line)"
						   "   WHEN 'pagerduty' THEN pg_catalog.jsonb_build_object("
						   "     'routing_key', c.config -> 'routing_key',"
						   "     'event_action', CASE WHEN $2 = 'close' THEN 'resolve' ELSE 'trigger' END,"
						   "     'dedup_key', a.id::pg_catalog.text,"
						   "     'payload', pg_catalog.jsonb_build_object("
						   "       'summary', pg_catalog.\"left\"(s.line, 1024), 'source', s.what,"
						   "       'severity', COALESCE(c.config ->> 'severity', 'error'),"
						   "       'custom_details', pg_catalog.to_jsonb(a) || pg_catalog.jsonb_build_object('event', $2)))"
						   "   WHEN 'email' THEN pg_catalog.jsonb_build_object("
						   "     'to', CASE pg_catalog.jsonb_typeof(c.config -> 'to') WHEN 'array' THEN c.config -> 'to'"
						   "           ELSE pg_catalog.jsonb_build_array(c.config -> 'to') END,"
						   "     'subject', s.subject,"
						   "     'body', pg_catalog.concat_ws(E'\\n', s.line, '',"
						   "       'Alarm: ' || a.id, 'Kind: ' || a.kind, 'On: ' || s.what,"
						   "       'Message: ' || a.message, 'Raised: ' || a.count || ' time(s), first at '"
						   "         || a.first_raised_at || ', last at ' || a.last_raised_at,"
						   "       'Closed: ' || a.closed_at || COALESCE(', ' || a.closed_reason, '')))"
						   "   END"
						   "  FROM ONLY toygun.alarm a"
						   "  CROSS JOIN LATERAL (SELECT"
						   "    CASE a.object_kind WHEN 'task' THEN pg_catalog.format('run %s of task %s/%s', a.object_id, a.resource_type, a.task)"
						   "         ELSE pg_catalog.format('resource %s of type %s', a.object_id, a.resource_type) END AS what,"
						   "    CASE $2 WHEN 'open' THEN 'opened' WHEN 'reopen' THEN 're-opened' ELSE 'closed' END AS how) w"
						   "  CROSS JOIN LATERAL (SELECT w.what,"
						   "    pg_catalog.format('[toygun] alarm %s: %s on %s', w.how, a.kind, w.what) AS subject,"
						   "    pg_catalog.format('[toygun] alarm %s: %s on %s: %s', w.how, a.kind, w.what,"
						   "      CASE WHEN $2 = 'close' THEN COALESCE(a.closed_reason, 'no reason given') ELSE a.message END) AS line) s"
						   "  JOIN ONLY toygun.channel c ON c.name = ANY ($3)"
						   " WHERE a.id = $1"
						   " ORDER BY c.name"
						   " RETURNING id",
						   3, argtypes),
			   values, NULL, 0);
	for (j = 0; j < SPI_processed; j++)
		Async_Notify(OUTBOX_NOTIFY_CHANNEL, SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1));
}

/* ---------------------------------------------------------------------------
 * Channels and routes: the extension owner's
 */

/* Run a drop's DELETE; whether it deleted anything (then the routes changed). */
static bool
drop_rows(SPIPlanPtr plan, Datum *values)
{
	toygun_run(plan, values, NULL, 0);
	if (SPI_processed == 0)
		return false;
	routes_changed();
	return true;
}

/* Inside an API call, the user is the extension's owner: the caller must have its privileges. */
static void
check_owner(ToygunCall *call, const char *what)
{
	Oid			owner = GetUserId();

	if (!has_privs_of_role(call->caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", what),
				 errdetail("Channels hold secrets (webhook URLs, routing keys, addresses), and routes send any alarm to them: only the extension's owner manages them."),
				 errhint("Act as role \"%s\", which owns extension toygun, or as a superuser.",
						 toygun_role_name(owner))));
}

typedef enum ConfigCheck
{
	CHECK_URL,
	CHECK_STRING,
	CHECK_SEVERITY,
	CHECK_ADDRESSES
} ConfigCheck;

typedef struct ConfigKey
{
	const char *kind;
	const char *key;
	bool		required;
	ConfigCheck check;
} ConfigKey;

/* The config keys of each kind of channel. */
static const ConfigKey config_keys[] = {
	{"webhook", "url", true, CHECK_URL},
	{"slack", "webhook_url", true, CHECK_URL},
	{"pagerduty", "routing_key", true, CHECK_STRING},
	{"pagerduty", "severity", false, CHECK_SEVERITY},
	{"email", "to", true, CHECK_ADDRESSES},
};

#define CHANNEL_KINDS "webhook, slack, pagerduty, email"

/* The keys a kind takes, for hints: "url" or "routing_key, severity". */
static char *
kind_keys(const char *kind)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < lengthof(config_keys); i++)
		if (strcmp(config_keys[i].kind, kind) == 0)
			appendStringInfo(&buf, "%s%s%s", buf.len ? ", " : "", config_keys[i].key,
							 config_keys[i].required ? "" : " (optional)");
	return buf.data;
}

static void
bad_value(const char *channel, const char *key, const char *must, const char *hint)
{
	/* the value is never shown: it may be a secret, and errors reach the log */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("config key \"%s\" of channel \"%s\" must be %s", key, channel, must),
			 errdetail("The value is not shown: it may be a secret."),
			 errhint("%s", hint)));
}

/* A non-empty string without control characters or spaces (spaces allowed if spaces). */
static bool
plain_string(JsonbValue *v, bool spaces)
{
	int			i;

	if (v->type != jbvString || v->val.string.len == 0)
		return false;
	for (i = 0; i < v->val.string.len; i++)
	{
		unsigned char c = (unsigned char) v->val.string.val[i];

		if (c < 0x20 || c == 0x7f || (!spaces && c == ' '))
			return false;
	}
	return true;
}

/* An http or https URL with a host: no spaces, no control characters. */
static bool
http_url(JsonbValue *v)
{
	const char *s = v->val.string.val;
	int			len = v->val.string.len;
	int			skip;

	if (!plain_string(v, false))
		return false;
	if (len > 7 && pg_strncasecmp(s, "http://", 7) == 0)
		skip = 7;
	else if (len > 8 && pg_strncasecmp(s, "https://", 8) == 0)
		skip = 8;
	else
		return false;
	return s[skip] != '/' && s[skip] != '?' && s[skip] != '#';
}

/* name@domain: one @, something on each side, no spaces, commas or brackets. */
static bool
email_address(JsonbValue *v)
{
	const char *s = v->val.string.val;
	int			len = v->val.string.len;
	int			at = -1;
	int			i;

	if (!plain_string(v, false) || len > 254)
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] == ',' || s[i] == '<' || s[i] == '>' || s[i] == ';')
			return false;
		if (s[i] == '@')
		{
			if (at >= 0)
				return false;
			at = i;
		}
	}
	return at > 0 && at < len - 1;
}

static void
check_config_value(const char *channel, const ConfigKey *k, JsonbValue *v)
{
	switch (k->check)
	{
		case CHECK_URL:
			if (v->type != jbvString || !http_url(v))
				bad_value(channel, k->key, "an http or https URL",
						  "Give the whole URL as a string, such as \"https://hooks.example.com/...\".");
			break;
		case CHECK_STRING:
			if (!plain_string(v, false))
				bad_value(channel, k->key, "a non-empty string without spaces or control characters",
						  "Give the integration's key as a string.");
			break;
		case CHECK_SEVERITY:
			{
				static const char *const severities[] = {"critical", "error", "warning", "info"};
				char	   *sev = v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : "";

				if (!toygun_in_list(sev, (char **) severities, lengthof(severities)))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("config key \"%s\" of channel \"%s\" must be critical, error, warning or info",
									k->key, channel),
							 errhint("Leave it out for error.")));
			}
			break;
		case CHECK_ADDRESSES:
			if (v->type == jbvString)
			{
				if (!email_address(v))
					bad_value(channel, k->key, "an email address or an array of them",
							  "Write each address as name@example.com, one per element.");
			}
			else if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
					 JsonContainerSize(v->val.binary.data) > 0)
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbValue	e;
				JsonbIteratorToken tok;

				while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
					if (tok == WJB_ELEM && (e.type != jbvString || !email_address(&e)))
						bad_value(channel, k->key, "an email address or an array of them",
								  "Write each address as name@example.com, one per element.");
			}
			else
				bad_value(channel, k->key, "an email address or an array of them",
						  "Write each address as name@example.com, one per element.");
			break;
	}
}

/* A kind's config: an object of its keys, every required one, each value checked. */
static void
check_config(const char *channel, const char *kind, Jsonb *config)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			i;

	if (!JB_ROOT_IS_OBJECT(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("config of channel \"%s\" must be a JSON object", channel),
				 errhint("A %s channel takes: %s.", kind, kind_keys(kind))));
	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		const ConfigKey *k = NULL;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (i = 0; i < lengthof(config_keys); i++)
			if (strcmp(config_keys[i].kind, kind) == 0 && strcmp(config_keys[i].key, key) == 0)
				k = &config_keys[i];
		if (k == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown config key \"%s\" for %s channel \"%s\"", key, kind, channel),
					 errhint("A %s channel takes: %s.", kind, kind_keys(kind))));
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		check_config_value(channel, k, &v);
	}
	for (i = 0; i < lengthof(config_keys); i++)
	{
		JsonbValue	kv;

		if (strcmp(config_keys[i].kind, kind) != 0 || !config_keys[i].required)
			continue;
		kv.type = jbvString;
		kv.val.string.val = (char *) config_keys[i].key;
		kv.val.string.len = strlen(config_keys[i].key);
		if (findJsonbValueFromContainer(&config->root, JB_FOBJECT, &kv) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("config key \"%s\" is required for %s channel \"%s\"",
							config_keys[i].key, kind, channel),
					 errhint("A %s channel takes: %s.", kind, kind_keys(kind))));
	}
}

/*
 * define_channel(name, kind, config): a place alarms are sent, its config
 * checked for its kind. Defining it again replaces kind and config.
 */
Datum
toygun_define_channel(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	char	   *name;
	char	   *kind;
	Jsonb	   *config;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];
	int			i;
	bool		known = false;

	toygun_check_not_null(fcinfo, 0, "name");
	toygun_check_not_null(fcinfo, 1, "kind");
	toygun_check_not_null(fcinfo, 2, "config");
	toygun_begin_call(&call);
	check_owner(&call, "define channels");
	name = toygun_check_name("channel name", PG_GETARG_TEXT_PP(0));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	for (i = 0; i < lengthof(config_keys); i++)
		known = known || strcmp(config_keys[i].kind, kind) == 0;
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown channel kind \"%s\"", kind),
				 errhint("The kinds are: " CHANNEL_KINDS ".")));
	config = PG_GETARG_JSONB_P(2);
	check_config(name, kind, config);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(kind);
	values[2] = JsonbPGetDatum(config);
	toygun_run(toygun_plan(&plan,
						   "INSERT INTO toygun.channel (name, kind, config) VALUES ($1, $2, $3)"
						   " ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, config = excluded.config",
						   3, argtypes),
			   values, NULL, 0);
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* drop_channel(name): whether there was one; its routes go with it. */
Datum
toygun_drop_channel(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		dropped;

	toygun_check_not_null(fcinfo, 0, "name");
	toygun_begin_call(&call);
	check_owner(&call, "drop channels");
	values[0] = PG_GETARG_DATUM(0);
	dropped = drop_rows(toygun_plan(&plan, "DELETE FROM ONLY toygun.channel WHERE name = $1", 1, argtypes),
						values);
	toygun_end_call(&call);
	PG_RETURN_BOOL(dropped);
}

/* define_route(pattern, channel): alarms the pattern matches go to the channel. */
Datum
toygun_define_route(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	char	   *pattern;
	char	   *channel;
	bool		by_kind;
	const char *value;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	toygun_check_not_null(fcinfo, 0, "pattern");
	toygun_check_not_null(fcinfo, 1, "channel");
	toygun_begin_call(&call);
	check_owner(&call, "define routes");
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(0));
	parse_pattern(pattern, &by_kind, &value);
	channel = text_to_cstring(PG_GETARG_TEXT_PP(1));
	values[0] = CStringGetTextDatum(channel);
	values[1] = CStringGetTextDatum(pattern);
	/* locked: a drop_channel() waits for the route, or the route for the drop */
	toygun_run(toygun_plan(&find_plan, "SELECT FROM ONLY toygun.channel WHERE name = $1 FOR KEY SHARE",
						   1, argtypes),
			   values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("channel \"%s\" does not exist", channel),
				 errhint("Define it with toygun.define_channel().")));
	toygun_run(toygun_plan(&plan,
						   "INSERT INTO toygun.route (channel, pattern) VALUES ($1, $2)"
						   " ON CONFLICT (pattern, channel) DO NOTHING",
						   2, argtypes),
			   values, NULL, 0);
	routes_changed();
	toygun_end_call(&call);
	PG_RETURN_VOID();
}

/* drop_route(pattern, channel): whether there was one. */
Datum
toygun_drop_route(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ToygunCall	call;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		dropped;

	toygun_check_not_null(fcinfo, 0, "pattern");
	toygun_check_not_null(fcinfo, 1, "channel");
	toygun_begin_call(&call);
	check_owner(&call, "drop routes");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	dropped = drop_rows(toygun_plan(&plan, "DELETE FROM ONLY toygun.route WHERE pattern = $1 AND channel = $2",
									2, argtypes),
						values);
	toygun_end_call(&call);
	PG_RETURN_BOOL(dropped);
}
