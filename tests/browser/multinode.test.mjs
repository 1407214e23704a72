// Two demo processes (examples/demo.rs --redis) joined through a real
// redis-server started here on a free port: one Chromium page on each, a
// message typed on one appears on the other, "2 online" shows on both, and
// a page in another room (/#side) neither sees the lobby nor is seen.
//
// Run: cargo build --release --example demo && (cd tests/browser && npm ci)
//      && node --test tests/browser/multinode.test.mjs
// DEMO_BIN overrides the demo binary, CHROMIUM_PATH the browser; needs
// redis-server on PATH (scripts/setup-test-deps.sh installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const DEMO = process.env.DEMO_BIN || path.join(TARGET, 'release', 'examples', 'demo');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}`
  : !existsSync(DEMO)
    ? `no demo binary at ${DEMO} (cargo build --release --example demo)`
    : !hasRedis
      ? 'no redis-server (scripts/setup-test-deps.sh installs it)'
      : false;

const children = [];
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// redis-server on a free port, without persistence; resolves once it accepts.
async function startRedis() {
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' });
  children.push(redis);
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (up) return `redis://127.0.0.1:${port}`;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('redis-server did not start');
}

// A demo node on a free port; resolves with its URL (first stdout line).
function startDemo(redisUrl) {
  const demo = spawn(DEMO, ['127.0.0.1:0', '--redis', redisUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(demo);
  const lines = readline.createInterface({ input: demo.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('demo printed no URL within 10 s')), 10000);
    demo.once('exit', (code) => reject(new Error(`demo exited early with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = line.match(/http:\/\/127\.0\.0\.1:\d+/);
      if (m) resolve(m[0]); else reject(new Error(`no URL in ${JSON.stringify(line)}`));
    });
  });
}

before(async () => {
  if (skip) return;
  const require = createRequire(import.meta.url);
  const { chromium } = require('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 90000 });
});

after(async () => {
  if (browser) await browser.close();
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

const online = (page) => page.textContent('#whoami');

// Waits until `count` nodes subscribe to `channel` on the Redis at `url`:
// a node subscribes in the background, and a message published before its
// subscription is in place never reaches it (Redis pub/sub keeps nothing).
async function subscribed(url, channel, count) {
  const port = new URL(url).port;
  const deadline = Date.now() + 10000;
  for (;;) {
    const out = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', port, 'PUBSUB', 'NUMSUB', channel],
      { encoding: 'utf8' });
    const now = Number((out.stdout || '').trim().split('\n')[1]);
    if (now >= count) return;
    if (Date.now() > deadline) assert.fail(`${now} subscribers of ${channel} after 10 s, not ${count}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('two demo nodes through Redis form one chat', { skip, timeout: 60000 }, async () => {
  const redis = await startRedis();
  const [one, two] = await Promise.all([startDemo(redis), startDemo(redis)]);
  const context = await browser.newContext();
  const a = await context.newPage();
  const b = await context.newPage();
  await a.goto(one + '/');
  await b.goto(two + '/');
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Connected');
    assert.equal(await page.textContent('#room'), '#lobby');
  }

  // Presence spans the nodes: both headers show 2 online.
  for (const page of [a, b]) {
    await page.waitForFunction(() => /· 2 online$/.test(document.querySelector('#whoami').textContent),
      null, { timeout: 15000 }).catch(async () => assert.fail(`still ${await online(page)}`));
  }

  // Both nodes listen to the lobby's channel before anything is sent there.
  await subscribed(redis, 'tower-ws:room:lobby', 2);

  // A message crosses from node one to node two, and back.
  await a.fill('#input', 'Hello from node one');
  await a.click('#send');
  await b.waitForFunction(() => document.querySelector('#messages').textContent.includes('Hello from node one'));
  await b.fill('#input', 'Node two here');
  await b.press('#input', 'Enter');
  for (const page of [a, b]) {
    // Each page shows the message when the server sends it back, in no set
    // order across the two nodes: wait on both before reading.
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('Node two here'));
    const bubbles = await page.$$eval('#messages .bubble', (els) => els.map((e) => e.textContent));
    assert.deepEqual(bubbles, ['Hello from node one', 'Node two here'], 'each message once, in order');
  }

  // Another room on node two: counted online, but isolated from the lobby.
  const c = await context.newPage();
  await c.goto(two + '/#side');
  await c.waitForFunction(() => document.querySelector('#status').textContent === 'Connected');
  assert.equal(await c.textContent('#room'), '#side');
  await c.fill('#input', 'only for the side room');
  await c.click('#send');
  await c.waitForFunction(() => document.querySelector('#messages').textContent.includes('only for the side room'));
  await a.fill('#input', 'lobby only');
  await a.click('#send');
  await b.waitForFunction(() => document.querySelector('#messages').textContent.includes('lobby only'));
  await a.waitForFunction(() => /· 3 online$/.test(document.querySelector('#whoami').textContent), null, { timeout: 15000 });
  assert.ok(!(await c.textContent('#messages')).includes('lobby only'));
  assert.ok(!(await a.textContent('#messages')).includes('side room'));
  await context.close();
});
