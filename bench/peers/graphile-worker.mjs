// graphile-worker's driver: jobs are added with its SQL API (add_jobs,
// add_job) and run by worker processes (graphile-worker-child.mjs). A job is
// deleted when it completes, so a workload is done when no job added after
// it began is left.
import { readFileSync } from "node:fs";
import { runMigrations, Logger } from "graphile-worker";
import { Arrivals, ChildPool } from "./children.mjs";
import { connect, connectionString, handlerMinusCommit } from "./lib.mjs";

const quiet = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker: ${message}`);
});

// Its fastest documented configuration (local queue, batched completion),
// with the process count and concurrency that did best on 2 cores (see
// bench/README.md). Each can be overridden from the environment to retune.
export function graphileSettings(env = process.env) {
  return {
    processes: Number(env.GW_PROCESSES ?? 2),
    concurrency: Number(env.GW_CONCURRENCY ?? 24),
    localQueue: Number(env.GW_LOCAL_QUEUE ?? 1000),
    batchDelay: Number(env.GW_BATCH_DELAY ?? 0),
  };
}

export class GraphileWorker {
  name = "graphile-worker";
  db = "graphile_worker";

  constructor(settings = graphileSettings()) {
    this.settings = settings;
    const pkg = JSON.parse(readFileSync(new URL("node_modules/graphile-worker/package.json", import.meta.url)));
    this.version = `graphile-worker ${pkg.version}`;
  }

  async prepare() {
    await runMigrations({ connectionString: connectionString(this.db), logger: quiet });
    this.client = await connect(this.db);
  }

  async start() {
    this.arrivals = new Arrivals();
    this.pool = new ChildPool("graphile-worker-child.mjs", this.settings.processes,
      { db: this.db, ...this.settings },
      // as in graphile-worker's own performance test: no line per completed job
      { arrivals: this.arrivals, env: { NO_LOG_SUCCESS: "1" } });
    await this.pool.start();
  }

  async stop() {
    await this.pool.stop();
  }

  // Add n jobs in one call of add_jobs (one transaction); the number of
  // handler calls they will take. W1p (issue 17): every other job with
  // priority -1 in its job_spec, the rest 0 (NULL): graphile-worker runs
  // lower numbers first, so that half runs first, as toygun's runs at 1.
  async enqueue(workload, n) {
    const { rows } = await this.client.query("SELECT coalesce(max(id), 0)::text AS id FROM graphile_worker._private_jobs");
    this.baseId = rows[0].id;
    this.baseHandled = this.pool.handled();
    this.expected = workload === "w2" ? 3 * n : n;
    await this.client.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(array(
           SELECT ROW($1, $2::json, NULL, NULL, NULL, NULL, CASE WHEN $4 AND i % 2 = 0 THEN -1 END, NULL)::graphile_worker.job_spec
             FROM generate_series(1, $3) i))`,
      [workload, workload === "w2" ? '{"step": 1}' : "{}", n, workload === "w1p"],
    );
    return this.expected;
  }

  async completed() {
    return this.pool.handled() - this.baseHandled;
  }

  async done() {
    this.pool.check();
    const { rows } = await this.client.query(
      "SELECT NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs WHERE id > $1) AS done",
      [this.baseId],
    );
    return rows[0].done;
  }

  // After stop(): every job ran exactly once.
  async verify() {
    const handled = this.pool.handled() - this.baseHandled;
    if (handled !== this.expected)
      throw new Error(`graphile-worker: ${handled} handler calls, ${this.expected} expected`);
  }

  async latencyStart(seq) {
    const { rows } = await this.client.query(
      `SELECT (graphile_worker.add_job('w3', json_build_object('seq', $1::int))).id,
              pg_current_xact_id()::xid::text AS xid`,
      [seq],
    );
    return rows[0].xid;
  }

  latencyWait(seq, timeoutMs) {
    return this.arrivals.wait(seq, timeoutMs);
  }

  async latencies(xids) {
    return handlerMinusCommit(this.client, this.arrivals, xids);
  }

  // W4: jobs due in a year, added with add_jobs in batches of 100,000.
  async addSleepers(n) {
    for (let done = 0; done < n; done += 100000) {
      await this.client.query(
        `SELECT count(*) FROM graphile_worker.add_jobs(array(
             SELECT ROW('w4', '{}'::json, NULL, now() + interval '1 year', NULL, NULL, NULL, NULL)::graphile_worker.job_spec
               FROM generate_series(1, $1)))`,
        [Math.min(100000, n - done)],
      );
    }
    await this.client.query("VACUUM ANALYZE graphile_worker._private_jobs");
  }

  async vacuum() {
    await this.client.query("VACUUM ANALYZE");
  }

  async close() {
    await this.client?.end();
  }
}
