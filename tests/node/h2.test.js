'use strict';
// HTTP/2 specifics with Node's http2 client and ws (see h2.js): wss over
// TLS with ALPN h2, many WebSockets multiplexed on one connection, and the
// statuses of refused extended CONNECTs (RFC 8441).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEcho, echoAll, closeAndWait } = require('./helpers');
const { connect, openOn } = require('./h2');
const { makeCert } = require('./tls');

describe('echo over HTTP/2', { timeout: 120000 }, () => {
  let cert;
  let tls;
  let clear;
  before(async () => {
    cert = makeCert();
    tls = await startEcho(['--tls', cert.cert, cert.key]);
    clear = await startEcho();
  });
  after(async () => {
    if (tls) await tls.stop();
    if (clear) await clear.stop();
    if (cert) cert.remove();
  });

  it('wss: TLS with ALPN h2, the certificate checked', { timeout: 30000 }, async () => {
    assert.match(tls.url, /^wss:\/\//);
    const origin = tls.url.replace('wss:', 'https:');
    const session = await connect(origin, { ca: cert.pem, alpn: 'h2' });
    const ws = await openOn(session, tls.url + '/secure', { perMessageDeflate: true });
    assert.match(ws.extensionsHeader, /^permessage-deflate/);
    const got = await echoAll(ws, ['over wss and HTTP/2', Buffer.from([1, 2, 3])]);
    assert.equal(got[0].data.toString(), 'over wss and HTTP/2');
    assert.deepEqual(got[1].data, Buffer.from([1, 2, 3]));
    const closed = await closeAndWait(ws, 4001, 'bye');
    assert.equal(closed.code, 4001);
    session.close();
  });

  it('100 WebSockets on one connection echo concurrently; closing one spares the rest', { timeout: 60000 }, async () => {
    const session = await connect(clear.url.replace('ws:', 'http:'));
    const sockets = await Promise.all(
      Array.from({ length: 100 }, (_, i) => openOn(session, `${clear.url}/s${i}`, { perMessageDeflate: i % 2 === 0 })),
    );
    const rounds = await Promise.all(sockets.map((ws, i) => echoAll(ws, [`a${i}`, `b${i}`, Buffer.alloc(i * 100, i)])));
    rounds.forEach((got, i) => {
      assert.equal(got[0].data.toString(), `a${i}`);
      assert.equal(got[2].data.length, i * 100);
    });
    await closeAndWait(sockets[0], 1000);
    sockets[1]._socket.close(0x8); // RST_STREAM CANCEL
    const after = await Promise.all(sockets.slice(2).map((ws, i) => echoAll(ws, [`still ${i}`])));
    after.forEach((got, i) => assert.equal(got[0].data.toString(), `still ${i}`));
    await Promise.all(sockets.slice(2).map((ws) => closeAndWait(ws, 1000)));
    session.close();
  });

  it('refused extended CONNECTs get the status RFC 8441 and RFC 6455 name', { timeout: 30000 }, async () => {
    const session = await connect(clear.url.replace('ws:', 'http:'));
    const refused = async (headers) => {
      const err = await openOn(session, clear.url + '/', { perMessageDeflate: false, headers }).then(
        () => assert.fail('accepted'),
        (e) => e,
      );
      return err.status;
    };
    assert.equal(await refused({ 'sec-websocket-version': '8' }), 426);
    assert.equal(await refused({ ':protocol': 'webtransport' }), 501);
    // A Sec-WebSocket-Key is not processed over HTTP/2 (RFC 8441 §5).
    const ws = await openOn(session, clear.url + '/', { headers: { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    assert.equal(ws.responseHeaders['sec-websocket-accept'], undefined);
    await closeAndWait(ws, 1000);
    session.close();
  });
});
