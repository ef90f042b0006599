// A deliverer in a process of its own, for deliver.test.mjs (which kills it):
// node deliver-runner.mjs '<options as JSON>'. Prints each log line, and
// "ready true|false" once started; SIGTERM stops it and exits 0.
import { startDeliverer } from '../../tools/server/src/deliver.mjs';

if (!process.argv[2]) {
  console.log('deliver-runner.mjs is started by deliver.test.mjs with its options as JSON; nothing to do');
  process.exit(0);
}
const d = startDeliverer(JSON.parse(process.argv[2]), (line) => process.stdout.write(`${line}\n`));
d.ready.then((ok) => process.stdout.write(`ready ${ok}\n`));
process.on('SIGTERM', () => d.stop().then(() => process.exit(0)));
