'use strict';
// The ws client against the echo example: echo, fragments, ping/pong,
// close; over HTTP/1.1 (upgrade) and over HTTP/2 (extended CONNECT on a
// clear-text HTTP/2 connection, RFC 8441, see h2.js).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEcho, open: openH1, echoAll, closeAndWait, withTimeout } = require('./helpers');
const h2 = require('./h2');

const TRANSPORTS = { 'HTTP/1.1': openH1, 'HTTP/2': h2.open };

for (const [transport, open] of Object.entries(TRANSPORTS)) for (const deflate of [true, false]) {
  describe(`echo over ${transport} (${deflate ? 'deflate' : '--no-deflate'})`, { timeout: 120000 }, () => {
    let server;
    before(async () => {
      server = await startEcho(deflate ? [] : ['--no-deflate']);
    });
    after(async () => {
      h2.closeSessions();
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

    it('echoes a message sent in fragments, with a ping between them', { timeout: 30000 }, async () => {
      const ws = await open(server.url, { perMessageDeflate: deflate });
      const parts = ['frag-', 'ment-', 'ed ', 'téxt'];
      const got = new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data, isBinary })));
      parts.forEach((p, i) => {
        ws.send(p, { fin: i === parts.length - 1 });
        if (i === 1) ws.ping('between');
      });
      const echo = await withTimeout(got, 10000, 'fragmented echo');
      assert.equal(echo.data.toString(), parts.join(''));
      assert.equal(echo.isBinary, false);
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
