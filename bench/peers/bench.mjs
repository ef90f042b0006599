// The benchmark proper, run by bench/run.sh on its own cluster: every
// workload for every system, in turn, then a table and the issue's targets.
//
//   node bench.mjs [--n N] [--smoke] [--only W1,W1p,W2,...] [--systems toygun,graphile-worker,pg-boss]
//
// Results go to stdout (and results.json / results.md in $BENCH_OUT), the
// progress line to stderr. Exits 1 if a workload did not complete.
import { writeFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { GraphileWorker } from "./graphile-worker.mjs";
import { connect, fmtInt, memoryKb, percentile, progress, progressDone, sleep, waitFor, wallMs } from "./lib.mjs";
import { PgBossSystem } from "./pg-boss.mjs";
import { Toygun } from "./toygun.mjs";

const WORKLOADS = ["W1", "W1p", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11"];
const SYSTEMS = { toygun: Toygun, "graphile-worker": GraphileWorker, "pg-boss": PgBossSystem };

const { values: opts } = parseArgs({
  options: {
    n: { type: "string" },
    smoke: { type: "boolean", default: false },
    only: { type: "string", default: WORKLOADS.join(",") },
    systems: { type: "string", default: Object.keys(SYSTEMS).join(",") },
    timeout: { type: "string", default: "1800" },
  },
});
// workload names in any case (w1p, W1P): each as WORKLOADS spells it
const only = opts.only.split(",").map((w) => w.trim()).map((w) => WORKLOADS.find((k) => k.toUpperCase() === w.toUpperCase()) ?? w);
const systemNames = opts.systems.split(",").map((s) => s.trim());
for (const w of only) if (!WORKLOADS.includes(w)) fail(`unknown workload ${w} (known: ${WORKLOADS.join(", ")})`);
for (const s of systemNames) if (!SYSTEMS[s]) fail(`unknown system ${s} (known: ${Object.keys(SYSTEMS).join(", ")})`);

// Sizes: N runs for W1, W1p and W4, 0.3 N for W2, 10 N sleepers for W4, N
// runs of ten states (10 N ticks) for W6; W3 is 500 starts, W7 200, W8 200,
// W9 200 starts behind a backlog of 100,000. The smoke size is 500 of
// everything, 5,000 sleepers, a 5-second idle window, 50 W7 starts, 20 W8
// waits, and 20 W9 starts behind 5,000.
const N = opts.smoke ? 500 : Number(opts.n ?? 100000);
if (!(N >= 1)) fail("--n must be a positive number");
const size = opts.smoke
  ? { w1: 500, w2: 500, w3: 500, sleepers: 5000, idleSeconds: 5, w6: 500, w7: 50, w8: 20, w11: 10000, w11Seconds: 5,
      w10: 5000, w10b: 20, w9Backlog: 5000, w9: 20 }
  : { w1: N, w2: Math.max(1, Math.round(0.3 * N)), w3: 500, sleepers: 10 * N, idleSeconds: 30, w6: N, w7: 200, w8: 200,
      w11: 100000, w11Seconds: 30, w10: 100000, w10b: 100, w9Backlog: 100000, w9: 200 };
const TIMEOUT_MS = Number(opts.timeout) * 1000;
const W3_WARMUP = 10;
// W7: the slow tick's length, the fast starts made beside each one (at
// most), and how long after the slow tick is seen they may still start, so
// that each begins well before the slow tick ends; warm-up starts first.
const W7_SLOW_SECONDS = 2;
const W7_PER_SLOW = 10;
const W7_WINDOW_MS = 1400;
const W7_WARMUP = 5;
// a fast run slower than this waited for something: the slow tick, or the
// idle worker's next look for due runs
const W7_LATE_MS = 100;
const W8_WARMUP = 5;
// W11: its limits' rate (bench/peers/toygun.sql), and the seconds after the
// start (or the takers' start) that are not counted: the burst, the first
// claims.
const W11_RATE = 1000;
const W11_LEAD_S = 2;
// W9: the priority of its urgent starts (the backlog's is 0), the mean gap
// between two starts (each 15 to 25 ms after the last, at random), and the
// warm-up starts before the timed ones.
const W9_PRIORITY = 10;
const W9_GAP_MS = 20;
const W9_WARMUP = 5;

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

const results = [];
// the untimed W1 rounds before the timed ones, reported apart
const warmups = [];
const record = (r) => {
  results.push(r);
  return r;
};

// Before each measurement: no autovacuum at work anywhere in the cluster,
// since one would take CPU from the system measured and, with ANALYZE, hold
// back the cleanup of every database (at most two minutes); then a
// checkpoint, so that every measurement starts from one and none is left
// to start during it, whichever system happens to be running then.
async function quiesce() {
  const c = await connect("postgres");
  try {
    const t0 = wallMs();
    while (wallMs() - t0 < 120000) {
      const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'");
      if (rows[0].n === 0) break;
      progress(`bench: waiting for autovacuum to finish (${rows[0].n} at work)`);
      await sleep(250);
    }
    await c.query("CHECKPOINT");
  } finally {
    await c.end();
  }
}

// W1, W2, W4, W6: start or add n in one transaction, time from its commit
// until all of it has run and committed. Afterwards, VACUUM what the run
// left behind, so that autovacuum does not do it during the next one.
async function drain(sys, workload, label, n) {
  await quiesce();
  await sys.start(workload);
  let expected, seconds;
  try {
    expected = await sys.enqueue(workload, n);
    const t0 = wallMs();
    let shown = 0;
    await waitFor(`${label} ${sys.name}`, async () => {
      if (wallMs() - shown > 500) {
        shown = wallMs();
        const done = await sys.completed();
        const s = (shown - t0) / 1000;
        progress(`bench: ${label} ${sys.name}: ${fmtInt(done)} of ${fmtInt(expected)}, ${fmtInt(done / Math.max(s, 0.001))}/s, ${s.toFixed(0)} s`);
      }
      return sys.done();
    }, { timeoutMs: TIMEOUT_MS, everyMs: 20 });
    seconds = (wallMs() - t0) / 1000;
  } finally {
    await sys.stop();
  }
  await sys.verify();
  progressDone(`bench: ${label} ${sys.name}: ${fmtInt(expected)} in ${seconds.toFixed(2)} s, ${fmtInt(expected / seconds)}/s`);
  await sys.vacuum();
  return { count: expected, seconds, rate: expected / seconds };
}

// W3: single starts on an idle system, each committed alone, one after the
// other; from each commit to its handler's beginning. The first few warm up
// the workers and are not counted.
async function latency(sys, count) {
  await quiesce();
  await sys.start("w3");
  const xids = [];
  try {
    const total = W3_WARMUP + count;
    for (let seq = 0; seq < total; seq++) {
      xids.push(await sys.latencyStart(seq));
      await sys.latencyWait(seq, 10000);
      // let the job finish, and do not fall into step with any timer
      await sleep(5 + Math.random() * 10);
      if (seq % 50 === 0) progress(`bench: W3 latency ${sys.name}: ${seq} of ${total}`);
    }
  } finally {
    await sys.stop();
  }
  const ms = (await sys.latencies(xids)).slice(W3_WARMUP);
  const r = { count, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms) };
  progressDone(`bench: W3 latency ${sys.name}: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
  return r;
}

// W7 (toygun only): wake latency beside a busy worker. With toygun.workers
// = 2, a slow run's one tick (pg_sleep) keeps one worker busy; while it
// sleeps, fast runs are started one at a time, each committed alone and the
// next only once the last has been ticked; from each start's commit to its
// first tick's commit. The slow run is started again for every cycle of
// W7_PER_SLOW fast starts. A start that did not commit while the slow tick
// was running (checked from the slow tick's own times) is not counted. A
// start that waits for the slow tick uses up its cycle, so the workload
// stops after twice the cycles it needs when none waits, with fewer starts
// timed than asked for (the count says how many).
async function wakeLatency(toygun, count) {
  await quiesce();
  const workers = (await toygun.workerPids()).length;
  if (workers !== 2) throw new Error(`W7 needs toygun.workers = 2; ${workers} workers are running`);
  const waitMs = 10000 + W7_SLOW_SECONDS * 1000;
  let seq = 0;
  for (; seq < W7_WARMUP; seq++) {
    await toygun.wakeStart(seq);
    await toygun.wakeWait(seq, waitMs);
    await sleep(5 + Math.random() * 10);
  }
  const samples = [];
  let cycle = 0;
  let outside = 0;
  const maxCycles = 2 * Math.ceil(count / W7_PER_SLOW);
  while (samples.length < count && cycle < maxCycles) {
    cycle++;
    const slow = await toygun.slowStart(cycle, W7_SLOW_SECONDS);
    await waitFor("W7: the slow tick to begin", () => toygun.slowTicking(), { timeoutMs: 10000, everyMs: 2 });
    const seen = wallMs();
    const starts = [];
    while (starts.length < W7_PER_SLOW && samples.length + starts.length < count && wallMs() - seen < W7_WINDOW_MS) {
      starts.push({ seq, xid: await toygun.wakeStart(seq) });
      await toygun.wakeWait(seq, waitMs);
      seq++;
      // let the tick finish, and do not fall into step with any timer
      await sleep(5 + Math.random() * 10);
    }
    await waitFor("W7: the slow tick to end", () => toygun.slowDone(slow), { timeoutMs: waitMs, everyMs: 20 });
    for (const [pos, r] of (await toygun.wakeLatencies(cycle, starts)).entries()) {
      if (r.beside) samples.push({ ...r, pos });
      else outside++;
    }
    progress(`bench: W7 wake toygun: ${samples.length} of ${count}, ${cycle} slow ticks`);
  }
  if (samples.length === 0) throw new Error(`W7: no start was timed beside a slow tick in ${cycle} slow ticks`);
  const ms = samples.map((r) => r.ms);
  const r = { count: samples.length, asked: count, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms),
              late: ms.filter((v) => v > W7_LATE_MS).length, lateMs: W7_LATE_MS,
              lateFirst: samples.filter((x) => x.ms > W7_LATE_MS && x.pos === 0).length,
              handlerP50: percentile(samples.map((x) => x.handler_ms), 50),
              slowTicks: cycle, slowSeconds: W7_SLOW_SECONDS, outside,
              samples: samples.map((x) => ({ ms: x.ms, handlerMs: x.handler_ms, pos: x.pos })) };
  progressDone(`bench: W7 wake toygun: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms, ${r.late} over ${W7_LATE_MS} ms`);
  await toygun.vacuum();
  return r;
}

// W5: every system idle at once, each in its own database; transactions
// committed there over the window, read from the postgres database.
async function idle(systems, seconds) {
  const stats = await connect("postgres");
  try {
    for (const sys of systems) if (sys.name !== "toygun") await sys.start("w1");
    for (const sys of systems) {
      await sys.quiet?.();
      await sys.vacuum();
    }
    const toygun = systems.find((s) => s.name === "toygun");
    const ticksBefore = toygun ? (await toygun.counters()).ticks : 0;
    // the workers' start-up and VACUUM's own commits reach the statistics
    // (backends flush them within a second or two) before the window opens
    await sleep(5000);
    const commits = async () => {
      const { rows } = await stats.query("SELECT datname, xact_commit::bigint AS n FROM pg_stat_database");
      return Object.fromEntries(rows.map((r) => [r.datname, Number(r.n)]));
    };
    const before = await commits();
    const t0 = wallMs();
    while (wallMs() - t0 < seconds * 1000) {
      progress(`bench: W5 idle: ${((wallMs() - t0) / 1000).toFixed(0)} of ${seconds} s`);
      await sleep(Math.min(1000, seconds * 1000 - (wallMs() - t0)));
    }
    const after = await commits();
    const elapsed = (wallMs() - t0) / 1000;
    const ticks = toygun ? (await toygun.counters()).ticks - ticksBefore : 0;
    progressDone(`bench: W5 idle: ${seconds} s window done`);
    return systems.map((sys) => {
      const count = after[sys.db] - before[sys.db];
      return { system: sys.name, count, seconds: elapsed, rate: count / elapsed,
               note: sys.name === "toygun" ? `${ticks} ticks in the window` : "" };
    });
  } finally {
    for (const sys of systems) if (sys.name !== "toygun") await sys.stop();
    await stats.end();
  }
}

// W6: the toygun workers' memory before and after 10 N ticks.
async function memory(toygun, runs) {
  const pids = await toygun.workerPids();
  const before = pids.map(memoryKb);
  const r = await drain(toygun, "w6", "W6 memory", runs);
  const pidsAfter = await toygun.workerPids();
  if (pidsAfter.join() !== pids.join()) throw new Error(`the toygun workers changed during W6 (${pids} then ${pidsAfter})`);
  const after = pids.map(memoryKb);
  const growth = (key) => Math.max(...after.map((a, i) => a[key] - before[i][key])) / 1024;
  return { ...r, vmRssMb: growth("vmRss"), rssAnonMb: growth("rssAnon"), rssShmemMb: growth("rssShmem"),
           beforeMb: Math.max(...before.map((b) => b.vmRss)) / 1024 };
}

async function main() {
  const systems = systemNames.map((name) => new SYSTEMS[name]());
  const pg = await connect("postgres");
  const server = (await pg.query("SELECT setting FROM pg_settings WHERE name = 'server_version'")).rows[0].setting;
  await pg.end();

  const started = new Date();
  for (const sys of systems) {
    progress(`bench: preparing ${sys.name}`);
    await sys.prepare(size.w1);
  }
  progressDone(`bench: ready: ${systems.map((s) => s.version).join(", ")}`);

  const timed = async (workload, system, fn) => {
    try {
      return record({ workload, system, ...(await fn()) });
    } catch (e) {
      progressDone(`bench: ${workload} ${system} FAILED: ${e.message}`);
      return record({ workload, system, error: e.message });
    }
  };

  // W1 measures steady-state work, not a system's first-ever run on tables
  // just made (empty, never analyzed, nothing cached or prepared yet): each
  // system first drains W1 once untimed, then the same VACUUM ANALYZE as
  // after every run, then the timed W1 (see bench/README.md).
  // W1p (issue 17) is W1 with half the runs at a higher priority, run
  // the same way, its own warm-up round first.
  for (const w of ["W1", "W1p"]) {
    if (!only.includes(w)) continue;
    const task = w.toLowerCase();
    for (const sys of systems) {
      try {
        const r = await drain(sys, task, `${w} warm-up`, size.w1);
        warmups.push({ workload: w, system: sys.name, ...r });
      } catch (e) {
        progressDone(`bench: ${w} warm-up ${sys.name} FAILED: ${e.message}`);
        record({ workload: w, system: sys.name, error: `warm-up: ${e.message}` });
        continue;
      }
      await timed(w, sys.name, () => drain(sys, task, `${w} drain`, size.w1));
    }
  }
  if (only.includes("W2"))
    for (const sys of systems) await timed("W2", sys.name, () => drain(sys, "w2", "W2 chain", size.w2));
  if (only.includes("W3"))
    for (const sys of systems) await timed("W3", sys.name, () => latency(sys, size.w3));
  if (only.includes("W4"))
    for (const sys of systems)
      await timed("W4", sys.name, async () => {
        const t = wallMs();
        progress(`bench: W4 depth ${sys.name}: adding ${fmtInt(size.sleepers)} sleeping runs`);
        await sys.addSleepers(size.sleepers);
        const setup = (wallMs() - t) / 1000;
        return { ...(await drain(sys, "w4", "W4 depth", size.w1)), sleepers: size.sleepers, setupSeconds: setup };
      });
  if (only.includes("W5")) {
    try {
      for (const r of await idle(systems, size.idleSeconds)) record({ workload: "W5", ...r });
    } catch (e) {
      progressDone(`bench: W5 FAILED: ${e.message}`);
      for (const sys of systems) record({ workload: "W5", system: sys.name, error: e.message });
    }
  }
  const toygun = systems.find((s) => s.name === "toygun");
  if (only.includes("W6") && toygun) await timed("W6", "toygun", () => memory(toygun, size.w6));
  if (only.includes("W7") && toygun) await timed("W7", "toygun", () => wakeLatency(toygun, size.w7));
  if (only.includes("W8") && toygun) await timed("W8", "toygun", () => waitLatency(toygun, size.w8));
  if (only.includes("W9") && toygun) await timed("W9", "toygun", () => priorityLatency(toygun, size.w9Backlog, size.w9));
  if (only.includes("W10") && toygun) await timed("W10", "toygun", () => fairness(toygun, size.w10, size.w10b));
  if (only.includes("W11") && toygun) await timed("W11", "toygun", () => rateAccuracy(toygun, size.w11, size.w11Seconds));

  for (const sys of systems) await sys.close();

  const context = {
    started: started.toISOString(),
    smoke: opts.smoke,
    sizes: size,
    machine: machine(server),
    systems: systems.map((s) => ({ name: s.name, version: s.version, settings: s.settings ?? null })),
  };
  const table = report(results, warmups, context);
  console.log(table);
  if (process.env.BENCH_OUT) {
    writeFileSync(`${process.env.BENCH_OUT}/results.json`, JSON.stringify({ ...context, results, warmups }, null, 2));
    writeFileSync(`${process.env.BENCH_OUT}/results.md`, `${table}\n`);
  }
  process.exit(results.some((r) => r.error) ? 1 : 0);
}

function machine(server) {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model ?? "unknown",
    memoryGiB: os.totalmem() / 2 ** 30,
    disk: process.env.BENCH_DISK || "unknown",
    postgres: server,
    node: process.version,
  };
}

// W8 (toygun only): toygun.wait(). One client starts a run (committed
// alone); a second waits with toygun.wait(id, states => '{hold}') until
// its first tick leaves it in hold, an hour's stay. The second then calls
// toygun.wait(id) and, once it sleeps on its latch (wait event Extension),
// the first commits update_task(id, '{"go": true}') and retry_task(id) in
// one statement: the run is due now, and its handler stops at once. From
// that commit to wait()'s return, on the server's clock: the worker's wake,
// its tick and commit, and the waiter's wake-up and read (it is woken
// twice: by that commit, which leaves the run in hold, then by the tick's).
// Then a wait() on the run, now stopped: what a wait on a finished run
// costs.
async function waitLatency(toygun, count) {
  await quiesce();
  const ms = [];
  const done = [];
  let slept = 0;
  for (let seq = 0; seq < W8_WARMUP + count; seq++) {
    const { run } = await toygun.waitStart(seq);
    if ((await toygun.waitRun(run, "{hold}")).state !== "hold") throw new Error("W8: the run did not reach hold");
    const waiting = toygun.waitRun(run);
    waiting.catch(() => {});
    await waitFor("W8: the waiter to sleep", () => toygun.waiterSleeping(), { timeoutMs: 10000, everyMs: 1 });
    const xid = await toygun.waitGo(run);
    const w = await waiting;
    if (w.state !== "__stop__") throw new Error(`W8: wait() returned the run in state ${w.state}`);
    const again = await toygun.waitRun(run);
    if (seq >= W8_WARMUP) {
      ms.push(await toygun.sinceCommit(xid, w.returned));
      done.push(again.own_ms);
      slept++;
    }
    // do not fall into step with any timer
    await sleep(5 + Math.random() * 10);
    if (seq % 50 === 0) progress(`bench: W8 wait toygun: ${seq} of ${W8_WARMUP + count}`);
  }
  const r = { count: slept, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms),
              doneP50: percentile(done, 50), doneP99: percentile(done, 99) };
  progressDone(`bench: W8 wait toygun: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms; on a stopped run p50 ${r.doneP50.toFixed(2)} ms`);
  await toygun.vacuum();
  return r;
}

// W9 (toygun only, issue 17): how long an urgent start waits behind a
// backlog. `backlog` runs at priority 0 whose handler stays with a wait of
// 0, so that they are due again at once after every tick and the workers
// tick them round and round; once they have gone round once, starts of a
// one-state task at priority W9_PRIORITY, each committed alone, one every
// W9_GAP_MS or so (not waiting for the last to be ticked); from each start's
// commit to its handler's first statement (as W3). Then the same number of
// starts at priority 0, which wait behind the backlog: the note, what
// priority buys. The backlog is then told to stop, and drains.
async function priorityLatency(toygun, backlog, count) {
  await quiesce();
  progress(`bench: W9 priority toygun: starting a backlog of ${fmtInt(backlog)} runs`);
  await toygun.backlogStart(backlog, W9_WARMUP + count);
  const round = await toygun.counters();
  await waitFor("W9: the backlog to go round once", async () => {
    const now = await toygun.counters();
    if (now.failures > round.failures) throw new Error("toygun: a tick failed (see the server log)");
    progress(`bench: W9 priority toygun: backlog ticked ${fmtInt(now.ticks - round.ticks)} of ${fmtInt(backlog)} times`);
    return now.ticks - round.ticks >= backlog;
  }, { timeoutMs: TIMEOUT_MS, everyMs: 100 });

  // one round of starts at a priority; the latencies of all but the first `skip`
  const starts = async (priority, first, total, skip) => {
    const xids = [];
    const before = await toygun.counters();
    const t0 = wallMs();
    for (let k = 0; k < total; k++) {
      xids.push(await toygun.priorityStart(first + k, k, priority));
      await sleep(W9_GAP_MS - 5 + Math.random() * 10);
      if (k % 20 === 0) progress(`bench: W9 priority toygun: ${k} of ${total} starts at priority ${priority}`);
    }
    const startSeconds = (wallMs() - t0) / 1000;
    const after = await toygun.counters();
    await waitFor(`W9: the handlers of the starts at priority ${priority}`, async () =>
      (await toygun.priorityHandled(first, total)) === total, { timeoutMs: TIMEOUT_MS, everyMs: 50 });
    const rows = (await toygun.priorityLatencies(first, xids)).slice(skip);
    return { ms: rows.map((x) => x.ms), rows, backlogRate: (after.ticks - before.ticks) / startSeconds };
  };
  const high = await starts(W9_PRIORITY, 0, W9_WARMUP + count, W9_WARMUP);
  progress(`bench: W9 priority toygun: ${count} starts at priority 0, behind the backlog`);
  const low = await starts(0, 1000000, count, 0);
  await toygun.backlogStop();
  const r = { count, backlog, priority: W9_PRIORITY,
              p50: percentile(high.ms, 50), p99: percentile(high.ms, 99), max: Math.max(...high.ms),
              lowP50: percentile(low.ms, 50), lowP99: percentile(low.ms, 99), lowMax: Math.max(...low.ms),
              backlogRate: high.backlogRate,
              samples: high.rows.map((x) => ({ ms: x.ms, batchMs: x.batch_ms, pid: x.pid, committed: x.committed })), lowSamples: low.ms };
  progressDone(`bench: W9 priority toygun: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms; at priority 0 p50 ${r.lowP50.toFixed(2)} ms`);
  await toygun.vacuum();
  return r;
}

// W11 (toygun only, issue 17): how closely a rate limit keeps its rate, a
// limit of 1,000 per second with a burst of 100. (a) n runs of a type that
// names it, started in one transaction: its ticks (stops, by the history's
// time) within [commit + 2 s, commit + 2 s + len). (b) two sessions calling
// toygun.take_token() in a loop: the tokens granted within the same window
// of their start. Each as ticks ÷ (rate × len) − 1. The runs left are
// removed afterwards.
async function rateAccuracy(toygun, n, seconds) {
  await quiesce();
  progress(`bench: W11 rate toygun: starting ${fmtInt(n)} rate-limited runs`);
  const xid = await toygun.rateStart(n);
  const end = W11_LEAD_S + seconds;
  await waitFor("W11: the window to pass", async () => {
    const s = await toygun.sinceCommitS(xid);
    progress(`bench: W11 rate toygun: (a) ${s.toFixed(0)} of ${end} s`);
    return s >= end + 0.5;
  }, { timeoutMs: (end + 60) * 1000, everyMs: 500 });
  const ticks = await toygun.rateTicks(xid, W11_LEAD_S, seconds);
  await toygun.rateCleanup();
  progress(`bench: W11 rate toygun: (b) two sessions taking tokens for ${end} s`);
  const taken = await toygun.rateTakers(2, W11_LEAD_S, seconds);
  const expected = W11_RATE * seconds;
  const tokens = taken.reduce((a, b) => a + b, 0);
  const r = { count: ticks, seconds, rate: ticks / seconds, expected, accuracyA: ticks / expected - 1,
              tokens, tokensBySession: taken, accuracyB: tokens / expected - 1 };
  progressDone(`bench: W11 rate toygun: (a) ${fmtInt(ticks)} ticks in ${seconds} s (${(100 * r.accuracyA).toFixed(2)}%), (b) ${fmtInt(tokens)} tokens (${(100 * r.accuracyB).toFixed(2)}%)`);
  await toygun.vacuum();
  return r;
}

// W10 (toygun only, issue 17): fairness under a concurrency limit. A type
// with concurrency_key 'tenant' and max_per_key 10; n runs of tenant A
// started in one transaction (all due); once A's ticks are under way, m runs
// of tenant B started one at a time, each committed alone, about 10 ms
// apart. From each B start's commit to its handler's first statement
// (commit timestamps, as W3 and W7); and A's ticks per second meanwhile
// (the per-key cap: 10 runs a batch commit). A's runs left are removed.
async function fairness(toygun, n, m) {
  await quiesce();
  progress(`bench: W10 fairness toygun: starting ${fmtInt(n)} runs of tenant A`);
  await toygun.fairFlood(n);
  await waitFor("W10: A's ticks to begin", async () => (await toygun.fairADone()) > 0, { timeoutMs: 60000, everyMs: 20 });
  const xids = [];
  for (let seq = 0; seq < m; seq++) {
    xids.push(await toygun.fairB(seq));
    await sleep(8 + Math.random() * 4);
  }
  await waitFor("W10: B's runs to be ticked", async () => (await toygun.fairBDone()) >= m, { timeoutMs: 60000, everyMs: 20 });
  const { ms, aTicks, aSeconds } = await toygun.fairLatencies(xids);
  const left = n - (await toygun.fairADone());
  await toygun.fairCleanup();
  const r = { count: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms),
              aTicks, aRate: aTicks / aSeconds, flood: n, aLeft: left };
  progressDone(`bench: W10 fairness toygun: B p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms; A ${r.aRate.toFixed(0)} ticks/s, ${fmtInt(left)} of A's runs left`);
  await toygun.vacuum();
  return r;
}

// --- the report -----------------------------------------------------------

const ms = (v) => (v === undefined ? "" : v.toFixed(2));
const pct = (v) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(2)}%`;
const ratio = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}x` : "n/a");

