// The alarm deliverer: sends toygun.outbox's rows to their channels (webhook,
// Slack, PagerDuty Events v2, e-mail) and marks what it delivered.
//
// One row per transaction: claim it (FOR UPDATE OF o SKIP LOCKED, so two
// senders or two deliverers never hold one row), send it, mark it (delivered,
// or a retry with a backoff, or failed), COMMIT. A row marked delivered is
// never claimed again; the one window left is a crash after the receiver
// answered and before COMMIT, in which the row goes out again with the same
// idempotency key. Woken by NOTIFY toygun_outbox, at start, every pollMs and
// when a retry it scheduled comes due.
//
// It runs as a role of its own with SELECT, UPDATE on toygun.outbox and
// SELECT on toygun.channel (checked at start: missing privileges are logged
// and the deliverer stays off). Log lines name channels, never their config
// (webhook URLs and routing keys are secrets).
import os from 'node:os';
import pg from 'pg';
import * as webhook from './channels/webhook.mjs';
import * as slack from './channels/slack.mjs';
import * as pagerduty from './channels/pagerduty.mjs';
import * as email from './channels/email.mjs';

export const DEFAULTS = Object.freeze({
  connection: null,            // a connection string, a pg config object, or null: libpq's PG* environment
  name: null,                  // delivered_by; default host:pid
  pagerdutyUrl: 'https://events.pagerduty.com/v2/enqueue',
  smtpUrl: null,               // smtp://user:pass@host:port or smtps://...; without it e-mail rows wait
  smtpFrom: null,              // default toygun@<hostname>
  maxAttempts: 10,
  baseMs: 5000,                // backoff: min(baseMs * 2^attempts, maxBackoffMs), +-20 % jitter
  maxBackoffMs: 3600 * 1000,
  senders: 2,
  pollMs: 30000,
  timeoutMs: 10000,            // one send
  reconnectMs: 5000,           // first wait after a lost connection (doubles, at most 60 s)
});

const CHANNELS = { webhook, slack, pagerduty, email };

// The largest payload sent (its JSON, bytes): far above any real alarm, far
// below what would stall a sender (Slack takes 40,000 characters a message).
export const MAX_PAYLOAD = 256 * 1024;

// The claim: the oldest undelivered row that is due, not failed, of a kind this
// deliverer sends, not held by another sender, and with no earlier row of its
// alarm to its channel still pending (in flight, or waiting for a retry): a
// resolve never overtakes its trigger. Also in specs/outbox_claim.spec.
export const CLAIM_SQL = `
SELECT o.id, o.channel, o.alarm_id, o.event, o.payload, o.attempts, c.kind, c.config
  FROM toygun.outbox o JOIN toygun.channel c ON c.name = o.channel
 WHERE o.delivered_at IS NULL AND o.attempts < $1
   AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= pg_catalog.now())
   AND c.kind = ANY ($2::text[])
   AND NOT EXISTS (SELECT FROM toygun.outbox e          -- one alarm's events to a channel in order
                    WHERE e.alarm_id = o.alarm_id AND e.id < o.id AND e.channel = o.channel
                      AND e.delivered_at IS NULL AND e.attempts < $1)
 ORDER BY o.id
 LIMIT 1
   FOR UPDATE OF o SKIP LOCKED`;

const DELIVERED_SQL = `
UPDATE toygun.outbox SET delivered_at = pg_catalog.clock_timestamp(), delivered_by = $2,
       attempts = attempts + 1, next_attempt_at = NULL
 WHERE id = $1`;

// a retry: $3 ms from now
const RETRY_SQL = `
UPDATE toygun.outbox SET attempts = attempts + 1, last_error = $2,
       next_attempt_at = pg_catalog.clock_timestamp() + $3 * interval '1 millisecond'
 WHERE id = $1`;

// permanent, or the last attempt: attempts reach the maximum, the row is failed
const FAILED_SQL = `
UPDATE toygun.outbox SET attempts = GREATEST(attempts + 1, $3), last_error = $2, next_attempt_at = NULL
 WHERE id = $1`;

