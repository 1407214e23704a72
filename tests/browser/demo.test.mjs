// The chat demo (examples/demo.rs) in headless Chromium: two pages chat
// through one server, permessage-deflate is negotiated, and a graceful
// shutdown (SIGINT) shows 1001 Going Away on the page. Saves a screenshot
// to artifacts/demo.png.
//
// Run: cargo build --release --example demo && (cd tests/browser && npm ci)
//      && node --test tests/browser/
// DEMO_BIN overrides the demo binary, CHROMIUM_PATH the browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { ARGS, CHROMIUM, DEMO, ROOT, skip } from './chromium.mjs';

let demo;
let demoExit;
let browser;
let base;

// Starts the demo on a free port; resolves with its URL (first stdout line).
function startDemo() {
  demo = spawn(DEMO, ['127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  demoExit = new Promise((resolve) => demo.once('exit', (code, signal) => resolve({ code, signal })));
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
  base = await startDemo();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 90000 });
});

after(async () => {
  if (browser) await browser.close();
  if (demo && demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
});

test('two pages chat through the demo, then see its graceful 1001 shutdown', { skip, timeout: 60000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 }, deviceScaleFactor: 1 });
  const a = await context.newPage();
  const b = await context.newPage();
  // A clean console: no errors, no failed requests, no 4xx (favicon included).
  const problems = [];
  for (const page of [a, b]) {
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
    });
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}`));
    page.on('response', (res) => {
      if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
    });
  }

  // The page is served by ServeDir, the inner service, on the same port.
  const [socket] = await Promise.all([
    a.waitForEvent('websocket'),
    a.goto(base + '/'),
  ]);
  assert.match(socket.url(), /\/ws$/);
  await b.goto(base + '/');
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Connected');
  }

  // permessage-deflate was negotiated with the browser.
  const extensions = await a.textContent('#extensions');
  assert.match(extensions, /permessage-deflate/);

  // Page A sends; page B (and A) show it.
  await a.fill('#input', 'Hello from page A, héllo wörld');
  await a.click('#send');
  await b.waitForFunction(() => document.querySelector('#messages').textContent.includes('Hello from page A, héllo wörld'));
  await b.fill('#input', 'Hi A, B here. Compressed both ways.');
  await b.press('#input', 'Enter');
  // The server broadcasts to every page, the sender's included, in no set
  // order across sockets: wait for both pages before reading B's bubbles.
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('B here'));
  }
  const bubblesOnB = await b.$$eval('#messages .bubble', (els) => els.map((e) => e.textContent));
  assert.deepEqual(bubblesOnB, ['Hello from page A, héllo wörld', 'Hi A, B here. Compressed both ways.']);

  // Graceful shutdown: every page is told 1001 Going Away with the reason.
  demo.kill('SIGINT');
  for (const page of [a, b]) {
    await page.waitForSelector('#close-info:not([hidden])', { timeout: 10000 });
    const info = await page.textContent('#close-info');
    assert.match(info, /1001/);
    assert.match(info, /Going Away/);
    assert.match(info, /server shutting down/);
    assert.equal(await page.textContent('#status'), 'Disconnected');
  }
  const exit = await demoExit;
  assert.equal(exit.code, 0, 'the demo exits cleanly after its graceful shutdown');
  assert.deepEqual(problems, [], 'a clean console');
  assert.match(await a.textContent('#transport'), /WebSocket over HTTP\/1\.1/);

  mkdirSync(path.join(ROOT, 'artifacts'), { recursive: true });
  await a.screenshot({ path: path.join(ROOT, 'artifacts', 'demo.png') });
  await context.close();
});
