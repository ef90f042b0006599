// GET /metrics: Prometheus' text format, HTTP Basic as a PostgreSQL role,
// checked by SCRAM exactly as sign-in. The connection is kept for the same
// credentials' next scrape, found by an HMAC of user and password under a key
// made at start (the password itself is not kept), and closed after 10
// minutes without a scrape or when it fails.
import { Hono } from 'hono';
import { createHmac, randomBytes } from 'node:crypto';
import { connectAs } from './auth.mjs';
import { ROLE_VALID_SQL, ROLE_GONE } from './session.mjs';

const IDLE_MS = 10 * 60 * 1000;
const MAX_CACHED = 20;

export function metricsRoutes({ config, log }) {
  const app = new Hono();
  const key = randomBytes(32);
  const cache = new Map();   // hmac → {client, lastUsed, queue}

  const drop = (k) => {
    const e = cache.get(k);
    if (!e) return;
    cache.delete(k);
    e.client.end().catch(() => {});
  };
  const timer = setInterval(() => {
    for (const [k, e] of cache) if (Date.now() - e.lastUsed > IDLE_MS) drop(k);
  }, 60000).unref();

  const unauthorized = (c, message) => {
    c.header('WWW-Authenticate', 'Basic realm="toygun metrics", charset="UTF-8"');
    return c.text(`${message}\n`, 401);
  };

  app.get('/metrics', async (c) => {
    c.header('Cache-Control', 'no-store');
    const auth = c.req.header('authorization') || '';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth);
    if (!m) return unauthorized(c, 'toygun /metrics needs HTTP Basic authentication as a PostgreSQL role');
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 1) return unauthorized(c, 'the Basic credentials must be role:password');
    const role = decoded.slice(0, colon);
    const k = createHmac('sha256', key).update(role).update('\0').update(decoded.slice(colon + 1)).digest('base64');
    let e = cache.get(k);
    // a password change is not seen by a connection already open: a cached one
    // is dropped after --metrics-reauth, and the next scrape is checked by SCRAM again
    if (e && Date.now() - e.created > config.metricsReauthMs) { drop(k); e = null; }
    if (!e) {
      let client;
      try {
        client = await connectAs(config.db, role, decoded.slice(colon + 1), `toygun-metrics:${role}`);
      } catch (err) {
        if (err.status === 401) return unauthorized(c, err.message);
        return c.text(`${err.message}\n`, err.status || 503);
      }
      if (cache.size >= MAX_CACHED) {
        const oldest = [...cache.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0];
        drop(oldest[0]);
      }
      e = { client, created: Date.now(), lastUsed: Date.now(), queue: Promise.resolve() };
      cache.set(k, e);
      client.once('end', () => { if (cache.get(k) === e) cache.delete(k); });
    }
    e.lastUsed = Date.now();
    // LOGIN and VALID UNTIL checked at each scrape, as a session's requests are
    const p = e.queue.then(() => e.client.query(
      `SELECT (${ROLE_VALID_SQL}) AS ok, CASE WHEN (${ROLE_VALID_SQL}) THEN toygun.metrics() END AS m`));
    e.queue = p.catch(() => {});
    try {
      const r = await p;
      if (!r.rows[0].ok) { drop(k); return unauthorized(c, `sign-in refused for role "${role}": ${ROLE_GONE}`); }
      c.header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
      return c.body(r.rows[0].m ?? '');
    } catch (err) {
      if (!err.code || err.code.startsWith('08') || err.code === '57P01') drop(k);
      if (err.code === '42704') { drop(k); return unauthorized(c, `sign-in refused for role "${role}": ${ROLE_GONE}`); }
      const status = err.code === '42883' || err.code === '3F000' ? 501 : err.code === '55000' ? 503 : 500;
      return c.text(`toygun.metrics() failed: ${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ''}\n`, status);
    }
  });

  app.closeAll = async () => {
    clearInterval(timer);
    await Promise.all([...cache.keys()].map((k) => drop(k)));
  };
  return app;
}
