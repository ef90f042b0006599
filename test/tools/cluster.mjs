// Temporary clusters for the tools' tests (test/tools/*.test.mjs), made by
// test/lib/cluster.sh's functions so they are set up exactly as the other
// suites' are: DIR/data, a Unix socket in DIR, no TCP listener, toygun and
// pg_cron preloaded. Run as the postgres OS user; PGBIN and TG_PORT as for
// cluster.sh; TG_WORK names the folder the clusters go in.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PORT = Number(process.env.TG_PORT || 5432);
export const WORK = process.env.TG_WORK || '/tmp/toygun-tools';

function sh(script, args) {
  return execFileSync('bash', ['-c', `source "${ROOT}/test/lib/cluster.sh"; ${script}`, 'sh', ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// A cluster in WORK/name: settings are postgresql.conf lines; hba lines go
// before the trust lines initdb wrote (e.g. 'local all alice scram-sha-256').
export function initCluster(name, { settings = [], hba = [] } = {}) {
  const dir = path.join(WORK, name);
  sh('tg_stop "$1" immediate; tg_init "$@" >/dev/null', [dir, ...settings]);
  for (const line of [...hba].reverse())
    sh('sed -i "1i $2" "$1/data/pg_hba.conf"', [dir, line]);
  sh('tg_start "$1"', [dir]);
  return {
    dir,
    port: PORT,
    // psql as postgres: -At output, stops on the first error
    psql(db, sql) { return sh('tg_psql "$1" "$2" -c "$3"', [dir, db, sql]).trim(); },
    // poll SQL until it returns 't', at most seconds; throws when it never does
    waitFor(db, sql, seconds = 30) {
      try { sh('tg_wait "$1" "$2" "$3" "$4"', [String(seconds), dir, db, sql]); }
      catch { throw new Error(`waited ${seconds} s for: ${sql}`); }
    },
    stop(mode = 'fast') { sh('tg_stop "$1" "$2"', [dir, mode]); },
  };
}
