// The alarm deliverer (tools/server/src/deliver.mjs) against receivers this
// test starts on port 0: a webhook, a "Slack" and a "PagerDuty" over
// node:http, and an SMTP server (smtp-server). Alarms are raised with
// toygun.raise_alarm, so the outbox rows are the extension's own. Run as the
// postgres OS user from the repository root with PGBIN, TG_PORT, TG_WORK:
//   tools/server/node_modules/.bin/node --test test/tools/deliver.test.mjs
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { initCluster, ROOT } from './cluster.mjs';
import fs from 'node:fs';
import { startDeliverer, backoffMs, CLAIM_SQL } from '../../tools/server/src/deliver.mjs';
import { deliverOptions } from '../../tools/server/src/deliver-options.mjs';

const require = createRequire(path.join(ROOT, 'tools/server/package.json'));
const pg = require('pg');
const { SMTPServer } = require('smtp-server');

const SECRET = 's3cr3t-path';        // in every channel URL; must never be logged
const ROUTING_KEY = 'R0UT1NGKEY9';
let cluster, db;
const logs = [];
const deliverers = [];
const closers = [];                  // receivers, closed in after() even when a test fails

// poll fn until it returns truthy, at most ms; returns its value
async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`waited ${ms / 1000} s for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const q = async (sql, args) => (await db.query(sql, args)).rows;

function conn(user = 'dlv') { return { host: cluster.dir, port: cluster.port, user, database: 'tg' }; }

function start(options = {}, tag = '') {
  const d = startDeliverer({ connection: conn(), pollMs: 60000, baseMs: 200, ...options },
                           (line) => logs.push(`${tag}${line}`));
  deliverers.push(d);
  return d;
}

// An HTTP receiver on port 0: answer(req, rec, res) replies (default 200).
async function receiver(answer = (req, rec, res) => res.end('ok')) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const rec = { method: req.method, path: req.url, headers: req.headers, at: Date.now(), text: body };
      try { rec.body = JSON.parse(body); } catch { rec.body = null; }
      requests.push(rec);
      r.answer(req, rec, res);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const r = {
    answer, requests, server,
    url: (p) => `http://127.0.0.1:${server.address().port}${p}`,
    byId: (id) => requests.filter((x) => x.headers['x-toygun-outbox-id'] === String(id)),
    close: () => { server.closeAllConnections(); return new Promise((resolve) => server.close(() => resolve())); },
  };
  closers.push(r.close);
  return r;
}

// a channel of one kind routed from one alarm kind (the test's own)
async function channel(name, kind, config) {
  await q('SELECT toygun.define_channel($1, $2, $3)', [name, kind, config]);
  await q('SELECT toygun.define_route($1, $2)', [`kind:${name}`, name]);
}
// raise alarm kind `kind` on n new resources; the outbox rows written, in id order
async function raise(kind, n = 1, message = 'disk 90% full') {
  await q(`SELECT toygun.raise_alarm(toygun.create_resource('box'), $1, $2) FROM generate_series(1, $3)`,
          [kind, message, n]);
  return q(`SELECT o.* FROM toygun.outbox o WHERE o.channel = $1 ORDER BY o.id`, [kind]);
}
const rowsOf = (ch) => q('SELECT * FROM toygun.outbox WHERE channel = $1 ORDER BY id', [ch]);

before(async () => {
  cluster = initCluster('deliver', { settings: ["toygun.database_name = 'tg'", 'toygun.workers = 1'] });
  cluster.psql('postgres', 'CREATE DATABASE tg');
  db = new pg.Client({ host: cluster.dir, port: cluster.port, user: 'postgres', database: 'tg' });
  await db.connect();
  await db.query(`CREATE EXTENSION toygun;
    SELECT toygun.define_resource('box');
    CREATE ROLE dlv LOGIN;
    GRANT SELECT, UPDATE ON toygun.outbox TO dlv;
    GRANT SELECT ON toygun.channel TO dlv;
    CREATE ROLE weak LOGIN;
    GRANT SELECT ON toygun.outbox TO weak;`);
});

after(async () => {
  await Promise.all(deliverers.map((d) => d.stop()));
  await Promise.all(closers.map((c) => c()));
  await db?.end();
  cluster?.stop('immediate');
});

