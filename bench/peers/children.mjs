// Worker processes of a peer, and the messages between them and the driver.
//
// A child sends {ready} once it is polling for jobs, {handled: n} (its count
// of handler calls so far) now and then, {started: seq, at} when a W3
// handler begins, and {handled, stopped} when it has shut down on {stop}.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";

// Handler start times of W3, by sequence number, and promises waiting for them.
export class Arrivals {
  constructor() {
    this.times = new Map();
    this.waiters = new Map();
  }
  arrive(seq, at) {
    this.times.set(seq, at);
    const waiter = this.waiters.get(seq);
    if (waiter) waiter();
  }
  wait(seq, timeoutMs) {
    if (this.times.has(seq)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(seq);
        reject(new Error(`the handler of start ${seq} did not begin within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiters.set(seq, () => {
        clearTimeout(timer);
        this.waiters.delete(seq);
        resolve();
      });
    });
  }
}

export class ChildPool {
  // script: a file next to this one; config: passed to each child as JSON;
  // env: more environment variables for the children.
  constructor(script, count, config, { arrivals = null, env = {} } = {}) {
    this.script = fileURLToPath(new URL(script, import.meta.url));
    this.count = count;
    this.config = config;
    this.arrivals = arrivals;
    this.env = env;
    this.children = [];
  }

  async start(timeoutMs = 60000) {
    const ready = [];
    for (let i = 0; i < this.count; i++) {
      const child = fork(this.script, [], {
        env: { ...process.env, ...this.env, BENCH_CHILD: JSON.stringify({ ...this.config, index: i }) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      });
      const state = { child, handled: 0, exited: null };
      this.children.push(state);
      ready.push(
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${this.script}: not ready after ${timeoutMs / 1000} s`)), timeoutMs);
          child.on("message", (m) => {
            if (m.ready) {
              clearTimeout(timer);
              resolve();
            }
            if (m.handled !== undefined) state.handled = m.handled;
            if (m.started !== undefined && this.arrivals) this.arrivals.arrive(m.started, m.at);
          });
          child.on("exit", (code, signal) => {
            state.exited = { code, signal };
            clearTimeout(timer);
            reject(new Error(`${this.script} exited early (${signal ?? code})`));
          });
        }),
      );
    }
    await Promise.all(ready);
  }

  // Handler calls so far, over all children.
  handled() {
    return this.children.reduce((sum, c) => sum + c.handled, 0);
  }

  // A child that died while working fails the workload.
  check() {
    const dead = this.children.find((c) => c.exited);
    if (dead) throw new Error(`a worker process of ${this.script} exited (${dead.exited.signal ?? dead.exited.code})`);
  }

  // Ask every child to shut down; kill those still running after the deadline.
  async stop(timeoutMs = 30000) {
    const exits = this.children.map(
      (c) =>
        new Promise((resolve) => {
          if (c.exited) return resolve();
          const timer = setTimeout(() => {
            c.child.kill("SIGKILL");
            resolve();
          }, timeoutMs);
          c.child.removeAllListeners("exit");
          c.child.on("exit", (code, signal) => {
            clearTimeout(timer);
            c.exited = { code, signal };
            resolve();
          });
          c.child.send({ stop: true });
        }),
    );
    await Promise.all(exits);
  }
}

// In a child: the config, and the plumbing of the messages above.
export function childSide() {
  const config = JSON.parse(process.env.BENCH_CHILD);
  let handled = 0;
  let reported = 0;
  // the driver is gone: nothing to work for
  process.on("disconnect", () => process.exit(1));
  const timer = setInterval(() => {
    if (handled !== reported) {
      process.send({ handled });
      reported = handled;
    }
  }, 200);
  return {
    config,
    count(n = 1) {
      handled += n;
    },
    ready() {
      process.send({ ready: true });
    },
    started(seq, at) {
      process.send({ started: seq, at });
    },
    onStop(stop) {
      process.on("message", async (m) => {
        if (!m.stop) return;
        clearInterval(timer);
        await stop();
        process.send({ handled, stopped: true }, () => process.exit(0));
      });
    },
  };
}
