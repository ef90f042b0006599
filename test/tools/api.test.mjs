// The server's HTTP API and pages (tools/server), as a person and a script
// use them: sign-in checked by SCRAM, sessions, cookies, CSRF, rights (a role
// sees nothing of another's types), sealed secrets, repairs with a reason,
// and /metrics with HTTP Basic. Run as the postgres OS user with PGBIN,
// TG_PORT and TG_WORK (see test/tools/cluster.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { initCluster, ROOT, WORK } from './cluster.mjs';
import { startServer, req, cookieOf, apiSignin, formSignin, poll } from './http.mjs';

const NODE = process.execPath;
const MAIN = path.join(ROOT, 'tools/server/src/main.mjs');
let db, srv, srvHttps;
const ids = {};

before(async () => {
  db = initCluster('api', {
    settings: ["toygun.database_name = 'tg'", 'toygun.workers = 1', "cron.database_name = 'tg'"],
    hba: ['local all alice scram-sha-256', 'local all bob scram-sha-256', 'local all carol scram-sha-256', 'local all dave scram-sha-256',
      'local all boss scram-sha-256'],
  });
  db.psql('postgres', 'CREATE DATABASE tg');
  db.psql('tg', `
CREATE EXTENSION pg_cron;
CREATE EXTENSION toygun;
CREATE ROLE alice LOGIN PASSWORD 'pw of alice';
CREATE ROLE bob LOGIN PASSWORD 'pw of bob';
CREATE ROLE carol LOGIN PASSWORD 'pw of carol';
CREATE ROLE trusty LOGIN PASSWORD 'pw of trusty';
CREATE ROLE dave LOGIN PASSWORD 'pw of dave';
CREATE ROLE boss LOGIN PASSWORD 'pw of boss';
GRANT postgres TO boss;   -- a member of the extension owner's role: the outbox is its
CREATE FUNCTION idle(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay(wait => '1 hour') $$;
SELECT toygun.define_resource('box', owner => 'alice');
SELECT toygun.define_task('box', 'idle', '{one,two}', 'idle(toygun.task)', owner => 'alice',
                          fields => '{token,n}', encrypted_fields => '{token}');
SELECT toygun.define_resource('crate', owner => 'bob');
SELECT toygun.define_task('crate', 'idle', '{one}', 'idle(toygun.task)', owner => 'bob');
SELECT toygun.grant_type('box', 'carol', '{read,operate}');
SELECT toygun.grant_type('box', 'trusty', '{read}');
SELECT toygun.grant_type('box', 'dave', '{read}');`);
  ids.box = db.psql('tg', "SET ROLE alice; SELECT toygun.create_resource('box')").split('\n').pop();
  ids.crate = db.psql('tg', "SET ROLE bob; SELECT toygun.create_resource('crate')").split('\n').pop();
  ids.secret = db.psql('tg', `SET ROLE alice; SELECT toygun.start_task('${ids.box}', 'idle', '{"token": "s3cret-token", "n": 1}')`).split('\n').pop();
  ids.crateRun = db.psql('tg', `SET ROLE bob; SELECT toygun.start_task('${ids.crate}', 'idle')`).split('\n').pop();
  db.waitFor('tg', `SELECT count(*) = 2 FROM toygun.task WHERE state = 'one'`, 30);
  db.psql('tg', `SET ROLE alice; SELECT toygun.panic_task('${ids.secret}', 'the vendor API is down', 'test: panicked')`);
  srv = await startServer(db, ['--max-sessions-per-role', '20']);
});

after(async () => {
  if (srv) assert.equal(await srv.stop(), 0, 'SIGTERM: the server exits 0');
  if (srvHttps) await srvHttps.stop();
  db?.stop();
});

