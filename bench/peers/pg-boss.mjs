// pg-boss's driver: jobs are added with its insert() and send() from this
// process and run by worker processes (pg-boss-child.mjs). Completed jobs
// stay in its job table with state 'completed', so a workload is done when
// none of its queue's due jobs is still created, retrying or active.
import { readFileSync } from "node:fs";
import { PgBoss } from "pg-boss";
import { Arrivals, ChildPool } from "./children.mjs";
import { connect, connectionString, handlerMinusCommit } from "./lib.mjs";

const QUEUES = ["w1", "w1p", "w2", "w3", "w4"];

// Batch fetch, fetching again at once while batches come back full, and
// LISTEN/NOTIFY wake-ups; the sizes that did best on 2 cores (see
// bench/README.md). Each can be overridden from the environment to retune.
export function pgBossSettings(env = process.env) {
  return {
    processes: Number(env.BOSS_PROCESSES ?? 2),
    localConcurrency: Number(env.BOSS_CONCURRENCY ?? 1),
    batchSize: Number(env.BOSS_BATCH_SIZE ?? 2000),
    poolSize: Number(env.BOSS_POOL_SIZE ?? 10),
    pollingSeconds: Number(env.BOSS_POLLING_SECONDS ?? 0.5),
  };
}

export class PgBossSystem {
  name = "pg-boss";
  db = "pg_boss";

  constructor(settings = pgBossSettings()) {
    this.settings = settings;
    const pkg = JSON.parse(readFileSync(new URL("node_modules/pg-boss/package.json", import.meta.url)));
    this.version = `pg-boss ${pkg.version}`;
  }

  // This process only adds jobs: no maintenance, no schedules.
  async prepare() {
    this.boss = new PgBoss({
      connectionString: connectionString(this.db),
      supervise: false,
      schedule: false,
      registerInstance: false,
    });
    this.boss.on("error", (e) => console.error(`pg-boss: ${e.message}`));
    await this.boss.start();
    for (const q of QUEUES) await this.boss.createQueue(q, { notify: true });
    this.client = await connect(this.db);
  }

  async start(workload) {
    this.arrivals = new Arrivals();
    this.pool = new ChildPool("pg-boss-child.mjs", this.settings.processes,
      { db: this.db, queue: workload, ...this.settings }, { arrivals: this.arrivals });
    await this.pool.start();
  }

  async stop() {
    await this.pool.stop();
  }

  // Add n jobs with one insert() (one statement); the number of handler
  // calls they will take. W1p (issue 17): every other job with priority 1
  // (pg-boss runs higher numbers first), the rest 0.
  async enqueue(workload, n) {
    this.workload = workload;
    this.baseHandled = this.pool.handled();
    this.expected = workload === "w2" ? 3 * n : n;
    const data = workload === "w2" ? { step: 1 } : {};
    const { rows } = await this.client.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'", [workload]);
    this.baseCompleted = rows[0].n;
    await this.boss.insert(workload, Array.from({ length: n }, (_, k) =>
      (workload === "w1p" ? { data, priority: (k + 1) % 2 === 0 ? 1 : 0 } : { data })));
    return this.expected;
  }

  async completed() {
    return this.pool.handled() - this.baseHandled;
  }

  async done() {
    this.pool.check();
    const { rows } = await this.client.query(
      `SELECT NOT EXISTS (SELECT 1 FROM pgboss.job
                           WHERE name = $1 AND state < 'completed' AND start_after < now() + interval '1 day') AS done`,
      [this.workload],
    );
    return rows[0].done;
  }

  // Every job ran once and is completed.
  async verify() {
    const handled = this.pool.handled() - this.baseHandled;
    const { rows } = await this.client.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'", [this.workload]);
    const completed = rows[0].n - this.baseCompleted;
    if (handled !== this.expected || completed !== this.expected)
      throw new Error(`pg-boss: ${handled} handler calls and ${completed} completed jobs, ${this.expected} expected`);
  }

  // W3: one send() in a transaction of our own, so we know its id.
  async latencyStart(seq) {
    const db = { executeSql: (text, values) => this.client.query(text, values) };
    await this.client.query("BEGIN");
    try {
      await this.boss.send("w3", { seq }, { db });
      const { rows } = await this.client.query("SELECT pg_current_xact_id()::xid::text AS xid");
      await this.client.query("COMMIT");
      return rows[0].xid;
    } catch (e) {
      await this.client.query("ROLLBACK");
      throw e;
    }
  }

  latencyWait(seq, timeoutMs) {
    return this.arrivals.wait(seq, timeoutMs);
  }

  async latencies(xids) {
    return handlerMinusCommit(this.client, this.arrivals, xids);
  }

  // W4: jobs starting in a year, added with insert() in batches of 50,000.
  async addSleepers(n) {
    const startAfter = new Date(Date.now() + 365 * 86400 * 1000);
    for (let done = 0; done < n; done += 50000) {
      const size = Math.min(50000, n - done);
      await this.boss.insert("w4", Array.from({ length: size }, () => ({ data: {}, startAfter })));
    }
    await this.client.query("VACUUM ANALYZE pgboss.job");
  }

  async vacuum() {
    await this.client.query("VACUUM ANALYZE");
  }

  // The adding instance stops before W5, so that only the workers count.
  async quiet() {
    await this.boss?.stop({ graceful: false });
    this.boss = null;
  }

  async close() {
    await this.quiet();
    await this.client?.end();
  }
}