// each test sees only its own rows pending
beforeEach(async () => {
  await Promise.all(deliverers.splice(0).map((d) => d.stop()));
  await q(`UPDATE toygun.outbox SET delivered_at = now(), delivered_by = 'earlier test' WHERE delivered_at IS NULL`);
});

test('each channel kind gets its request as the extension wrote the payload, woken by NOTIFY', async () => {
  const recv = await receiver();
  const mails = [];
  const smtp = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onData(stream, session, cb) {
      let raw = '';
      stream.on('data', (c) => { raw += c; });
      stream.on('end', () => { mails.push({ raw, rcpt: session.envelope.rcptTo.map((a) => a.address),
                                            from: session.envelope.mailFrom.address }); cb(); });
    },
  });
  await new Promise((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => smtp.close(() => resolve())));
  const smtpPort = smtp.server.address().port;
  await channel('hook', 'webhook', { url: recv.url(`/hook/${SECRET}`) });
  await channel('chat', 'slack', { webhook_url: recv.url(`/slack/${SECRET}`) });
  await channel('pd', 'pagerduty', { routing_key: ROUTING_KEY, severity: 'critical' });
  await channel('mail', 'email', { to: ['a@example.com', 'b@example.com'] });
  for (const ch of ['hook', 'chat', 'pd', 'mail']) await q('SELECT toygun.define_route($1, $2)', ['kind:notify', ch]);

  const d = start({ pagerdutyUrl: recv.url(`/pd/${SECRET}`), smtpUrl: `smtp://127.0.0.1:${smtpPort}`,
                    smtpFrom: 'toygun@example.com' });
  assert.equal(await d.ready, true);
  // raised after the start: only NOTIFY wakes it (pollMs is a minute)
  const [{ id: alarm }] = await q(`SELECT toygun.raise_alarm(toygun.create_resource('box'), 'notify', 'disk 90% full') AS id`);
  await q(`SELECT toygun.close_alarm($1, 'freed space')`, [alarm]);
  const rows = await q(`SELECT * FROM toygun.outbox WHERE alarm_id = $1 ORDER BY id`, [alarm]);
  assert.equal(rows.length, 8, 'open and close, to four channels');
  await until('all eight delivered', async () =>
    (await q(`SELECT count(*)::int AS n FROM toygun.outbox WHERE alarm_id = $1 AND delivered_at IS NOT NULL`, [alarm]))[0].n === 8, 15000);

  for (const row of rows) {
    const [now] = await q('SELECT * FROM toygun.outbox WHERE id = $1', [row.id]);
    assert.equal(now.attempts, 1);
    assert.equal(now.delivered_by, `${os.hostname()}:${process.pid}`);
    if (row.channel === 'mail') continue;
    const got = recv.byId(row.id);
    assert.equal(got.length, 1, `one request for row ${row.id}`);
    const [r] = got;
    assert.equal(r.method, 'POST');
    assert.equal(r.path, { hook: `/hook/${SECRET}`, chat: `/slack/${SECRET}`, pd: `/pd/${SECRET}` }[row.channel]);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['user-agent'], 'toygun/0.4');
    assert.equal(r.headers['idempotency-key'], `toygun-outbox-${row.id}`);
    assert.deepEqual(r.body, row.payload, `${row.channel} gets the payload as written`);
    if (row.channel === 'hook') {
      assert.equal(r.headers['x-toygun-event'], row.event);
      assert.equal(r.body.alarm.id, alarm);
    }
    if (row.channel === 'chat') assert.match(r.body.text, /^\[toygun\] alarm (opened|closed): notify on resource /);
    if (row.channel === 'pd') {
      assert.equal(r.body.dedup_key, alarm);
      assert.equal(r.body.routing_key, ROUTING_KEY);
      assert.equal(r.body.event_action, row.event === 'close' ? 'resolve' : 'trigger');
    }
  }
  // the requests came in outbox order per channel: open before close
  for (const ch of ['hook', 'chat', 'pd']) {
    const events = recv.requests.filter((r) => r.path.startsWith(`/${ch === 'chat' ? 'slack' : ch}/`))
      .map((r) => r.body.event ?? r.body.event_action ?? r.body.text.split(' ')[2]);
    assert.equal(events.length, 2);
  }

  await until('two mails', () => mails.length === 2, 5000);
  for (const row of rows.filter((r) => r.channel === 'mail')) {
    const m = mails.find((x) => x.raw.includes(`Message-ID: <outbox-${row.id}@toygun>`));
    assert.ok(m, `mail for row ${row.id} has Message-ID <outbox-${row.id}@toygun>`);
    assert.deepEqual(m.rcpt, ['a@example.com', 'b@example.com']);
    assert.equal(m.from, 'toygun@example.com');
    assert.match(m.raw, new RegExp(`^X-Toygun-Outbox-Id: ${row.id}\\r?$`, 'mi'));
    const subject = /^Subject: (.*(?:\r?\n[ \t].*)*)/m.exec(m.raw)[1].replace(/\r?\n[ \t]/g, ' ');
    assert.equal(subject, row.payload.subject);
    const body = m.raw.split(/\r?\n\r?\n/).slice(1).join('\n\n').replace(/=\r?\n/g, '').replace(/\r\n/g, '\n');
    assert.ok(body.includes(`Alarm: ${alarm}`) && body.includes(row.payload.body.split('\n')[0]),
              'the body is the payload\'s');
  }
  await d.stop();
});

