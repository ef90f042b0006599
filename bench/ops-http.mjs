// bench/ops-http.mjs: the operator's tools through the HTTP server (issue 18),
// as a person and a scraper use them: sign in (POST /api/v1/signin), then the
// runs list as JSON (GET /api/v1/runs?...) and as the page (GET /runs?...),
// and /metrics with HTTP Basic. bench/ops.sh runs it against its cluster once
// the server is in the tree (tools/server/src/main.mjs); by hand:
//
//   node bench/ops-http.mjs --url http://127.0.0.1:8120 --calls 300 \
//       --role ob_owner:secret --role ob_reader:secret
//
// Timed in this process around each request (the whole round trip over
// loopback: HTTP, the server, PostgreSQL), one request at a time; p50, p95 and
// max in ms per case and role. Prints one table on stdout.
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8018' },
    calls: { type: 'string', default: '300' },
    cap: { type: 'string', default: '20' },
    role: { type: 'string', multiple: true, default: [] },
  },
});
const base = opt.url.replace(/\/$/, '');
const calls = Number(opt.calls);
const capMs = Number(opt.cap) * 1000;

async function signIn(role, password) {
  const r = await fetch(`${base}/api/v1/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: base },
    body: JSON.stringify({ role, password }),
    redirect: 'manual',
  });
  if (r.status !== 200) throw new Error(`sign-in as ${role}: HTTP ${r.status} ${await r.text()}`);
  const cookie = r.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  return { cookie, basic: 'Basic ' + Buffer.from(`${role}:${password}`).toString('base64') };
}

async function get(path, headers) {
  const r = await fetch(`${base}${path}`, { headers, redirect: 'manual' });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${body.slice(0, 300)}`);
  return body;
}

// the cursor of page `page` of an API list (null when the list ends first)
async function cursorOf(query, page, headers) {
  let after = null;
  for (let k = 1; k < page; k++) {
    const q = new URLSearchParams(query);
    if (after) q.set('after', after);
    const j = JSON.parse(await get(`/api/v1/runs?${q}`, headers));
    if (!j.next) return null;
    after = j.next;
  }
  return after;
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  const i = (sorted.length - 1) * p;
  const lo = Math.floor(i), hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

async function time(path, headers, count) {
  const ms = [];
  let rows = '';
  const began = Date.now();
  for (let k = 0; k < calls; k++) {
    const t = process.hrtime.bigint();
    const body = await get(path, headers);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (k === 0) rows = count(body);
    if (k >= 9 && Date.now() - began > capMs) break;
  }
  ms.sort((a, b) => a - b);
  return { n: ms.length, p50: pct(ms, 0.5), p95: pct(ms, 0.95), max: ms[ms.length - 1], rows };
}

const cases = [
  ['no filter (page 1)', {}],
  ['no filter, page 5 by cursor', {}, 5],
  ['type bench01 (50%)', { type: 'bench01' }],
  ['type bench02 (2.9%)', { type: 'bench02' }],
  ['type bench19 (0.1%)', { type: 'bench19' }],
  ['type bench19, page 5 by cursor', { type: 'bench19' }, 5],
  ['type bench20 (0.01%)', { type: 'bench20' }],
  ['task audit (5%)', { task: 'audit' }],
  ['state work (live)', { state: 'work' }],
  ['panicked', { panicked: '1' }],
  ['failing', { failing: '1' }],
  ['due', { due: '1' }],
  ['a resource', { resource: null }],
];

const out = [];
const line = (...c) => out.push(`${c[0].padEnd(9)}  ${c[1].padEnd(46)} ${String(c[2]).padStart(5)} ` +
  c.slice(3, 6).map((v) => (typeof v === 'number' ? v.toFixed(1) : v).padStart(8)).join(' ') +
  ` ${String(c[6]).padStart(5)}`);
line('role', 'case', 'calls', 'p50 ms', 'p95 ms', 'max ms', 'rows');
for (const spec of opt.role) {
  const colon = spec.indexOf(':');
  const role = spec.slice(0, colon);
  const s = await signIn(role, spec.slice(colon + 1));
  const headers = { cookie: s.cookie };
  // a resource with stopped runs of the role's first readable type with many
  const some = JSON.parse(await get('/api/v1/runs?limit=1000', headers)).runs;
  const counts = new Map();
  for (const r of some) counts.set(r.resource_id, (counts.get(r.resource_id) || 0) + 1);
  const resource = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  for (const [name, filter, page] of cases) {
    const query = { ...filter };
    if ('resource' in query) query.resource = resource;
    if (page) {
      const after = await cursorOf(query, page, headers);
      if (after) query.after = after;
    }
    const q = new URLSearchParams(query).toString();
    const api = await time(`/api/v1/runs?${q}`, headers, (b) => JSON.parse(b).runs.length);
    line(role, `API  ${name}`, api.n, api.p50, api.p95, api.max, api.rows);
    const html = await time(`/runs?${q}`, headers, (b) => (b.match(/<tr data-run-id=/g) || []).length);
    line(role, `page ${name}`, html.n, html.p50, html.p95, html.max, html.rows);
  }
  const m = await time('/metrics', { authorization: s.basic }, (b) => b.split('\n').filter((l) => l && !l.startsWith('#')).length);
  line(role, '/metrics (HTTP Basic)', m.n, m.p50, m.p95, m.max, m.rows);
}
process.stdout.write(out.join('\n') + '\n');
