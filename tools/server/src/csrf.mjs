// CSRF protection: a synchronizer token per session (sent in a <meta> tag
// and each form's _csrf field, or the X-CSRF-Token header) compared in
// constant time, and the request's Origin (or Sec-Fetch-Site) checked to be
// this server's. The sign-in form has no session yet: it gets a short-lived
// pre-session token in a cookie as well as in the form (double submit).
import { randomBytes, timingSafeEqual } from 'node:crypto';

export class CsrfError extends Error {
  constructor(message) { super(message); this.name = 'CsrfError'; this.status = 403; this.errorCode = 'csrf'; }
}

export function newToken() { return randomBytes(32).toString('base64url'); }

export function sameToken(expected, given) {
  if (typeof expected !== 'string' || typeof given !== 'string' || given === '') return false;
  const a = Buffer.from(expected), b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

// The origin this server is reached at: --public-url's, or on loopback the
// request's own Host (a cross-site page cannot make the browser send our
// Host with its Origin).
export function expectedOrigin(config, req) {
  if (config.origin) return config.origin;
  const host = req.header('host');
  return host ? `http://${host}` : null;
}

export function checkOrigin(config, req) {
  const origin = req.header('origin');
  const expected = expectedOrigin(config, req);
  const site = req.header('sec-fetch-site');
  // A browser sends "Origin: null" for some same-origin requests (a
  // privacy-sensitive context); Sec-Fetch-Site, which pages cannot set,
  // then says where the request came from.
  if (origin && origin !== 'null') {
    if (origin !== expected)
      throw new CsrfError(`the request came from another site (Origin ${origin}, expected ${expected}); ` +
        'changes are accepted only from the dashboard itself');
    return;
  }
  if (site === 'same-origin') return;
  throw new CsrfError('the request has no Origin header (nor Sec-Fetch-Site: same-origin); ' +
    `send Origin: ${expected} with every POST`);
}

export function checkToken(expected, given) {
  if (!sameToken(expected, given))
    throw new CsrfError("the request's CSRF token is missing or wrong; reload the page " +
      '(API clients: send the csrf of GET /api/v1/session as the X-CSRF-Token header)');
}
