// The SQL the API and the pages run: each a call of one of toygun's
// functions (or a read of its views) with parameters. Nothing here builds
// SQL from input. Each takes the session's client.
import { HttpError } from './errors.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s) => typeof s === 'string' && UUID.test(s);

const opt = (v) => (v === undefined || v === null || v === '' ? null : v);
const flag = (v) => v === true || v === '1' || v === 'true' || v === 'on';

export function needUuid(v, what) {
  if (!isUuid(v)) throw new HttpError(400, `${what} must be a uuid, not "${String(v ?? '')}"`, { sqlstate: '22P02' });
  return v;
}

// The SQL functions answer a call without its right with 42501 naming the
// object's type and owner, even when the caller may not read the object, where
// a missing id is P0002. So a 42501 on an object the caller cannot see becomes
// the missing id's answer (a right without read, e.g. operate alone, still
// works: only a refusal is rewritten). → the error to throw.
async function hidden(client, e, seenSql, id, message, hint = null) {
  if (e.code !== '42501') return e;
  let seen = true;
  try { seen = (await client.query(seenSql, [id])).rows[0].ok; } catch { return e; }
  return seen ? e : new HttpError(404, message, { sqlstate: 'P0002', hint });
}

export async function listRuns(client, f) {
  const limit = f.limit === undefined || f.limit === '' ? 50 : Number(f.limit);
  if (!Number.isInteger(limit)) throw new HttpError(400, `limit must be an integer, not "${f.limit}"`);
  const resource = opt(f.resource);
  if (resource !== null) needUuid(resource, 'resource');
  const r = await client.query(
    'SELECT * FROM toygun.list_runs(type => $1, task => $2, state => $3, resource => $4::uuid, ' +
    'panicked => $5, failing => $6, due => $7, "limit" => $8, after => $9)',
    [opt(f.type), opt(f.task), opt(f.state), resource, flag(f.panicked), flag(f.failing), flag(f.due),
      limit, opt(f.after)]);
  const next = r.rows.length ? r.rows[r.rows.length - 1].next : null;
  for (const row of r.rows) delete row.next;
  return { runs: r.rows, next: next ?? null };
}

export async function runDetail(client, id) {
  needUuid(id, 'the run id');
  const r = await client.query('SELECT toygun.run_detail($1::uuid) AS d', [id]);
  return r.rows[0].d;
}

export async function startRun(client, b) {
  needUuid(b.resource, 'resource');
  if (typeof b.task !== 'string' || !b.task) throw new HttpError(400, 'task (the task name) is required');
  const priority = b.priority === undefined || b.priority === null || b.priority === '' ? null : Number(b.priority);
  if (priority !== null && !Number.isInteger(priority)) throw new HttpError(400, `priority must be an integer, not "${b.priority}"`);
  const args = typeof b.args === 'string' ? b.args : JSON.stringify(b.args ?? {});
  try {
    const r = await client.query(
      'SELECT toygun.start_task($1::uuid, $2, $3::jsonb, if_live => $4, priority => $5::integer) AS id',
      [b.resource, b.task, args, opt(b.if_live) ?? 'return', priority]);
    return { id: r.rows[0].id };
  } catch (e) {
    throw await hidden(client, e, 'SELECT EXISTS (SELECT FROM ONLY toygun.resource x WHERE x.id = $1::uuid) AS ok',
      b.resource, `resource ${b.resource} does not exist`);
  }
}

export const ACTIONS = ['retry', 'rewind', 'transition', 'stop', 'panic'];

// A repair of run `id`: reason required (the audit trail is the point).
export async function repair(client, id, action, b) {
  needUuid(id, 'the run id');
  const reason = typeof b.reason === 'string' ? b.reason.trim() : '';
  if (!reason) throw new HttpError(400, 'a reason is required for repairs made from the dashboard or the API',
    { hint: 'give "reason": it is kept in the run\'s history' });
  try {
    return await repairAs(client, id, action, b, reason);
  } catch (e) {
    throw await hidden(client, e, 'SELECT EXISTS (SELECT FROM ONLY toygun.task t WHERE t.id = $1::uuid) AS ok', id,
      `task ${id} does not exist`);
  }
}

