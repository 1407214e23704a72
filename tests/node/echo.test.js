'use strict';
// The ws client against the echo example: echo, ping/pong, close.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEcho, open, echoAll, closeAndWait, withTimeout } = require('./helpers');

for (const deflate of [true, false]) {
  describe(`echo (${deflate ? 'deflate' : '--no-deflate'})`, { timeout: 120000 }, () => {
    let server;
    before(async () => {
      server = await startEcho(deflate ? [] : ['--no-deflate']);
    });
    after(async () => {
      if (server) await server.stop();
    });

    it('echoes text, unicode, binary and empty messages', { timeout: 30000 }, async () => {
      const ws = await open(server.url, { perMessageDeflate: deflate });
      const bin = crypto.randomBytes(1000);
      const uni = 'héllo wörld — 🦀 日本語 '.repeat(100);
      const got = await echoAll(ws, ['hello', uni, bin, '', Buffer.alloc(0)]);
      assert.equal(got[0].data.toString(), 'hello');
      assert.equal(got[0].isBinary, false);
      assert.equal(got[1].data.toString(), uni);
      assert.equal(got[2].isBinary, true);
      assert.deepEqual(got[2].data, bin);
      assert.equal(got[3].data.length, 0);
      assert.equal(got[3].isBinary, false);
      assert.equal(got[4].data.length, 0);
      assert.equal(got[4].isBinary, true);
      await closeAndWait(ws, 1000);
    });

    it('echoes boundary sizes and 16 MiB', { timeout: 30000 }, async () => {
      const ws = await open(server.url, { perMessageDeflate: deflate });
      const msgs = [125, 126, 65535, 65536, 1 << 20].map((n) => crypto.randomBytes(n));
      msgs.push(crypto.randomBytes(16 * 1024 * 1024));
      const got = await echoAll(ws, msgs, 25000);
      got.forEach((g, i) => assert.ok(g.data.equals(msgs[i]), `size ${msgs[i].length}`));
      await closeAndWait(ws, 1000);
    });

    it('answers a ping with a pong carrying the same payload', { timeout: 30000 }, async () => {
      const ws = await open(server.url, { perMessageDeflate: deflate });
      for (const payload of [Buffer.from('ping-payload-42'), Buffer.alloc(0), crypto.randomBytes(125)]) {
        const pong = withTimeout(
          new Promise((resolve) => ws.once('pong', resolve)),
          5000,
          'pong'
        );
        ws.ping(payload);
        assert.deepEqual(await pong, payload);
      }
      await closeAndWait(ws, 1000);
    });

    it('round-trips a close code and reason', { timeout: 30000 }, async () => {
      for (const [code, reason] of [[4000, 'bye'], [1000, 'normal'], [3003, 'ünïcode']]) {
        const ws = await open(server.url, { perMessageDeflate: deflate });
        await echoAll(ws, ['x']);
        const closed = await closeAndWait(ws, code, reason);
        assert.equal(closed.code, code);
        // the reason in the reply is optional; if present it must be ours
        assert.ok(closed.reason === '' || closed.reason === reason, closed.reason);
      }
    });
  });
}