// How many times better toygun's figure is than this row's: throughput
// toygun ÷ peer; latency and idle transactions peer ÷ toygun.
function lead(r, all) {
  if (r.system === "toygun" || r.error) return "";
  const t = all.find((x) => x.workload === r.workload && x.system === "toygun" && !x.error);
  if (!t) return "";
  if (r.workload === "W3") return ratio(r.p50 / t.p50);
  if (r.workload === "W5") return t.rate > 0 ? ratio(r.rate / t.rate) : "n/a";
  return ratio(t.rate / r.rate);
}

function note(r, all) {
  if (r.error) return `FAILED: ${r.error}`;
  switch (r.workload) {
    case "W3":
      return `max ${r.max.toFixed(2)} ms`;
    case "W1p": {
      const w1 = all.find((x) => x.workload === "W1" && x.system === r.system && !x.error);
      const vs = w1 ? `${((100 * r.rate) / w1.rate).toFixed(0)}% of W1; ` : "";
      const half = { toygun: "1", "graphile-worker": "-1 (its lower numbers run first)", "pg-boss": "1" }[r.system];
      return `${vs}half the runs at priority ${half}, half at 0`;
    }
    case "W4": {
      const w1 = all.find((x) => x.workload === "W1" && x.system === r.system && !x.error);
      const vs = w1 ? `${((100 * r.rate) / w1.rate).toFixed(0)}% of W1; ` : "";
      return `${vs}${fmtInt(r.sleepers)} asleep, added in ${r.setupSeconds.toFixed(0)} s`;
    }
    case "W5":
      return r.note;
    case "W7":
      return `${r.count < r.asked ? `${r.count} of ${r.asked} asked for (late starts used up the slow ticks); ` : ""}max ${r.max.toFixed(2)} ms; ${r.late} over ${r.lateMs} ms (${r.lateFirst} of them a slow tick's first start); beside ${r.slowTicks} slow ticks of ${r.slowSeconds} s${r.outside ? `, ${r.outside} starts outside them not counted` : ""}; toygun only`;
    case "W10":
      return `tenant B's ${r.count} starts beside ${fmtInt(r.flood)} due runs of tenant A (max_per_key 10): commit to handler p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms; A meanwhile ${r.aRate.toFixed(0)} ticks/s, ${fmtInt(r.aLeft)} of A's left at the end; toygun only`;
    case "W11":
      return `(a) ${fmtInt(r.count)} ticks of a type limited to ${fmtInt(r.expected / r.seconds)}/s in ${r.seconds} s: ${pct(r.accuracyA)}; (b) two sessions' take_token(): ${fmtInt(r.tokens)} tokens (${r.tokensBySession.map(fmtInt).join(" + ")}): ${pct(r.accuracyB)}; toygun only`;
    case "W9":
      return `max ${r.max.toFixed(2)} ms; starts at priority ${r.priority} behind ${fmtInt(r.backlog)} due runs at 0 (ticked at ${fmtInt(r.backlogRate)}/s meanwhile); the same starts at priority 0: p50 ${r.lowP50.toFixed(2)} ms, p99 ${r.lowP99.toFixed(2)} ms, max ${r.lowMax.toFixed(2)} ms; toygun only`;
    case "W8":
      return `max ${r.max.toFixed(2)} ms; a wait() on a stopped run p50 ${r.doneP50.toFixed(2)} ms, p99 ${r.doneP99.toFixed(2)} ms; toygun only`;
    case "W6":
      return `VmRSS ${r.beforeMb.toFixed(0)} MB before; growth: VmRSS ${r.vmRssMb.toFixed(1)} MB = shared buffers (RssShmem) ${r.rssShmemMb.toFixed(1)} MB + private (RssAnon) ${r.rssAnonMb.toFixed(2)} MB`;
    default:
      return "";
  }
}

