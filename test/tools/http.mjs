// The server under test and HTTP requests to it, shared by the tools' tests
// (api.test.mjs, attack.test.mjs).
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT } from './cluster.mjs';
import { spawnServer } from './spawn-server.mjs';

const MAIN = path.join(ROOT, 'tools/server/src/main.mjs');

// A server on a free port of database tg of cluster db: spawnServer's
// {url, proc, output(), stop()}, and stderr() (its log; the output).
// opts: dbHost (instead of db.dir), nodeOptions, cwd.
export async function startServer(db, extra = [], { dbHost = null, nodeOptions = [], cwd = undefined } = {}) {
  const s = await spawnServer(process.execPath, [...nodeOptions, MAIN, '--listen', '127.0.0.1:0', '--db-host', dbHost ?? db.dir,
    '--db-port', String(db.port), '--db-name', 'tg', ...extra], { cwd });
  return { ...s, stderr: s.output };
}

// One HTTP request; no redirects followed. opts: headers, cookie, csrf,
// origin (default: the server's own; null for none), auth, body, json, form.
export async function req(s, method, p, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.cookie) headers.cookie = opts.cookie;
  if (opts.csrf) headers['x-csrf-token'] = opts.csrf;
  if (method !== 'GET' && opts.origin !== null) headers.origin = opts.origin ?? s.url;
  if (opts.auth) headers.authorization = 'Basic ' + Buffer.from(opts.auth).toString('base64');
  let body = opts.body;
  if (opts.json !== undefined) { headers['content-type'] = 'application/json'; body = JSON.stringify(opts.json); }
  if (opts.form) { headers['content-type'] = 'application/x-www-form-urlencoded'; body = new URLSearchParams(opts.form).toString(); }
  const r = await fetch(s.url + p, { method, headers, body, redirect: 'manual' });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* html or text */ }
  return { status: r.status, headers: r.headers, text, json, setCookie: r.headers.getSetCookie() };
}

export const cookieOf = (setCookie, name) => {
  const c = setCookie.find((x) => x.startsWith(name + '='));
  return c ? c.split(';')[0] : null;
};

// Sign in through the API: {cookie, csrf, setCookie}.
export async function apiSignin(s, role, password = `pw of ${role}`) {
  const r = await req(s, 'POST', '/api/v1/signin', { json: { role, password } });
  assert.equal(r.status, 200, `sign-in as ${role}: ${r.text}`);
  return { cookie: cookieOf(r.setCookie, 'toygun'), csrf: r.json.csrf, setCookie: r.setCookie };
}

// Sign in through the form, as a browser does: GET the form (token and
// pre-session cookie), POST it.
export async function formSignin(s, role, password) {
  const g = await req(s, 'GET', '/signin');
  const token = /name="_csrf" value="([^"]+)"/.exec(g.text)[1];
  const pre = cookieOf(g.setCookie, 'toygun-signin');
  return req(s, 'POST', '/signin', { cookie: pre, form: { _csrf: token, role, password } });
}

// Poll fn until it returns something truthy, at most seconds.
export async function poll(what, seconds, fn) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`waited ${seconds} s for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