// Rows whose channel was dropped have nothing to join: mark them failed.
const DROPPED_SQL = `
UPDATE toygun.outbox o SET attempts = GREATEST(o.attempts, $1),
       last_error = pg_catalog.format('channel %s was dropped', o.channel), next_attempt_at = NULL
 WHERE o.id IN (SELECT p.id FROM toygun.outbox p
                 WHERE p.delivered_at IS NULL AND p.attempts < $1
                   AND NOT EXISTS (SELECT FROM toygun.channel c WHERE c.name = p.channel)
                 ORDER BY p.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.channel`;

// When the next retry comes due, in ms from now (NULL: none waiting).
const NEXT_DUE_SQL = `
SELECT EXTRACT(epoch FROM pg_catalog.min(o.next_attempt_at) - pg_catalog.clock_timestamp()) * 1000 AS ms
  FROM toygun.outbox o
 WHERE o.delivered_at IS NULL AND o.attempts < $1 AND o.next_attempt_at > pg_catalog.now()`;

// What the role lacks, and whether toygun (with the deliverer's columns) is there.
const CHECK_SQL = `
SELECT current_user AS role, pg_catalog.current_database() AS db,
       pg_catalog.to_regclass('toygun.outbox') IS NOT NULL AS has_outbox,
       pg_catalog.to_regclass('toygun.channel') IS NOT NULL AS has_channel`;
const PRIVS_SQL = `
SELECT pg_catalog.has_schema_privilege('toygun', 'USAGE') AS schema_usage,
       pg_catalog.has_table_privilege('toygun.outbox', 'SELECT') AS outbox_select,
       pg_catalog.has_table_privilege('toygun.outbox', 'UPDATE') AS outbox_update,
       pg_catalog.has_table_privilege('toygun.channel', 'SELECT') AS channel_select,
       EXISTS (SELECT FROM pg_catalog.pg_attribute
                WHERE attrelid = 'toygun.outbox'::regclass AND attname = 'next_attempt_at'
                  AND NOT attisdropped) AS has_columns`;

// The backoff before attempt n+1 after n failed ones (n >= 1): min(base * 2^(n-1), max)
// with +-20 % jitter, or the receiver's Retry-After when that is longer (capped too).
export function backoffMs(failedAttempts, { baseMs, maxBackoffMs }, retryAfterMs = null, rand = Math.random) {
  const plain = Math.min(baseMs * 2 ** Math.max(0, failedAttempts - 1), maxBackoffMs);
  const jittered = Math.round(plain * (0.8 + 0.4 * rand()));
  return retryAfterMs != null ? Math.max(jittered, Math.min(retryAfterMs, maxBackoffMs)) : jittered;
}

function makeSay(log) {
  if (typeof log === 'function') return (line) => log(`deliverer: ${line}`);
  if (log && typeof log.info === 'function') return (line) => log.info(`deliverer: ${line}`);
  return (line) => process.stderr.write(`deliverer: ${line}\n`);
}

function connectionConfig(connection) {
  const base = typeof connection === 'string' ? { connectionString: connection }
             : connection ? { ...connection } : {};
  return { application_name: 'toygun-deliverer', ...base };
}

// Wake-ups: kick() wakes every waiter; wait(ms, seen) returns at once if a
// kick came after `seen` (a generation), so none is lost between a claim
// that found nothing and the wait.
class Waker {
  constructor() { this.gen = 0; this.waiters = new Set(); }
  kick() {
    this.gen++;
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
  wait(ms, seen = this.gen) {
    if (this.gen !== seen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); this.waiters.delete(done); resolve(); };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}

function cleanOptions(options) {
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options || {})) if (v !== undefined) o[k] = v;
  for (const k of ['maxAttempts', 'baseMs', 'maxBackoffMs', 'senders', 'pollMs', 'timeoutMs', 'reconnectMs']) {
    if (!Number.isFinite(o[k]) || o[k] < (k === 'baseMs' ? 0 : 1))
      throw new RangeError(`deliverer option ${k} must be a number of at least ${k === 'baseMs' ? 0 : 1}, not ${o[k]}`);
  }
  if (!o.smtpFrom) o.smtpFrom = `toygun@${os.hostname()}`;
  return o;
}

