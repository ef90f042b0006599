// One HTTP POST of an outbox row's payload, and what its answer means for the
// row: delivered (2xx), retry (a network error, a timeout, 408, 429, 5xx;
// Retry-After read), or permanent (a redirect, any other 4xx). Used by the
// webhook, slack and pagerduty channels. Never puts the URL in a message:
// webhook URLs carry secrets in their paths; only the host is named.

export const USER_AGENT = 'toygun/0.4';
const BODY_SHOWN = 200;         // characters of an error answer kept in last_error
const BODY_READ = 64 * 1024;    // bytes read of any answer (the rest is dropped)

// The host (and port) of a URL, for messages; never its path, query or user.
export function hostOf(url) {
  try { return new URL(url).host || '(no host)'; } catch { return '(not a URL)'; }
}

// Retry-After is seconds or an HTTP date; its delay in ms, or null.
export function retryAfterMs(value, now = Date.now()) {
  if (value == null) return null;
  const v = String(value).trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

async function readSome(res) {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks = [];
  let n = 0;
  try {
    while (n < BODY_READ) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.length;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString('utf8');
}

function oneLine(s) {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > BODY_SHOWN ? t.slice(0, BODY_SHOWN) + '...' : t;
}

// A network error's short name: the cause's code (ECONNREFUSED, ENOTFOUND,
// UND_ERR_SOCKET ...) or its message.
function networkError(err) {
  const c = err.cause || err;
  return c.code || c.message || String(c);
}

// POST body (an object, sent as JSON) to url with headers; resolves to
// { result: 'delivered'|'retry'|'permanent', detail, retryAfterMs? }.
// detail is one line naming the host and the status or error, never the URL.
export async function postJson(url, body, { headers = {}, timeoutMs = 10000, signal } = {}) {
  let target;
  try { target = new URL(url); } catch { return { result: 'permanent', detail: 'the channel\'s URL is not valid' }; }
  const host = target.host;
  const h = { 'content-type': 'application/json', 'user-agent': USER_AGENT, ...headers };
  // fetch refuses a URL with credentials in it: send them as Basic auth
  if (target.username || target.password) {
    h.authorization = 'Basic ' + Buffer.from(
      `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`).toString('base64');
    target.username = ''; target.password = '';
  }
  const timeout = AbortSignal.timeout(timeoutMs);
  let res;
  try {
    res = await fetch(target, {
      method: 'POST', headers: h, body: JSON.stringify(body), redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (err) {
    if (timeout.aborted) return { result: 'retry', detail: `no answer from ${host} within ${timeoutMs / 1000} s` };
    if (signal?.aborted) return { result: 'retry', detail: `send to ${host} cancelled: the deliverer is stopping` };
    return { result: 'retry', detail: `network error sending to ${host}: ${networkError(err)}` };
  }
  let text = '';
  try { text = await readSome(res); } catch { /* the status decides */ }
  const status = res.status;
  const said = text ? `: ${oneLine(text)}` : '';
  if (status >= 200 && status < 300) return { result: 'delivered', detail: `${status} from ${host}` };
  if (status >= 300 && status < 400) {
    const loc = res.headers.get('location');
    return { result: 'permanent',
             detail: `${status} redirect from ${host}${loc ? ` to ${hostOf(new URL(loc, target).href)}` : ''} (redirects are not followed: give the channel its final URL)` };
  }
  if (status === 408 || status === 429 || status >= 500) {
    return { result: 'retry', detail: `${status} from ${host}${said}`,
             retryAfterMs: retryAfterMs(res.headers.get('retry-after')) };
  }
  if (status >= 400) return { result: 'permanent', detail: `${status} from ${host}${said}` };
  return { result: 'retry', detail: `unexpected status ${status} from ${host}${said}` };
}

// The headers that let a receiver drop a second copy of one outbox row.
export function idHeaders(row) {
  return { 'idempotency-key': `toygun-outbox-${row.id}`, 'x-toygun-outbox-id': String(row.id) };
}
