// Headless Chromium for the tools' tests and bin/toygun screenshot: Debian's
// chromium (/usr/bin/chromium, or CHROMIUM) driven by puppeteer-core, which
// npm installs in tools/server/node_modules (a dev dependency of the server).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function puppeteer() {
  const req = createRequire(path.join(ROOT, 'tools/server/package.json'));
  let entry;
  try { entry = req.resolve('puppeteer-core'); }
  catch {
    throw new Error(`puppeteer-core is not installed in ${ROOT}/tools/server/node_modules: ` +
      'run npm ci --no-audit --no-fund there (bin/toygun test does)');
  }
  return (await import(pathToFileURL(entry).href)).default;
}

// Launch headless Chromium with its sandbox. Root cannot use the sandbox, and
// a kernel without unprivileged user namespaces does not let it start: then,
// and only then, --no-sandbox, said on stderr (log) so it is never silent.
export async function launch(log = (m) => console.error(m)) {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM} (install Debian's chromium package; bin/toygun test does)`);
  const pp = await puppeteer();
  const opts = { executablePath: CHROMIUM, headless: true, args: ['--disable-gpu', '--lang=en-US'] };
  if (process.getuid && process.getuid() === 0) {
    log('# Chromium runs with --no-sandbox: running as root, where its sandbox cannot start');
    return pp.launch({ ...opts, args: [...opts.args, '--no-sandbox'] });
  }
  try {
    return await pp.launch(opts);
  } catch (e) {
    log(`# Chromium's sandbox did not start (${String(e.message).split('\n')[0]}); ` +
      'running it with --no-sandbox (are unprivileged user namespaces disabled?)');
    return pp.launch({ ...opts, args: [...opts.args, '--no-sandbox'] });
  }
}
