// The drop-in programs (echo, greet, upper) against Node's `ws` client: the
// same tests, once for the build on axum::extract::ws and once for the build
// on tower_ws::axum. The last test of each pins the documented differences.
//
// Run: bash examples/axum_dropin/test.sh (builds both, then runs this).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { BUILDS, requireNode, start } from './servers.mjs';

const WebSocket = requireNode('ws');

// Opens a client; resolves once open (or rejects with the HTTP status).
function connect(url, protocols) {
  const ws = new WebSocket(url, protocols);
  const messages = [];
  const waiting = [];
  ws.on('message', (data, isBinary) => {
    const msg = isBinary ? data : data.toString();
    const next = waiting.shift();
    if (next) next(msg); else messages.push(msg);
  });
  ws.next = () => new Promise((resolve, reject) => {
    if (messages.length) return resolve(messages.shift());
    const timer = setTimeout(() => reject(new Error('no message within 5 s')), 5000);
    waiting.push((m) => { clearTimeout(timer); resolve(m); });
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
}

async function plainGet(url) {
  const res = await fetch(url);
  return { status: res.status, text: (await res.text()).trim() };
}

for (const build of BUILDS) {
  describe(`${build.name} build`, () => {
    let server;
    before(async () => { server = await start(build); });
    after(() => server && server.stop());

    test('echo: text, binary, empty and 1 MiB messages come back unchanged', async () => {
      const ws = await connect(`${server.ws}/echo`);
      ws.send('héllo wörld');
      assert.equal(await ws.next(), 'héllo wörld');
      ws.send('');
      assert.equal(await ws.next(), '');
      const big = Buffer.alloc(1 << 20, 7);
      big[12345] = 1;
      ws.send(big);
      assert.deepEqual(await ws.next(), big);
      ws.close(1000, 'done');
      await once(ws, 'close');
    });

    test('echo: pings are answered with the same payload', async () => {
      const ws = await connect(`${server.ws}/echo`);
      ws.ping('are you there');
      const [payload] = await once(ws, 'pong');
      assert.equal(payload.toString(), 'are you there');
      ws.terminate();
    });

    test('echo: the server closes with a code and reason on request', async () => {
      const ws = await connect(`${server.ws}/echo`);
      ws.send('close me');
      const [code, reason] = await once(ws, 'close');
      assert.equal(code, 4001);
      assert.equal(reason.toString(), 'closing as asked');
    });

    test('greet: State and Query reach the handler, the server picks the subprotocol', async () => {
      const first = await connect(`${server.ws}/greet?name=ann`, ['chat.v1', 'chat.v2']);
      assert.equal(first.protocol, 'chat.v2');
      assert.equal(await first.next(), 'hello ann, visitor #1, 2 protocol(s) offered, speaking chat.v2');
      first.send('hi');
      assert.equal(await first.next(), '[chat.v2] hi');
      first.close();

      const second = await connect(`${server.ws}/greet?name=bo`);
      assert.equal(second.protocol, '');
      assert.equal(await second.next(), 'hello bo, visitor #2, 0 protocol(s) offered, speaking none');
      second.send('yo');
      assert.equal(await second.next(), '[plain] yo');
      second.close();
    });

    test('greet: a missing query parameter is rejected by Query, before any upgrade', async () => {
      await assert.rejects(connect(`${server.ws}/greet`), { status: 400 });
    });

    test('upper: the generic Sink/Stream handler behind split()', async () => {
      const ws = await connect(`${server.ws}/upper`);
      ws.send('shout');
      assert.equal(await ws.next(), 'SHOUT');
      ws.send(Buffer.from([1, 2, 3]));
      assert.deepEqual(await ws.next(), Buffer.from([3, 2, 1]));
      ws.send('count');
      assert.equal(await ws.next(), '2');
      ws.close();
    });

    test('the documented differences (README "Coming from axum")', async () => {
      const expected = {
        axum: { status: 400, text: "Connection header did not include 'upgrade'", deflate: '', closeReply: 1006 },
        'tower-ws': {
          status: 426, text: "`Upgrade` header did not include 'websocket'", deflate: 'permessage-deflate', closeReply: 1000,
        },
      }[build.name];
      assert.deepEqual(await plainGet(`${server.base}/echo`), { status: expected.status, text: expected.text });
      // ws offers permessage-deflate: tower-ws agrees, axum does not.
      const ws = await connect(`${server.ws}/echo`);
      assert.equal(ws.extensions.split(';')[0], expected.deflate);
      ws.send('compressed or not, the same text');
      assert.equal(await ws.next(), 'compressed or not, the same text');
      // The echo handler returns as soon as recv() gives it the client's
      // close. tower-ws has already sent the close reply by then (RFC 6455
      // §5.5.1); axum sends it on the next read or flush, which never comes,
      // so the client sees the connection drop (1006).
      ws.close(1000, 'done');
      const [code] = await once(ws, 'close');
      assert.equal(code, expected.closeReply);
    });
  });
}