function report(all, warmups, context) {
  const m = context.machine;
  const lines = [];
  lines.push(`toygun benchmark, ${context.started}${context.smoke ? " (smoke size)" : ""}`);
  lines.push(`machine: ${m.cpus} CPUs (${m.model}), ${m.memoryGiB.toFixed(1)} GiB memory, disk ${m.disk}; PostgreSQL ${m.postgres}, Node.js ${m.node}`);
  for (const s of context.systems)
    lines.push(`${s.version}${s.settings ? ` ${JSON.stringify(s.settings)}` : " (toygun.workers and toygun.batch_size at their defaults)"}`);
  lines.push("");
  const head = ["workload", "system", "count", "seconds", "per second", "p50 ms", "p99 ms", "toygun's lead", "note"];
  const rows = all.map((r) => [
    { W1: "W1 drain", W1p: "W1p priority", W2: "W2 chain", W3: "W3 latency", W4: "W4 depth", W5: "W5 idle", W6: "W6 memory", W7: "W7 wake",
      W8: "W8 wait", W9: "W9 priority", W10: "W10 fairness", W11: "W11 rate" }[r.workload],
    r.system,
    r.count === undefined ? "" : fmtInt(r.count),
    r.seconds === undefined ? "" : r.seconds.toFixed(2),
    r.rate === undefined ? "" : r.workload === "W5" ? r.rate.toFixed(3) : fmtInt(r.rate),
    ms(r.p50),
    ms(r.p99),
    lead(r, all),
    note(r, all),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const right = [false, false, true, true, true, true, true, true, false];
  const line = (cells) =>
    `| ${cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(" | ")} |`;
  lines.push(line(head));
  lines.push(`|${widths.map((w, i) => (right[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`);
  for (const row of rows) lines.push(line(row));
  lines.push("");
  lines.push("count: ticks (toygun) or jobs run (peers); W5: transactions committed in the system's database; W7: fast runs timed; W8: waits timed; W9: urgent starts timed; W11: ticks of the rate-limited type in its window.");
  lines.push("toygun's lead: how many times better toygun's figure is (throughput toygun ÷ peer; W3 p50 and W5 peer ÷ toygun).");
  for (const w of ["W1", "W1p"]) {
    const rounds = warmups.filter((x) => x.workload === w);
    if (rounds.length > 0)
      lines.push(`${w} warm-up (the same drain, untimed, ${w === "W1" ? "on fresh tables, " : ""}before ${w}): ${rounds.map((x) => `${x.system} ${fmtInt(x.rate)}/s`).join(", ")}.`);
  }
  lines.push("");
  lines.push(...targets(all, context));
  return lines.join("\n");
}

// The issue's targets: reported, never enforced.
function targets(all, context) {
  if (context.smoke) return ["targets: not checked at the smoke size"];
  const get = (w, s) => all.find((r) => r.workload === w && r.system === s && !r.error);
  const out = ["targets (reported, not enforced):"];
  const check = (label, ok, detail) =>
    out.push(`  ${ok === null ? "----" : ok ? "PASS" : "MISS"}  ${label}: ${detail}`);
  for (const w of ["W1", "W1p", "W2"]) {
    const t = get(w, "toygun");
    const g = get(w, "graphile-worker");
    if (t && g) {
      const x = t.rate / g.rate;
      check(`${w} toygun >= 2x graphile-worker`, x >= 2,
        `${fmtInt(t.rate)} vs ${fmtInt(g.rate)}/s = ${x.toFixed(2)}x${x < 2 ? ` (gap: needs ${fmtInt(2 * g.rate)}/s, ${((2 * g.rate) / t.rate).toFixed(2)}x faster)` : ""}`);
    } else check(`${w} toygun >= 2x graphile-worker`, null, "not measured");
  }
  const w3 = get("W3", "toygun");
  if (w3) {
    check("W3 p50 <= 2 ms", w3.p50 <= 2, `${w3.p50.toFixed(2)} ms`);
    check("W3 p99 <= 20 ms", w3.p99 <= 20, `${w3.p99.toFixed(2)} ms`);
  } else check("W3 latency", null, "not measured");
  const w4 = get("W4", "toygun");
  const w1 = get("W1", "toygun");
  if (w4 && w1) {
    const p = (100 * w4.rate) / w1.rate;
    check("W4 >= 80% of W1", p >= 80, `${p.toFixed(0)}% (${fmtInt(w4.rate)} vs ${fmtInt(w1.rate)} ticks/s)`);
  } else check("W4 >= 80% of W1", null, "not measured");
  const w5 = get("W5", "toygun");
  if (w5) check("W5 <= 0.2 transactions/s", w5.rate <= 0.2, `${w5.rate.toFixed(3)}/s (${w5.count} in ${w5.seconds.toFixed(0)} s)`);
  else check("W5 <= 0.2 transactions/s", null, "not measured");
  const w6 = get("W6", "toygun");
  // judged on private memory: VmRSS also grows by every shared buffer the
  // worker touches for the first time, which is not memory it holds
  if (w6) check("W6 worker memory growth < 10 MB", w6.rssAnonMb < 10,
    `private (RssAnon) ${w6.rssAnonMb.toFixed(2)} MB over ${fmtInt(w6.count)} ticks; VmRSS ${w6.vmRssMb.toFixed(1)} MB, of which shared buffers ${w6.rssShmemMb.toFixed(1)} MB`);
  else check("W6 worker memory growth < 10 MB", null, "not measured");
  const w7 = get("W7", "toygun");
  if (w7) {
    check("W7 p50 <= 10 ms beside a busy worker", w7.p50 <= 10, `${w7.p50.toFixed(2)} ms`);
    check("W7 p99 <= 100 ms beside a busy worker", w7.p99 <= 100,
      `${w7.p99.toFixed(2)} ms (max ${w7.max.toFixed(2)} ms; ${w7.late} of ${w7.count} over ${w7.lateMs} ms)`);
  } else check("W7 wake latency beside a busy worker", null, "not measured");
  const w8 = get("W8", "toygun");
  if (w8) check("W8 p50 <= 1 ms from the commit to wait()'s return", w8.p50 <= 1, `${w8.p50.toFixed(2)} ms (p99 ${w8.p99.toFixed(2)} ms)`);
  else check("W8 wait() latency", null, "not measured");
  const w9 = get("W9", "toygun");
  if (w9) check(`W9 p99 <= 20 ms from a start at priority ${w9.priority} behind ${fmtInt(w9.backlog)} due runs`, w9.p99 <= 20,
    `${w9.p99.toFixed(2)} ms (p50 ${w9.p50.toFixed(2)} ms, max ${w9.max.toFixed(2)} ms; at priority 0: p99 ${w9.lowP99.toFixed(2)} ms)`);
  else check("W9 priority latency behind a backlog", null, "not measured");
  const w10 = get("W10", "toygun");
  if (w10) check("W10 a tenant's runs beside another's flood, p99 within 50 ms", w10.p99 <= 50,
    `${w10.p99.toFixed(2)} ms p99 (${w10.count} starts beside ${fmtInt(w10.flood)} due runs)`);
  else check("W10 fairness", null, "not measured");
  const w11 = get("W11", "toygun");
  if (w11) {
    check("W11 (a) a rate-limited type's ticks within 5% of its rate", Math.abs(w11.accuracyA) <= 0.05,
      `${pct(w11.accuracyA)} (${fmtInt(w11.count)} of ${fmtInt(w11.expected)} in ${w11.seconds} s)`);
    check("W11 (b) take_token() in two sessions within 5% of the rate", Math.abs(w11.accuracyB) <= 0.05,
      `${pct(w11.accuracyB)} (${fmtInt(w11.tokens)} of ${fmtInt(w11.expected)} in ${w11.seconds} s)`);
  } else check("W11 rate limit accuracy", null, "not measured");
  return out;
}

main().catch((e) => {
  progressDone(`bench: ${e.stack ?? e.message}`);
  process.exit(1);
});
