'use strict';
// permessage-deflate through the ws client: negotiated parameters and
// compressed traffic on the wire, over HTTP/1.1 and over HTTP/2 (RFC 8441).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startEcho, open: openH1, echoAll, closeAndWait } = require('./helpers');
const h2 = require('./h2');

const TRANSPORTS = { 'HTTP/1.1': openH1, 'HTTP/2': h2.open };

const COMPRESSIBLE = 'The quick brown fox jumps over the lazy dog. '.repeat(20000); // 900 kB

function periodic(period, total) {
  const block = crypto.randomBytes(period);
  return Buffer.concat(Array(Math.ceil(total / period)).fill(block)).subarray(0, total);
}

function parseExtensions(header) {
  // 'permessage-deflate; a; b=9' -> { a: true, b: '9' }
  assert.ok(header, 'no extension negotiated');
  const [name, ...params] = header.split(';').map((s) => s.trim());
  assert.equal(name, 'permessage-deflate');
  const out = {};
  for (const p of params) {
    const [k, v] = p.split('=').map((s) => s.trim());
    out[k] = v === undefined ? true : v.replace(/"/g, '');
  }
  return out;
}

// The response header, checked against what ws itself accepted.
function negotiated(ws) {
  assert.equal(ws.extensions, 'permessage-deflate');
  const params = parseExtensions(ws.extensionsHeader);
  const accepted = ws._extensions['permessage-deflate'].params;
  for (const k of Object.keys(params)) {
    assert.equal(String(accepted[k]), String(params[k]), `ws accepted ${k}=${accepted[k]}`);
  }
  return params;
}

async function exercise(ws) {
  const random = crypto.randomBytes(30000);
  const msgs = [COMPRESSIBLE, random, '', Buffer.alloc(0), COMPRESSIBLE, periodic(200, 6000), periodic(300, 6000), 'a'];
  const got = await echoAll(ws, msgs);
  got.forEach((g, i) => {
    const want = Buffer.isBuffer(msgs[i]) ? msgs[i] : Buffer.from(msgs[i]);
    assert.ok(g.data.equals(want), `echo mismatch for message ${i}`);
    assert.equal(g.isBinary, Buffer.isBuffer(msgs[i]));
  });
  // RSV1-compressed traffic: 900 kB of repetitive text arrives as a few kB
  assert.ok(got[0].wireBytes < COMPRESSIBLE.length / 20,
    `compressible message not compressed: ${got[0].wireBytes} wire bytes`);
  assert.ok(got[1].wireBytes >= random.length, 'random data cannot shrink');
  return got;
}

for (const [transport, open] of Object.entries(TRANSPORTS)) describe(`permessage-deflate over ${transport}`, { timeout: 300000 }, () => {
  let server;
  let plain;
  before(async () => {
    server = await startEcho();
    plain = await startEcho(['--no-deflate']);
  });
  after(async () => {
    h2.closeSessions();
    if (server) await server.stop();
    if (plain) await plain.stop();
  });

  for (let bits = 8; bits <= 15; bits++) {
    it(`serverMaxWindowBits: ${bits}`, { timeout: 30000 }, async () => {
      const ws = await open(server.url, { perMessageDeflate: { serverMaxWindowBits: bits, threshold: 0 } });
      const params = negotiated(ws);
      assert.ok(params.server_max_window_bits, ws.extensionsHeader);
      assert.ok(+params.server_max_window_bits <= bits, ws.extensionsHeader);
      if (bits === 8) assert.equal(params.server_max_window_bits, '8');
      await exercise(ws);
      await closeAndWait(ws, 1000);
    });

    for (const [snct, cnct] of [[false, false], [true, false], [false, true], [true, true]]) {
      const name = `clientMaxWindowBits: ${bits}, serverNoContextTakeover: ${snct}, clientNoContextTakeover: ${cnct}`;
      it(name, { timeout: 30000 }, async () => {
        const ws = await open(server.url, {
          perMessageDeflate: {
            clientMaxWindowBits: bits,
            serverNoContextTakeover: snct,
            clientNoContextTakeover: cnct,
            threshold: 0
          }
        });
        const params = negotiated(ws);
        if (snct) assert.equal(params.server_no_context_takeover, true, ws.extensionsHeader);
        if (params.client_max_window_bits !== undefined) {
          assert.ok(+params.client_max_window_bits <= bits, ws.extensionsHeader);
        }
        await exercise(ws);
        await closeAndWait(ws, 1000);
      });
    }
  }

  it('server context takeover shrinks a repeated message', { timeout: 30000 }, async () => {
    const ws = await open(server.url, { perMessageDeflate: { threshold: 0 } });
    const params = negotiated(ws);
    const msg = crypto.randomBytes(2000).toString('hex');
    const got = await echoAll(ws, [msg, msg]);
    assert.equal(got[1].data.toString(), msg);
    if (!params.server_no_context_takeover) {
      assert.ok(got[1].wireBytes < got[0].wireBytes / 4, `${got[1].wireBytes} vs ${got[0].wireBytes}`);
    }
    await closeAndWait(ws, 1000);
  });

  it('--no-deflate negotiates no extension', { timeout: 30000 }, async () => {
    const ws = await open(plain.url, { perMessageDeflate: { threshold: 0 } });
    assert.equal(ws.extensions, '');
    assert.equal(ws.extensionsHeader, undefined);
    const got = await echoAll(ws, [COMPRESSIBLE]);
    assert.equal(got[0].data.toString(), COMPRESSIBLE);
    assert.ok(got[0].wireBytes >= COMPRESSIBLE.length);
    await closeAndWait(ws, 1000);
  });
});
