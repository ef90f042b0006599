// One graphile-worker process: a runner with the benchmark's tasks and the
// batching settings the driver passes in.
import { Logger, run } from "graphile-worker";
import { childSide } from "./children.mjs";
import { connectionString, wallMs } from "./lib.mjs";

const side = childSide();
const { config } = side;

// graphile-worker logs every job at "info"; keep warnings and errors only.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker: ${message}`);
});

const taskList = {
  w1: async () => side.count(),
  w1p: async () => side.count(),
  w2: async (payload, helpers) => {
    if (payload.step < 3) await helpers.addJob("w2", { step: payload.step + 1 });
    side.count();
  },
  w3: async (payload) => {
    side.started(payload.seq, wallMs());
    side.count();
  },
  w4: async () => side.count(),
};

const runner = await run({
  connectionString: connectionString(config.db),
  taskList,
  logger,
  noHandleSignals: true,
  preset: {
    worker: {
      concurrentJobs: config.concurrency,
      maxPoolSize: config.concurrency + 1,
      localQueue: { size: config.localQueue },
      completeJobBatchDelay: config.batchDelay,
      failJobBatchDelay: config.batchDelay,
    },
  },
});
side.onStop(() => runner.stop());
side.ready();
