// The JSON API under /api/v1: each route one call of a toygun SQL function
// (queries.mjs) as the session's role; errors as {"error": {...}} with the
// SQLSTATE mapped to an HTTP status (errors.mjs).
import { Hono } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { connectAs, whoami, AuthError } from './auth.mjs';
import { checkOrigin, checkToken } from './csrf.mjs';
import { statusOf, errorBody, HttpError } from './errors.mjs';
import * as q from './queries.mjs';

export function apiRoutes({ config, store, cookies, log }) {
  const app = new Hono();

  const fail = (c, e) => {
    const status = statusOf(e);
    if (status === 500) log(`error: ${e.stack || e}`);
    return c.json(errorBody(e), status);
  };
  const jsonBody = async (c) => {
    const type = c.req.header('content-type') || '';
    if (!type.startsWith('application/json'))
      throw new HttpError(415, 'send a JSON body with Content-Type: application/json');
    try { return (await c.req.json()) ?? {}; } catch {
      throw new HttpError(400, 'the request body is not valid JSON');
    }
  };

  app.use('*', async (c, next) => {
    c.header('Cache-Control', 'no-store');
    await next();
  });

  // Sign-in: no session yet, so no token to check; a same-origin Origin and
  // a JSON body (which a cross-site form cannot send) are required instead.
  app.post('/signin', async (c) => {
    let body, client;
    try {
      checkOrigin(config, c.req);
      body = await jsonBody(c);
      const role = body.role;
      store.checkLimits(role);
      client = await connectAs(config.db, role, body.password, `toygun-web:${role}`);
      const who = await whoami(client);
      const s = store.create(client, role, who);
      log(`signed in (API): ${role}`);
      setCookie(c, cookies.session, s.id, cookies.options());
      return c.json({ role: s.role, csrf: s.csrf });
    } catch (e) {
      if (client && !(e instanceof AuthError)) client.end().catch(() => {});
      log(`sign-in refused (API) for role ${JSON.stringify(body?.role ?? null)}: ${e.message}`);
      return fail(c, e);
    } finally {
      if (body) body.password = null;
    }
  });

  app.use('*', async (c, next) => {
    const s = c.get('session');
    if (!s) {
      const why = store.endedWhy(getCookie(c, cookies.session));
      return c.json(errorBody(new HttpError(401, why ? `your session ended (${why}); sign in again`
        : 'not signed in: POST /api/v1/signin {role, password} first')), 401);
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      try {
        checkOrigin(config, c.req);
        checkToken(s.csrf, c.req.header('x-csrf-token'));
      } catch (e) { return fail(c, e); }
    }
    await next();
  });

  const run = (c, fn) => store.run(c.get('session'), fn);
  const answer = (c, fn) => run(c, fn).then((x) => c.json(x), (e) => fail(c, e));

  app.get('/session', (c) => {
    const s = c.get('session');
    return c.json({ role: s.role, csrf: s.csrf, whoami: s.whoami });
  });
  app.post('/signout', (c) => {
    store.end(c.get('session').id, null);
    deleteCookie(c, cookies.session, cookies.options());
    return c.json({ signed_out: true });
  });

  app.get('/status', (c) => answer(c, (client) => q.opsStatus(client)));
  app.get('/runs', (c) => answer(c, (client) => q.listRuns(client, c.req.query())));
  app.get('/runs/:id', (c) => answer(c, (client) => q.runDetail(client, c.req.param('id'))));
  app.post('/runs', async (c) => {
    try {
      const b = await jsonBody(c);
      return c.json(await run(c, (client) => q.startRun(client, b)), 201);
    } catch (e) { return fail(c, e); }
  });
  app.post('/runs/:id/:action', async (c) => {
    try {
      const b = await jsonBody(c);
      const action = c.req.param('action');
      if (!q.ACTIONS.includes(action)) throw new HttpError(404, `no repair action "${action}" (one of ${q.ACTIONS.join(', ')})`);
      return c.json(await run(c, (client) => q.repair(client, c.req.param('id'), action, b)));
    } catch (e) { return fail(c, e); }
  });
  app.get('/alarms', (c) => answer(c, (client) => q.listAlarms(client, c.req.query())));
  app.post('/alarms/:id/:action', async (c) => {
    try {
      const b = await jsonBody(c);
      const action = c.req.param('action');
      const id = c.req.param('id');
      if (action === 'snooze') return c.json(await run(c, (client) => q.snoozeAlarm(client, id, b)));
      if (action === 'close') return c.json(await run(c, (client) => q.closeAlarm(client, id, b)));
      throw new HttpError(404, `no alarm action "${action}" (snooze or close)`);
    } catch (e) { return fail(c, e); }
  });
  // the outbox: the extension owner's (others: 403, 42501)
  app.get('/outbox', (c) => answer(c, (client) => q.listOutbox(client, c.req.query())));
  app.post('/outbox/:id/:action', async (c) => {
    try {
      if (c.req.param('action') !== 'redeliver') throw new HttpError(404, `no outbox action "${c.req.param('action')}" (redeliver)`);
      return c.json(await run(c, (client) => q.redeliver(client, c.req.param('id'))));
    } catch (e) { return fail(c, e); }
  });
  app.get('/flow', (c) => answer(c, (client) => q.flow(client)));
  app.get('/schedules', (c) => answer(c, (client) => q.schedules(client, c.req.query('type'))));
  app.get('/workers', (c) => answer(c, (client) => q.workers(client)));
  app.get('/queues', (c) => answer(c, (client) => q.queues(client)));
  app.get('/series', (c) => answer(c, (client) => q.series(client, c.req.query('window') || '1h')));
  app.all('*', (c) => c.json(errorBody(new HttpError(404, `no API route ${c.req.method} ${c.req.path}`)), 404));
  return app;
}
