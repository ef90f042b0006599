// One pg-boss process: batch handlers on the workload's queue, with the
// fetch settings the driver passes in.
import { PgBoss } from "pg-boss";
import { childSide } from "./children.mjs";
import { connectionString, wallMs } from "./lib.mjs";

const side = childSide();
const { config } = side;

const boss = new PgBoss({
  connectionString: connectionString(config.db),
  max: config.poolSize,
  useListenNotify: true,
  schedule: false,
});
boss.on("error", (e) => console.error(`pg-boss: ${e.message}`));
await boss.start();

// Batch handlers: each call gets up to batchSize jobs, completed together
// when it returns.
const handlers = {
  w1: async (jobs) => side.count(jobs.length),
  w1p: async (jobs) => side.count(jobs.length),
  w2: async (jobs) => {
    const next = jobs.filter((j) => j.data.step < 3).map((j) => ({ data: { step: j.data.step + 1 } }));
    if (next.length > 0) await boss.insert("w2", next);
    side.count(jobs.length);
  },
  w3: async (jobs) => {
    const at = wallMs();
    for (const j of jobs) side.started(j.data.seq, at);
    side.count(jobs.length);
  },
  w4: async (jobs) => side.count(jobs.length),
};

await boss.work(config.queue, {
  batchSize: config.batchSize,
  localConcurrency: config.localConcurrency,
  burstWhenBatchFull: true,
  pollingIntervalSeconds: config.pollingSeconds,
}, handlers[config.queue]);
side.onStop(() => boss.stop({ graceful: true, wait: true }));
side.ready();
