// toygun's driver: runs are started with the SQL API on resources made
// beforehand, and ticked by the background workers inside the server. Its
// workers always run; their tick counters (toygun.worker_status()) say how
// far a workload has got.
import { readFileSync } from "node:fs";
import { Arrivals } from "./children.mjs";
import { connect, waitFor } from "./lib.mjs";

// Ticks each run of a workload takes.
const TICKS = { w1: 1, w1p: 1, w2: 3, w4: 1, w6: 10 };
// The priority of each workload's runs, by their resource's number: W1p
// (issue 17) starts every other run at 1, the rest at 0.
const PRIORITY = { w1p: "CASE WHEN i % 2 = 0 THEN 1 ELSE 0 END" };

export class Toygun {
  name = "toygun";
  db = "toygun";

  async prepare(n) {
    this.client = await connect(this.db);
    this.listener = await connect(this.db);
    this.arrivals = new Arrivals();
    this.wakes = new Arrivals();
    this.listener.on("notification", (m) =>
      (m.channel === "bench_wake" ? this.wakes : this.arrivals).arrive(Number(m.payload), null));
    await this.listener.query("LISTEN bench_latency");
    await this.listener.query("LISTEN bench_wake");
    await this.client.query("SET client_min_messages = warning");
    await this.client.query(readFileSync(new URL("toygun.sql", import.meta.url), "utf8"));
    const { rows } = await this.client.query(
      "SELECT extversion FROM pg_extension WHERE extname = 'toygun'",
    );
    this.version = `toygun ${rows[0].extversion}`;
    // W3 and W7 reuse resources once their run has stopped, so 500 are
    // enough; one more, past the ones workloads take, for W7's slow runs
    this.resources = Math.max(n, 500);
    await this.client.query(
      `INSERT INTO public.bench_resource (i, id)
       SELECT i, toygun.create_resource('bench') FROM generate_series(1, $1 + 1) i`,
      [this.resources],
    );
    // the workers tick each new resource into its first state: not part of any workload
    await waitFor(
      "toygun: ticking the new resources into their first state",
      async () => (await this.client.query("SELECT NOT EXISTS (SELECT 1 FROM toygun.resource WHERE run_at IS NOT NULL) AS ok")).rows[0].ok,
      { timeoutMs: 600000, everyMs: 200 },
    );
    // clean up after those ticks now rather than during W1's warm-up; the
    // task table is still empty and is left alone (see "A plan that went
    // stale" in bench/README.md); it is vacuumed after the warm-up round
    await this.client.query("VACUUM ANALYZE toygun.resource");
  }

  async counters() {
    const { rows } = await this.client.query(
      "SELECT coalesce(sum(ticks), 0)::bigint AS ticks, coalesce(sum(failures), 0)::bigint AS failures FROM toygun.worker_status()",
    );
    return { ticks: Number(rows[0].ticks), failures: Number(rows[0].failures) };
  }

  async workerPids() {
    const { rows } = await this.client.query("SELECT pid FROM toygun.worker_status() ORDER BY slot");
    return rows.map((r) => r.pid);
  }

  // The workers always run.
  async start() {}
  async stop() {}

  // Start n runs of the workload's task in one transaction; the number of
  // ticks they will take.
  async enqueue(workload, n) {
    this.base = await this.counters();
    this.workload = workload;
    this.n = n;
    this.expected = TICKS[workload] * n;
    // runs of this task stopped by earlier rounds (W1 runs twice)
    const { rows } = await this.client.query(
      "SELECT count(*)::int AS n FROM toygun.task WHERE name = $1 AND state = '__stop__'", [workload]);
    this.baseStopped = rows[0].n;
    await this.client.query(
      `SELECT count(toygun.start_task(id, $2, priority => ${PRIORITY[workload] ?? "NULL"}))
         FROM public.bench_resource WHERE i <= $1`,
      [n, workload],
    );
    return this.expected;
  }

  async completed() {
    return (await this.counters()).ticks - this.base.ticks;
  }

  async done() {
    const now = await this.counters();
    if (now.failures > this.base.failures) throw new Error("toygun: a tick failed (see the server log)");
    return now.ticks - this.base.ticks >= this.expected;
  }

