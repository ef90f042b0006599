// The dashboard as a person uses it, in headless Chromium (issue 18): sign in,
// find a panicked run by filter, read its history, repair it with a reason,
// see it finish; a role without rights sees nothing of another's types; a
// wrong password is refused. Each step that fails leaves a screenshot and the
// page's HTML in $TG_WORK/ui/<step>.png|.html, named in the failure.
//
// Run by bin/toygun test (suite "tools") as the postgres OS user with PGBIN,
// TG_PORT and TG_WORK; alone: tools/server/node_modules/.bin/node --test test/tools/ui.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { initCluster, WORK } from './cluster.mjs';
import { launch } from './browser.mjs';
import { ROOT, NODE, freePort, spawnServer } from './spawn-server.mjs';

const DB = 'tg';
const SHOTS = path.join(WORK, 'ui');
const OPS_PASSWORD = 'ops horse battery';
const OTHER_PASSWORD = 'other staple 42';
const PANIC_NOTE = 'disk full on alpha';
const REASON = 'freed space on the alpha volume';

let cluster, server, browser, page;
const ids = {};            // the runs made by the setup
let broken = null;         // the first step that failed: later steps depend on it

// step(name, fn): one test; on failure a screenshot and the HTML of the page,
// and the later steps are skipped (each builds on the one before).
function step(name, fn, { independent = false } = {}) {
  test(name, async (t) => {
    if (broken && !independent) { t.skip(`an earlier step failed: ${broken}`); return; }
    try {
      await fn();
    } catch (e) {
      if (!independent) broken = name;
      const file = name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
      const saved = [];
      try {
        mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: path.join(SHOTS, `${file}.png`), fullPage: true });
        saved.push(path.join(SHOTS, `${file}.png`));
        writeFileSync(path.join(SHOTS, `${file}.html`), `<!-- ${page.url()} -->\n${await page.content()}`);
        saved.push(path.join(SHOTS, `${file}.html`));
      } catch (e2) {
        saved.push(`(could not save the page: ${e2.message})`);
      }
      e.message = `${e.message}\n  at ${page ? page.url() : '(no page)'}; saved: ${saved.join(', ')}`;
      throw e;
    }
  });
}