// Starts the deliverer; returns at once with { ready, stop }. ready resolves
// to true once it listens and sends, or false when it stays off (the role
// lacks privileges, or toygun is not there: logged). stop() ends it: sends
// in flight finish (each within timeoutMs) and are marked, then the
// connections close.
export function startDeliverer(options = {}, log) {
  const o = cleanOptions(options);
  const say = makeSay(log);
  const me = o.name || `${os.hostname()}:${process.pid}`;
  const waker = new Waker();
  const clients = new Set();
  const kinds = ['webhook', 'slack', 'pagerduty', ...(o.smtpUrl ? ['email'] : [])];
  const ctx = {
    timeoutMs: o.timeoutMs, pagerdutyUrl: o.pagerdutyUrl, smtpUrl: o.smtpUrl, smtpFrom: o.smtpFrom,
    transport: o.smtpUrl ? email.makeTransport(o.smtpUrl, o.timeoutMs) : null,
  };
  let stopping = false;
  let retryTimer = null, retryAt = Infinity;
  let listenerClient = null;
  const stopWaits = new Set();

  // ms, or less when the deliverer stops
  function sleep(ms) {
    if (stopping) return Promise.resolve('stop');
    return new Promise((resolve) => {
      const done = (why) => { clearTimeout(t); stopWaits.delete(done); resolve(why); };
      const t = setTimeout(done, ms, 'time');
      stopWaits.add(done);
    });
  }

  // Kick the senders when the soonest retry we know of comes due, then ask
  // the listener for the next one (retries of other deliverers too).
  function wakeIn(ms) {
    const at = Date.now() + Math.max(0, ms);
    if (stopping || at >= retryAt - 5) return;
    clearTimeout(retryTimer);
    retryAt = at;
    retryTimer = setTimeout(() => {
      retryAt = Infinity;
      waker.kick();
      if (listenerClient) housekeep(listenerClient).catch(() => {});   // the listener sees a lost connection itself
    }, Math.max(0, ms) + 5);
  }

  async function connect(what) {
    let delay = o.reconnectMs;
    for (let n = 0; !stopping; n++) {
      const client = new pg.Client(connectionConfig(o.connection));
      client.on('error', () => {});   // a lost connection shows in the next query
      try {
        await client.connect();
        // a send holds its row's transaction open for at most timeoutMs
        await client.query(`SET idle_in_transaction_session_timeout = ${o.timeoutMs * 2 + 10000}`);
        clients.add(client);
        if (n > 0) say(`${what}: connected again`);
        return client;
      } catch (err) {
        client.end().catch(() => {});
        if (n === 0 || n % 10 === 0) say(`${what}: cannot connect to PostgreSQL (${err.code || ''} ${err.message}); trying again in ${Math.round(delay / 1000)} s`);
        await sleep(delay);
        delay = Math.min(delay * 2, 60000);
      }
    }
    return null;
  }

  function release(client) {
    clients.delete(client);
    return client.end().catch(() => {});
  }

  // Is the role allowed, and is toygun there? Logs what is missing; false: stay off.
  async function check(client) {
    const { rows: [c] } = await client.query(CHECK_SQL);
    if (!c.has_outbox || !c.has_channel) {
      say(`off: database "${c.db}" has no toygun.outbox (or toygun.channel) visible to role "${c.role}"; `
        + 'hint: install toygun 0.4 there (CREATE EXTENSION toygun, or ALTER EXTENSION toygun UPDATE), '
        + 'or point the deliverer at the database that has it');
      return false;
    }
    const { rows: [p] } = await client.query(PRIVS_SQL);
    const missing = [];
    if (!p.schema_usage) missing.push('USAGE on schema toygun');
    const ob = [p.outbox_select ? null : 'SELECT', p.outbox_update ? null : 'UPDATE'].filter(Boolean);
    if (ob.length) missing.push(`${ob.join(', ')} on toygun.outbox`);
    if (!p.channel_select) missing.push('SELECT on toygun.channel');
    if (missing.length) {
      const grants = [];
      if (ob.length) grants.push(`GRANT ${ob.join(', ')} ON toygun.outbox TO ${pg.escapeIdentifier(c.role)};`);
      if (!p.channel_select) grants.push(`GRANT SELECT ON toygun.channel TO ${pg.escapeIdentifier(c.role)};`);
      if (!p.schema_usage) grants.push(`GRANT USAGE ON SCHEMA toygun TO ${pg.escapeIdentifier(c.role)};`);
      say(`off: role "${c.role}" lacks ${missing.join(' and ')} in database "${c.db}"; `
        + `hint: as the extension's owner, ${grants.join(' ')}`);
      return false;
    }
    if (!p.has_columns) {
      say(`off: toygun.outbox in database "${c.db}" has no next_attempt_at column (toygun older than 0.4); `
        + 'hint: ALTER EXTENSION toygun UPDATE');
      return false;
    }
    return { role: c.role, db: c.db };
  }

  // One row: claim, send, mark, commit. False when there was none to claim.
  async function deliverOne(client, name) {
    await client.query('BEGIN');
    let row;
    try {
      ({ rows: [row] } = await client.query(CLAIM_SQL, [o.maxAttempts, kinds]));
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    if (!row) { await client.query('COMMIT'); return false; }
    const attempt = row.attempts + 1;
    const where = `outbox ${row.id} (${row.event} of alarm ${row.alarm_id}) to channel "${row.channel}" (${row.kind})`;
    const started = Date.now();
    let out;
    // a tenant that may raise alarms writes their messages: one of megabytes
    // would tie up a sender and its receiver on every attempt; it fails at once
    const size = Buffer.byteLength(JSON.stringify(row.payload ?? null));
    try {
      out = size > MAX_PAYLOAD
        ? { result: 'permanent', detail: `payload of ${size} bytes is larger than the deliverer's limit of ${MAX_PAYLOAD} bytes ` +
            '(an alarm message that long is not sent; shorten it)' }
        : await CHANNELS[row.kind].send(row, ctx);
    } catch (err) {   // a bug or a payload of an unexpected shape: retried, and logged
      out = { result: 'retry', detail: `could not send: ${err.message}` };
    }
    const ms = Date.now() - started;
    let line, retryIn = null;
    try {
      if (out.result === 'delivered') {
        await client.query(DELIVERED_SQL, [row.id, me]);
        line = `${where}: delivered, attempt ${attempt}, ${out.detail}, ${ms} ms`;
      } else if (out.result === 'retry' && attempt < o.maxAttempts) {
        const wait = backoffMs(attempt, o, out.retryAfterMs);
        await client.query(RETRY_SQL, [row.id, out.detail, wait]);
        retryIn = wait;
        line = `${where}: attempt ${attempt} of ${o.maxAttempts} failed (${out.detail}); next in ${(wait / 1000).toFixed(1)} s`;
      } else {
        await client.query(FAILED_SQL, [row.id, out.detail, o.maxAttempts]);
        line = out.result === 'retry'
          ? `${where}: failed after ${attempt} attempts (${out.detail}); not retried`
          : `${where}: failed permanently at attempt ${attempt} (${out.detail}); not retried`;
      }
      await client.query('COMMIT');
    } catch (err) {
      if (out.result === 'delivered')
        say(`${where}: sent (${out.detail}) but the mark did not commit (${err.message}): it will be sent again, `
          + `with Idempotency-Key toygun-outbox-${row.id}`);
      throw err;
    }
    if (retryIn != null) wakeIn(retryIn);   // after COMMIT: the row is due for others only then
    say(line);
    return true;
  }

  async function sender(name) {
    while (!stopping) {
      const client = await connect(name);
      if (!client) return;
      try {
        while (!stopping) {
          const seen = waker.gen;
          if (!await deliverOne(client, name)) await waker.wait(o.pollMs, seen);
        }
      } catch (err) {
        if (!stopping) say(`${name}: lost its connection (${err.code || ''} ${err.message}); reconnecting`);
        await release(client);
        if (!stopping) await sleep(o.reconnectMs);
        continue;
      }
      await release(client);
    }
  }

  // The listener: LISTEN toygun_outbox, mark rows of dropped channels, learn
  // when the next retry is due, and wake the senders.
  let housekeeping = null, again = false;
  async function housekeep(client) {
    if (housekeeping) { again = true; return housekeeping; }
    housekeeping = (async () => {
      do {
        again = false;
        const { rows } = await client.query(DROPPED_SQL, [o.maxAttempts]);
        for (const r of rows) say(`outbox ${r.id} to channel "${r.channel}": failed: channel ${r.channel} was dropped`);
        const { rows: [d] } = await client.query(NEXT_DUE_SQL, [o.maxAttempts]);
        if (d.ms != null) wakeIn(Number(d.ms));
      } while (again && !stopping);
    })().finally(() => { housekeeping = null; });
    return housekeeping;
  }

  async function listener(onReady) {
    let first = true;
    while (!stopping) {
      const client = await connect('listener');
      if (!client) return onReady(false);
      try {
        if (first) {
          const ok = await check(client);
          if (!ok) { await release(client); stopping = true; waker.kick(); return onReady(false); }
          say(`on: role "${ok.role}", database "${ok.db}", ${o.senders} sender(s), channel kinds ${kinds.join(', ')}`
            + (o.smtpUrl ? '' : ' (e-mail off: no SMTP URL; e-mail rows wait)')
            + `, at most ${o.maxAttempts} attempts`);
        }
        listenerClient = client;
        let lost = null;
        const gone = new Promise((resolve) => { lost = resolve; });
        client.on('error', (err) => lost(err));
        client.on('end', () => lost(new Error('connection ended')));
        client.on('notification', () => {
          waker.kick();
          housekeep(client).catch((err) => lost(err));
        });
        await client.query('LISTEN toygun_outbox');
        await housekeep(client);
        if (first) { first = false; onReady(true); }
        waker.kick();
        while (!stopping) {
          const seen = waker.gen;
          const why = await Promise.race([sleep(o.pollMs), gone]);
          if (why instanceof Error) throw why;
          if (why === 'time') { await housekeep(client); if (waker.gen === seen) waker.kick(); }
        }
      } catch (err) {
        listenerClient = null;
        if (first && /^42/.test(err.code || '')) {   // the check itself was refused
          say(`off: ${err.message} (${err.code}); hint: grant the deliverer's role USAGE on schema toygun, `
            + 'SELECT, UPDATE on toygun.outbox and SELECT on toygun.channel');
          await release(client); stopping = true; waker.kick();
          return onReady(false);
        }
        if (first) {   // the check itself failed: keep trying, as for a lost connection
          say(`listener: ${err.code || ''} ${err.message}; trying again`);
        } else if (!stopping) {
          say(`listener: lost its connection (${err.code || ''} ${err.message}); reconnecting`);
        }
        await release(client);
        if (!stopping) await sleep(o.reconnectMs);
        continue;
      }
      await release(client);
    }
    if (first) onReady(false);
  }

  let readyResolve;
  const ready = new Promise((resolve) => { readyResolve = resolve; });
  let senders = [];
  const listening = listener((ok) => {
    readyResolve(ok);
    if (ok) for (let i = 1; i <= o.senders; i++) senders.push(sender(`sender ${i}`));
  });

  let stopped = null;
  function stop() {
    if (stopped) return stopped;
    stopping = true;
    clearTimeout(retryTimer);
    waker.kick();
    for (const f of [...stopWaits]) f('stop');
    stopped = (async () => {
      readyResolve(false);
      await listening.catch(() => {});
      await Promise.all(senders.map((s) => s.catch(() => {})));
      await Promise.all([...clients].map(release));
      if (ctx.transport) ctx.transport.close();
    })();
    return stopped;
  }

  return { ready, stop };
}
