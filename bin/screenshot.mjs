// bin/toygun screenshot: PNGs of the demo's dashboard for the README, 1280x800,
// signed in as the demo role, in headless Chromium (test/tools/browser.mjs).
//   node bin/screenshot.mjs URL ROLE PASSWORD OUTDIR  → OUTDIR/dashboard.png, OUTDIR/runs.png
import path from 'node:path';
import { launch } from '../test/tools/browser.mjs';

const [url, role, password, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node bin/screenshot.mjs URL ROLE PASSWORD OUTDIR');
  process.exit(2);
}
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.setDefaultTimeout(20000);
  await page.goto(`${url}/signin`, { waitUntil: 'domcontentloaded' });
  await page.type('form#signin input[name=role]', role);
  await page.type('form#signin input[name=password]', password);
  await Promise.all([page.waitForNavigation({ waitUntil: 'networkidle0' }), page.click('form#signin [type=submit], form#signin button')]);
  if (!(await page.$('form#signout')))
    throw new Error(`sign-in as ${role} failed: ${await page.$eval('.error', (e) => e.textContent).catch(() => page.url())}`);
  const shots = [['/', 'dashboard.png'], ['/runs', 'runs.png']];
  for (const [p, file] of shots) {
    await page.goto(url + p, { waitUntil: 'networkidle0' });
    // the overview's charts draw after their data arrives: wait (bounded) for their canvases
    if (p === '/') await page.waitForSelector('#chart-throughput canvas', { timeout: 10000 }).catch(() =>
      console.error('screenshot: the throughput chart did not draw within 10 s; taking the picture anyway'));
    await new Promise((r) => setTimeout(r, 500));
    await page.screenshot({ path: path.join(out, file) });
    console.log(`screenshot: ${path.join(out, file)}`);
  }
} finally {
  await browser.close();
}
