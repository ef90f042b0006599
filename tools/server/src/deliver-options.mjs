// The deliverer's options from the server's command line and environment:
// main.mjs does `if (d.enabled) startDeliverer(d, log)` with
// `const d = deliverOptions(process.argv.slice(2), process.env)`.
//
//   --deliver / --no-deliver        TOYGUN_DELIVER=1|0         (off by default)
//   --deliverer-db URL              TOYGUN_DELIVERER_DB        (else libpq's PG* environment)
//   --pagerduty-url URL             TOYGUN_PAGERDUTY_URL
//   --smtp-url smtp[s]://...        TOYGUN_SMTP_URL            (without it e-mail rows wait)
//   --smtp-from ADDRESS             TOYGUN_SMTP_FROM
//   --deliver-max-attempts N        TOYGUN_DELIVER_MAX_ATTEMPTS
//   --deliver-base-ms MS            TOYGUN_DELIVER_BASE_MS
//   --deliver-senders N             TOYGUN_DELIVER_SENDERS
//   --deliver-poll-ms MS            TOYGUN_DELIVER_POLL_MS
//
// Flags win over the environment. Other arguments are main.mjs's and are
// left alone. A bad value throws an Error naming the option (exit 2 material).
import { DEFAULTS } from './deliver.mjs';

const VALUED = {
  'deliverer-db': ['connection', 'TOYGUN_DELIVERER_DB', 'url'],
  'pagerduty-url': ['pagerdutyUrl', 'TOYGUN_PAGERDUTY_URL', 'http'],
  'smtp-url': ['smtpUrl', 'TOYGUN_SMTP_URL', 'smtp'],
  'smtp-from': ['smtpFrom', 'TOYGUN_SMTP_FROM', 'address'],
  'deliver-max-attempts': ['maxAttempts', 'TOYGUN_DELIVER_MAX_ATTEMPTS', 'int1'],
  'deliver-base-ms': ['baseMs', 'TOYGUN_DELIVER_BASE_MS', 'int0'],
  'deliver-senders': ['senders', 'TOYGUN_DELIVER_SENDERS', 'int1'],
  'deliver-poll-ms': ['pollMs', 'TOYGUN_DELIVER_POLL_MS', 'int1'],
};

function parse(flag, kind, v) {
  const bad = (must) => { throw new Error(`--${flag} must be ${must} (got ${kind === 'smtp' || kind === 'url' ? 'a value that is not' : JSON.stringify(v)})`); };
  switch (kind) {
    case 'int0': case 'int1': {
      if (!/^\d+$/.test(v) || Number(v) < (kind === 'int1' ? 1 : 0)) bad(`a whole number of at least ${kind === 'int1' ? 1 : 0}`);
      return Number(v);
    }
    case 'http': {
      let u; try { u = new URL(v); } catch { bad('an http:// or https:// URL'); }
      if (!/^https?:$/.test(u.protocol)) bad('an http:// or https:// URL');
      return v;
    }
    case 'smtp': {   // may hold a password: never echoed
      let u; try { u = new URL(v); } catch { bad('an smtp:// or smtps:// URL'); }
      if (!/^smtps?:$/.test(u.protocol) || !u.hostname) bad('an smtp:// or smtps:// URL with a host');
      return v;
    }
    case 'address':
      if (!/^[^@\s<>]+@[^@\s<>]+$/.test(v) && !/^[^<>]*<[^@\s<>]+@[^@\s<>]+>$/.test(v)) bad('an e-mail address');
      return v;
    default:
      if (!v) bad('a connection URL (postgresql://...)');
      return v;
  }
}

export function deliverOptions(argv = [], env = {}) {
  const out = {};
  const fromFlags = {};
  let enabled = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--deliver') { enabled = true; continue; }
    if (a === '--no-deliver') { enabled = false; continue; }
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(a);
    if (!m || !(m[1] in VALUED)) continue;
    let v = m[2];
    if (v === undefined) {
      if (i + 1 >= argv.length) throw new Error(`--${m[1]} needs a value`);
      v = argv[++i];
    }
    fromFlags[m[1]] = v;
  }
  for (const [flag, [key, envName, kind]] of Object.entries(VALUED)) {
    const v = flag in fromFlags ? fromFlags[flag] : env[envName];
    if (v !== undefined && v !== '') out[key] = parse(flag, kind, v);
  }
  if (enabled === null) enabled = /^(1|true|on|yes)$/i.test(env.TOYGUN_DELIVER || '');
  return { ...DEFAULTS, ...out, enabled };
}
