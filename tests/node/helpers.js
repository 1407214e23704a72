'use strict';
// Starts the echo example (or the stand-in) on a free port and reads its
// first stdout line for the ws:// address. TOWER_WS_ECHO overrides the path;
// a path ending in .py runs with ../../.venv/bin/python (the stand-in).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const WebSocket = require('ws');

const ROOT = path.resolve(__dirname, '..', '..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const DEFAULT_ECHO = path.join(TARGET, 'release', 'examples', 'echo');

function echoCommand() {
  let p = process.env.TOWER_WS_ECHO || DEFAULT_ECHO;
  if (!path.isAbsolute(p)) {
    p = fs.existsSync(path.resolve(p)) ? path.resolve(p) : path.join(ROOT, p);
  }
  if (!fs.existsSync(p)) {
    throw new Error(
      `echo server not found at ${p}.\n` +
        `Build it first: (cd ${ROOT} && cargo build --release --examples)\n` +
        'or point TOWER_WS_ECHO at a binary (or tests/python/standin_echo.py).'
    );
  }
  if (p.endsWith('.py')) {
    const py = path.join(ROOT, '.venv', 'bin', 'python');
    return [fs.existsSync(py) ? py : 'python3', [p]];
  }
  return [p, []];
}

// Servers still running when this test process exits are killed with it.
const running = new Set();
const killAll = () => {
  for (const p of running) p.kill('SIGKILL');
};
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAll();
    process.kill(process.pid, sig);
  });
}

function startEcho(extraArgs = [], timeoutMs = 15000) {
  const [cmd, args] = echoCommand();
  const proc = spawn(cmd, [...args, '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe']
  });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    const fail = (why) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(new Error(`${cmd} ${why}\nstderr:\n${stderr}`));
    };
    const timer = setTimeout(
      () => fail(`printed no ws:// address within ${timeoutMs} ms`),
      timeoutMs
    );
    proc.once('exit', (code) => fail(`exited early with code ${code}`));
    proc.once('error', (e) => fail(`failed to start: ${e.message}`));
    rl.once('line', (line) => {
      const m = /(wss?):\/\/([0-9.]+|\[[0-9a-fA-F:]+\]|localhost):(\d+)/.exec(line);
      if (!m) return fail(`first line has no ws:// address: ${JSON.stringify(line)}`);
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      rl.on('line', () => {}); // keep draining stdout
      resolve({
        url: `${m[1]}://${m[2]}:${m[3]}`,
        proc,
        stop() {
          return new Promise((res) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            const k = setTimeout(() => proc.kill('SIGKILL'), 5000);
            proc.once('exit', () => {
              clearTimeout(k);
              res();
            });
            proc.kill('SIGTERM');
          });
        }
      });
    });
  });
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    })
  ]).finally(() => clearTimeout(t));
}

// Opens a client; resolves once open. Rejects on error/unexpected close.
function open(url, options = {}) {
  const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024, ...options });
  // the raw response header, e.g. 'permessage-deflate; server_max_window_bits=8'
  // (ws.extensions only lists extension names)
  ws.once('upgrade', (res) => {
    ws.extensionsHeader = res.headers['sec-websocket-extensions'];
  });
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    }),
    10000,
    `open ${url}`
  );
}

// Sends each message and waits for its echo. Returns the echoes as
// { data, isBinary } plus the wire bytes read for each.
function echoAll(ws, messages, ms = 20000) {
  return withTimeout(
    (async () => {
      const out = [];
      for (const m of messages) {
        const before = ws._socket.bytesRead;
        const got = await new Promise((resolve, reject) => {
          const onClose = (code) => reject(new Error(`closed with ${code} before echo`));
          ws.once('close', onClose);
          ws.once('message', (data, isBinary) => {
            ws.off('close', onClose);
            resolve({ data, isBinary });
          });
          ws.send(m, { binary: typeof m !== 'string' });
        });
        got.wireBytes = ws._socket.bytesRead - before;
        out.push(got);
      }
      return out;
    })(),
    ms,
    'echo'
  );
}

function closeAndWait(ws, code, reason, ms = 10000) {
  return withTimeout(
    new Promise((resolve) => {
      ws.once('close', (c, r) => resolve({ code: c, reason: r.toString() }));
      ws.close(code, reason);
    }),
    ms,
    'close handshake'
  );
}

module.exports = { startEcho, open, echoAll, closeAndWait, withTimeout, WebSocket };
