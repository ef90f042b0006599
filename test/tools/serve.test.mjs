// `make -C tools install` installs the server beside the CLI (npm ci
// --omit=dev, the pinned Node.js), and `toygun serve` runs it: it says it is
// listening and answers GET /signin with the sign-in form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync, rmSync } from 'node:fs';
import path from 'node:path';
import { WORK } from './cluster.mjs';
import { ROOT, freePort, spawnServer } from './spawn-server.mjs';

test('make -C tools install puts the server in LIBDIR/toygun/server, and toygun serve runs it', async () => {
  const dest = path.join(WORK, 'serve', 'inst');
  rmSync(dest, { recursive: true, force: true });
  // npm's cache in TG_WORK: the tests run as postgres, whose HOME may not be writable
  const npm = `npm --cache ${path.join(WORK, 'npm-cache')} --prefer-offline`;
  execFileSync('make', ['-s', '-C', path.join(ROOT, 'tools'), 'install', `DESTDIR=${dest}`, 'PREFIX=/usr', `NPM=${npm}`],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300000 });
  const server = path.join(dest, 'usr/lib/toygun/server');
  for (const f of ['src/main.mjs', 'package.json', 'package-lock.json', 'node_modules/hono', 'node_modules/pg'])
    assert.ok(existsSync(path.join(server, f)), `${f} is installed`);
  assert.ok(!existsSync(path.join(server, 'node_modules/puppeteer-core')), 'without the dev dependencies');

  const srv = await spawnServer(path.join(dest, 'usr/bin/toygun'),
    ['serve', '--listen', `127.0.0.1:${await freePort()}`, '--db-host', path.join(WORK, 'serve'), '--db-name', 'toygun']);
  try {
    if (existsSync(path.join(server, 'node_modules/.bin/node')))
      assert.match(readlinkSync(`/proc/${srv.proc.pid}/exe`), new RegExp(`^${server}/`),
        'the pinned Node.js installed with it runs the server');
    const res = await fetch(`${srv.url}/signin`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<form[^>]*id="?signin/);
  } finally {
    assert.equal(await srv.stop(), 0, 'SIGTERM: exit 0');
  }
});
