// The dashboard's pages: server-rendered HTML, every action a form POST that
// works without JavaScript. Sign-in and sign-out live here too.
import { Hono } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { connectAs, whoami, AuthError } from './auth.mjs';
import { newToken, checkOrigin, checkToken, CsrfError } from './csrf.mjs';
import { statusOf, HttpError } from './errors.mjs';
import * as q from './queries.mjs';
import { html, page, table, csrfField, attrsView, fmtTime, fmtValue } from './render.mjs';

export function pageRoutes({ config, store, cookies, log }) {
  const app = new Hono();
  const statsCache = new Map();   // [role, readable types] → {at, rows}: toygun.stats is a full scan of live runs
  const flowCache = new Map();    // [role, readable types] → {at, rows}: toygun.flow counts every due row of a queue
  // A result kept for --stats-every, per role and the types it reads now:
  // a grant or a revoke shows at once, and two roles never share one.
  // At most 200 kept, the least recently used dropped first.
  async function cached(cache, client, role, load) {
    const types = (await client.query('SELECT toygun.readable_types() AS t')).rows[0].t;
    const key = JSON.stringify([role, types]);
    let kept = cache.get(key);
    if (!kept || Date.now() - kept.at > config.statsEveryMs) kept = { at: Date.now(), rows: await load() };
    cache.delete(key);
    cache.set(key, kept);
    if (cache.size > 200) cache.delete(cache.keys().next().value);
    return kept;
  }

  const signinForm = (c, { error = null, note = null, status = 200, role = '' } = {}) => {
    // Reuse the browser's pre-session token: a second GET (another tab, a
    // redirect of /favicon.ico) must not invalidate the form already shown.
    const had = getCookie(c, cookies.pre);
    const token = typeof had === 'string' && /^[A-Za-z0-9_-]{43}$/.test(had) ? had : newToken();
    setCookie(c, cookies.pre, token, cookies.options({ maxAge: 600 }));
    return c.html(page({
      title: 'Sign in',
      body: html`<h1>Sign in</h1>
${note ? html`<p class="note">${note}</p>` : ''}
${error ? html`<p class="error">${error}</p>` : ''}
<form id="signin" method="post" action="/signin">
<input type="hidden" name="_csrf" value="${token}">
<label>PostgreSQL role <input name="role" autocomplete="username" required value="${role}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<p class="help">You act as this role in the database: toygun's rights decide what you see and may do.
The password is checked by PostgreSQL with SCRAM and is not kept.</p>`,
    }), status);
  };

  app.get('/signin', (c) => {
    const why = store.endedWhy(getCookie(c, cookies.session));
    if (c.get('session')) return c.redirect('/', 303);
    if (why) deleteCookie(c, cookies.session, cookies.options());
    return signinForm(c, { note: why ? `Your session ended (${why}); sign in again.` : null });
  });

  app.post('/signin', async (c) => {
    const body = await c.req.parseBody();
    const role = typeof body.role === 'string' ? body.role : '';
    try {
      checkOrigin(config, c.req);
      checkToken(getCookie(c, cookies.pre), body._csrf);
    } catch (e) {
      return signinForm(c, { error: e.message, status: 403, role });
    }
    let client;
    try {
      store.checkLimits(role);
      client = await connectAs(config.db, role, body.password, `toygun-web:${role}`);
      const who = await whoami(client);
      const s = store.create(client, role, who);
      log(`signed in: ${role}`);
      deleteCookie(c, cookies.pre, cookies.options());
      setCookie(c, cookies.session, s.id, cookies.options());
      return c.redirect('/', 303);
    } catch (e) {
      if (client && !(e instanceof AuthError)) client.end().catch(() => {});
      log(`sign-in refused (form) for role ${JSON.stringify(role)}: ${e.message}`);
      return signinForm(c, { error: e.message, status: e.status || 500, role });
    } finally {
      body.password = null;
    }
  });

  app.get('/favicon.ico', (c) => c.body(null, 204));

  // Everything below needs a session.
  app.use('*', async (c, next) => {
    const s = c.get('session');
    if (!s) {
      const why = store.endedWhy(getCookie(c, cookies.session));
      return c.redirect(why ? '/signin?ended=1' : '/signin', 303);
    }
    c.header('Cache-Control', 'no-store');
    if (c.req.method === 'POST') {
      const body = await c.req.parseBody();
      c.set('body', body);
      try {
        checkOrigin(config, c.req);
        checkToken(s.csrf, body._csrf);
      } catch (e) {
        return c.html(page({ title: 'Refused', session: s,
          body: html`<h1>Refused</h1><p class="error">${e.message}</p>` }), 403);
      }
    }
    await next();
  });

  const run = (c, fn) => store.run(c.get('session'), fn);
  const errorPage = (c, e) => {
    if (e.ended) return c.redirect('/signin?ended=1', 303);
    const status = statusOf(e);
    if (status >= 500 && status !== 501 && status !== 503) log(`error: ${e.stack || e}`);
    return c.html(page({ title: 'Error', session: c.get('session'),
      body: html`<h1>Error</h1><p class="error">${e.message}</p>
${e.hint ? html`<p class="hint">hint: ${e.hint}</p>` : ''}${e.code ? html`<p class="sqlstate">SQLSTATE ${e.code}</p>` : ''}` }),
      status);
  };

  app.post('/signout', (c) => {
    const s = c.get('session');
    store.end(s.id, null);
    deleteCookie(c, cookies.session, cookies.options());
    return c.redirect('/signin', 303);
  });

  app.get('/', async (c) => {
    const s = c.get('session');
    try {
      const { status, alarms, counts } = await run(c, async (client) => {
        const counts = await cached(statsCache, client, s.role, () => q.stats(client));
        return { status: await q.opsStatus(client), alarms: await q.listAlarms(client, { limit: 10 }), counts };
      });
      const oldest = status.oldest_due_age;
      const win = c.req.query('window') === '24h' ? '24h' : '1h';
      return c.html(page({ title: 'Overview', session: s, body: html`<h1>Overview</h1>
<section class="totals">
<div id="count-live"><span class="n">${capped(status, 'live')}</span> live</div>
<div id="count-due"><span class="n">${capped(status, 'due')}</span> due</div>
<div><span class="n">${status.failing ?? 0}</span> failing</div>
<div><span class="n">${status.panicked ?? 0}</span> panicked</div>
<div><span class="n">${status.open_alarms ?? 0}</span> open alarms</div>
<div id="workers-up"><span class="n">${status.workers?.running ?? 0}/${(status.queues ?? []).reduce((n, x) => n + (x.workers ?? 0), 0)}</span> workers up, ${status.workers?.busy ?? 0} busy${(status.queues ?? []).some((x) => x.paused) ? html`; paused: <strong>${(status.queues ?? []).filter((x) => x.paused).map((x) => x.queue).join(', ')}</strong>` : ''}</div>
<div id="oldest-due">oldest due: <span class="n">${oldest === null || oldest === undefined ? 'nothing due' : `${Number(oldest).toFixed(1)} s`}</span></div>
</section>
<p class="tabs">charts: <a href="/?window=1h" class="${win === '1h' ? 'current' : ''}">last hour</a> <a href="/?window=24h" class="${win === '24h' ? 'current' : ''}">last 24 hours</a></p>
<section class="charts">
<figure><figcaption>Ticks (${win === '1h' ? 'per minute, last hour' : 'per bucket, last 24 hours'})</figcaption><div id="chart-throughput" class="chart" data-series="ticks" data-window="${win}"></div></figure>
<figure><figcaption>Failed ticks (${win === '1h' ? 'per minute, last hour' : 'per bucket, last 24 hours'})</figcaption><div id="chart-failures" class="chart" data-series="failures" data-window="${win}"></div></figure>
</section>
<h2>Counts by type and state</h2>
<p class="asof">as of ${fmtTime(new Date(counts.at))} (refreshed every ${config.statsEveryMs / 1000} s)</p>
${table('counts', [['resource_type', 'type'], ['task', 'task'], ['state', 'state'], ['live', 'count'], ['due', 'due'], ['failing', 'failing'], ['panicked', 'panicked']],
    counts.rows, 'no live runs of the types you may read')}
<h2>Open alarms</h2>
${alarmTable(s, alarms, 'open-alarms', false)}` }));
    } catch (e) { return errorPage(c, e); }
  });

  app.get('/runs', async (c) => {
    const s = c.get('session');
    const f = c.req.query();
    try {
      const { runs, next } = await run(c, (client) => q.listRuns(client, f));
      const types = Object.keys(s.whoami?.types ?? {}).sort();
      const checked = (k) => (f[k] === '1' ? 'checked' : '');
      const nextUrl = next ? '/runs?' + new URLSearchParams({ ...f, after: next }).toString() : null;
      return c.html(page({ title: 'Runs', session: s, body: html`<h1>Runs</h1>
<form id="filters" method="get" action="/runs">
<label>type <select name="type"><option value="">any</option>${types.map((t) => html`<option ${f.type === t ? 'selected' : ''}>${t}</option>`)}</select></label>
<label>task <input name="task" value="${f.task ?? ''}"></label>
<label>state <input name="state" value="${f.state ?? ''}"></label>
<label>resource <input name="resource" value="${f.resource ?? ''}" placeholder="uuid" size="38"></label>
<label><input type="checkbox" name="panicked" value="1" ${checked('panicked')}> panicked</label>
<label><input type="checkbox" name="failing" value="1" ${checked('failing')}> failing</label>
<label><input type="checkbox" name="due" value="1" ${checked('due')}> due</label>
<button type="submit">Filter</button>
</form>
<table id="runs"><thead><tr><th>run</th><th>type</th><th>task</th><th>state</th><th>step</th><th>attempts</th><th>run at</th><th>created</th><th>last error</th></tr></thead>
<tbody>${runs.length ? runs.map((r) => html`<tr data-run-id="${r.id}">
<td class="id"><a href="/runs/${r.id}">${r.id}</a></td><td class="type">${r.resource_type}</td><td class="task">${r.task}</td>
<td class="state">${r.state}</td><td class="step">${r.step}</td><td class="attempts">${r.attempts}</td>
<td class="run_at">${fmtTime(r.run_at)}</td><td class="created">${fmtTime(r.created_at)}</td><td class="last_error">${r.last_error ?? ''}</td></tr>`)
    : html`<tr class="empty"><td colspan="9">no runs match${f.after ? ' on this page' : ''}</td></tr>`}</tbody></table>
${nextUrl ? html`<p><a id="next" href="${nextUrl}">next page →</a></p>` : ''}` }));
    } catch (e) { return errorPage(c, e); }
  });

  const notFound = (c) => c.html(page({ title: 'Run not found', session: c.get('session'),
    body: html`<h1>Run not found</h1><p>No run with this id, or none you may read.</p><p><a href="/runs">Runs</a></p>` }), 404);

  app.get('/runs/:id', async (c) => {
    const s = c.get('session');
    const id = c.req.param('id');
    if (!q.isUuid(id)) return notFound(c);
    let d;
    try {
      d = await run(c, (client) => q.runDetail(client, id));
    } catch (e) {
      if (statusOf(e) === 404) return notFound(c);
      return errorPage(c, e);
    }
    // the flash names one of our actions, never text from the URL (a link could
    // otherwise make the dashboard say anything)
    const done = c.req.query('done');
    const flash = q.ACTIONS.includes(done) ? `${done}: done` : null;
    return c.html(page({ title: `Run ${id}`, session: s, flash, body: runBody(s, d) }));
  });

  app.post('/runs/:id/:action', async (c) => {
    const id = c.req.param('id');
    const action = c.req.param('action');
    if (!q.isUuid(id)) return notFound(c);
    if (!q.ACTIONS.includes(action)) return errorPage(c, new HttpError(404, `no repair action "${action}"`));
    try {
      await run(c, (client) => q.repair(client, id, action, c.get('body')));
    } catch (e) {
      if (statusOf(e) === 404) return notFound(c);
      return errorPage(c, e);
    }
    return c.redirect(`/runs/${id}?done=${action}`, 303);
  });

  app.get('/alarms', async (c) => {
    const s = c.get('session');
    const state = c.req.query('state') || 'open';
    try {
      const { alarms, outbox } = await run(c, async (client) => {
        const alarms = await q.listAlarms(client, { state, limit: 200 });
        // the outbox, to the extension's owner only: others see no trace of it
        if (!await q.outboxOwner(client)) return { alarms, outbox: null };
        return { alarms, outbox: {
          deliveries: await q.deliveriesOf(client, alarms.map((a) => a.id)),
          failed: await q.listOutbox(client, { state: 'failed', limit: 100 }),
        } };
      });
      const done = c.req.query('done');
      return c.html(page({ title: 'Alarms', session: s, flash: ['snooze', 'close', 'redeliver'].includes(done) ? `${done}: done` : null, body: html`<h1>Alarms</h1>
${outbox && outbox.failed.outbox.length ? failedBanner(s, outbox.failed) : ''}
<p class="tabs">${['open', 'active', 'snoozed', 'closed', 'all'].map((x) => html`<a href="/alarms?state=${x}" class="${x === state ? 'current' : ''}">${x}</a> `)}</p>
${alarmTable(s, alarms, 'alarms', true, outbox?.deliveries)}` }));
    } catch (e) { return errorPage(c, e); }
  });

  app.post('/alarms/:id/:action', async (c) => {
    const id = c.req.param('id');
    const action = c.req.param('action');
    try {
      if (action === 'snooze') await run(c, (client) => q.snoozeAlarm(client, id, c.get('body')));
      else if (action === 'close') await run(c, (client) => q.closeAlarm(client, id, c.get('body')));
      else throw new HttpError(404, `no alarm action "${action}" (snooze or close)`);
    } catch (e) { return errorPage(c, e); }
    return c.redirect(`/alarms?done=${action}`, 303);
  });

  app.post('/outbox/:id/:action', async (c) => {
    const id = c.req.param('id');
    try {
      if (c.req.param('action') !== 'redeliver') throw new HttpError(404, `no outbox action "${c.req.param('action')}" (redeliver)`);
      await run(c, (client) => q.redeliver(client, id));
    } catch (e) { return errorPage(c, e); }
    return c.redirect('/alarms?done=redeliver', 303);
  });

  app.get('/schedules', async (c) => {
    const s = c.get('session');
    try {
      const rows = await run(c, (client) => q.schedules(client, c.req.query('type')));
      return c.html(page({ title: 'Schedules', session: s, body: html`<h1>Schedules</h1>
${table('schedules', [['resource_type', 'type'], ['task', 'task'], ['schedule', 'schedule'], ['cron', 'cron'], ['states', 'states'],
    ['owner', 'owner'], ['next_fire_at', 'next firing'], ['last_fired_at', 'last fired'], ['last_started', 'last started'], ['last_error', 'last error']],
  rows, 'no periodic starts you may read')}` }));
    } catch (e) { return errorPage(c, e); }
  });

  app.get('/workers', async (c) => {
    const s = c.get('session');
    try {
      const { w, qs, fl } = await run(c, async (client) => {
        const fl = await cached(flowCache, client, s.role, () => q.flow(client));
        return { w: await q.workers(client), qs: await q.queues(client), fl };
      });
      const limits = fl.rows.filter((x) => x.kind === 'task');
      return c.html(page({ title: 'Workers', session: s, body: html`<h1>Workers</h1>
${table('workers', [['slot', 'slot'], ['pid', 'pid'], ['queue', 'queue'], ['idle', 'idle'], ['started_at', 'started'], ['ticks', 'ticks'],
    ['failures', 'failures'], ['transactions', 'transactions'], ['deaths', 'deaths'], ['last_tick_at', 'last tick']], w, 'no workers running')}
<h2>Queues</h2>
${table('queues', [['queue', 'queue'], ['id', 'id'], ['workers', 'workers'], ['running', 'running'], ['busy', 'busy'], ['paused', 'paused']], qs, 'no queues')}
<h2>Flow control</h2>
<p class="asof">toygun.flow as of ${fmtTime(new Date(fl.at))} (refreshed every ${config.statsEveryMs / 1000} s)</p>
${table('flow-queues', [['queue', 'queue'], ['workers', 'workers'], ['running', 'running'], ['busy', 'busy'], ['paused', 'paused'], ['due', 'due']],
    fl.rows.filter((x) => x.kind === 'queue'), 'no queues')}
${table('flow', [['resource_type', 'type'], ['task', 'task'], ['queue', 'queue'], ['rate_limit', 'rate limit'], ['tokens', 'tokens'],
    ['waiting_for_token', 'waiting for a token'], ['running', 'limit slots held'], ['waiting_for_slot', 'waiting for a slot'], ['due', 'due'], ['paused', 'paused']],
  limits, 'no task type you may read has a rate limit or a concurrency limit')}` }));
    } catch (e) { return errorPage(c, e); }
  });

  return app;
}