// bounded waits
async function poll(what, seconds, fn) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  while (Date.now() < deadline) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`waited ${seconds} s for ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

const text = (sel) => page.$eval(sel, (e) => e.textContent.trim());
const texts = (sel) => page.$$eval(sel, (es) => es.map((e) => e.textContent.trim()));
async function go(pathname) {
  const res = await page.goto(server.url + pathname, { waitUntil: 'domcontentloaded' });
  return res;
}
// submit a form by its submit button and wait for the page it leads to
async function submit(formSel) {
  const [res] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'domcontentloaded', timeout: 15000 }),
    page.$eval(formSel, (f) => {
      const b = f.querySelector('button[type=submit], input[type=submit], button:not([type])');
      if (b) b.click(); else f.requestSubmit();
    }),
  ]);
  return res;
}
async function signIn(role, password) {
  await go('/signin');
  await page.waitForSelector('form#signin');
  await page.$eval('form#signin input[name=role]', (e) => { e.value = ''; });
  await page.type('form#signin input[name=role]', role);
  await page.type('form#signin input[name=password]', password);
  return submit('form#signin');
}
async function signOut() {
  if (await page.$('form#signout')) await submit('form#signout');
}

before(async () => {
  rmSync(SHOTS, { recursive: true, force: true });
  cluster = initCluster('ui-cluster', {
    settings: [`toygun.database_name = '${DB}'`, 'toygun.workers = 1', "toygun.retry_backoff = '10ms'",
      `cron.database_name = '${DB}'`],
    hba: ['local all ops scram-sha-256', 'local all other scram-sha-256'],
  });
  cluster.psql('postgres', `CREATE DATABASE ${DB}`);
  cluster.psql(DB, `
    CREATE EXTENSION pg_cron;
    CREATE EXTENSION toygun;
    CREATE ROLE ops LOGIN PASSWORD '${OPS_PASSWORD}';
    CREATE ROLE other LOGIN PASSWORD '${OTHER_PASSWORD}';
    -- alpha's job panics on its first tick ever, and stops on every later one
    CREATE TABLE public.ui_flag (panicked boolean);
    CREATE FUNCTION public.alpha_job(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $f$
    BEGIN
      IF NOT EXISTS (SELECT FROM public.ui_flag) THEN
        INSERT INTO public.ui_flag VALUES (true);
        RETURN toygun.panic('${PANIC_NOTE}');
      END IF;
      RETURN toygun.stop();
    END $f$;
    CREATE FUNCTION public.idle(t toygun.task) RETURNS toygun.next LANGUAGE sql
      AS $f$ SELECT toygun.stay(wait => '1 hour') $f$;
    SELECT toygun.define_resource('alpha');
    SELECT toygun.define_task('alpha', 'job', '{one}', 'public.alpha_job(toygun.task)');
    SELECT toygun.define_task('alpha', 'idle', '{one}', 'public.idle(toygun.task)');
    SELECT toygun.define_resource('beta');
    SELECT toygun.define_task('beta', 'idle', '{one}', 'public.idle(toygun.task)');
    SELECT toygun.grant_type('alpha', 'ops', '{read,operate}');
    SELECT toygun.grant_type('beta', 'other', '{read,operate}');
  `);
  const alpha = cluster.psql(DB, "SELECT toygun.create_resource('alpha')");
  const beta = cluster.psql(DB, "SELECT toygun.create_resource('beta')");
  ids.job = cluster.psql(DB, `SELECT toygun.start_task('${alpha}', 'job')`);
  cluster.waitFor(DB, `SELECT state = '__panic__' FROM toygun.task WHERE id = '${ids.job}'`, 30);
  ids.idle = cluster.psql(DB, `SELECT toygun.start_task('${alpha}', 'idle')`);
  ids.beta = cluster.psql(DB, `SELECT toygun.start_task('${beta}', 'idle')`);
  // an open alarm on alpha, besides the panic's (which the retry closes)
  cluster.psql(DB, `SELECT toygun.raise_alarm('${ids.idle}', 'latency', 'alpha is slow')`);

  server = await spawnServer(NODE, [path.join(ROOT, 'tools/server/src/main.mjs'),
    '--listen', `127.0.0.1:${await freePort()}`, '--db-host', cluster.dir, '--db-port', String(cluster.port),
    '--db-name', DB]);
  browser = await launch((m) => console.log(m));
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.setDefaultTimeout(15000);
});

after(async () => {
  await browser?.close().catch(() => {});
  const code = await server?.stop();
  if (server && code !== 0) console.log(`# the server exited with ${code} on SIGTERM; its output:\n# ${server.output().replace(/\n/g, '\n# ')}`);
  cluster?.stop('immediate');
});

step('not signed in, a page sends to the sign-in form', async () => {
  await go('/runs');
  assert.equal(new URL(page.url()).pathname, '/signin');
  await page.waitForSelector('form#signin input[name=_csrf]');
});

step('a wrong password shows the sign-in error', async () => {
  await signIn('ops', 'not the password');
  assert.equal(new URL(page.url()).pathname, '/signin', 'stays on the sign-in page');
  const err = await text('.error');
  assert.match(err, /wrong role or password/, 'an .error says the role or password is wrong');
  assert.equal(await page.$('form#signout'), null, 'not signed in');
}, { independent: true });

step('sign in as ops', async () => {
  await signIn('ops', OPS_PASSWORD);
  assert.equal(new URL(page.url()).pathname, '/', 'lands on the overview');
  await page.waitForSelector('form#signout');
});

step("ops's overview counts alpha's runs and shows its open alarm", async () => {
  await page.waitForSelector('table#counts');
  assert.match(await text('table#counts'), /alpha/);
  assert.match(await text('table#open-alarms'), /alpha is slow/);
  for (const sel of ['#chart-throughput', '#chart-failures', '#oldest-due'])
    assert.ok(await page.$(sel), `the overview has ${sel}`);
});

step('the runs page finds the panicked run by filter (panicked, type alpha)', async () => {
  await go('/runs');
  await page.waitForSelector('form#filters');
  const all = await page.$$eval('table#runs tr[data-run-id]', (rs) => rs.map((r) => r.dataset.runId));
  assert.ok(all.includes(ids.job) && all.includes(ids.idle), 'unfiltered: both alpha runs');
  await page.select('form#filters select[name=type]', 'alpha');
  const box = await page.$('form#filters input[name=panicked]');
  if (!(await box.evaluate((e) => e.checked))) await box.click();
  await submit('form#filters');
  const q = new URL(page.url()).searchParams;
  assert.equal(q.get('type'), 'alpha');
  assert.ok(q.get('panicked'), 'the filter is in the query string');
  const rows = await page.$$eval('table#runs tr[data-run-id]', (rs) => rs.map((r) => r.dataset.runId));
  assert.deepEqual(rows, [ids.job], 'exactly the panicked run');
  assert.match(await text(`tr[data-run-id="${ids.job}"] td.state`), /__panic__/);
});