async function repairAs(client, id, action, b, reason) {
  let r;
  switch (action) {
    case 'retry':
      r = await client.query('SELECT t.* FROM toygun.retry_task($1::uuid, $2) t', [id, reason]); break;
    case 'stop':
      r = await client.query('SELECT t.* FROM toygun.stop_task($1::uuid, $2) t', [id, reason]); break;
    case 'rewind': {
      const n = b.n === undefined || b.n === '' ? 1 : Number(b.n);
      if (!Number.isInteger(n)) throw new HttpError(400, `n must be an integer, not "${b.n}"`);
      r = await client.query('SELECT t.* FROM toygun.rewind_task($1::uuid, $2, $3) t', [id, n, reason]); break;
    }
    case 'transition': {
      if (typeof b.state !== 'string' || !b.state) throw new HttpError(400, 'state (the state to move to) is required');
      const attrs = b.attrs === undefined || b.attrs === '' || b.attrs === null ? null
        : typeof b.attrs === 'string' ? b.attrs : JSON.stringify(b.attrs);
      r = await client.query('SELECT t.* FROM toygun.transition_task($1::uuid, $2, $3::jsonb, $4, $5) t',
        [id, b.state, attrs, opt(b.expected_state), reason]);
      break;
    }
    case 'panic': {
      const message = typeof b.message === 'string' && b.message.trim() ? b.message : reason;
      r = await client.query('SELECT t.* FROM toygun.panic_task($1::uuid, $2, $3) t', [id, message, reason]); break;
    }
    default:
      throw new HttpError(404, `no repair action "${action}" (one of ${ACTIONS.join(', ')})`);
  }
  const row = r.rows[0];
  delete row.attrs;   // may hold ciphertext; run_detail shows attrs sealed by right
  return row;
}

export async function listAlarms(client, f) {
  const limit = f.limit === undefined || f.limit === '' ? 50 : Number(f.limit);
  if (!Number.isInteger(limit)) throw new HttpError(400, `limit must be an integer, not "${f.limit}"`);
  const after = opt(f.after);
  if (after !== null) needUuid(after, 'after');
  const r = await client.query(
    // a message is written by whoever raised the alarm: lists show its first 4,000 characters
    "SELECT id, object_id, object_kind, resource_type, task, kind, state, CASE WHEN length(message) > 4000 " +
    "THEN left(message, 4000) || '…' ELSE message END AS message, first_raised_at, " +
    'last_raised_at, count, snoozed_until, closed_at, closed_reason, closed_by::text AS closed_by ' +
    'FROM toygun.list_alarms(state => $1, kind => $2, type => $3, "limit" => $4, after => $5::uuid)',
    [opt(f.state) ?? 'open', opt(f.kind), opt(f.type), limit, after]);
  return r.rows;
}

const ALARM_SEEN = 'SELECT EXISTS (SELECT FROM toygun.alarms a WHERE a.id = $1::uuid) AS ok';
const alarmMissing = (id) => [`alarm ${id} does not exist`, 'toygun.alarms lists the alarms you may read.'];

export async function snoozeAlarm(client, id, b) {
  needUuid(id, 'the alarm id');
  try {
    return await snoozeAs(client, id, b);
  } catch (e) {
    throw await hidden(client, e, ALARM_SEEN, id, ...alarmMissing(id));
  }
}

async function snoozeAs(client, id, b) {
  let r;
  if (b.for !== undefined && b.for !== '') {
    r = await client.query('SELECT a.id, a.state, a.snoozed_until FROM toygun.snooze_alarm($1::uuid, ' +
      'pg_catalog.clock_timestamp() + $2::interval) a', [id, String(b.for)]);
  } else if (b.until !== undefined && b.until !== '') {
    r = await client.query('SELECT a.id, a.state, a.snoozed_until FROM toygun.snooze_alarm($1::uuid, $2::timestamptz) a',
      [id, String(b.until)]);
  } else {
    throw new HttpError(400, 'snooze needs "until" (a time) or "for" (an interval, e.g. "2 hours")');
  }
  return r.rows[0];
}

export async function closeAlarm(client, id, b) {
  needUuid(id, 'the alarm id');
  let r;
  try {
    r = await client.query('SELECT a.id, a.state, a.closed_at, a.closed_reason FROM toygun.close_alarm($1::uuid, $2) a',
    [id, opt(b.reason)]);
  } catch (e) {
    throw await hidden(client, e, ALARM_SEEN, id, ...alarmMissing(id));
  }
  return r.rows[0];
}

export async function opsStatus(client) {
  return (await client.query('SELECT toygun.ops_status() AS s')).rows[0].s;
}

export async function stats(client) {
  return (await client.query(
    'SELECT kind, resource_type, task, state, live, due, panicked, failing, ' +
    'extract(epoch FROM oldest_due_age)::float8 AS oldest_due_seconds, breaker ' +
    'FROM toygun.stats ORDER BY resource_type, task NULLS FIRST, state')).rows;
}

// What the CLI's `schedules` reads: toygun.schedule under its row security.
export async function schedules(client, type) {
  return (await client.query(
    'SELECT s.id, s.resource_type, s.task, s.schedule, s.cron, s.states, s.owner::text AS owner, ' +
    's.next_fire_at, s.last_fired_at, s.last_started, s.last_declined, s.last_error ' +
    'FROM ONLY toygun.schedule s WHERE $1::text IS NULL OR s.resource_type = $1 ' +
    'ORDER BY s.resource_type, s.task', [opt(type)])).rows;
}