// ops_status's count, as "5000+" when it stopped at its cap (live_capped, due_capped)
function capped(status, key) {
  const n = status[key] ?? 0;
  return status[`${key}_capped`] ? `${n}+` : String(n);
}

// The owner's banner: the failed outbox rows, each with a redeliver form.
function failedBanner(s, failed) {
  const n = failed.outbox.length;
  return html`<section id="outbox-failed" class="banner error">
<p><strong>${n}${failed.next ? '+' : ''} failed ${n === 1 && !failed.next ? 'delivery' : 'deliveries'}</strong>: the deliverer gave up on ${n === 1 && !failed.next ? 'this alarm notification' : 'these alarm notifications'}. Fix the channel (toygun.define_channel), then send again.</p>
<table id="outbox-failed-rows"><thead><tr><th>outbox id</th><th>channel</th><th>event</th><th>alarm</th><th>attempts</th><th>last error</th><th></th></tr></thead>
<tbody>${failed.outbox.map((o) => html`<tr data-outbox-id="${o.id}"><td>${o.id}</td><td class="channel">${o.channel}</td><td>${o.event}</td>
<td><code>${o.alarm_id}</code></td><td>${o.attempts}</td><td class="last_error">${o.last_error ?? ''}</td>
<td><form data-action="redeliver" method="post" action="/outbox/${o.id}/redeliver">${csrfField(s)}<button type="submit">Redeliver</button></form></td></tr>`)}</tbody></table>
</section>`;
}