test('a non-loopback --listen without an https --public-url is refused (exit 2)', async () => {
  const proc = spawn(NODE, [MAIN, '--listen', '0.0.0.0:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => proc.on('exit', r));
  assert.equal(code, 2);
  assert.match(err, /not a loopback address.*--public-url https/);
});

test('sign-in: a wrong password is refused, the form says why', async () => {
  const r = await formSignin(srv, 'alice', 'not the password');
  assert.equal(r.status, 401);
  assert.match(r.text, /class="error">sign-in refused: wrong role or password for &quot;alice&quot;/);
  assert.equal(cookieOf(r.setCookie, 'toygun'), null);
  const a = await req(srv, 'POST', '/api/v1/signin', { json: { role: 'alice', password: 'nope' } });
  assert.equal(a.status, 401);
  assert.match(a.json.error.message, /wrong role or password/);
});

test('sign-in: a role pg_hba.conf trusts is refused, whatever the password (SCRAM check)', async () => {
  const r = await formSignin(srv, 'trusty', 'anything at all');
  assert.equal(r.status, 401);
  assert.match(r.text, /did not check a SCRAM password for role &quot;trusty&quot;.*pg_hba.conf/s);
  const a = await req(srv, 'POST', '/api/v1/signin', { json: { role: 'trusty', password: 'x' } });
  assert.equal(a.status, 401);
  assert.match(a.json.error.message, /trust, peer or ident.*pg_hba\.conf.*scram-sha-256/);
  assert.equal(db.psql('tg', "SELECT count(*) FROM pg_stat_activity WHERE usename = 'trusty'"), '0',
    'and its connection was closed');
});

test('sign-in through the form: 303 to /, a session cookie with HttpOnly, SameSite=Strict, Path=/', async () => {
  const r = await formSignin(srv, 'alice', 'pw of alice');
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/');
  const set = r.setCookie.find((c) => c.startsWith('toygun='));
  assert.ok(set, r.setCookie.join(' | '));
  assert.match(set, /HttpOnly/);
  assert.match(set, /SameSite=Strict/);
  assert.match(set, /Path=\//);
  assert.doesNotMatch(set, /Max-Age|Expires/, 'a browser-session cookie: the server decides expiry');
  const home = await req(srv, 'GET', '/', { cookie: set.split(';')[0] });
  assert.equal(home.status, 200);
  for (const id of ['table id="counts"', 'id="chart-throughput"', 'id="chart-failures"', 'id="oldest-due"',
    'table id="open-alarms"', 'form id="signout"', 'id="workers-up"', '<meta name="csrf-token"'])
    assert.ok(home.text.includes(id), `overview has ${id}`);
  assert.match(home.text, /signed in as <strong id="role">alice<\/strong>/);
  assert.equal(home.headers.get('cache-control'), 'no-store');
  assert.match(home.headers.get('content-security-policy'), /default-src 'self'/);
  assert.doesNotMatch(home.text, /<script>|<script [^>]*>[^<]/, 'no inline script');
});

test('the sign-in form refuses a POST without its pre-session token (login CSRF)', async () => {
  const r = await req(srv, 'POST', '/signin', { form: { role: 'alice', password: 'pw of alice' } });
  assert.equal(r.status, 403);
  assert.match(r.text, /CSRF token is missing or wrong/);
});

test('a browser\'s ways: a second GET of the form keeps its token; Origin null is judged by Sec-Fetch-Site', async () => {
  const g1 = await req(srv, 'GET', '/signin');
  const token = /name="_csrf" value="([^"]+)"/.exec(g1.text)[1];
  const pre = cookieOf(g1.setCookie, 'toygun-signin');
  const g2 = await req(srv, 'GET', '/signin', { cookie: pre });   // another tab, a redirected /favicon.ico
  assert.equal(cookieOf(g2.setCookie, 'toygun-signin'), pre);
  assert.equal(g1.headers.get('referrer-policy'), 'same-origin', 'not no-referrer: Chromium would send Origin: null');
  const nullCross = await req(srv, 'POST', '/signin', { cookie: pre, origin: 'null', headers: { 'sec-fetch-site': 'cross-site' },
    form: { _csrf: token, role: 'alice', password: 'pw of alice' } });
  assert.equal(nullCross.status, 403);
  const ok = await req(srv, 'POST', '/signin', { cookie: pre, origin: 'null', headers: { 'sec-fetch-site': 'same-origin' },
    form: { _csrf: token, role: 'alice', password: 'pw of alice' } });
  assert.equal(ok.status, 303, ok.text);
  const s = cookieOf(ok.setCookie, 'toygun');
  await req(srv, 'POST', '/signout', { cookie: s, form: { _csrf: /name="csrf-token" content="([^"]+)"/.exec((await req(srv, 'GET', '/', { cookie: s })).text)[1] } });
});

test('with --public-url https://...: cookie __Host-toygun, Secure', async () => {
  srvHttps = await startServer(db, ['--public-url', 'https://toygun.example.com']);
  const r = await req(srvHttps, 'POST', '/api/v1/signin',
    { json: { role: 'alice', password: 'pw of alice' }, origin: 'https://toygun.example.com' });
  assert.equal(r.status, 200, r.text);
  const set = r.setCookie.find((c) => c.startsWith('__Host-toygun='));
  assert.ok(set, r.setCookie.join(' | '));
  assert.match(set, /; Secure/);
  assert.match(set, /HttpOnly/);
  assert.match(set, /Path=\//);
  assert.doesNotMatch(set, /Domain=/);
  const bad = await req(srvHttps, 'POST', '/api/v1/signin', { json: { role: 'alice', password: 'pw of alice' } });
  assert.equal(bad.status, 403, 'its own http:// origin is not the public https one');
});

test('not signed in: 401 from the API, 303 to /signin from the pages', async () => {
  const a = await req(srv, 'GET', '/api/v1/status');
  assert.equal(a.status, 401);
  assert.match(a.json.error.message, /not signed in/);
  const p = await req(srv, 'GET', '/runs');
  assert.equal(p.status, 303);
  assert.equal(p.headers.get('location'), '/signin');
});

test('CSRF: a POST without the token, with a wrong one, or from another Origin is 403', async () => {
  const s = await apiSignin(srv, 'carol');
  const path_ = `/api/v1/runs/${ids.secret}/retry`;
  const none = await req(srv, 'POST', path_, { cookie: s.cookie, json: { reason: 'x' } });
  assert.equal(none.status, 403);
  assert.equal(none.json.error.code, 'csrf');
  assert.match(none.json.error.message, /CSRF token is missing or wrong/);
  const wrong = await req(srv, 'POST', path_, { cookie: s.cookie, csrf: s.csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')), json: { reason: 'x' } });
  assert.equal(wrong.status, 403);
  const foreign = await req(srv, 'POST', path_, { cookie: s.cookie, csrf: s.csrf, origin: 'http://evil.example', json: { reason: 'x' } });
  assert.equal(foreign.status, 403);
  assert.match(foreign.json.error.message, /another site \(Origin http:\/\/evil\.example/);
  const noOrigin = await req(srv, 'POST', path_, { cookie: s.cookie, csrf: s.csrf, origin: null, json: { reason: 'x' } });
  assert.equal(noOrigin.status, 403);
  const form = await req(srv, 'POST', `/runs/${ids.secret}/retry`, { cookie: s.cookie, form: { reason: 'x' } });
  assert.equal(form.status, 403, 'a form without _csrf');
  assert.equal(db.psql('tg', `SELECT state FROM toygun.task WHERE id = '${ids.secret}'`), '__panic__', 'nothing was done');
});

test('two roles with rights on different types see nothing of each other\'s runs', async () => {
  const a = await apiSignin(srv, 'alice');
  const b = await apiSignin(srv, 'bob');
  const la = await req(srv, 'GET', '/api/v1/runs', { cookie: a.cookie });
  const lb = await req(srv, 'GET', '/api/v1/runs', { cookie: b.cookie });
  assert.deepEqual(la.json.runs.map((r) => r.id), [ids.secret]);
  assert.deepEqual(lb.json.runs.map((r) => r.id), [ids.crateRun]);
  assert.equal(lb.json.next, null);
  const other = await req(srv, 'GET', `/api/v1/runs/${ids.secret}`, { cookie: b.cookie });
  assert.equal(other.status, 404);
  assert.equal(other.json.error.sqlstate, 'P0002');
  const unknown = await req(srv, 'GET', '/api/v1/runs/00000000-0000-7000-8000-000000000000', { cookie: b.cookie });
  assert.equal(unknown.status, 404, 'same as an unknown id');
  const page = await req(srv, 'GET', `/runs/${ids.secret}`, { cookie: b.cookie });
  assert.equal(page.status, 404);
  assert.match(page.text, /<h1>Run not found<\/h1>/);
  const sa = await req(srv, 'GET', '/api/v1/status', { cookie: a.cookie });
  const sb = await req(srv, 'GET', '/api/v1/status', { cookie: b.cookie });
  assert.equal(Number(sa.json.panicked), 1);
  assert.equal(Number(sb.json.panicked), 0);
  assert.equal(Number(sb.json.live), 1);
  const hb = await req(srv, 'GET', '/', { cookie: b.cookie });
  assert.doesNotMatch(hb.text, /\bbox\b/, "bob's overview never names alice's type");
  const rb = await req(srv, 'GET', '/runs?type=box', { cookie: b.cookie });
  assert.doesNotMatch(rb.text, /data-run-id/, "bob's runs page filtered to box shows no run");
  const fb = await req(srv, 'GET', '/api/v1/runs?type=box', { cookie: b.cookie });
  assert.ok(fb.status === 404 || (fb.status === 200 && fb.json.runs.length === 0), fb.text);
});

test('secrets: sealed for a role without read_secrets, shown to one with it', async () => {
  const a = await apiSignin(srv, 'alice');
  const c = await apiSignin(srv, 'carol');
  const da = await req(srv, 'GET', `/api/v1/runs/${ids.secret}`, { cookie: a.cookie });
  assert.equal(da.json.attrs.token, 's3cret-token');
  const dc = await req(srv, 'GET', `/api/v1/runs/${ids.secret}`, { cookie: c.cookie });
  assert.deepEqual(dc.json.attrs.token, { $sealed: true });
  assert.doesNotMatch(dc.text, /s3cret/);
  const pc = await req(srv, 'GET', `/runs/${ids.secret}`, { cookie: c.cookie });
  assert.equal(pc.status, 200);
  assert.match(pc.text, /class="sealed"[^>]*>sealed</);
  assert.doesNotMatch(pc.text, /s3cret/);
  const pa = await req(srv, 'GET', `/runs/${ids.secret}`, { cookie: a.cookie });
  assert.match(pa.text, /s3cret-token/);
});

test('the runs page: filters, rows with the contract\'s ids, the run page with its history and repair forms', async () => {
  const c = await apiSignin(srv, 'carol');
  const r = await req(srv, 'GET', '/runs?type=box&panicked=1', { cookie: c.cookie });
  assert.equal(r.status, 200);
  assert.match(r.text, /<form id="filters" method="get"/);
  assert.match(r.text, new RegExp(`<tr data-run-id="${ids.secret}">`));
  assert.match(r.text, new RegExp(`<a href="/runs/${ids.secret}">`));
  assert.match(r.text, /<td class="state">__panic__<\/td>/);
  const d = await req(srv, 'GET', `/runs/${ids.secret}`, { cookie: c.cookie });
  assert.match(d.text, /id="run-state">__panic__</);
  assert.match(d.text, /<ol id="history"/);
  assert.match(d.text, /<li>\s*<span class="state">__panic__<\/span> <span class="from">from one<\/span>/);
  assert.match(d.text, /class="reason">test: panicked</);
  assert.match(d.text, /class="note">[^<]*the vendor API is down/);
  for (const action of ['retry', 'rewind', 'transition', 'stop', 'panic'])
    assert.match(d.text, new RegExp(`<form data-action="${action}" method="post" action="/runs/${ids.secret}/${action}">`));
  assert.match(d.text, /<input name="reason" required/);
  const bob = await apiSignin(srv, 'bob');
  const own = (await req(srv, 'GET', '/api/v1/runs', { cookie: bob.cookie })).json.runs[0].id;
  const bd = await req(srv, 'GET', `/runs/${own}`, { cookie: bob.cookie });
  assert.match(bd.text, /form data-action="retry"/, 'the owner may operate its own run');
});

test('a role that may read but not operate: no repair forms, and a repair by the API is 403 (42501)', async () => {
  const d = await apiSignin(srv, 'dave');
  const p = await req(srv, 'GET', `/runs/${ids.secret}`, { cookie: d.cookie });
  assert.equal(p.status, 200);
  assert.doesNotMatch(p.text, /data-action=/);
  assert.match(p.text, /You may not operate this type/);
  const r = await req(srv, 'POST', `/api/v1/runs/${ids.secret}/retry`, { cookie: d.cookie, csrf: d.csrf, json: { reason: 'try' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.sqlstate, '42501');
  assert.match(r.json.error.message, /operate/);
});

test('a repair through the API: retry with a reason; without one, 400', async () => {
  const c = await apiSignin(srv, 'carol');
  const noReason = await req(srv, 'POST', `/api/v1/runs/${ids.secret}/retry`, { cookie: c.cookie, csrf: c.csrf, json: {} });
  assert.equal(noReason.status, 400);
  assert.match(noReason.json.error.message, /a reason is required/);
  const r = await req(srv, 'POST', `/api/v1/runs/${ids.secret}/retry`, { cookie: c.cookie, csrf: c.csrf, json: { reason: 'vendor is back (API)' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'one');
  assert.equal(r.json.attrs, undefined, 'no attrs (they may hold ciphertext)');
  const d = await req(srv, 'GET', `/api/v1/runs/${ids.secret}`, { cookie: c.cookie });
  const last = d.json.history[d.json.history.length - 1];
  assert.equal(last.reason, 'vendor is back (API)');
  assert.equal(last.made_by, 'carol');
  const again = await req(srv, 'POST', `/api/v1/runs/${ids.secret}/stop`, { cookie: c.cookie, csrf: c.csrf, json: { reason: 'done' } });
  assert.equal(again.status, 200);
  const stopped = await req(srv, 'POST', `/api/v1/runs/${ids.secret}/retry`, { cookie: c.cookie, csrf: c.csrf, json: { reason: 'no' } });
  assert.equal(stopped.status, 409, 'retry of a stopped run: 55000 → 409');
  assert.equal(stopped.json.error.sqlstate, '55000');
});

test('a repair through the HTML form: panic then retry with a reason, 303 back with a flash', async () => {
  const a = await apiSignin(srv, 'alice');
  const st = await req(srv, 'POST', '/api/v1/runs', { cookie: a.cookie, csrf: a.csrf, json: { resource: ids.box, task: 'idle', args: { n: 2 } } });
  assert.equal(st.status, 201, st.text);
  const id = st.json.id;
  db.waitFor('tg', `SELECT state = 'one' FROM toygun.task WHERE id = '${id}'`, 30);
  const p = await req(srv, 'POST', `/runs/${id}/panic`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'stuck', message: 'by hand' } });
  assert.equal(p.status, 303, p.text);
  assert.equal(p.headers.get('location'), `/runs/${id}?done=panic`);
  const r = await req(srv, 'POST', `/runs/${id}/retry`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'fixed it (form)' } });
  assert.equal(r.status, 303);
  const page = await req(srv, 'GET', r.headers.get('location'), { cookie: a.cookie });
  assert.match(page.text, /class="flash[^"]*">retry: done</);
  assert.match(page.text, /id="run-state">one</);
  assert.match(page.text, /class="reason">fixed it \(form\)</);
  const empty = await req(srv, 'POST', `/runs/${id}/stop`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: '' } });
  assert.equal(empty.status, 400);
  assert.match(empty.text, /a reason is required/);
});

test('alarms, schedules, workers and queues answer as the role', async () => {
  const a = await apiSignin(srv, 'alice');
  for (const [p, id] of [['/alarms', 'table id="alarms"'], ['/schedules', 'table id="schedules"'], ['/workers', 'table id="workers"'], ['/workers', 'table id="queues"']]) {
    const r = await req(srv, 'GET', p, { cookie: a.cookie });
    assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 300)}`);
    assert.ok(r.text.includes(id), `${p} has ${id}`);
  }
  for (const p of ['/alarms?state=all', '/schedules', '/workers', '/queues']) {
    const r = await req(srv, 'GET', '/api/v1' + p, { cookie: a.cookie });
    assert.equal(r.status, 200, `${p}: ${r.text}`);
    assert.ok(Array.isArray(r.json));
  }
  const w = await req(srv, 'GET', '/api/v1/workers', { cookie: a.cookie });
  assert.equal(w.json.length, 1, 'one worker configured');
});

test('alarms: snooze through the form, close through the API with a reason; another role sees none', async () => {
  const a = await apiSignin(srv, 'alice');
  const st = await req(srv, 'POST', '/api/v1/runs', { cookie: a.cookie, csrf: a.csrf, json: { resource: ids.box, task: 'idle', args: { n: 3 } } });
  const alarm = db.psql('tg', `SET ROLE alice; SELECT toygun.raise_alarm('${st.json.id}', 'stuck', 'the box is stuck')`).split('\n').pop();
  const page = await req(srv, 'GET', '/alarms', { cookie: a.cookie });
  assert.match(page.text, new RegExp(`<tr data-alarm-id="${alarm}">`));
  assert.match(page.text, new RegExp(`<form data-action="snooze" method="post" action="/alarms/${alarm}/snooze">`));
  const sn = await req(srv, 'POST', `/alarms/${alarm}/snooze`, { cookie: a.cookie, form: { _csrf: a.csrf, for: '2 hours' } });
  assert.equal(sn.status, 303, sn.text);
  assert.equal(db.psql('tg', `SELECT state FROM toygun.alarm WHERE id = '${alarm}'`), 'snoozed');
  const b = await apiSignin(srv, 'bob');
  const lb = await req(srv, 'GET', '/api/v1/alarms?state=all', { cookie: b.cookie });
  assert.deepEqual(lb.json, [], "bob sees none of alice's alarms");
  const cb = await req(srv, 'POST', `/api/v1/alarms/${alarm}/close`, { cookie: b.cookie, csrf: b.csrf, json: { reason: 'mine now' } });
  assert.ok([403, 404].includes(cb.status), cb.text);
  const cl = await req(srv, 'POST', `/api/v1/alarms/${alarm}/close`, { cookie: a.cookie, csrf: a.csrf, json: { reason: 'unstuck it' } });
  assert.equal(cl.status, 200, cl.text);
  assert.equal(cl.json.state, 'closed');
  assert.equal(cl.json.closed_reason, 'unstuck it');
});

test('/api/v1/series: the chart data, or 501 naming the missing function', async () => {
  const a = await apiSignin(srv, 'alice');
  const has = db.psql('tg', "SELECT to_regprocedure('toygun.metrics_series(text)') IS NOT NULL");
  const r = await req(srv, 'GET', '/api/v1/series?window=1h', { cookie: a.cookie });
  if (has === 't') {
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.points));
  } else {
    assert.equal(r.status, 501);
    assert.equal(r.json.error.message, 'toygun.metrics_series() is not installed; ALTER EXTENSION toygun UPDATE');
  }
  const bad = await req(srv, 'GET', '/api/v1/series?window=7d', { cookie: a.cookie });
  assert.equal(bad.status, 400);
});

test('/metrics: 401 without Basic auth, the format, only the types the role reads', async () => {
  const none = await req(srv, 'GET', '/metrics');
  assert.equal(none.status, 401);
  assert.match(none.headers.get('www-authenticate'), /^Basic realm="toygun metrics"/);
  const wrong = await req(srv, 'GET', '/metrics', { auth: 'alice:wrong' });
  assert.equal(wrong.status, 401);
  const trusted = await req(srv, 'GET', '/metrics', { auth: 'trusty:whatever' });
  assert.equal(trusted.status, 401, 'SCRAM checked as at sign-in');
  const a = await req(srv, 'GET', '/metrics', { auth: 'alice:pw of alice' });
  assert.equal(a.status, 200, a.text);
  assert.match(a.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?([0-9.e+-]+|NaN|\+Inf|-Inf)( -?\d+)?$/;
  const meta = /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/;
  const lines = a.text.split('\n').filter((l) => l !== '');
  assert.ok(lines.length > 5);
  for (const l of lines) assert.ok(sample.test(l) || meta.test(l), `a valid exposition line: ${l}`);
  assert.match(a.text, /resource_type="box"/);
  assert.doesNotMatch(a.text, /crate/);
  const b = await req(srv, 'GET', '/metrics', { auth: 'bob:pw of bob' });
  assert.match(b.text, /resource_type="crate"/);
  assert.doesNotMatch(b.text, /"box"/);
  const again = await req(srv, 'GET', '/metrics', { auth: 'alice:pw of alice' });
  assert.equal(again.status, 200);
  assert.equal(db.psql('tg', "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'toygun-metrics:alice'"), '1',
    'one cached connection per credentials');
});

test('a session ends when its backend is terminated: next request 401, the sign-in page says so', async () => {
  const s = await apiSignin(srv, 'bob');
  assert.equal((await req(srv, 'GET', '/api/v1/status', { cookie: s.cookie })).status, 200);
  db.psql('tg', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'toygun-web:bob'");
  const r = await poll('the session to end', 30, async () => {
    const x = await req(srv, 'GET', '/api/v1/status', { cookie: s.cookie });
    return x.status === 401 ? x : null;
  });
  assert.match(r.json.error.message, /your session ended \(the PostgreSQL connection closed\)/);
  const p = await req(srv, 'GET', '/runs', { cookie: s.cookie });
  assert.equal(p.status, 303);
  const f = await req(srv, 'GET', p.headers.get('location'), { cookie: s.cookie });
  assert.match(f.text, /Your session ended \(the PostgreSQL connection closed\); sign in again/);
});

test('sign-out ends the session and closes its connection', async () => {
  const s = await apiSignin(srv, 'carol');
  const o = await req(srv, 'POST', '/api/v1/signout', { cookie: s.cookie, csrf: s.csrf });
  assert.equal(o.status, 200);
  assert.equal((await req(srv, 'GET', '/api/v1/session', { cookie: s.cookie })).status, 401);
});

test('--session-idle: a session unused that long ends; the next request says so', async () => {
  const idle = await startServer(db, ['--session-idle', '1']);
  const count = () => db.psql('tg', "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'toygun-web:carol'");
  try {
    const before = count();
    const s = await apiSignin(idle, 'carol');
    assert.equal(count(), String(Number(before) + 1));
    assert.equal((await req(idle, 'GET', '/api/v1/session', { cookie: s.cookie })).status, 200);
    // the server's sweep closes it without a request
    await poll('its connection to close', 10, () => count() === before);
    const r = await req(idle, 'GET', '/api/v1/session', { cookie: s.cookie });
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /your session ended \(it was idle too long\)/);
  } finally {
    assert.equal(await idle.stop(), 0);
  }
});

test('--session-max: a session ends that long after sign-in, however busy', async () => {
  const short = await startServer(db, ['--session-max', '1']);
  try {
    const s = await apiSignin(short, 'alice');
    const r = await poll('the session to reach its age', 10, async () => {
      const x = await req(short, 'GET', '/api/v1/session', { cookie: s.cookie });   // used all along
      return x.status === 401 ? x : null;
    });
    assert.match(r.json.error.message, /your session ended \(it reached its maximum age\)/);
  } finally {
    assert.equal(await short.stop(), 0);
  }
});

test('--max-sessions-per-role: over it, 503 naming the limit', async () => {
  const lim = await startServer(db, ['--max-sessions-per-role', '1']);
  try {
    await apiSignin(lim, 'alice');
    const r = await req(lim, 'POST', '/api/v1/signin', { json: { role: 'alice', password: 'pw of alice' } });
    assert.equal(r.status, 503);
    assert.match(r.json.error.message, /--max-sessions-per-role is 1/);
  } finally {
    assert.equal(await lim.stop(), 0);
  }
});

test('the password is not kept: not found in a heap snapshot of the server after sign-in and a scrape', async () => {
  const dir = fs.mkdtempSync(path.join(WORK, 'heap-'));
  const h = await startServer(db, [], { nodeOptions: ['--heapsnapshot-signal=SIGUSR2'], cwd: dir });
  try {
    const s = await apiSignin(h, 'carol');
    assert.equal((await req(h, 'GET', '/api/v1/status', { cookie: s.cookie })).status, 200);
    assert.equal((await req(h, 'GET', '/metrics', { auth: 'carol:pw of carol' })).status, 200);
    const f = await formSignin(h, 'carol', 'pw of carol');
    assert.equal(f.status, 303);
    h.proc.kill('SIGUSR2');
    const file = await poll('the heap snapshot', 30, () => {
      const x = fs.readdirSync(dir).find((n) => n.endsWith('.heapsnapshot'));
      if (!x) return null;
      const p = path.join(dir, x);
      const size = fs.statSync(p).size;
      return size > 0 && (() => { try { JSON.parse(fs.readFileSync(p, 'utf8')); return p; } catch { return null; } })();
    });
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(text.includes('toygun-web:carol'), 'the snapshot holds the session (a sanity check of the grep)');
    assert.ok(!text.includes('pw of carol'), 'the password string is in the server\'s heap');
  } finally {
    await h.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the outbox: the owner sees each alarm\'s deliveries and the failed ones, redelivers; others see none of it', async () => {
  db.psql('tg', `SELECT toygun.define_channel('hook', 'webhook', '{"url": "http://127.0.0.1:9/x"}');
SELECT toygun.define_channel('hook2', 'webhook', '{"url": "http://127.0.0.1:9/y"}');
SELECT toygun.define_route('kind:ob', 'hook'); SELECT toygun.define_route('kind:ob', 'hook2');`);
  const alarm = db.psql('tg', `SET ROLE alice; SELECT toygun.raise_alarm('${ids.box}', 'ob', 'to two channels')`).split('\n').pop();
  const [failed, done] = db.psql('tg', `SELECT string_agg(id::text, ' ' ORDER BY id) FROM toygun.outbox WHERE alarm_id = '${alarm}'`).split(' ');
  db.psql('tg', `UPDATE toygun.outbox SET attempts = 10, last_error = '404 from 127.0.0.1:9' WHERE id = ${failed};
UPDATE toygun.outbox SET attempts = 1, delivered_at = now() WHERE id = ${done}`);

  const boss = await apiSignin(srv, 'boss');
  const p = await req(srv, 'GET', '/alarms', { cookie: boss.cookie });
  assert.equal(p.status, 200, p.text.slice(0, 300));
  assert.match(p.text, /<section id="outbox-failed"[^>]*>\s*<p><strong>1 failed delivery<\/strong>/, 'a banner counts the failed row');
  assert.match(p.text, new RegExp(`<form data-action="redeliver" method="post" action="/outbox/${failed}/redeliver">`));
  const row = new RegExp(`<tr data-alarm-id="${alarm}">[\\s\\S]*?</tr>`).exec(p.text)[0];
  assert.match(row, /<td class="deliveries">/);
  assert.match(row, new RegExp(`data-outbox-id="${failed}"><span class="channel">hook</span> \\(open\\): <span class="delivery-state">failed after 10 attempts</span> <span class="last_error">404 from 127.0.0.1:9</span>`));
  assert.match(row, new RegExp(`data-outbox-id="${done}"><span class="channel">hook2</span> \\(open\\): <span class="delivery-state">delivered `));

  const alice = await apiSignin(srv, 'alice');
  const pa = await req(srv, 'GET', '/alarms', { cookie: alice.cookie });
  assert.equal(pa.status, 200);
  assert.match(pa.text, new RegExp(`<tr data-alarm-id="${alarm}">`), 'alice sees her alarm');
  assert.doesNotMatch(pa.text, /outbox|deliver|hook/i, 'and nothing of the outbox');
  const la = await req(srv, 'GET', '/api/v1/outbox', { cookie: alice.cookie });
  assert.equal(la.status, 403);
  assert.equal(la.json.error.sqlstate, '42501');
  assert.match(la.json.error.hint, /extension's owner/);
  const ra = await req(srv, 'POST', `/api/v1/outbox/${failed}/redeliver`, { cookie: alice.cookie, csrf: alice.csrf });
  assert.equal(ra.status, 403);

  const lf = await req(srv, 'GET', '/api/v1/outbox?state=failed', { cookie: boss.cookie });
  assert.equal(lf.status, 200, lf.text);
  assert.deepEqual(lf.json.outbox.map((o) => [o.id, o.state, o.channel, o.last_error]), [[failed, 'failed', 'hook', '404 from 127.0.0.1:9']]);
  assert.equal(lf.json.next, null);
  const l1 = await req(srv, 'GET', '/api/v1/outbox?state=all&limit=1', { cookie: boss.cookie });
  assert.deepEqual([l1.json.outbox[0].id, l1.json.next], [done, done], 'a page of one, and a cursor as a row follows');
  const l2 = await req(srv, 'GET', `/api/v1/outbox?state=all&limit=1&after=${done}`, { cookie: boss.cookie });
  assert.deepEqual([l2.json.outbox[0].id, l2.json.next], [failed, null], 'the last page: no cursor');
  const bad = await req(srv, 'GET', '/api/v1/outbox?state=lost', { cookie: boss.cookie });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /outbox state "lost"/);

  const mb = await req(srv, 'GET', '/metrics', { auth: 'boss:pw of boss' });
  assert.match(mb.text, /\ntoygun_outbox_failed 1\n/);
  const ma = await req(srv, 'GET', '/metrics', { auth: 'alice:pw of alice' });
  assert.doesNotMatch(ma.text, /toygun_outbox/);

  const noToken = await req(srv, 'POST', `/outbox/${failed}/redeliver`, { cookie: boss.cookie, form: {} });
  assert.equal(noToken.status, 403, 'the form needs its CSRF token');
  const rf = await req(srv, 'POST', `/outbox/${failed}/redeliver`, { cookie: boss.cookie, form: { _csrf: boss.csrf } });
  assert.equal(rf.status, 303, rf.text);
  assert.match(rf.headers.get('location'), /^\/alarms\?done=/);
  assert.equal(db.psql('tg', `SELECT attempts || ' ' || coalesce(last_error, '-') FROM toygun.outbox WHERE id = ${failed}`), '0 -',
    'redelivered: pending again');
  const after = await req(srv, 'GET', '/alarms', { cookie: boss.cookie });
  assert.doesNotMatch(after.text, /id="outbox-failed"/, 'no banner once nothing failed');
  const twice = await req(srv, 'POST', `/api/v1/outbox/${done}/redeliver`, { cookie: boss.cookie, csrf: boss.csrf });
  assert.equal(twice.status, 409);
  assert.equal(twice.json.error.sqlstate, '55000');
  const none = await req(srv, 'POST', '/api/v1/outbox/999999/redeliver', { cookie: boss.cookie, csrf: boss.csrf });
  assert.equal(none.status, 404);
  assert.match(none.json.error.message, /no outbox row 999999/);
  const ok = await req(srv, 'POST', `/api/v1/outbox/${failed}/redeliver`, { cookie: boss.cookie, csrf: boss.csrf });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual([ok.json.id, ok.json.state, ok.json.attempts], [failed, 'pending', 0]);
});

test('the overview shows a capped count as 5000+; the workers page and /api/v1/flow show toygun.flow', async () => {
  db.psql('tg', `SET ROLE bob; SELECT toygun.define_rate_limit('crate-rl', 10, '1 minute'); RESET ROLE;
SELECT toygun.define_task('crate', 'limited', '{one}', 'idle(toygun.task)', owner => 'bob', rate_limit => 'crate-rl');
WITH r AS (INSERT INTO toygun.resource (id, type, state, step)
               SELECT gen_random_uuid(), 'crate', 'ready', 1 FROM generate_series(1, 5000) RETURNING id)
INSERT INTO toygun.task (id, resource_id, resource_type, name, state, step, run_at)
    SELECT toygun._new_id(), r.id, 'crate', 'idle', 'one', 1, now() + interval '1 year' FROM r`);
  const bob = await apiSignin(srv, 'bob');
  const o = await req(srv, 'GET', '/', { cookie: bob.cookie });
  assert.equal(o.status, 200, o.text.slice(0, 300));
  assert.match(o.text, /<div id="count-live"><span class="n">5000\+<\/span> live<\/div>/);
  const alice = await apiSignin(srv, 'alice');
  const oa = await req(srv, 'GET', '/', { cookie: alice.cookie });
  assert.match(oa.text, /<div id="count-live"><span class="n">\d+<\/span> live<\/div>/, 'alice\'s few runs: exact');
  const f = await req(srv, 'GET', '/api/v1/flow', { cookie: bob.cookie });
  assert.equal(f.status, 200, f.text);
  const lim = f.json.find((x) => x.kind === 'task' && x.task === 'limited');
  assert.deepEqual([lim.resource_type, lim.rate_limit, lim.queue], ['crate', 'crate-rl', 'default']);
  assert.ok(lim.tokens !== null, 'the owner of the limit sees its tokens');
  assert.ok(f.json.some((x) => x.kind === 'queue'), 'and the queues');
  const w = await req(srv, 'GET', '/workers', { cookie: bob.cookie });
  assert.match(w.text, /<table id="flow-queues">/);
  assert.match(w.text, /<table id="flow">[\s\S]*crate-rl[\s\S]*<\/table>/);
});