  // Every run of the workload has stopped (sleeping W4 runs aside).
  async verify() {
    const { rows } = await this.client.query(
      `SELECT count(*) FILTER (WHERE state = '__stop__')::int AS stopped,
              count(*) FILTER (WHERE state <> '__stop__' AND (run_at IS NULL OR run_at < now() + interval '1 day'))::int AS live
         FROM toygun.task WHERE name = $1`,
      [this.workload],
    );
    const { live } = rows[0];
    const stopped = rows[0].stopped - this.baseStopped;
    if (stopped !== this.n || live !== 0)
      throw new Error(`toygun: ${stopped} of ${this.n} runs stopped, ${live} still live`);
  }

  // W3: one start, committed alone; the id of its transaction.
  async latencyStart(seq) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(id, 'w3', jsonb_build_object('seq', $1::int)) AS run,
              pg_current_xact_id()::xid::text AS xid
         FROM public.bench_resource WHERE i = $2`,
      [seq, 1 + (seq % this.resources)],
    );
    return rows[0].xid;
  }

  latencyWait(seq, timeoutMs) {
    return this.arrivals.wait(seq, timeoutMs);
  }

  // Milliseconds from each start's commit to its handler's first statement.
  async latencies(xids) {
    const { rows } = await this.client.query(
      `SELECT (extract(epoch FROM l.at - pg_xact_commit_timestamp(x.xid::xid)) * 1000)::float8 AS ms
         FROM unnest($1::int[], $2::text[]) AS x(seq, xid) JOIN public.bench_latency l USING (seq)`,
      [xids.map((_, i) => i), xids],
    );
    if (rows.length !== xids.length) throw new Error(`toygun: ${rows.length} of ${xids.length} handler times found`);
    return rows.map((r) => r.ms);
  }

  // W7: a run of the slow task, whose one tick sleeps `seconds`, on a
  // resource of its own; its id.
  async slowStart(cycle, seconds) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(id, 'w7slow', jsonb_build_object('cycle', $1::int, 'seconds', $2::float8)) AS run
         FROM public.bench_resource WHERE i = $3`,
      [cycle, seconds, this.resources + 1],
    );
    return rows[0].run;
  }

  // A worker is in the slow tick's pg_sleep.
  async slowTicking() {
    const { rows } = await this.client.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'toygun worker' AND wait_event = 'PgSleep'`,
    );
    return rows[0].n > 0;
  }

  // The slow run's tick has committed.
  async slowDone(run) {
    const { rows } = await this.client.query("SELECT state FROM toygun.task WHERE id = $1", [run]);
    return rows[0].state === "__stop__";
  }

  // W7: one fast start, committed alone; the id of its transaction.
  async wakeStart(seq) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(id, 'w7', jsonb_build_object('seq', $1::int)) AS run,
              pg_current_xact_id()::xid::text AS xid
         FROM public.bench_resource WHERE i = $2`,
      [seq, 1 + (seq % this.resources)],
    );
    return rows[0].xid;
  }

  wakeWait(seq, timeoutMs) {
    return this.wakes.wait(seq, timeoutMs);
  }

  // For each fast start of a W7 cycle: milliseconds from its commit to the
  // commit of its first tick (both commit timestamps: the row the handler
  // wrote has the tick's transaction as xmin), from its commit to its
  // handler's first statement, and whether the cycle's slow tick had begun
  // before the start committed and ended after it (one worker was busy).
  async wakeLatencies(cycle, starts) {
    const { rows } = await this.client.query(
      `WITH x AS (
         SELECT x.seq, pg_xact_commit_timestamp(x.xid::xid) AS committed
           FROM unnest($1::int[], $2::text[]) AS x(seq, xid))
       SELECT x.seq,
              (extract(epoch FROM pg_xact_commit_timestamp(w.xmin) - x.committed) * 1000)::float8 AS ms,
              (extract(epoch FROM w.at - x.committed) * 1000)::float8 AS handler_ms,
              (s.began < x.committed AND pg_xact_commit_timestamp(s.xmin) > x.committed) AS beside
         FROM x JOIN public.bench_wake w USING (seq)
         JOIN public.bench_slow s ON s.cycle = $3
        ORDER BY x.seq`,
      [starts.map((s) => s.seq), starts.map((s) => s.xid), cycle],
    );
    if (rows.length !== starts.length) throw new Error(`toygun: ${rows.length} of ${starts.length} W7 tick times found`);
    return rows;
  }

  // W8: a run of w8 started in one statement, committed alone; its id and
  // the id of its transaction. Its first tick leaves it in hold for an hour.
  async waitStart(seq) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(id, 'w8') AS run, pg_current_xact_id()::xid::text AS xid
         FROM public.bench_resource WHERE i = $1`,
      [1 + (seq % this.resources)],
    );
    return rows[0];
  }

  // W8: toygun.wait() from a second client (not awaited): the state it
  // returns, how long it took itself and when it returned (server clock).
  async waitRun(run, states = "{__stop__,__panic__}") {
    if (!this.waiter) {
      this.waiter = await connect(this.db);
      this.waiterPid = (await this.waiter.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    }
    const { rows } = await this.waiter.query(
      `SELECT w.state, clock_timestamp()::text AS returned,
              (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::float8 AS own_ms
         FROM toygun.wait($1, '10 s', $2) w`,
      [run, states],
    );
    return rows[0];
  }

  // W8: the waiter sleeps in wait() on its latch.
  async waiterSleeping() {
    const { rows } = await this.client.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'Extension'",
      [this.waiterPid],
    );
    return rows[0].n > 0;
  }

  // W8: the run may stop, and is due now, in one statement committed alone;
  // the id of its transaction.
  async waitGo(run) {
    const { rows } = await this.client.query(
      `SELECT (toygun.update_task($1, '{"go": true}')).step AS updated, (toygun.retry_task($1)).step AS retried,
              pg_current_xact_id()::xid::text AS xid`,
      [run],
    );
    return rows[0].xid;
  }

  // Milliseconds from a transaction's commit to a time (server clock).
  async sinceCommit(xid, at) {
    const { rows } = await this.client.query(
      "SELECT (extract(epoch FROM $2::timestamptz - pg_xact_commit_timestamp($1::xid)) * 1000)::float8 AS ms",
      [xid, at],
    );
    return rows[0].ms;
  }

  // W4: runs asleep for a year, written directly (a run in its declared
  // state with a far run_at, on a resource in its first state, without
  // history rows), which is what stay(wait => '1 year') leaves behind.
  async addSleepers(n) {
    for (let done = 0; done < n; done += 100000) {
      await this.client.query(
        `WITH r AS (
             INSERT INTO toygun.resource (id, type, state, step)
             SELECT gen_random_uuid(), 'bench', 'starting', 1 FROM generate_series(1, $1)
             RETURNING id)
         INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step, run_at)
         SELECT gen_random_uuid(), id, 'bench', 'w4', 'only', 1, now() + interval '1 year' FROM r`,
        [Math.min(100000, n - done)],
      );
    }
    await this.client.query("VACUUM ANALYZE toygun.resource, toygun.task");
  }

  // W9: the backlog, n runs of w9backlog (priority 0, due again after every
  // tick), started in one transaction on resources of their own, numbered
  // 1 to n; and `probes` more resources, n + 1 to n + probes, for the timed
  // starts. Untimed: making the resources.
  async backlogStart(n, probes) {
    this.w9Backlog = n;
    await this.client.query(
      `INSERT INTO public.bench_w9_resource (i, id)
       SELECT i, toygun.create_resource('bench_w9') FROM generate_series(1, $1) i`,
      [n + probes],
    );
    await this.client.query(
      "SELECT count(toygun.start_task(id, 'w9backlog')) FROM public.bench_w9_resource WHERE i <= $1",
      [n],
    );
  }

  // W9: one start of w9 at a priority on probe resource k, committed alone,
  // its handler to note `seq`; the id of its transaction.
  async priorityStart(seq, k, priority) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(id, 'w9', jsonb_build_object('seq', $1::int), priority => $3) AS run,
              pg_current_xact_id()::xid::text AS xid
         FROM public.bench_w9_resource WHERE i = $2`,
      [seq, this.w9Backlog + 1 + k, priority],
    );
    return rows[0].xid;
  }

  // W9: how many of the handlers of seq first to first + n - 1 have begun
  // (and their tick committed).
  async priorityHandled(first, n) {
    const { rows } = await this.client.query(
      "SELECT count(*)::int AS n FROM public.bench_w9 WHERE seq >= $1 AND seq < $1 + $2", [first, n]);
    return rows[0].n;
  }

  // W9: for each start, in their order (seq first, first + 1, ...):
  // milliseconds from its commit to its handler's first statement (ms),
  // and to the start of the transaction of the batch that ticked it
  // (batch_ms: negative if that batch began before the commit), that
  // worker's pid, and the commit's time.
  async priorityLatencies(first, xids) {
    const { rows } = await this.client.query(
      `SELECT (extract(epoch FROM l.at - pg_xact_commit_timestamp(x.xid::xid)) * 1000)::float8 AS ms,
              (extract(epoch FROM l.batch - pg_xact_commit_timestamp(x.xid::xid)) * 1000)::float8 AS batch_ms,
              l.pid, pg_xact_commit_timestamp(x.xid::xid)::text AS committed
         FROM unnest($2::text[]) WITH ORDINALITY AS x(xid, k)
         JOIN public.bench_w9 l ON l.seq = $1 + x.k - 1
        ORDER BY x.k`,
      [first, xids],
    );
    if (rows.length !== xids.length) throw new Error(`toygun: ${rows.length} of ${xids.length} W9 handler times found`);
    return rows;
  }

  // W9: the backlog's handler stops from now on; wait until every run of
  // it has.
  async backlogStop() {
    await this.client.query("INSERT INTO public.bench_w9_stop VALUES (true)");
    await waitFor("W9: the backlog to stop", async () => {
      const { rows } = await this.client.query(
        "SELECT NOT EXISTS (SELECT 1 FROM toygun.task WHERE name = 'w9backlog' AND state <> '__stop__') AS done");
      return rows[0].done;
    }, { timeoutMs: 600000, everyMs: 200 });
  }

  // W11 (a): n runs of the rate-limited task w11 on resources of their
  // own, started in one transaction; the id of its transaction. Untimed:
  // making the resources.
  async rateStart(n) {
    await this.client.query(
      "SELECT count(toygun.create_resource('bench_w11')) FROM generate_series(1, $1 - (SELECT count(*) FROM toygun.resource WHERE type = 'bench_w11'))",
      [n],
    );
    const { rows } = await this.client.query(
      `WITH s AS (SELECT count(toygun.start_task(id, 'w11')) AS n FROM toygun.resource WHERE type = 'bench_w11')
       SELECT pg_current_xact_id()::xid::text AS xid, (SELECT n FROM s)::int AS n`,
    );
    return rows[0].xid;
  }

  // W11 (a): ticks of w11 committed (its runs stopped), by their history's
  // time, within [commit + lead, commit + lead + len) of the start's commit.
  async rateTicks(xid, leadS, lenS) {
    const { rows } = await this.client.query(
      `SELECT count(*)::int AS n FROM toygun.transition
        WHERE resource_type = 'bench_w11' AND to_state = '__stop__'
          AND at >= pg_xact_commit_timestamp($1::xid) + make_interval(secs => $2)
          AND at < pg_xact_commit_timestamp($1::xid) + make_interval(secs => $2 + $3)`,
      [xid, leadS, lenS],
    );
    return rows[0].n;
  }

  // W11 (a): the time now, past the start's commit, in seconds.
  async sinceCommitS(xid) {
    const { rows } = await this.client.query(
      "SELECT extract(epoch FROM clock_timestamp() - pg_xact_commit_timestamp($1::xid))::float8 AS s", [xid]);
    return rows[0].s;
  }

  // W11 (a): the runs left (held) are removed, and their resources.
  async rateCleanup() {
    await this.client.query("DELETE FROM toygun.task WHERE resource_type = 'bench_w11' AND state <> '__stop__'");
    await this.client.query("VACUUM ANALYZE toygun.task");
  }

  // W11 (b): clients sessions take tokens of w11_sql in a loop; the tokens
  // granted within [t0 + lead, t0 + lead + len), t0 a moment after the call.
  async rateTakers(clients, leadS, lenS) {
    const sessions = await Promise.all(Array.from({ length: clients }, () => connect(this.db)));
    try {
      const { rows } = await this.client.query("SELECT (clock_timestamp() + interval '200 ms')::text AS t0");
      const counts = await Promise.all(sessions.map((c) =>
        c.query("SELECT public.bench_take_tokens($1::timestamptz, make_interval(secs => $2), make_interval(secs => $3))::bigint AS n",
          [rows[0].t0, leadS, lenS])));
      return counts.map((r) => Number(r.rows[0].n));
    } finally {
      await Promise.all(sessions.map((c) => c.end()));
    }
  }

  // W10 (a): n runs of tenant A of the limited task w10 on resources of
  // their own, started in one transaction; the id of its transaction.
  // Untimed: making the resources.
  async fairFlood(n) {
    await this.client.query("TRUNCATE public.bench_w10");
    await this.client.query(
      "SELECT count(toygun.create_resource('bench_w10')) FROM generate_series(1, $1 - (SELECT count(*) FROM toygun.resource WHERE type = 'bench_w10'))",
      [n],
    );
    const { rows } = await this.client.query(
      `WITH s AS (SELECT count(toygun.start_task(id, 'w10', '{"tenant": "A"}')) AS n
                    FROM toygun.resource WHERE type = 'bench_w10')
       SELECT pg_current_xact_id()::xid::text AS xid, (SELECT n FROM s)::int AS n`,
    );
    return rows[0].xid;
  }

  // W10: A's runs stopped so far.
  async fairADone() {
    const { rows } = await this.client.query(
      "SELECT count(*)::int AS n FROM toygun.task WHERE name = 'w10' AND state = '__stop__' AND attrs->>'tenant' = 'A'");
    return rows[0].n;
  }

  // W10 (b): one run of tenant B on a new resource, committed alone; the id of its transaction.
  async fairB(seq) {
    const { rows } = await this.client.query(
      `SELECT toygun.start_task(toygun.create_resource('bench_w10'), 'w10',
                                jsonb_build_object('tenant', 'B', 'seq', $1::int)) AS run,
              pg_current_xact_id()::xid::text AS xid`,
      [seq],
    );
    return rows[0].xid;
  }

  async fairBDone() {
    const { rows } = await this.client.query("SELECT count(*)::int AS n FROM public.bench_w10");
    return rows[0].n;
  }

  // W10: each B start's commit to its handler's first statement, in ms;
  // A's ticks per second from the first B commit to the last B handler.
  async fairLatencies(xids) {
    const { rows } = await this.client.query(
      `SELECT (extract(epoch FROM w.at - pg_xact_commit_timestamp(x.xid::xid)) * 1000)::float8 AS ms
         FROM unnest($1::text[]) WITH ORDINALITY AS x(xid, seq) JOIN public.bench_w10 w ON w.seq = x.seq - 1
        ORDER BY x.seq`,
      [xids],
    );
    const { rows: a } = await this.client.query(
      `WITH w AS (SELECT pg_xact_commit_timestamp($1::xid) AS t0, (SELECT max(at) FROM public.bench_w10) AS t1)
       SELECT count(*)::int AS n, extract(epoch FROM max(w.t1 - w.t0))::float8 AS s
         FROM toygun.transition x, w
        WHERE x.resource_type = 'bench_w10' AND x.to_state = '__stop__' AND x.at >= w.t0 AND x.at < w.t1
          AND x.object_id IN (SELECT id FROM toygun.task WHERE name = 'w10' AND attrs->>'tenant' = 'A')`,
      [xids[0]],
    );
    return { ms: rows.map((r) => r.ms), aTicks: a[0].n, aSeconds: a[0].s };
  }

  // W10: the runs of A left are removed.
  async fairCleanup() {
    await this.client.query("DELETE FROM toygun.task WHERE name = 'w10' AND state <> '__stop__'");
    await this.client.query("VACUUM ANALYZE toygun.task");
  }

  async vacuum() {
    await this.client.query("VACUUM ANALYZE");
  }

  async close() {
    await this.listener?.end();
    await this.waiter?.end();
    await this.client?.end();
  }
}
