// The chat demo over TLS in headless Chromium: the page is loaded over
// HTTP/2 (ALPN h2) and its WebSocket opens on the same connection with an
// extended CONNECT answered 200 (RFC 8441), seen through the DevTools
// protocol; permessage-deflate is negotiated, two pages chat, and a
// graceful shutdown reaches both as 1001. Then the same page with HTTP/2
// turned off in Chromium (ALPN http/1.1): the WebSocket is a 101 upgrade.
// The console stays clean throughout. Saves artifacts/demo-h2.png.
//
// Run: cargo build --release --example demo && (cd tests/browser && npm ci)
//      && node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { ARGS as CHROMIUM_ARGS, CHROMIUM, DEMO, ROOT, skip } from './chromium.mjs';

const require = createRequire(import.meta.url);
const ARGS = [
  ...CHROMIUM_ARGS,
  // The test's own throwaway certificate.
  '--ignore-certificate-errors',
];

let cert;
const running = new Set();

// Starts the demo with --tls on a free port: { base, proc, exit }.
function startDemo() {
  const proc = spawn(DEMO, ['127.0.0.1:0', '--tls', cert.cert, cert.key], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.add(proc);
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: proc.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('demo printed no URL within 10 s')), 10000);
    proc.once('exit', (code) => reject(new Error(`demo exited early with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      lines.on('line', () => {});
      const m = line.match(/https:\/\/127\.0\.0\.1:\d+/);
      if (m) resolve({ base: m[0], proc, exit }); else reject(new Error(`no https URL in ${JSON.stringify(line)}`));
    });
  });
}

// A page whose console errors, failed requests and HTTP errors are
// collected, and whose WebSocket handshakes are recorded from DevTools.
async function watchedPage(context, problems) {
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  page.handshakes = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => page.handshakes.push(e.response));
  return page;
}

async function chatAndShutdown(browser, expected) {
  const demo = await startDemo();
  const context = await browser.newContext({ viewport: { width: 900, height: 640 }, deviceScaleFactor: 1 });
  const problems = [];
  const a = await watchedPage(context, problems);
  const b = await watchedPage(context, problems);
  for (const page of [a, b]) {
    await page.goto(demo.base + '/');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Connected');
  }
  for (const page of [a, b]) {
    // The page itself came over this protocol...
    const hop = await page.evaluate(() => performance.getEntries()[0].nextHopProtocol);
    assert.equal(hop, expected.alpn, 'nextHopProtocol of the page');
    // ...and so did its WebSocket: 200 on an HTTP/2 stream, 101 over HTTP/1.1.
    // DevTools reports the handshake on a session of its own, maybe after
    // the page saw its socket open.
    for (const deadline = Date.now() + 5000; page.handshakes.length === 0 && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(page.handshakes.length, 1, 'one WebSocket handshake seen by DevTools');
    assert.equal(page.handshakes[0].status, expected.status, 'WebSocket handshake status');
    assert.match(await page.textContent('#extensions'), /permessage-deflate/);
    assert.match(await page.textContent('#transport'), new RegExp(`WebSocket over ${expected.http}`));
  }

  await a.fill('#input', `Hello over ${expected.http}, héllo`);
  await a.click('#send');
  await b.waitForFunction((t) => document.querySelector('#messages').textContent.includes(t), `Hello over ${expected.http}, héllo`);
  await b.fill('#input', 'B answers');
  await b.press('#input', 'Enter');
  await a.waitForFunction(() => document.querySelector('#messages').textContent.includes('B answers'));

  if (expected.screenshot) {
    mkdirSync(path.join(ROOT, 'artifacts'), { recursive: true });
    await a.screenshot({ path: path.join(ROOT, 'artifacts', expected.screenshot) });
  }

  demo.proc.kill('SIGINT');
  for (const page of [a, b]) {
    await page.waitForSelector('#close-info:not([hidden])', { timeout: 10000 });
    const info = await page.textContent('#close-info');
    assert.match(info, /1001 Going Away/);
    assert.match(info, /server shutting down/);
  }
  const exit = await demo.exit;
  assert.equal(exit.code, 0, 'the demo exits cleanly after its graceful shutdown');
  assert.deepEqual(problems, [], 'a clean console: no errors, no failed or 4xx requests');
  await context.close();
}

before(() => {
  if (skip) return;
  cert = require('../node/tls.js').makeCert();
});

after(() => {
  for (const proc of running) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  if (cert) cert.remove();
});

test('over TLS the page and its WebSocket share one HTTP/2 connection (RFC 8441)', { skip, timeout: 60000 }, async () => {
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 90000 });
  try {
    await chatAndShutdown(browser, { alpn: 'h2', status: 200, http: 'HTTP/2', screenshot: 'demo-h2.png' });
  } finally {
    await browser.close();
  }
});

test('with HTTP/2 off in Chromium (ALPN http/1.1) the same page upgrades over HTTP/1.1', { skip, timeout: 60000 }, async () => {
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...ARGS, '--disable-http2'], timeout: 90000 });
  try {
    await chatAndShutdown(browser, { alpn: 'http/1.1', status: 101, http: 'HTTP/1.1' });
  } finally {
    await browser.close();
  }
});
