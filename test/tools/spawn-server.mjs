// Start toygun's server for a test and wait (bounded) for its
// "toygun-server listening on http://HOST:PORT" line.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// the pinned Node (npm ci in tools/server), else the one running the test
export const NODE = process.execPath;

// A TCP port free on 127.0.0.1 now (the kernel's choice).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// spawnServer(command, args, {seconds, env, cwd}) → {url, proc, output(), stop()};
// output() is what it wrote to stdout and stderr.
export async function spawnServer(command, args, { seconds = 20, env = process.env, cwd = undefined } = {}) {
  const proc = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`the server did not say it was listening within ${seconds} s; its output:\n${out}`)), seconds * 1000);
    const check = () => {
      const m = /toygun-server listening on (http:\/\/\S+)/.exec(out);
      if (m) done(null, m[1].replace(/\/$/, ''));
    };
    const onExit = (code, sig) => done(new Error(`the server exited (${code ?? sig}) before listening; its output:\n${out}`));
    function done(err, val) {
      clearTimeout(timer);
      proc.stdout.off('data', check);
      proc.off('exit', onExit);
      err ? reject(err) : resolve(val);
    }
    proc.stdout.on('data', check);
    proc.once('exit', onExit);
    proc.once('error', (e) => done(e));
  });
  return {
    url,
    proc,
    output: () => out,
    // SIGTERM, then SIGKILL after 10 s; resolves with the exit code (or signal)
    stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode ?? proc.signalCode);
      return new Promise((resolve) => {
        const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
        proc.once('exit', (code, sig) => { clearTimeout(kill); resolve(code ?? sig); });
        proc.kill('SIGTERM');
      });
    },
  };
}