step('open the run: its history timeline shows the panic', async () => {
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'domcontentloaded' }),
    page.click(`tr[data-run-id="${ids.job}"] a[href="/runs/${ids.job}"]`),
  ]);
  assert.equal(new URL(page.url()).pathname, `/runs/${ids.job}`);
  assert.match(await text('#run-state'), /__panic__/);
  const notes = await texts('ol#history li .note');
  assert.ok(notes.some((n) => n.includes(PANIC_NOTE)), `a history note says "${PANIC_NOTE}" (notes: ${JSON.stringify(notes)})`);
  const states = await texts('ol#history li .state');
  assert.ok(states.some((s) => s.includes('__panic__')), 'a history row is the move to __panic__');
  assert.ok(await page.$('table#failures'), 'the failures table');
  assert.ok(await page.$('table#alarms'), "the run's alarms table");
  assert.match(await text('table#alarms'), /panic/, "the panic's alarm");
});

step('repair it with "retry" and a reason', async () => {
  await page.waitForSelector('form[data-action=retry]');
  await page.type('form[data-action=retry] input[name=reason]', REASON);
  await submit('form[data-action=retry]');
  assert.equal(new URL(page.url()).pathname, `/runs/${ids.job}`, 'back on the run page');
  assert.ok((await text('.flash')).length > 0, 'a .flash says what was done');
});

step('the run finishes (__stop__), and the reason is in its history', async () => {
  await poll('the run page to show __stop__', 30, async () => {
    await page.reload({ waitUntil: 'domcontentloaded' });
    return /__stop__/.test(await text('#run-state'));
  });
  const reasons = await texts('ol#history li .reason');
  assert.ok(reasons.some((r) => r.includes(REASON)), `a history row has the reason (reasons: ${JSON.stringify(reasons)})`);
  assert.equal(cluster.psql(DB, `SELECT state FROM toygun.task WHERE id = '${ids.job}'`), '__stop__', 'stopped in the database too');
});

step('sign out', async () => {
  await signOut();
  assert.equal(new URL(page.url()).pathname, '/signin');
  await go('/');
  assert.equal(new URL(page.url()).pathname, '/signin', 'the session is gone');
});

step('sign in as other', async () => {
  await signIn('other', OTHER_PASSWORD);
  assert.equal(new URL(page.url()).pathname, '/');
  await page.waitForSelector('form#signout');
});

step("other's runs page shows none of alpha's runs", async () => {
  await go('/runs');
  await page.waitForSelector('table#runs');
  const rows = await page.$$eval('table#runs tr[data-run-id]', (rs) => rs.map((r) => r.dataset.runId));
  assert.ok(rows.includes(ids.beta), "other sees its own beta run");
  assert.ok(!rows.includes(ids.job) && !rows.includes(ids.idle), 'and none of the alpha runs');
  const types = await page.$$eval('form#filters select[name=type] option', (os) => os.map((o) => o.value));
  assert.ok(!types.includes('alpha'), `alpha is not offered as a type filter (${JSON.stringify(types)})`);
  assert.doesNotMatch(await text('table#runs'), /alpha/);
});

step("an alpha run's URL is the 404 page, as an unknown id is", async () => {
  for (const id of [ids.job, '00000000-0000-7000-8000-000000000000']) {
    const res = await go(`/runs/${id}`);
    assert.equal(res.status(), 404, `GET /runs/${id} is 404`);
    assert.match(await text('h1'), /Run not found/);
    assert.doesNotMatch(await page.content(), new RegExp(`${PANIC_NOTE}|${REASON}`));
  }
});

step("other's overview shows nothing of alpha", async () => {
  await go('/');
  await page.waitForSelector('table#counts');
  assert.match(await text('table#counts'), /beta/, "beta's runs are counted");
  assert.doesNotMatch(await text('table#counts'), /alpha/);
  assert.doesNotMatch(await text('table#open-alarms'), /alpha/);
  assert.doesNotMatch(await page.content(), /alpha is slow/);
});