function deliveryLine(o) {
  const what = o.state === 'delivered' ? `delivered ${fmtTime(o.delivered_at)}`
    : o.state === 'failed' ? `failed after ${o.attempts} attempt${o.attempts === 1 ? '' : 's'}`
    : o.next_attempt_at ? `pending, ${o.attempts} attempt${o.attempts === 1 ? '' : 's'}, next ${fmtTime(o.next_attempt_at)}`
    : `pending${o.attempts ? `, ${o.attempts} attempts` : ''}`;
  return html`<li class="delivery ${o.state}" data-outbox-id="${o.id}"><span class="channel">${o.channel}</span> (${o.event}): <span class="delivery-state">${what}</span>${o.last_error && o.state !== 'delivered' ? html` <span class="last_error">${o.last_error}</span>` : ''}</li>`;
}

function alarmTable(s, alarms, id, forms, deliveries = null) {
  return html`<table id="${id}"><thead><tr><th>kind</th><th>type</th><th>task</th><th>object</th><th>state</th><th>count</th><th>last raised</th><th>message</th>${deliveries ? html`<th>deliveries</th>` : ''}${forms ? html`<th>actions</th>` : ''}</tr></thead>
<tbody>${alarms.length ? alarms.map((a) => html`<tr data-alarm-id="${a.id}">
<td class="kind">${a.kind}</td><td>${a.resource_type}</td><td>${a.task ?? ''}</td>
<td>${a.object_kind === 'task' ? html`<a href="/runs/${a.object_id}">${a.object_id}</a>` : a.object_id}</td>
<td class="state">${a.state}${a.snoozed_until && a.state === 'snoozed' ? ` until ${fmtTime(a.snoozed_until)}` : ''}</td>
<td>${a.count}</td><td>${fmtTime(a.last_raised_at)}</td><td class="message">${a.message}</td>
${deliveries ? html`<td class="deliveries">${(deliveries.get(a.id) ?? []).length ? html`<ul>${deliveries.get(a.id).map(deliveryLine)}</ul>` : 'none routed'}</td>` : ''}
${forms ? html`<td>${a.state === 'closed' ? (a.closed_reason ?? '') : html`
<form data-action="snooze" method="post" action="/alarms/${a.id}/snooze">${csrfField(s)}<input name="for" value="1 hour" size="8" aria-label="snooze for"><button type="submit">Snooze</button></form>
<form data-action="close" method="post" action="/alarms/${a.id}/close">${csrfField(s)}<input name="reason" placeholder="reason" aria-label="reason"><button type="submit">Close</button></form>`}</td>` : ''}
</tr>`) : html`<tr class="empty"><td colspan="${8 + (forms ? 1 : 0) + (deliveries ? 1 : 0)}">no alarms</td></tr>`}</tbody></table>`;
}

