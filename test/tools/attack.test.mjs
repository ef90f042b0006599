// A hostile review of the server (issue 18): what a hostile tenant, a curious
// colleague with a weak role and an attacker on the network try. Each test
// is one attack and the answer the server must give. Run as the postgres OS
// user with PGBIN, TG_PORT and TG_WORK (see test/tools/cluster.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import { initCluster, ROOT, WORK } from './cluster.mjs';
import { startServer, req, cookieOf, apiSignin, poll } from './http.mjs';

let db, srv;
const ids = {};

// A POST of a big body with curl (which reads an early answer while it
// sends; Node's clients lose it when the server closes first): {status, text}.
function bigPost(s, p, contentType, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', 'POST', '-H', `content-type: ${contentType}`, '-H', `origin: ${s.url}`,
      ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), '--data-binary', '@-', s.url + p];
    const proc = spawn('curl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stdin.on('error', () => {});
    proc.on('error', reject);
    proc.on('exit', () => {
      const i = out.lastIndexOf('\n');
      resolve({ status: Number(out.slice(i + 1)), text: out.slice(0, i) });
    });
    proc.stdin.end(body);
  });
}

const XSS = '"><img src=x onerror=alert(1)><script>alert(2)</script>';

before(async () => {
  db = initCluster('attack', {
    settings: ["toygun.database_name = 'tg'", 'toygun.workers = 1', "cron.database_name = 'tg'"],
    hba: ['local all +scrammed scram-sha-256'],
  });
  db.psql('postgres', 'CREATE DATABASE tg');
  db.psql('tg', `
CREATE EXTENSION pg_cron;
CREATE EXTENSION toygun;
CREATE ROLE alice LOGIN PASSWORD 'pw of alice';
CREATE ROLE bob LOGIN PASSWORD 'pw of bob';
CREATE ROLE dave LOGIN PASSWORD 'pw of dave';
CREATE ROLE erin LOGIN PASSWORD 'pw of erin';
CREATE ROLE frank LOGIN PASSWORD 'pw of frank';
CREATE ROLE gina LOGIN PASSWORD 'pw of gina';
CREATE ROLE oscar LOGIN PASSWORD 'pw of oscar';
CREATE ROLE "odd"" -c role=postgres" LOGIN PASSWORD 'pw of odd';
CREATE ROLE scrammed NOLOGIN;
GRANT scrammed TO alice, bob, dave, erin, frank, gina, oscar, "odd"" -c role=postgres";
CREATE FUNCTION idle(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay(wait => '1 hour') $$;
SELECT toygun.define_resource('box', owner => 'alice');
SELECT toygun.define_task('box', 'idle', '{one,two}', 'idle(toygun.task)', owner => 'alice');
SELECT toygun.define_resource('crate', owner => 'bob');
SELECT toygun.define_task('crate', 'idle', '{one}', 'idle(toygun.task)', owner => 'bob');
SELECT toygun.grant_type('box', 'dave', '{read}');
SELECT toygun.grant_type('box', 'erin', '{read}');
SELECT toygun.grant_type('box', 'frank', '{read}');
SELECT toygun.grant_type('box', 'gina', '{read}');
SELECT toygun.grant_type('box', 'oscar', '{operate}');`);
  ids.box = db.psql('tg', "SET ROLE alice; SELECT toygun.create_resource('box')").split('\n').pop();
  ids.crate = db.psql('tg', "SET ROLE bob; SELECT toygun.create_resource('crate')").split('\n').pop();
  ids.boxRun = db.psql('tg', `SET ROLE alice; SELECT toygun.start_task('${ids.box}', 'idle', '{"${XSS.replace(/"/g, '\\"')}": "${XSS.replace(/"/g, '\\"')}"}')`).split('\n').pop();
  ids.crateRun = db.psql('tg', `SET ROLE bob; SELECT toygun.start_task('${ids.crate}', 'idle')`).split('\n').pop();
  db.waitFor('tg', `SELECT count(*) = 2 FROM toygun.task WHERE state = 'one'`, 30);
  db.psql('tg', `SET ROLE bob; SELECT toygun.panic_task('${ids.crateRun}', 'crate secret message', 'crate secret reason')`);
  srv = await startServer(db, ['--max-sessions-per-role', '20']);
});

