// Starts the two builds of the drop-in server (examples/axum_dropin/test.sh
// puts them in target/axum-dropin/{axum,tower-ws}) and finds the npm
// packages the repository's other suites install (tests/node, tests/browser).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BIN_DIR = process.env.DROPIN_BIN_DIR || path.join(TARGET, 'axum-dropin');

// `ws` from tests/node, playwright-core from tests/browser.
export const requireNode = createRequire(path.join(ROOT, 'tests', 'node', 'package.json'));
export const requireBrowser = createRequire(path.join(ROOT, 'tests', 'browser', 'package.json'));

// The same program built against axum's module and against tower-ws's.
export const BUILDS = ['axum', 'tower-ws'].map((name) => ({ name, bin: path.join(BIN_DIR, name) }));

const running = new Set();
process.once('exit', () => running.forEach((p) => p.kill('SIGKILL')));

// Starts a build on a free port; resolves with { base, ws, stop }.
export function start(build) {
  if (!existsSync(build.bin)) {
    throw new Error(`no ${build.name} build at ${build.bin}: run bash examples/axum_dropin/test.sh`);
  }
  const proc = spawn(build.bin, ['127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.add(proc);
  const stop = () => {
    running.delete(proc);
    proc.kill('SIGKILL');
  };
  const lines = readline.createInterface({ input: proc.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${build.name} printed no URL in 10 s`)), 10000);
    proc.once('exit', (code) => reject(new Error(`${build.name} exited early with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = line.match(/http:\/\/(127\.0\.0\.1:\d+)/);
      if (!m) return reject(new Error(`no URL in ${JSON.stringify(line)}`));
      resolve({ base: `http://${m[1]}`, ws: `ws://${m[1]}`, stop });
    });
  });
}
