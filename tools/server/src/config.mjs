// The server's options: command-line flags over TOYGUN_* environment over
// defaults. parseConfig() throws a UsageError (main.mjs exits 2 with it).
import { parseArgs } from 'node:util';
import { deliverOptions } from './deliver-options.mjs';

export class UsageError extends Error {}

const OPTIONS = {
  listen: { type: 'string' },
  'db-host': { type: 'string' },
  'db-port': { type: 'string' },
  'db-name': { type: 'string' },
  'public-url': { type: 'string' },
  deliver: { type: 'boolean' },
  'no-deliver': { type: 'boolean' },
  'max-sessions': { type: 'string' },
  'max-sessions-per-role': { type: 'string' },
  'max-signins-pending': { type: 'string' },
  'session-idle': { type: 'string' },
  'session-max': { type: 'string' },
  'stats-every': { type: 'string' },
  'metrics-reauth': { type: 'string' },
  // the deliverer's (deliver-options.mjs reads them)
  'deliverer-db': { type: 'string' },
  'pagerduty-url': { type: 'string' },
  'smtp-url': { type: 'string' },
  'smtp-from': { type: 'string' },
  'deliver-max-attempts': { type: 'string' },
  'deliver-base-ms': { type: 'string' },
  'deliver-senders': { type: 'string' },
  'deliver-poll-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export const USAGE = `usage: node tools/server/src/main.mjs [options]
  --listen HOST:PORT          address to listen on (default 127.0.0.1:8018; port 0 picks one)
  --db-host HOST              PostgreSQL host or socket folder (TOYGUN_DB_HOST, default /var/run/postgresql)
  --db-port PORT              (TOYGUN_DB_PORT, default 5432)
  --db-name NAME              database where toygun is installed (TOYGUN_DB_NAME, default toygun)
  --public-url URL            the address users reach the server at (TOYGUN_PUBLIC_URL); https:// is
                              required when --listen is not a loopback address
  --max-sessions N            signed-in sessions at once, each one PostgreSQL connection (default 50)
  --max-sessions-per-role N   (default 5)
  --max-signins-pending N     sign-ins (and new /metrics connections) checked at once; more are
                              refused with 503 (default 10)
  --session-idle SECONDS      a session unused this long ends (default 1800)
  --session-max SECONDS       a session ends this long after sign-in (default 43200)
  --metrics-reauth SECONDS    /metrics keeps a scraper's connection at most this long, then checks
                              its password by SCRAM again (default 300)
  --deliver / --no-deliver    run the alarm deliverer in this process (TOYGUN_DELIVER=1; see the README)
  --deliverer-db URL          the deliverer's own connection (TOYGUN_DELIVERER_DB; else libpq's PG* environment)
  --pagerduty-url URL         PagerDuty Events v2 endpoint (TOYGUN_PAGERDUTY_URL)
  --smtp-url smtp[s]://...    SMTP server of e-mail channels (TOYGUN_SMTP_URL; without it e-mail rows wait)
  --smtp-from ADDRESS         (TOYGUN_SMTP_FROM)
  --deliver-max-attempts N    attempts before a row is failed (default 10)
  --deliver-base-ms MS        first retry's delay, doubled each attempt up to 1 h (default 5000)
  --deliver-senders N         rows sent at once (default 2)
  --deliver-poll-ms MS        look for due retries at least this often (default 30000)`;

function int(name, value, min) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer of at least ${min}, not "${value}"`);
  return n;
}

export function isLoopback(host) {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function parseConfig(argv, env = process.env) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  const listen = v.listen ?? env.TOYGUN_LISTEN ?? '127.0.0.1:8018';
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(listen);
  if (!m) throw new UsageError(`--listen must be HOST:PORT, not "${listen}"`);
  const host = m[1].replace(/^\[|\]$/g, '');
  const port = int('listen port', m[2], 0);
  const publicUrlText = v['public-url'] ?? env.TOYGUN_PUBLIC_URL ?? null;
  let publicUrl = null;
  if (publicUrlText) {
    try { publicUrl = new URL(publicUrlText); } catch {
      throw new UsageError(`--public-url is not a URL: "${publicUrlText}"`);
    }
    if (publicUrl.protocol !== 'https:' && publicUrl.protocol !== 'http:')
      throw new UsageError('--public-url must start with https:// (or http:// on loopback)');
  }
  const secure = publicUrl?.protocol === 'https:';
  if (!isLoopback(host) && !secure)
    throw new UsageError(`refusing to listen on ${host}, which is not a loopback address, without ` +
      '--public-url https://...: the session cookie and the password of the sign-in form must only ' +
      'travel over TLS (put a TLS proxy in front and give its address as --public-url)');
  let deliverer;
  try {
    deliverer = deliverOptions(argv, env);
  } catch (e) {
    throw new UsageError(e.message);
  }
  return {
    host, port,
    db: {
      host: v['db-host'] ?? env.TOYGUN_DB_HOST ?? '/var/run/postgresql',
      port: int('db-port', v['db-port'] ?? env.TOYGUN_DB_PORT ?? '5432', 1),
      database: v['db-name'] ?? env.TOYGUN_DB_NAME ?? 'toygun',
    },
    publicUrl,
    secure,
    origin: publicUrl ? publicUrl.origin : null,
    maxSessions: int('max-sessions', v['max-sessions'] ?? '50', 1),
    maxSessionsPerRole: int('max-sessions-per-role', v['max-sessions-per-role'] ?? '5', 1),
    maxSigninsPending: int('max-signins-pending', v['max-signins-pending'] ?? '10', 1),
    sessionIdleMs: 1000 * int('session-idle', v['session-idle'] ?? '1800', 1),
    sessionMaxMs: 1000 * int('session-max', v['session-max'] ?? '43200', 1),
    metricsReauthMs: 1000 * int('metrics-reauth', v['metrics-reauth'] ?? '300', 1),
    statsEveryMs: 1000 * int('stats-every', v['stats-every'] ?? '30', 0),
    deliver: deliverer.enabled,
    deliverer,
  };
}