after(async () => {
  if (srv) await srv.stop();
  db?.stop();
});

test('a huge body is refused (413) before it is read: sign-in forms, the API, a page POST', async () => {
  const big = 'x'.repeat(2 * 1024 * 1024);
  const a = await bigPost(srv, '/api/v1/signin', 'application/json', JSON.stringify({ role: 'alice', password: big }));
  assert.equal(a.status, 413, a.text.slice(0, 200));
  assert.match(JSON.parse(a.text).error.message, /body is larger than 8192 bytes/);
  const f = await bigPost(srv, '/signin', 'application/x-www-form-urlencoded', new URLSearchParams({ role: 'alice', password: big, _csrf: 'x' }).toString());
  assert.equal(f.status, 413);
  // a sign-in body needs no more than a few KiB
  const mid = await req(srv, 'POST', '/api/v1/signin', { json: { role: 'alice', password: 'y'.repeat(20000) } });
  assert.equal(mid.status, 413);
  const s = await apiSignin(srv, 'alice');
  const r = await bigPost(srv, `/api/v1/runs/${ids.boxRun}/retry`, 'application/json', JSON.stringify({ reason: big }),
    { cookie: s.cookie, 'x-csrf-token': s.csrf });
  assert.equal(r.status, 413);
  const p = await bigPost(srv, `/runs/${ids.boxRun}/retry`, 'application/x-www-form-urlencoded', `reason=${big}`, { cookie: s.cookie });
  assert.equal(p.status, 413);
  // a body under the limit is read as before
  const ok = await req(srv, 'POST', `/api/v1/runs/${ids.boxRun}/retry`, { cookie: s.cookie, csrf: s.csrf, json: { reason: 'r'.repeat(100000) } });
  assert.notEqual(ok.status, 413);
});

test('a flash message is never text from the URL (no content spoofing)', async () => {
  const s = await apiSignin(srv, 'alice');
  const lure = 'Your session expired, sign in at evil.example';
  const r = await req(srv, 'GET', `/runs/${ids.boxRun}?done=${encodeURIComponent(lure)}`, { cookie: s.cookie });
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.text, /evil\.example/);
  const a = await req(srv, 'GET', `/alarms?done=${encodeURIComponent(lure)}`, { cookie: s.cookie });
  assert.doesNotMatch(a.text, /evil\.example/);
  const ok = await req(srv, 'GET', `/runs/${ids.boxRun}?done=retry`, { cookie: s.cookie });
  assert.match(ok.text, /class="flash[^"]*">retry: done/);
});

test('sign-ins in progress are capped (--max-signins-pending): a flood cannot hold every backend', async () => {
  // a "PostgreSQL" that accepts connections and never answers: each sign-in stays in progress
  const dir = fs.mkdtempSync(path.join(WORK, 'hang-'));
  const held = [];
  const fake = net.createServer((sock) => { held.push(sock); sock.on('error', () => {}); });
  await new Promise((r) => fake.listen(path.join(dir, `.s.PGSQL.${db.port}`), r));
  let s;
  try {
    s = await startServer(db, ['--max-signins-pending', '3'], { dbHost: dir });
    const tries = Array.from({ length: 8 }, (_, i) =>
      req(s, 'POST', '/api/v1/signin', { json: { role: `r${i}`, password: 'x' } }));
    // five answer at once, refused; three wait on the silent server
    const quick = await new Promise((resolve) => {
      const done = [];
      tries.forEach((p) => p.then((r) => { done.push(r); if (done.length === 5) resolve(done); }, () => {}));
      setTimeout(() => resolve(done), 5000);
    });
    assert.equal(quick.length, 5, 'five answers within 5 s');
    for (const r of quick) {
      assert.equal(r.status, 503);
      assert.match(r.json.error.message, /too many sign-ins in progress.*--max-signins-pending is 3/);
    }
    assert.equal(held.length, 3, 'only three connections were opened');
    // /metrics' new connections count too
    const m = await req(s, 'GET', '/metrics', { auth: 'x:y' });
    assert.equal(m.status, 503);
    assert.match(m.text, /too many sign-ins in progress/);
  } finally {
    await s?.stop();
    for (const sock of held) sock.destroy();
    fake.close();
  }
});

