// Signed-in sessions, in memory: a random 256-bit id → the PostgreSQL
// connection opened at sign-in as the role, the CSRF token and times.
// Requests of one session run one after another on its connection.
import { randomBytes } from 'node:crypto';

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

  // The live session of an id, or null; `why` of an ended one in endedWhy().
  get(id) {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const now = Date.now();
    if (now - s.lastUsed > this.idleMs) { this.end(id, 'it was idle too long'); return null; }
    if (now - s.created > this.maxMs) { this.end(id, 'it reached its maximum age'); return null; }
    s.lastUsed = now;
    return s;
  }

  endedWhy(id) { return id ? this.ended.get(id) ?? null : null; }

  // run(session, fn): fn(client) after the session's earlier requests.
  run(s, fn) {
    const p = s.queue.then(() => fn(s.client));
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

  sweep() {
    for (const id of [...this.sessions.keys()]) this.get(id);
  }

  async closeAll() {
    clearInterval(this.timer);
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.client.end().catch(() => {})));
  }
}
