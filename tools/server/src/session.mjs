// Signed-in sessions, in memory: a random 256-bit id → the PostgreSQL
// connection opened at sign-in as the role, the CSRF token and times.
// Requests of one session run one after another on its connection.
import { randomBytes } from 'node:crypto';

// Whether the session's role may still sign in: it exists, has LOGIN and its
// VALID UNTIL has not passed. PostgreSQL checks these only when a connection
// opens; a session's connection lives on, so each request checks them first.
// (A dropped role makes session_user fail: also false.)
export const ROLE_VALID_SQL =
  'SELECT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = pg_catalog.session_user() ' +
  'AND r.rolcanlogin AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > pg_catalog.now())) AS ok';
export const ROLE_GONE = 'the role may no longer sign in: dropped, NOLOGIN or past its VALID UNTIL';

export async function roleValid(client) {
  try {
    return (await client.query(ROLE_VALID_SQL)).rows[0].ok === true;
  } catch (e) {
    if (!e.code || e.code.startsWith('08') || e.code === '57P01') throw e;   // the connection itself
    return false;
  }
}

export class SessionEnded extends Error {
  constructor(why) { super(`your session ended (${why}); sign in again`); this.status = 401; this.ended = true; }
}

export class SessionLimit extends Error {
  constructor(message) { super(message); this.status = 503; }
}

export class SessionStore {
  constructor({ max, maxPerRole, idleMs, maxMs, log = () => {} }) {
    Object.assign(this, { max, maxPerRole, idleMs, maxMs, log });
    this.sessions = new Map();
    this.ended = new Map();   // id → why, so the next request can say the session ended
    this.timer = setInterval(() => this.sweep(), Math.min(60000, idleMs / 2)).unref();
  }

  // A new session's place, refused over the limits (each holds a backend).
  checkLimits(role) {
    if (this.sessions.size >= this.max)
      throw new SessionLimit(`too many signed-in sessions: the server's limit --max-sessions is ${this.max} ` +
        '(each holds a PostgreSQL connection); try again later or sign out elsewhere');
    let n = 0;
    for (const s of this.sessions.values()) if (s.role === role) n++;
    if (n >= this.maxPerRole)
      throw new SessionLimit(`too many signed-in sessions for role "${role}": the limit ` +
        `--max-sessions-per-role is ${this.maxPerRole}; sign out of another one`);
  }

  create(client, role, whoami) {
    this.checkLimits(role);
    const now = Date.now();
    const s = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
      client, role, whoami, created: now, lastUsed: now,
      queue: Promise.resolve(),
    };
    this.sessions.set(s.id, s);
    const lost = () => this.end(s.id, 'the PostgreSQL connection closed');
    client.once('end', lost);
    client.on('error', lost);
    return s;
  }

  // Why a session must end now, or null.
  expired(s, now = Date.now()) {
    if (now - s.lastUsed > this.idleMs) return 'it was idle too long';
    if (now - s.created > this.maxMs) return 'it reached its maximum age';
    return null;
  }

  // The live session of an id (marking it used), or null; why an ended one
  // ended: endedWhy().
  get(id) {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const why = this.expired(s);
    if (why) { this.end(id, why); return null; }
    s.lastUsed = Date.now();
    return s;
  }

  endedWhy(id) { return id ? this.ended.get(id) ?? null : null; }

  // run(session, fn): fn(client) after the session's earlier requests, once
  // the role is checked to be still allowed to sign in.
  run(s, fn) {
    const p = s.queue.then(async () => {
      if (!(await roleValid(s.client))) {
        this.end(s.id, ROLE_GONE);
        throw new SessionEnded(ROLE_GONE);
      }
      return fn(s.client);
    });
    s.queue = p.catch(() => {});
    return p;
  }

  end(id, why) {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    if (why) {
      this.ended.set(id, why);
      if (this.ended.size > 1000) this.ended.delete(this.ended.keys().next().value);
      this.log(`session of role ${s.role} ended: ${why}`);
    }
    s.client.end().catch(() => {});
  }

  // Ends expired sessions without marking the others used.
  sweep() {
    const now = Date.now();
    for (const s of [...this.sessions.values()]) {
      const why = this.expired(s, now);
      if (why) this.end(s.id, why);
    }
  }

  async closeAll() {
    clearInterval(this.timer);
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.client.end().catch(() => {})));
  }
}
