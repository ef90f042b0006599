// Helpers shared by the benchmark drivers: clocks, connections, bounded
// polling, percentiles, the progress line and process memory.
import { readFileSync } from "node:fs";
import pg from "pg";

// Wall-clock milliseconds with microsecond resolution, comparable with
// PostgreSQL's clock_timestamp() on the same machine.
export const wallMs = () => performance.timeOrigin + performance.now();

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The cluster's Unix socket folder and port come from bench/run.sh.
export function connectionString(db) {
  const host = encodeURIComponent(process.env.BENCH_HOST);
  return `postgresql://postgres@/${db}?host=${host}&port=${process.env.BENCH_PORT}`;
}

export async function connect(db) {
  const client = new pg.Client({ connectionString: connectionString(db) });
  await client.connect();
  return client;
}

// Poll `check` every `everyMs` until it returns true; fail after `timeoutMs`.
export async function waitFor(what, check, { timeoutMs, everyMs = 20 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not done after ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

// The p-th percentile (0..100) of a list of numbers, nearest rank.
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

// One progress line on stderr: rewritten in place on a terminal, otherwise
// printed at most every 10 seconds so that logs stay short.
let lastLine = 0;
export function progress(text) {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r\x1b[K${text}`);
  } else if (Date.now() - lastLine >= 10000) {
    process.stderr.write(`${text}\n`);
    lastLine = Date.now();
  }
}
export function progressDone(text) {
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  process.stderr.write(`${text}\n`);
  lastLine = 0;
}

// Resident memory of a process in kB: all of it (VmRSS), and its parts:
// private memory (RssAnon), which is what a leak grows, and shared memory
// (RssShmem), which for a backend is the shared buffers it has touched so
// far, counted once for the whole server however many processes map them.
export function memoryKb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))[1]);
  return { vmRss: field("VmRSS"), rssAnon: field("RssAnon"), rssShmem: field("RssShmem") };
}

// Milliseconds from each job's commit (its transaction's commit timestamp)
// to the moment its handler began in a worker process.
export async function handlerMinusCommit(client, arrivals, xids) {
  const { rows } = await client.query(
    `SELECT (extract(epoch FROM pg_xact_commit_timestamp(x::xid)) * 1000)::float8 AS ms
       FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i`,
    [xids],
  );
  return rows.map((r, seq) => {
    if (!arrivals.times.has(seq)) throw new Error(`no handler time for start ${seq}`);
    return arrivals.times.get(seq) - r.ms;
  });
}

export const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