test('e-mail: a refused recipient (550) is permanent; without an SMTP URL e-mail rows wait', async () => {
  const smtp = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onRcptTo(address, session, cb) {
      cb(address.address.startsWith('nobody@') ? Object.assign(new Error('no such mailbox'), { responseCode: 550 }) : null);
    },
    onData(stream, session, cb) { stream.resume(); stream.on('end', () => cb()); },
  });
  await new Promise((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => smtp.close(() => resolve())));
  await channel('nomail', 'email', { to: 'nobody@example.com' });
  const [row] = await raise('nomail');
  const off = start({}, 'no smtp ');
  assert.equal(await off.ready, true);
  await sleep(500);
  const [waiting] = await rowsOf('nomail');
  assert.equal(waiting.attempts, 0, 'not claimed without an SMTP URL');
  assert.ok(logs.some((l) => /^no smtp deliverer: on: .*\(e-mail off: no SMTP URL; e-mail rows wait\)/.test(l)));
  await off.stop();
  start({ smtpUrl: `smtp://127.0.0.1:${smtp.server.address().port}` });
  const r = await until('failed', async () => { const [x] = await rowsOf('nomail'); return x.attempts === 10 ? x : null; });
  assert.equal(r.id, row.id);
  assert.match(r.last_error, /^550 from 127\.0\.0\.1:\d+: .*no such mailbox/);
});

test('a webhook URL with a user and password is sent as Basic auth; stop() lets a send in flight finish and marks it', async () => {
  const recv = await receiver((req, rec, res) => setTimeout(() => res.end('ok'), 700));
  const url = recv.url(`/cred/${SECRET}`).replace('http://', 'http://hook%20user:p%40ss@');
  await channel('cred', 'webhook', { url });
  const d = start();
  assert.equal(await d.ready, true);
  const [row] = await raise('cred');
  await until('the request in flight', () => recv.requests.length === 1, 10000);
  const t0 = Date.now();
  await d.stop();
  const [r] = await rowsOf('cred');
  assert.ok(r.delivered_at, 'marked delivered before stop() resolved');
  assert.equal(r.attempts, 1);
  assert.ok(Date.now() - t0 >= 300, 'stop() waited for the answer');
  assert.equal(recv.requests[0].headers.authorization, `Basic ${Buffer.from('hook user:p@ss').toString('base64')}`);
  assert.equal(recv.requests[0].path, `/cred/${SECRET}`);
  assert.equal(recv.byId(row.id).length, 1);
});

