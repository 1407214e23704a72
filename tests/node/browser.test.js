'use strict';
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// against the echo example: a real browser's WebSocket, with its
// permessage-deflate offer. Skipped when Chromium is not installed.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startEcho } = require('./helpers');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// As tests/browser/chromium.mjs: no network services a closed machine refuses.
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const skip = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (run scripts/setup-test-deps.sh)`;

// Runs in the page: echo a few messages, report what the browser saw.
async function inPage(url) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('websocket error'));
  });
  const echo = (m) =>
    new Promise((resolve) => {
      ws.onmessage = (e) => resolve(e.data);
      ws.send(m);
    });
  const big = 'The quick brown fox jumps over the lazy dog. '.repeat(20000);
  const text = await echo('héllo 🦀');
  const bigBack = await echo(big);
  const bytes = new Uint8Array(70000).map((_, i) => (i * 7919) & 0xff);
  const binBack = new Uint8Array(await echo(bytes));
  const empty = await echo('');
  const closed = await new Promise((resolve) => {
    ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    ws.close(4000, 'bye');
  });
  return {
    extensions: ws.extensions,
    text,
    bigOk: bigBack === big,
    binOk: binBack.length === bytes.length && binBack.every((b, i) => b === bytes[i]),
    empty,
    closed
  };
}

describe('chromium', { skip, timeout: 180000 }, () => {
  let server;
  let plain;
  let browser;
  before(async () => {
    const { chromium } = require('playwright-core');
    server = await startEcho();
    plain = await startEcho(['--no-deflate']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 90000 });
  });
  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
    if (plain) await plain.stop();
  });

  for (const deflate of [true, false]) {
    it(`echoes and closes (${deflate ? 'deflate' : '--no-deflate'})`, { timeout: 30000 }, async () => {
      const page = await browser.newPage();
      try {
        const r = await page.evaluate(inPage, (deflate ? server : plain).url);
        if (deflate) {
          assert.match(r.extensions, /^permessage-deflate/);
        } else {
          assert.equal(r.extensions, '');
        }
        assert.equal(r.text, 'héllo 🦀');
        assert.ok(r.bigOk, 'large text echo mismatch');
        assert.ok(r.binOk, 'binary echo mismatch');
        assert.equal(r.empty, '');
        assert.equal(r.closed.code, 4000);
        assert.equal(r.closed.wasClean, true);
      } finally {
        await page.close();
      }
    });
  }
});
