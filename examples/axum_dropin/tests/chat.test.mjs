// The drop-in chat (broadcast channel, split() into two tasks) in headless
// Chromium: two pages chat, a taken name is refused with a close code, a
// page that leaves is announced. The same test for the build on
// axum::extract::ws and the build on tower_ws::axum.
//
// Run: bash examples/axum_dropin/test.sh. CHROMIUM_PATH overrides the browser.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILDS, requireBrowser, start } from './servers.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function join(context, base, name) {
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.fill('#name', name);
  await page.click('#join button');
  return page;
}

const seen = (page, text) =>
  page.waitForFunction((t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === t), text);

for (const build of BUILDS) {
  describe(`${build.name} build`, () => {
    let server;
    let browser;
    let profile;
    before(async () => {
      server = await start(build);
      const { chromium } = requireBrowser('playwright-core');
      profile = mkdtempSync(path.join(os.tmpdir(), 'dropin-chromium-'));
      browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
    });
    after(async () => {
      if (browser) await browser.close();
      if (profile) rmSync(profile, { recursive: true, force: true });
      if (server) server.stop();
    });

    test('two pages chat through the broadcast room', { timeout: 60000 }, async (t) => {
      const alice = await join(browser, server.base, 'alice');
      await alice.waitForFunction(() => document.querySelector('#status').textContent === 'Joined');
      await seen(alice, 'alice joined.');
      const bob = await join(browser, server.base, 'bob');
      await seen(alice, 'bob joined.');
      await seen(bob, 'bob joined.');
      t.diagnostic(`extensions agreed with Chromium: "${await alice.textContent('#extensions')}"`);

      await alice.fill('#input', 'hello from alice, héllo');
      await alice.click('#send');
      await seen(bob, 'alice: hello from alice, héllo');
      await bob.fill('#input', 'hi alice');
      await bob.press('#input', 'Enter');
      await seen(alice, 'bob: hi alice');
      await seen(bob, 'bob: hi alice');

      // A name in use is refused with a close frame.
      const impostor = await join(browser, server.base, 'alice');
      await impostor.waitForSelector('#close-info:not([hidden])', { timeout: 10000 });
      assert.equal(await impostor.textContent('#close-info'), '4000 name missing or already taken');

      // Leaving is announced to the others.
      await bob.close();
      await seen(alice, 'bob left.');
      const lines = await alice.$$eval('#messages li', (els) => els.map((e) => e.textContent));
      assert.deepEqual(lines, [
        'alice joined.', 'bob joined.', 'alice: hello from alice, héllo', 'bob: hi alice', 'bob left.',
      ]);
    });
  });
}