test('503 twice then 200: exactly three requests, spaced by the backoff', async () => {
  let n = 0;
  const recv = await receiver((req, rec, res) => { res.statusCode = ++n <= 2 ? 503 : 200; res.end(n <= 2 ? 'busy' : 'ok'); });
  await channel('flaky', 'webhook', { url: recv.url(`/flaky/${SECRET}`) });
  const [row] = await raise('flaky');
  const base = 400;
  start({ baseMs: base });
  await until('delivered', async () => (await rowsOf('flaky'))[0].delivered_at);
  await sleep(1500);   // nothing more comes
  assert.equal(recv.requests.length, 3);
  assert.ok(recv.requests.every((r) => r.headers['idempotency-key'] === `toygun-outbox-${row.id}`));
  const [a, b, c] = recv.requests.map((r) => r.at);
  // first retry after base (+-20 %), the second after 2 x base (+-20 %); timers and a shared machine add some
  assert.ok(b - a >= base * 0.8 - 20 && b - a < base * 1.2 + 1000, `first gap ${b - a} ms`);
  assert.ok(c - b >= 2 * base * 0.8 - 20 && c - b < 2 * base * 1.2 + 1000, `second gap ${c - b} ms`);
  const [done] = await rowsOf('flaky');
  assert.equal(done.attempts, 3);
  assert.match(done.last_error, /^503 from 127\.0\.0\.1:\d+: busy$/);
  assert.equal(done.next_attempt_at, null);
});

test('one alarm\'s close waits for its open to be delivered to that channel', async () => {
  let n = 0;
  const recv = await receiver((req, rec, res) => { res.statusCode = ++n === 1 ? 503 : 200; res.end(); });
  await channel('order', 'webhook', { url: recv.url(`/order/${SECRET}`) });
  const [{ id: alarm }] = await q(`SELECT toygun.raise_alarm(toygun.create_resource('box'), 'order', 'm') AS id`);
  await q(`SELECT toygun.close_alarm($1, 'fixed')`, [alarm]);
  const [open, close] = await rowsOf('order');
  assert.deepEqual([open.event, close.event], ['open', 'close']);
  start({ baseMs: 300, senders: 2 });
  await until('both delivered', async () => (await rowsOf('order')).every((r) => r.delivered_at));
  // the open failed once and waited 300 ms; the close, free to claim, waited for it
  assert.deepEqual(recv.requests.map((r) => `${r.body.event}:${r.headers['x-toygun-outbox-id']}`),
                   [`open:${open.id}`, `open:${open.id}`, `close:${close.id}`]);
});

test('Retry-After longer than the backoff is honoured', async () => {
  let n = 0;
  const recv = await receiver((req, rec, res) => {
    if (++n === 1) { res.statusCode = 429; res.setHeader('retry-after', '2'); }
    res.end();
  });
  await channel('later', 'slack', { webhook_url: recv.url(`/later/${SECRET}`) });
  await raise('later');
  start({ baseMs: 50 });
  await until('delivered', async () => (await rowsOf('later'))[0].delivered_at);
  assert.equal(recv.requests.length, 2);
  const gap = recv.requests[1].at - recv.requests[0].at;
  assert.ok(gap >= 1950, `waited ${gap} ms for Retry-After: 2`);
});