export async function workers(client) {
  return (await client.query('SELECT * FROM toygun.worker_status() ORDER BY slot')).rows;
}

export async function queues(client) {
  return (await client.query('SELECT * FROM toygun.queue_status() ORDER BY queue')).rows;
}

export const SERIES_MISSING = 'toygun.metrics_series() is not installed; ALTER EXTENSION toygun UPDATE';

// Ticks and failures per time bucket, summed over the caller's readable types.
export async function series(client, window) {
  if (window !== '1h' && window !== '24h')
    throw new HttpError(400, `window must be 1h or 24h, not "${window}"`);
  const has = await client.query("SELECT pg_catalog.to_regprocedure('toygun.metrics_series(text)') IS NOT NULL AS ok");
  if (!has.rows[0].ok) throw new HttpError(501, SERIES_MISSING);
  const r = await client.query(
    'SELECT extract(epoch FROM at)::float8 AS at, sum(ticks)::bigint AS ticks, sum(failures)::bigint AS failures ' +
    'FROM toygun.metrics_series($1) GROUP BY at ORDER BY at', [window]);
  return { window, points: r.rows.map((x) => ({ at: x.at, ticks: Number(x.ticks), failures: Number(x.failures) })) };
}

// toygun.flow: queues, rate limits and concurrency limits as the caller sees
// them. Its due counts read every due row of a queue or type: the pages cache it.
export async function flow(client) {
  return (await client.query(
    'SELECT kind, queue, resource_type, task, rate_limit, workers, running, busy, paused, due, ' +
    'waiting_for_token, tokens, waiting_for_slot FROM toygun.flow ' +
    'ORDER BY kind, queue, resource_type NULLS FIRST, task NULLS FIRST')).rows;
}

// The outbox is the extension owner's (a member of its role, or a superuser):
// the pages show it to them only; the API answers others with 403 (42501).
export async function outboxOwner(client) {
  return (await client.query(
    "SELECT pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'toygun'), " +
    "'USAGE') AS owner")).rows[0].owner === true;
}

const OUTBOX_STATES = ['pending', 'failed', 'delivered', 'all'];

export async function listOutbox(client, f) {
  const limit = f.limit === undefined || f.limit === '' ? 50 : Number(f.limit);
  if (!Number.isInteger(limit)) throw new HttpError(400, `limit must be an integer, not "${f.limit}"`);
  const after = opt(f.after);
  if (after !== null && !/^[1-9][0-9]{0,18}$/.test(String(after)))
    throw new HttpError(400, `after must be an outbox id (a whole number), not "${after}"`, { sqlstate: '22P02' });
  const state = opt(f.state) ?? 'pending';
  const sql = 'SELECT * FROM toygun.list_outbox(state => $1, "limit" => $2, after => $3::bigint)';
  const r = await client.query(sql, [state, limit, after]);
  // a next page only when another row follows
  let next = null;
  if (r.rows.length === limit) {
    const last = r.rows[r.rows.length - 1].id;
    if ((await client.query(sql, [state, 1, last])).rows.length) next = String(last);
  }
  return { outbox: r.rows, next };
}
export { OUTBOX_STATES };

// The outbox rows of these alarms (the owner's alarms page), oldest first.
export async function deliveriesOf(client, alarmIds) {
  if (!alarmIds.length) return new Map();
  const r = await client.query(
    "SELECT o.id, o.alarm_id, o.channel, o.event, o.attempts, o.delivered_at, o.next_attempt_at, o.last_error, " +
    "CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered' " +
    "WHEN o.next_attempt_at IS NULL AND o.last_error IS NOT NULL THEN 'failed' ELSE 'pending' END AS state " +
    'FROM toygun.outbox o WHERE o.alarm_id = ANY ($1::uuid[]) ORDER BY o.id', [alarmIds]);
  const m = new Map();
  for (const row of r.rows) {
    if (!m.has(row.alarm_id)) m.set(row.alarm_id, []);
    m.get(row.alarm_id).push(row);
  }
  return m;
}

export async function redeliver(client, id) {
  if (!/^[1-9][0-9]{0,18}$/.test(String(id)))
    throw new HttpError(400, `the outbox id must be a whole number, not "${id}"`, { sqlstate: '22P02' });
  const r = await client.query('SELECT toygun.redeliver($1::bigint) AS ok', [id]);
  if (!r.rows[0].ok)
    throw new HttpError(404, `no outbox row ${id}`, { sqlstate: 'P0002', hint: 'GET /api/v1/outbox?state=all lists them' });
  const row = (await client.query('SELECT * FROM toygun.list_outbox(\'all\', 1, $1::bigint + 1)', [id])).rows[0];
  return row;
}
