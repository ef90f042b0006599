// toygun-server: the dashboard, the JSON API, /metrics (and, with --deliver,
// the alarm deliverer) in one process. Usage: main.mjs --help.
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { secureHeaders } from 'hono/secure-headers';
import { bodyLimit } from 'hono/body-limit';
import { getCookie } from 'hono/cookie';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseConfig, UsageError, USAGE, isLoopback } from './config.mjs';
import { SessionStore } from './session.mjs';
import { setMaxPending } from './auth.mjs';
import { pageRoutes } from './pages.mjs';
import { apiRoutes } from './api.mjs';
import { metricsRoutes } from './metrics.mjs';
import { startDeliverer } from './deliver.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// One line per message: control characters (a typed role name's newline, in an
// error that quotes it) are written as \xNN, so nobody can forge log lines.
const oneLine = (msg) => String(msg).replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
const log = (msg) => process.stderr.write(`${new Date().toISOString()} ${oneLine(msg)}\n`);

let config;
try {
  config = parseConfig(process.argv.slice(2));
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  process.stderr.write(`toygun-server: ${e.message}\n${USAGE}\n`);
  process.exit(2);
}
if (config.help) { process.stdout.write(`${USAGE}\n`); process.exit(0); }

// Cookies: __Host- and Secure behind https; plain names on loopback http,
// where browsers refuse Secure cookies.
const cookies = {
  session: config.secure ? '__Host-toygun' : 'toygun',
  pre: config.secure ? '__Host-toygun-signin' : 'toygun-signin',
  options: (extra = {}) => ({ path: '/', httpOnly: true, sameSite: 'Strict', secure: config.secure, ...extra }),
};
if (!config.secure)
  log('plain HTTP on loopback: the session cookie is "toygun", without Secure (give --public-url https://... behind a TLS proxy)');

setMaxPending(config.maxSigninsPending);
const store = new SessionStore({
  max: config.maxSessions, maxPerRole: config.maxSessionsPerRole,
  idleMs: config.sessionIdleMs, maxMs: config.sessionMaxMs, log,
});

// Static files: ours and uPlot's dist, read once.
const STATIC = {
  'app.css': [path.join(HERE, '../static/app.css'), 'text/css; charset=utf-8'],
  'app.js': [path.join(HERE, '../static/app.js'), 'text/javascript; charset=utf-8'],
  'uPlot.iife.min.js': [path.join(HERE, '../node_modules/uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  'uPlot.min.css': [path.join(HERE, '../node_modules/uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8'],
};
const files = {};
for (const [name, [file, type]] of Object.entries(STATIC)) {
  if (!existsSync(file)) { process.stderr.write(`toygun-server: missing ${file} (run npm ci in tools/server)\n`); process.exit(1); }
  files[name] = { body: readFileSync(file), type };
}

const app = new Hono();
app.use('*', secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'],
    connectSrc: ["'self'"], frameAncestors: ["'none'"], formAction: ["'self'"], baseUri: ["'none'"], objectSrc: ["'none'"],
  },
  // same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null"
  // with the dashboard's own form posts; other sites still get no Referer.
  referrerPolicy: 'same-origin',
  strictTransportSecurity: config.secure ? 'max-age=31536000' : false,
  crossOriginEmbedderPolicy: false,
}));
// DNS rebinding: without --public-url the Origin checked on changes is the
// request's own Host, and a hostile site whose name resolves to 127.0.0.1
// would be "same origin" with itself. So then only loopback names are served.
// (With --public-url, Origins must be its origin: a rebound name fails that.)
if (!config.publicUrl) {
  app.use('*', async (c, next) => {
    const host = (c.req.header('host') || '').replace(/:\d+$/, '');
    if (!isLoopback(host))
      return c.text(`this server answers only to a loopback name (localhost, 127.0.0.1, [::1]), not "${host}"; ` +
        'give --public-url for the name people use\n', 421);
    await next();
  });
}

// Bodies: a sign-in needs a few KiB, anything else at most 1 MiB (a transition's
// attrs); larger ones are refused with 413 before they are read (Content-Length)
// or as soon as they pass the limit (chunked), so nobody unsigned-in can make
// the server hold megabytes or send them to PostgreSQL as a "password".
export const SIGNIN_BODY_MAX = 8 * 1024;
export const BODY_MAX = 1024 * 1024;
const tooLarge = (max) => (c) => {
  const message = `the request body is larger than ${max} bytes, the server's limit for ${c.req.path}`;
  if (c.req.path.startsWith('/api/'))
    return c.json({ error: { sqlstate: null, message, detail: null, hint: null, code: 'too_large' } }, 413);
  return c.text(`${message}\n`, 413);
};
for (const p of ['/signin', '/api/v1/signin'])
  app.use(p, bodyLimit({ maxSize: SIGNIN_BODY_MAX, onError: tooLarge(SIGNIN_BODY_MAX) }));
app.use('*', bodyLimit({ maxSize: BODY_MAX, onError: tooLarge(BODY_MAX) }));
app.use('*', async (c, next) => {
  c.set('session', store.get(getCookie(c, cookies.session)));
  await next();
});
app.get('/static/:name', (c) => {
  const name = c.req.param('name');
  const f = Object.hasOwn(files, name) ? files[name] : null;   // not __proto__ & co.
  if (!f) return c.text('not found\n', 404);
  c.header('Cache-Control', 'public, max-age=3600');
  return c.body(f.body, 200, { 'Content-Type': f.type });
});
app.get('/healthz', (c) => c.text('ok\n'));
const metrics = metricsRoutes({ config, log });
app.route('/', metrics);
app.route('/api/v1', apiRoutes({ config, store, cookies, log }));
app.route('/', pageRoutes({ config, store, cookies, log }));

const deliverer = config.deliver ? startDeliverer(config.deliverer, log) : null;

const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info) => {
  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  process.stdout.write(`toygun-server listening on http://${host}:${info.port}\n`);
});
server.on('error', (e) => {
  process.stderr.write(`toygun-server: cannot listen on ${config.host}:${config.port}: ${e.message}\n`);
  process.exit(1);
});

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: closing sessions`);
  server.close();
  await Promise.allSettled([store.closeAll(), metrics.closeAll(), deliverer?.stop()]);
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