function runBody(s, d) {
  const r = d.run;
  const may = d.may ?? {};
  const states = d.type?.states ?? [];
  const repairForm = (action, label, extra = html``) => html`<form data-action="${action}" method="post" action="/runs/${r.id}/${action}">
${csrfField(s)}${extra}
<input name="reason" required placeholder="reason (kept in the history)" aria-label="reason">
<button type="submit">${label}</button></form>`;
  return html`<h1>Run <code>${r.id}</code></h1>
<dl class="run">
<dt>type</dt><dd>${r.resource_type ?? ''} / ${r.name ?? r.task ?? ''}</dd>
<dt>state</dt><dd id="run-state">${r.state}</dd>
<dt>resource</dt><dd><a href="/runs?resource=${r.resource_id}">${r.resource_id}</a></dd>
<dt>step</dt><dd>${r.step ?? ''}</dd>
<dt>run at</dt><dd>${fmtTime(r.run_at)}</dd>
<dt>attempts</dt><dd>${r.attempts ?? ''}</dd>
<dt>last error</dt><dd class="last_error">${r.last_error ?? ''}</dd>
</dl>
<h2>Attrs</h2>
${attrsView(d.attrs)}
${may.operate ? html`<h2>Repair</h2><div class="repairs">
${repairForm('retry', 'Retry')}
${repairForm('rewind', 'Rewind', html`<input name="n" type="number" min="1" value="1" aria-label="transitions back">`)}
${repairForm('transition', 'Move', html`<select name="state" aria-label="state">${states.map((x) => html`<option>${x}</option>`)}<option>__stop__</option></select>`)}
${repairForm('stop', 'Stop')}
${repairForm('panic', 'Panic', html`<input name="message" placeholder="message (default: the reason)" aria-label="message">`)}
</div>` : html`<p class="note">You may not operate this type: no repairs.</p>`}
<h2>History</h2>
<ol id="history" class="timeline">${(d.history ?? []).map((h) => html`<li>
<span class="state">${h.to_state ?? h.state}</span>${h.from_state ? html` <span class="from">from ${h.from_state}</span>` : ''} <time>${fmtTime(h.at)}</time>
<span class="note">${h.note ?? ''}</span>
<span class="made_by">${h.made_by ?? ''}${h.worker_pid ? ` (worker ${h.worker_pid})` : ''}</span>
<span class="reason">${h.reason ?? ''}</span></li>`)}</ol>
<h2>Failures</h2>
${table('failures', [['at', 'at'], ['attempt', 'attempt'], ['duration', 'duration'], ['error', 'error'], ['worker_pid', 'worker']],
    (d.failures ?? []).map((f) => ({ ...f, at: fmtTime(f.at) })), 'no failures')}
<h2>Alarms</h2>
${table('alarms', [['kind', 'kind'], ['state', 'state'], ['count', 'count'], ['message', 'message'], ['last_raised_at', 'last raised']],
    (d.alarms ?? []).map((a) => ({ ...a, last_raised_at: fmtTime(a.last_raised_at) })), 'no alarms')}`;
}