test('404 and a redirect are permanent after one attempt; the redirect is not followed', async () => {
  const recv = await receiver((req, rec, res) => {
    if (req.url.startsWith('/moved')) { res.statusCode = 301; res.setHeader('location', recv.url(`/elsewhere/${SECRET}`)); }
    else if (req.url.startsWith('/elsewhere')) res.statusCode = 200;
    else res.statusCode = 404;
    res.end(res.statusCode === 404 ? 'no such hook' : '');
  });
  await channel('gone404', 'webhook', { url: recv.url(`/missing/${SECRET}`) });
  await channel('moved', 'pagerduty', { routing_key: ROUTING_KEY });
  await raise('gone404');
  await raise('moved');
  start({ pollMs: 200, baseMs: 10, pagerdutyUrl: recv.url(`/moved/${SECRET}`) });
  const failed = async (ch) => { const [r] = await rowsOf(ch); return r.attempts === 10 ? r : null; };
  const r404 = await until('404 row failed', () => failed('gone404'));
  const r301 = await until('301 row failed', () => failed('moved'));
  await sleep(1000);   // five polls: nothing is sent again
  assert.equal(recv.requests.filter((r) => r.path.startsWith('/missing')).length, 1);
  assert.equal(recv.requests.filter((r) => r.path.startsWith('/moved')).length, 1);
  assert.equal(recv.requests.filter((r) => r.path.startsWith('/elsewhere')).length, 0, 'the redirect is not followed');
  assert.equal(r404.delivered_at, null);
  assert.match(r404.last_error, /^404 from 127\.0\.0\.1:\d+: no such hook$/);
  assert.match(r301.last_error, /^301 redirect from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+ \(redirects are not followed/);
  assert.ok(logs.some((l) => /outbox \d+ .* to channel "gone404" \(webhook\): failed permanently at attempt 1 \(404 from/.test(l)));
});

test('a tenant\'s huge alarm message is not sent: its row fails at once, naming the limit; others go on', async () => {
  const recv = await receiver();
  await channel('huge', 'webhook', { url: recv.url(`/huge/${SECRET}`) });
  await raise('huge', 1, 'x'.repeat(2 * 1024 * 1024));
  await raise('huge', 1, 'a normal message');
  start({ pollMs: 200, baseMs: 10 });
  const rows = await until('both rows done', async () => {
    const r = await rowsOf('huge');
    return r.every((x) => x.delivered_at || x.attempts === 10) ? r : null;
  });
  assert.equal(rows[0].delivered_at, null);
  assert.match(rows[0].last_error, /^payload of \d+ bytes is larger than the deliverer's limit of 262144 bytes/);
  assert.ok(rows[1].delivered_at, 'the next row is delivered');
  assert.equal(recv.requests.length, 1, 'only the normal one was sent');
});

test('an unreachable receiver is retried, then failed at maxAttempts', async () => {
  const recv = await receiver();
  const url = recv.url(`/down/${SECRET}`);
  await recv.close();                    // nothing listens there now
  await channel('down', 'webhook', { url });
  await raise('down');
  start({ baseMs: 20, maxAttempts: 3 });
  const r = await until('failed after 3', async () => { const [x] = await rowsOf('down'); return x.attempts === 3 ? x : null; });
  assert.equal(r.delivered_at, null);
  assert.match(r.last_error, /^network error sending to 127\.0\.0\.1:\d+: ECONNREFUSED$/);
  assert.ok(logs.some((l) => /channel "down" \(webhook\): failed after 3 attempts/.test(l)));
});

test('toygun.list_outbox agrees with the deliverer\'s marks, and toygun.redeliver sends a failed row again, woken by NOTIFY', async () => {
  let fixed = false;
  const recv = await receiver((req, rec, res) => { res.statusCode = fixed ? 200 : 404; res.end(fixed ? 'ok' : 'no such hook'); });
  await channel('mended', 'webhook', { url: recv.url(`/hook/${SECRET}`) });
  const [row] = await raise('mended');
  start({ pollMs: 60000, baseMs: 10 });   // a minute between polls: only NOTIFY wakes it in time
  await until('the 404 row failed', async () => { const [x] = await rowsOf('mended'); return x.last_error ? x : null; });
  const state = async () => (await q("SELECT state FROM toygun.list_outbox('all', 1000) WHERE id = $1", [row.id]))[0].state;
  assert.equal(await state(), 'failed', 'a permanent error: failed, as the deliverer marked it');
  assert.ok((await q("SELECT id FROM toygun.list_outbox('failed')")).some((x) => x.id === row.id));
  fixed = true;
  assert.deepEqual(await q('SELECT toygun.redeliver($1) AS ok', [row.id]), [{ ok: true }]);
  const done = await until('the redelivered row delivered', async () => {
    const [x] = await rowsOf('mended'); return x.delivered_at ? x : null; }, 10000);
  assert.equal(done.attempts, 1, 'attempts counted from 0 again');
  assert.equal(recv.byId(row.id).length, 2, 'sent twice: the refused attempt and the redelivery');
  assert.equal(await state(), 'delivered');
  await assert.rejects(q('SELECT toygun.redeliver($1)', [row.id]), (e) => e.code === '55000');
});

test('two deliverers on 200 rows deliver each exactly once', async () => {
  const recv = await receiver((req, rec, res) => setTimeout(() => res.end('ok'), Math.random() * 4));
  await channel('bulk', 'webhook', { url: recv.url(`/bulk/${SECRET}`) });
  await raise('bulk', 100);
  const a = start({ name: 'deliverer-a' }, 'a ');
  const b = start({ name: 'deliverer-b', connection: `postgresql://dlv@/tg?host=${encodeURIComponent(cluster.dir)}&port=${cluster.port}` }, 'b ');
  assert.equal(await a.ready, true);
  assert.equal(await b.ready, true);
  await raise('bulk', 100);              // and while they run
  const rows = await rowsOf('bulk');
  assert.equal(rows.length, 200);
  await until('200 delivered', async () =>
    (await q(`SELECT count(*)::int AS n FROM toygun.outbox WHERE channel = 'bulk' AND delivered_at IS NOT NULL`))[0].n === 200);
  await sleep(500);
  const seen = new Map();
  for (const r of recv.requests) seen.set(r.headers['x-toygun-outbox-id'], (seen.get(r.headers['x-toygun-outbox-id']) || 0) + 1);
  assert.equal(recv.requests.length, 200);
  assert.equal(seen.size, 200);
  for (const row of rows) assert.equal(seen.get(row.id), 1, `row ${row.id} sent once`);
  const by = await q(`SELECT delivered_by, count(*)::int AS n, max(attempts) AS max FROM toygun.outbox
                       WHERE channel = 'bulk' GROUP BY 1 ORDER BY 1`);
  assert.deepEqual(by.map((x) => x.delivered_by), ['deliverer-a', 'deliverer-b'], 'both took part');
  assert.ok(by.every((x) => x.max === 1));
});

test('a deliverer killed while a receiver holds its request re-sends only that row, with the same key', async () => {
  let hold = true;
  let held = null;
  const recv = await receiver((req, rec, res) => {
    if (hold && recv.requests.length === 3) { held = res; return; }   // the third row: no answer
    res.end('ok');
  });
  await channel('crash', 'webhook', { url: recv.url(`/crash/${SECRET}`) });
  const rows = await raise('crash', 3);
  const opts = JSON.stringify({ connection: conn(), senders: 1, pollMs: 60000, name: 'runner' });
  const runner = () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'test/tools/deliver-runner.mjs'), opts],
                        { stdio: ['ignore', 'pipe', 'inherit'] });
    child.out = '';
    child.stdout.on('data', (c) => { child.out += c; });
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal || code)));
    return child;
  };
  const first = runner();
  await until('the third request held', () => held);
  const [r1, r2, r3] = rows;
  await until('rows 1 and 2 marked', async () =>
    (await q(`SELECT count(*)::int AS n FROM toygun.outbox WHERE id = ANY ($1) AND delivered_at IS NOT NULL`, [[r1.id, r2.id]]))[0].n === 2);
  first.kill('SIGKILL');
  assert.equal(await first.exited, 'SIGKILL');
  // its connection is gone: the row is free and unmarked
  await until('the killed backend gone', async () =>
    (await q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'dlv' AND application_name = 'toygun-deliverer'`))[0].n === 0, 10000);
  const [mid] = await q('SELECT * FROM toygun.outbox WHERE id = $1', [r3.id]);
  assert.equal(mid.delivered_at, null);
  assert.equal(mid.attempts, 0);
  hold = false;
  held.destroy?.() ?? held.socket?.destroy();
  const second = runner();
  await until('row 3 delivered', async () => (await q('SELECT delivered_at FROM toygun.outbox WHERE id = $1', [r3.id]))[0].delivered_at);
  second.kill('SIGTERM');
  assert.equal(await second.exited, 0);
  assert.match(second.out, /ready true/);
  assert.equal(recv.byId(r1.id).length, 1);
  assert.equal(recv.byId(r2.id).length, 1);
  const again = recv.byId(r3.id);
  assert.equal(again.length, 2, 'the killed row was sent again, once');
  assert.deepEqual(again.map((r) => r.headers['idempotency-key']), [`toygun-outbox-${r3.id}`, `toygun-outbox-${r3.id}`]);
  const [end] = await q('SELECT * FROM toygun.outbox WHERE id = $1', [r3.id]);
  assert.equal(end.attempts, 1);
  assert.equal(end.delivered_by, 'runner');
});

test('connections ended by the server are made again, and delivery goes on', async () => {
  const recv = await receiver();
  await channel('again', 'webhook', { url: recv.url(`/again/${SECRET}`) });
  const d = start({ reconnectMs: 100 });
  assert.equal(await d.ready, true);
  const count = async () => (await q(`SELECT count(*)::int AS n FROM pg_stat_activity
                                       WHERE application_name = 'toygun-deliverer' AND usename = 'dlv'`))[0].n;
  await until('three connections', async () => await count() === 3);
  const old = (await q(`SELECT array_agg(pid) AS p FROM pg_stat_activity WHERE application_name = 'toygun-deliverer'`))[0].p;
  await q(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'toygun-deliverer'`);
  // the listener comes back and wakes the senders, whose claims find their connections gone
  await until('three new connections', async () => (await q(`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'toygun-deliverer' AND usename = 'dlv' AND NOT pid = ANY ($1)`, [old]))[0].n === 3
    && (await q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY ($1)`, [old]))[0].n === 0, 10000);
  const [row] = await raise('again');
  await until('delivered after the reconnect', async () => (await rowsOf('again'))[0].delivered_at, 10000);
  assert.equal(recv.byId(row.id).length, 1);
  assert.ok(logs.some((l) => /deliverer: listener: lost its connection/.test(l)));
});

test('a dropped channel\'s rows end failed, naming the channel', async () => {
  const recv = await receiver();
  await channel('gone', 'webhook', { url: recv.url(`/gone/${SECRET}`) });
  const [row] = await raise('gone');
  await q(`SELECT toygun.drop_channel('gone')`);
  const d = start();
  assert.equal(await d.ready, true);
  const r = await until('marked', async () => { const [x] = await rowsOf('gone'); return x.attempts === 10 ? x : null; }, 10000);
  assert.equal(r.id, row.id);
  assert.equal(r.delivered_at, null);
  assert.equal(r.last_error, 'channel gone was dropped');
  assert.equal(recv.requests.length, 0);
  assert.ok(logs.some((l) => l === `deliverer: outbox ${row.id} to channel "gone": failed: channel gone was dropped`));
});

test('a role without the grants: the deliverer stays off and says what is missing', async () => {
  const before = logs.length;
  const d = start({ connection: conn('weak') });
  assert.equal(await d.ready, false);
  await d.stop();
  const said = logs.slice(before).join('\n');
  assert.match(said, /deliverer: off: role "weak" lacks UPDATE on toygun\.outbox and SELECT on toygun\.channel in database "tg"/);
  assert.match(said, /GRANT UPDATE ON toygun\.outbox TO "weak"; GRANT SELECT ON toygun\.channel TO "weak";/);
});

test('deliverOptions: flags over environment, defaults, errors naming the option', () => {
  const o = deliverOptions(['--listen', '127.0.0.1:0', '--deliver', '--deliverer-db', 'postgresql://d@h/db',
                            '--deliver-max-attempts=4', '--smtp-url', 'smtp://u:p@mail:25'],
                           { TOYGUN_DELIVER_BASE_MS: '100', TOYGUN_DELIVER_MAX_ATTEMPTS: '7', TOYGUN_PAGERDUTY_URL: 'http://127.0.0.1:1/pd' });
  assert.equal(o.enabled, true);
  assert.equal(o.connection, 'postgresql://d@h/db');
  assert.equal(o.maxAttempts, 4);
  assert.equal(o.baseMs, 100);
  assert.equal(o.pagerdutyUrl, 'http://127.0.0.1:1/pd');
  assert.equal(o.smtpUrl, 'smtp://u:p@mail:25');
  assert.equal(o.senders, 2);
  assert.equal(o.pollMs, 30000);
  const d = deliverOptions([], {});
  assert.equal(d.enabled, false);
  assert.equal(d.pagerdutyUrl, 'https://events.pagerduty.com/v2/enqueue');
  assert.equal(d.maxAttempts, 10);
  assert.equal(d.baseMs, 5000);
  assert.equal(deliverOptions(['--no-deliver'], { TOYGUN_DELIVER: '1' }).enabled, false);
  assert.equal(deliverOptions([], { TOYGUN_DELIVER: 'on' }).enabled, true);
  assert.throws(() => deliverOptions(['--deliver-max-attempts', '0'], {}), /--deliver-max-attempts must be a whole number of at least 1/);
  assert.throws(() => deliverOptions(['--smtp-url', 'http://u:pw@x'], {}), (e) => /--smtp-url must be an smtp/.test(e.message) && !e.message.includes('pw'));
  assert.throws(() => deliverOptions(['--pagerduty-url'], {}), /--pagerduty-url needs a value/);
});

test('backoff: min(base x 2^attempts, 1 h), +-20 %, Retry-After when longer', () => {
  const o = { baseMs: 5000, maxBackoffMs: 3600000 };
  assert.equal(backoffMs(1, o, null, () => 0.5), 5000);
  assert.equal(backoffMs(2, o, null, () => 0.5), 10000);
  assert.equal(backoffMs(4, o, null, () => 0), 32000);
  assert.equal(backoffMs(4, o, null, () => 1), 48000);
  assert.equal(backoffMs(20, o, null, () => 0.5), 3600000);
  assert.equal(backoffMs(1, o, 60000, () => 0.5), 60000);
  assert.equal(backoffMs(3, o, 1000, () => 0.5), 20000);
  assert.equal(backoffMs(1, o, 99 * 3600000, () => 0.5), 3600000);
});

test('specs/outbox_claim.spec tests the deliverer\'s own claim statement', () => {
  const norm = (x) => x.replace(/--[^\n]*/g, '').replace(/\s+/g, ' ').replace(/;\s*$/, '').trim();
  const ours = norm(CLAIM_SQL.slice(CLAIM_SQL.indexOf('FROM toygun.outbox o'))
    .replaceAll('$1', '10').replace('$2::text[]', "ARRAY['webhook', 'slack', 'pagerduty', 'email']::text[]"));
  const spec = fs.readFileSync(path.join(ROOT, 'specs/outbox_claim.spec'), 'utf8');
  for (const step of ['claim1', 'claim2']) {
    const body = new RegExp(`step ${step}\\t\\{([^}]*)\\}`).exec(spec)[1];
    assert.equal(norm(body.slice(body.indexOf('FROM toygun.outbox o'))), ours, step);
  }
});

// the server process itself: main.mjs with --deliver runs the deliverer with
// the flags deliver-options.mjs reads, and a misspelt flag is refused
const MAIN = path.join(ROOT, 'tools/server/src/main.mjs');
function serve(args) {
  const proc = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--db-host', cluster.dir,
                                        '--db-port', String(cluster.port), '--db-name', 'tg', ...args],
                     { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { text: '', err: '' };
  proc.stdout.on('data', (c) => { out.text += c; });
  proc.stderr.on('data', (c) => { out.err += c; });
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  closers.push(() => { proc.kill('SIGTERM'); return exited; });
  return { proc, out, exited };
}

test('the server started with --deliver sends the outbox (main.mjs, its flags)', async () => {
  const recv = await receiver();
  await channel('served', 'webhook', { url: recv.url(`/${SECRET}/served`) });
  const dsn = `postgresql://dlv@/tg?host=${encodeURIComponent(cluster.dir)}&port=${cluster.port}`;
  const s = serve(['--deliver', '--deliverer-db', dsn, '--deliver-base-ms', '200', '--deliver-poll-ms', '1000']);
  await until('the server to listen', () => /listening on http/.test(s.out.text), 20000);
  const rows = await raise('served', 2);
  await until('both rows at the receiver', () => rows.every((r) => recv.byId(r.id).length === 1));
  await until('both rows marked', async () =>
    (await rowsOf('served')).every((r) => r.delivered_at && r.delivered_by));
  s.proc.kill('SIGTERM');
  assert.equal(await s.exited, 0);
  assert.ok(!s.out.err.includes(SECRET), 'the server logged a channel URL');
});

test('the server refuses a misspelt option with exit 2, naming it', async () => {
  const s = serve(['--deliver-max-attempt', '3']);
  assert.equal(await s.exited, 2);
  assert.match(s.out.err, /deliver-max-attempt/);
});

test('no log line or last_error holds a channel\'s URL, password or key', async () => {
  assert.ok(logs.length > 50);
  const leaks = logs.filter((l) => [SECRET, ROUTING_KEY, 'p@ss', 'p%40ss'].some((x) => l.includes(x)));
  assert.deepEqual(leaks, []);
  assert.ok((await q(`SELECT count(*)::int AS n FROM toygun.outbox WHERE last_error IS NOT NULL`))[0].n > 5);
  assert.deepEqual(await q(`SELECT id, last_error FROM toygun.outbox
                             WHERE last_error ~ $1`, [`${SECRET}|${ROUTING_KEY}|p@ss|p%40ss`]), []);
});