test('a role made NOLOGIN, expired (VALID UNTIL) or dropped loses its session at its next request', async () => {
  const e = await apiSignin(srv, 'erin');
  const f = await apiSignin(srv, 'frank');
  const g = await apiSignin(srv, 'gina');
  const gp = await apiSignin(srv, 'gina');
  for (const x of [e, f, g]) assert.equal((await req(srv, 'GET', '/api/v1/status', { cookie: x.cookie })).status, 200);
  db.psql('tg', "ALTER ROLE erin NOLOGIN; ALTER ROLE frank VALID UNTIL '2000-01-01'; " +
    "SELECT toygun.revoke_type('box', 'gina'); REVOKE scrammed FROM gina; DROP ROLE gina");
  for (const [x, who] of [[e, 'erin'], [f, 'frank'], [g, 'gina']]) {
    const r = await req(srv, 'GET', '/api/v1/status', { cookie: x.cookie });
    assert.equal(r.status, 401, `${who}: ${r.text}`);
    assert.match(r.json.error.message, /your session ended \(the role may no longer sign in/);
  }
  const p = await req(srv, 'GET', '/runs', { cookie: gp.cookie });
  assert.equal(p.status, 303, 'a page goes to the sign-in form');
  assert.match(p.headers.get('location'), /^\/signin/);
  assert.equal(db.psql('tg', "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('toygun-web:erin', 'toygun-web:frank', 'toygun-web:gina')"), '0',
    'their connections are closed');
  // and /metrics' cached connection of a role made NOLOGIN stops answering at its next scrape
  const m1 = await req(srv, 'GET', '/metrics', { auth: 'dave:pw of dave' });
  assert.equal(m1.status, 200);
  db.psql('tg', 'ALTER ROLE dave NOLOGIN');
  try {
    const m2 = await req(srv, 'GET', '/metrics', { auth: 'dave:pw of dave' });
    assert.equal(m2.status, 401, m2.text);
    assert.match(m2.text, /may no longer sign in/);
  } finally { db.psql('tg', 'ALTER ROLE dave LOGIN'); }
});

test('/metrics: a cached connection is checked again by SCRAM after --metrics-reauth; an old password then fails', async () => {
  const s = await startServer(db, ['--metrics-reauth', '2']);
  try {
    assert.equal((await req(s, 'GET', '/metrics', { auth: 'alice:pw of alice' })).status, 200);
    db.psql('tg', "ALTER ROLE alice PASSWORD 'new pw of alice'");
    // within the bound the warm connection still answers; after it the old password is refused
    await poll('the old password to be refused', 10, async () =>
      (await req(s, 'GET', '/metrics', { auth: 'alice:pw of alice' })).status === 401);
    assert.equal((await req(s, 'GET', '/metrics', { auth: 'alice:new pw of alice' })).status, 200);
  } finally {
    db.psql('tg', "ALTER ROLE alice PASSWORD 'pw of alice'");
    await s.stop();
  }
});

test('a weak role (read on box) learns nothing of crate through any route', async () => {
  const d = await apiSignin(srv, 'dave');
  const get = (p) => req(srv, 'GET', p, { cookie: d.cookie });
  const nowhere = '01890000-0000-7000-8000-000000000000';
  // a run of another type answers exactly as a run that does not exist
  const other = await get(`/api/v1/runs/${ids.crateRun}`);
  const none = await get(`/api/v1/runs/${nowhere}`);
  assert.equal(other.status, 404);
  assert.equal(none.status, 404);
  assert.equal(other.text.replaceAll(ids.crateRun, 'ID'), none.text.replaceAll(nowhere, 'ID'));
  const page = await get(`/runs/${ids.crateRun}`);
  assert.equal(page.status, 404);
  assert.doesNotMatch(page.text, /crate/);
  // repairs: refused as not found, not as forbidden (which would say it exists)
  for (const action of ['retry', 'stop', 'panic']) {
    const r1 = await req(srv, 'POST', `/api/v1/runs/${ids.crateRun}/${action}`, { cookie: d.cookie, csrf: d.csrf, json: { reason: 'x' } });
    const r2 = await req(srv, 'POST', `/api/v1/runs/${nowhere}/${action}`, { cookie: d.cookie, csrf: d.csrf, json: { reason: 'x' } });
    assert.equal(r1.status, r2.status, `${action}: ${r1.text} vs ${r2.text}`);
    assert.equal(r1.text.replaceAll(ids.crateRun, 'ID'), r2.text.replaceAll(nowhere, 'ID'));
  }
  // lists, with crafted cursors and filters
  const cursor = `r1:${'ffffffff-ffff-7fff-bfff-ffffffffffff'}`;
  for (const p of ['/api/v1/runs', '/api/v1/runs?panicked=1', '/api/v1/runs?failing=1', '/api/v1/runs?due=1',
    `/api/v1/runs?after=${cursor}`, `/api/v1/runs?after=r1:${ids.crateRun}`, `/api/v1/runs?resource=${ids.crate}`,
    `/api/v1/runs?state=__panic__`, '/api/v1/alarms?state=all', '/api/v1/alarms?type=crate&state=all',
    '/api/v1/schedules', '/api/v1/schedules?type=crate', '/api/v1/series?window=1h', '/api/v1/status',
    '/', '/runs?panicked=1', '/alarms?state=all', '/schedules']) {
    const r = await get(p);
    assert.ok(r.status === 200 || r.status === 404, `${p}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.doesNotMatch(r.text, new RegExp(`crate(?!&quot;|\\b" does)|${ids.crateRun}|${ids.crate}`), `${p} shows nothing of crate: ${r.text.slice(0, 300)}`);
  }
  assert.equal((await get('/api/v1/status')).json.panicked, 0, "crate's panicked run is not counted");
  // a filter on another's type shows no run (type names themselves are public:
  // toygun.resource_type is readable by every role, so 42704 for a type that
  // does not exist tells nothing new)
  const t1 = await get('/api/v1/runs?type=crate');
  assert.deepEqual(t1.json, { runs: [], next: null });
  const m = await req(srv, 'GET', '/metrics', { auth: 'dave:pw of dave' });
  assert.equal(m.status, 200);
  assert.doesNotMatch(m.text, /crate/);
});

test('nothing a tenant writes is markup on any page: run, alarms, overview, filters echoed back, sign-in form', async () => {
  const a = await apiSignin(srv, 'alice');
  const r = await req(srv, 'POST', `/api/v1/runs/${ids.boxRun}/panic`, { cookie: a.cookie, csrf: a.csrf, json: { reason: XSS, message: XSS } });
  assert.equal(r.status, 200, r.text);
  const q = encodeURIComponent(XSS);
  const pages = [`/runs/${ids.boxRun}`, '/alarms?state=all', '/', `/runs?state=${q}&task=${q}&resource=${q}`, `/runs?task=idle&state=${q}`,
    `/alarms?state=${q}`, `/schedules?type=${q}`];
  for (const p of pages) {
    const x = await req(srv, 'GET', p, { cookie: a.cookie });
    assert.doesNotMatch(x.text, /<img src=x|<script>alert/, `${p} holds no raw markup of a tenant`);
  }
  const run = await req(srv, 'GET', `/runs/${ids.boxRun}`, { cookie: a.cookie });
  assert.match(run.text, /&lt;script&gt;alert\(2\)&lt;\/script&gt;/, 'shown, escaped');
  const g = await req(srv, 'GET', '/signin');
  const token = /name="_csrf" value="([^"]+)"/.exec(g.text)[1];
  const f = await req(srv, 'POST', '/signin', { cookie: cookieOf(g.setCookie, 'toygun-signin'), form: { _csrf: token, role: XSS, password: 'x' } });
  assert.doesNotMatch(f.text, /<img src=x|<script>alert/);
  // every page says: no framing, no inline script, not cached
  assert.match(run.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  assert.match(run.headers.get('content-security-policy'), /script-src 'self'(;|$)/);
  assert.equal(run.headers.get('cache-control'), 'no-store');
});

test('sign-in with odd role names and passwords: refused or checked by PostgreSQL, nothing injected', async () => {
  const odd = 'odd" -c role=postgres';
  const s = await apiSignin(srv, odd, 'pw of odd');
  const w = await req(srv, 'GET', '/api/v1/session', { cookie: s.cookie });
  assert.equal(w.json.whoami.role, odd);
  assert.equal(w.json.whoami.superuser, false);
  for (const role of ['alice\u0000', 'alice options=-crole=postgres', "alice' OR '1'='1", 'postgres', 'host=/tmp user=postgres']) {
    const r = await req(srv, 'POST', '/api/v1/signin', { json: { role, password: 'x' } });
    assert.ok([400, 401].includes(r.status), `${JSON.stringify(role)}: ${r.status} ${r.text}`);
  }
  for (const password of [' ', 'pw of alice\u0000', ['pw of alice'], { toString: 'pw of alice' }]) {
    const r = await req(srv, 'POST', '/api/v1/signin', { json: { role: 'alice', password } });
    assert.ok([400, 401].includes(r.status), `${JSON.stringify(password)}: ${r.status} ${r.text}`);
  }
  // a session id chosen by an attacker is not a session
  const fixed = await req(srv, 'GET', '/api/v1/session', { cookie: 'toygun=' + 'A'.repeat(43) });
  assert.equal(fixed.status, 401);
});

test("the overview's cached counts follow a revoke at once: cached per role and its readable types", async () => {
  const d = await apiSignin(srv, 'dave');
  const before = await req(srv, 'GET', '/', { cookie: d.cookie });
  assert.match(before.text, /<td class="resource_type">box<\/td>/);
  db.psql('tg', "SELECT toygun.revoke_type('box', 'dave')");
  try {
    const after = await req(srv, 'GET', '/', { cookie: d.cookie });
    assert.doesNotMatch(after.text, /<td class="resource_type">box<\/td>/, 'no counts of a type no longer readable');
  } finally {
    db.psql('tg', "SELECT toygun.grant_type('box', 'dave', '{read}')");
  }
});

test('alarm lists show the first 4,000 characters of a message: a tenant cannot make every list page megabytes', async () => {
  db.psql('tg', `SET ROLE alice; SELECT toygun.raise_alarm('${ids.box}', 'huge', repeat('y', 1000000))`);
  const a = await apiSignin(srv, 'alice');
  const r = await req(srv, 'GET', '/api/v1/alarms?state=all', { cookie: a.cookie });
  const huge = r.json.find((x) => x.kind === 'huge');
  assert.equal(huge.message.length, 4001);
  assert.ok(huge.message.endsWith('…'));
  const p = await req(srv, 'GET', '/alarms', { cookie: a.cookie });
  assert.ok(p.text.length < 100000, `the alarms page is ${p.text.length} characters`);
});

test('sign-out closes the PostgreSQL connection; the old cookie and CSRF token are dead', async () => {
  const b = await apiSignin(srv, 'bob');
  const app = "application_name = 'toygun-web:bob'";
  const before = Number(db.psql('tg', `SELECT count(*) FROM pg_stat_activity WHERE ${app}`));
  assert.ok(before >= 1);
  const o = await req(srv, 'POST', '/api/v1/signout', { cookie: b.cookie, csrf: b.csrf });
  assert.equal(o.status, 200);
  await poll('the backend to go', 10, async () => Number(db.psql('tg', `SELECT count(*) FROM pg_stat_activity WHERE ${app}`)) === before - 1);
  const r = await req(srv, 'POST', `/api/v1/runs/${ids.crateRun}/retry`, { cookie: b.cookie, csrf: b.csrf, json: { reason: 'replayed' } });
  assert.equal(r.status, 401);
  // and the server's log never holds a session id or a password
  assert.doesNotMatch(srv.stderr(), new RegExp(b.cookie.split('=')[1]));
  assert.doesNotMatch(srv.stderr(), /pw of /);
});

test("snooze or close of another type's alarm answers as an alarm that does not exist", async () => {
  const alarm = db.psql('tg', `SELECT id FROM toygun.alarm WHERE object_id = '${ids.crateRun}' LIMIT 1`);
  assert.match(alarm, /^[0-9a-f-]{36}$/);
  const nowhere = '01890000-0000-7000-8000-000000000001';
  const d = await apiSignin(srv, 'dave');
  for (const [action, body] of [['close', { reason: 'x' }], ['snooze', { for: '1 hour' }]]) {
    const r1 = await req(srv, 'POST', `/api/v1/alarms/${alarm}/${action}`, { cookie: d.cookie, csrf: d.csrf, json: body });
    const r2 = await req(srv, 'POST', `/api/v1/alarms/${nowhere}/${action}`, { cookie: d.cookie, csrf: d.csrf, json: body });
    assert.equal(r1.status, r2.status, `${action}: ${r1.text} vs ${r2.text}`);
    assert.equal(r1.text.replaceAll(alarm, 'ID'), r2.text.replaceAll(nowhere, 'ID'));
  }
  assert.equal(db.psql('tg', `SELECT state || coalesce(snoozed_until::text, '') FROM toygun.alarm WHERE id = '${alarm}'`), 'active',
    'unchanged');
});

test('DNS rebinding: without --public-url, a Host that is not a loopback name is refused (421)', async () => {
  const curl = (host) => new Promise((resolve) => {
    const proc = spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: ${host}`, `${srv.url}/signin`]);
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.on('exit', () => resolve(Number(out)));
  });
  const port = new URL(srv.url).port;
  assert.equal(await curl(`evil.example:${port}`), 421);
  assert.equal(await curl(`127.0.0.1.nip.io:${port}`), 421);
  assert.equal(await curl(`127.0.0.1:${port}`), 200);
  assert.equal(await curl(`localhost:${port}`), 200);
  assert.equal(await curl(`[::1]:${port}`), 200);
});

test('log forging: a typed role name with a newline cannot add a line to the server log', async () => {
  const forged = 'x\n2026-01-01T00:00:00.000Z signed in: postgres';
  const r = await req(srv, 'POST', '/api/v1/signin', { json: { role: forged, password: 'x' } });
  assert.equal(r.status, 401);
  await poll('the refusal to be logged', 5, async () => /sign-in refused \(API\)[^\n]*2026-01-01/.test(srv.stderr()));
  assert.doesNotMatch(srv.stderr(), /^2026-01-01T00:00:00\.000Z signed in: postgres/m);
});

test("a start on another type's resource answers as a resource that does not exist", async () => {
  const nowhere = '01890000-0000-7000-8000-000000000002';
  const d = await apiSignin(srv, 'dave');
  const r1 = await req(srv, 'POST', '/api/v1/runs', { cookie: d.cookie, csrf: d.csrf, json: { resource: ids.crate, task: 'idle' } });
  const r2 = await req(srv, 'POST', '/api/v1/runs', { cookie: d.cookie, csrf: d.csrf, json: { resource: nowhere, task: 'idle' } });
  assert.equal(r1.status, r2.status, `${r1.text} vs ${r2.text}`);
  assert.equal(r1.text.replaceAll(ids.crate, 'ID'), r2.text.replaceAll(nowhere, 'ID'));
});

test('a role with operate but not read (no right implies another) still repairs: only refusals are rewritten', async () => {
  const o = await apiSignin(srv, 'oscar');
  const r = await req(srv, 'POST', `/api/v1/runs/${ids.boxRun}/retry`, { cookie: o.cookie, csrf: o.csrf, json: { reason: 'operate only' } });
  assert.equal(r.status, 200, r.text);
  const c = await req(srv, 'POST', `/api/v1/runs/${ids.crateRun}/retry`, { cookie: o.cookie, csrf: o.csrf, json: { reason: 'x' } });
  assert.equal(c.status, 404, c.text);
});

test('/static/ names of Object.prototype (__proto__, constructor) are 404, not a 500 with a stack in the log', async () => {
  for (const n of ['__proto__', 'constructor', 'toString']) {
    const r = await req(srv, 'GET', `/static/${n}`);
    assert.equal(r.status, 404, n);
  }
  assert.equal((await req(srv, 'GET', '/static/app.js')).status, 200);
});
