'use strict';
// Our client (examples/client.rs, tower_ws::client) against the Node `ws`
// server: every permessage-deflate parameter on both sides (window bits 8
// included), large messages, close codes both ways; and WebSockets over
// HTTP/2 (RFC 8441) against Node's `http2` server with enableConnectProtocol,
// `ws` speaking on the CONNECT stream.
//
// The client binary is $CARGO_TARGET_DIR (default target)/release/examples/client;
// TOWER_WS_CLIENT overrides the path.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http2 = require('node:http2');
const path = require('node:path');
const readline = require('node:readline');
const WebSocket = require('ws');
// ws's own negotiation code (not exported: loaded by file path).
const wsLib = path.join(path.dirname(require.resolve('ws')), 'lib');
const PerMessageDeflate = require(path.join(wsLib, 'permessage-deflate.js'));
const extension = require(path.join(wsLib, 'extension.js'));

const ROOT = path.resolve(__dirname, '..', '..');
const CLIENT =
  process.env.TOWER_WS_CLIENT ||
  path.join(path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target'), 'release', 'examples', 'client');
const TIMEOUT = 15000;

function fnv1a(buf) {
  let h = 0xcbf29ce484222325n;
  for (const b of buf) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}

const binaryPayload = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));

// The client process: send() a command line, next() the next event line.
function client(url, args = []) {
  if (!fs.existsSync(CLIENT)) {
    throw new Error(`client example not found at ${CLIENT}; build it: cargo build --release --examples`);
  }
  const proc = spawn(CLIENT, [url, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l); else lines.push(l);
  });
  proc.stdout.on('end', () => { for (const w of waiters.splice(0)) w(null); });
  return {
    send(line) { proc.stdin.write(line + '\n'); },
    next() {
      if (lines.length) return Promise.resolve(lines.shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`no output in time; stderr: ${stderr}`)); }, TIMEOUT);
        waiters.push((l) => { clearTimeout(t); resolve(l); });
      });
    },
    async finish() {
      proc.stdin.end();
      const rest = [];
      for (let l = await this.next(); l !== null; l = await this.next()) rest.push(l);
      return rest;
    },
  };
}

// A ws echo server; "close-me CODE REASON" makes it close with that code.
function wsServer(options) {
  return new Promise((resolve) => {
    const closes = [];
    const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1', maxPayload: 64 << 20, ...options }, () => {
      resolve({ url: `ws://127.0.0.1:${wss.address().port}/`, wss, closes });
    });
    wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => {
        const s = isBinary ? '' : data.toString();
        if (s.startsWith('close-me ')) {
          const [, code, reason] = s.match(/^close-me (\d+) (.*)$/);
          ws.close(Number(code), reason);
        } else {
          ws.send(data, { binary: isBinary });
        }
      });
      ws.on('close', (code, reason) => closes.push([code, reason.toString()]));
    });
  });
}

async function echoRound(c, repeat = 2000, binLen = 70000) {
  const text = 'compress me, please! '.repeat(repeat);
  c.send(`repeat ${repeat} compress me, please! `);
  assert.strictEqual(await c.next(), `text ${text.length} ${fnv1a(Buffer.from(text))}`);
  c.send(`binary ${binLen}`);
  assert.strictEqual(await c.next(), `binary ${binLen} ${fnv1a(binaryPayload(binLen))}`);
}

// Offers in preference order. ws refuses an offer that asks for what its
// options rule out (e.g. server_max_window_bits below its configured
// window), so each list ends with the default offer, which every
// configuration accepts: the client must match the response to the right one.
const OFFERS = [
  [],
  ['client_max_window_bits; server_max_window_bits=8', 'client_max_window_bits'],
  ['client_max_window_bits=10; server_no_context_takeover; client_no_context_takeover', 'client_max_window_bits'],
  ['server_max_window_bits=10; client_max_window_bits', 'client_max_window_bits'],
];

test('every permessage-deflate parameter on both sides with ws', async () => {
  for (const serverNoContextTakeover of [false, true]) {
    for (const clientNoContextTakeover of [false, true]) {
      for (const serverMaxWindowBits of [undefined, 8, 12]) {
        for (const clientMaxWindowBits of [undefined, 8, 11]) {
          // (false is ws's "refuse offers that ask for it": leave it unset)
          const pmd = { threshold: 0 };
          if (serverNoContextTakeover) pmd.serverNoContextTakeover = true;
          if (clientNoContextTakeover) pmd.clientNoContextTakeover = true;
          if (serverMaxWindowBits) pmd.serverMaxWindowBits = serverMaxWindowBits;
          if (clientMaxWindowBits) pmd.clientMaxWindowBits = clientMaxWindowBits;
          const server = await wsServer({ perMessageDeflate: pmd });
          try {
            for (const offers of OFFERS) {
              const what = JSON.stringify({ pmd, offers });
              const c = client(server.url, offers.flatMap((o) => ['--offer', o]));
              const connected = await c.next();
              assert.match(connected, /^connected 101 permessage-deflate/, what);
              await echoRound(c);
              await echoRound(c, 3, 7);
              c.send('close 1000 done');
              assert.strictEqual(await c.next(), 'close 1000 done', what);
              assert.deepStrictEqual(await c.finish(), ['end']);
            }
          } finally {
            server.wss.close();
          }
        }
      }
    }
  }
});

test('window bits 8 both ways with ws', async () => {
  const server = await wsServer({ perMessageDeflate: { threshold: 0, serverMaxWindowBits: 8, clientMaxWindowBits: 8 } });
  try {
    const c = client(server.url, ['--offer', 'client_max_window_bits; server_max_window_bits=8']);
    const connected = await c.next();
    assert.match(connected, /server_max_window_bits=8/);
    assert.match(connected, /client_max_window_bits=8/);
    for (let i = 0; i < 3; i++) await echoRound(c);
    assert.deepStrictEqual(await c.finish(), ['close 1000 ', 'end']);
  } finally {
    server.wss.close();
  }
});

test('large and fragmented messages, close codes both ways with ws', async () => {
  const server = await wsServer({ perMessageDeflate: true });
  try {
    let c = client(server.url, ['--frame-size', '4096']);
    await c.next();
    await echoRound(c, 200000, 4 << 20);
    c.send('close 4001 client says bye');
    assert.match(await c.next(), /^close 4001/);
    assert.deepStrictEqual(await c.finish(), ['end']);
    // ws reports the close once its socket closes, which may be after the
    // client process has exited.
    for (const deadline = Date.now() + 5000; server.closes.length === 0 && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepStrictEqual(server.closes.at(-1), [4001, 'client says bye']);

    for (const [code, reason] of [[1001, 'going away'], [4002, 'server says bye']]) {
      c = client(server.url);
      await c.next();
      c.send(`text close-me ${code} ${reason}`);
      assert.strictEqual(await c.next(), `close ${code} ${reason}`);
      assert.deepStrictEqual(await c.finish(), ['end']);
    }
  } finally {
    server.wss.close();
  }
});

// RFC 8441 on Node's http2 server: extended CONNECT, then ws on the stream
// (with permessage-deflate negotiated as ws's own server does it).
function h2Server(enableConnectProtocol) {
  return new Promise((resolve) => {
    const seen = [];
    const server = http2.createServer({ settings: { enableConnectProtocol } });
    server.on('stream', (stream, headers) => {
      seen.push(headers);
      if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
        stream.respond({ ':status': 400 });
        stream.end();
        return;
      }
      const pmd = new PerMessageDeflate({ threshold: 0, isServer: true, maxPayload: 64 << 20 });
      const response = { ':status': 200 };
      const offer = headers['sec-websocket-extensions'];
      const extensions = {};
      if (offer) {
        const params = pmd.accept(extension.parse(offer)[PerMessageDeflate.extensionName]);
        response['sec-websocket-extensions'] = extension.format({ [PerMessageDeflate.extensionName]: [params] });
        extensions[PerMessageDeflate.extensionName] = pmd;
      }
      stream.respond(response);
      const ws = new WebSocket(null, undefined, { autoPong: true, closeTimeout: 30000 });
      ws._extensions = extensions;
      stream.setNoDelay = () => {};
      ws.setSocket(stream, Buffer.alloc(0), { maxPayload: 64 << 20 });
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    server.listen(0, '127.0.0.1', () => resolve({ url: `ws://127.0.0.1:${server.address().port}/chat`, server, seen }));
  });
}

test('WebSockets over HTTP/2 (extended CONNECT) with Node http2 + ws', async () => {
  const h2 = await h2Server(true);
  try {
    const c = client(h2.url, ['--http2']);
    const connected = await c.next();
    assert.match(connected, /^connected 200 permessage-deflate/);
    await echoRound(c);
    await echoRound(c, 100000, 1 << 20);
    c.send('ping over h2');
    assert.strictEqual(await c.next(), 'pong over h2');
    assert.deepStrictEqual(await c.finish(), ['close 1000 ', 'end']);
    const req = h2.seen[0];
    assert.strictEqual(req[':method'], 'CONNECT');
    assert.strictEqual(req[':protocol'], 'websocket');
    assert.strictEqual(req[':path'], '/chat');
    assert.strictEqual(req['sec-websocket-version'], '13');
    assert.strictEqual(req['sec-websocket-key'], undefined);
  } finally {
    h2.server.close();
  }
});

test('an HTTP/2 server without SETTINGS_ENABLE_CONNECT_PROTOCOL gets no extended CONNECT', async () => {
  const h2 = await h2Server(false);
  try {
    // The client falls back to HTTP/1.1, which this HTTP/2-only server
    // cannot answer: a clear error, and never a :protocol request.
    const c = client(h2.url, ['--http2']);
    const line = await c.next();
    assert.match(line, /^error /);
    await c.finish();
    assert.ok(h2.seen.every((h) => h[':protocol'] === undefined), JSON.stringify(h2.seen));
  } finally {
    h2.server.close();
  }
});
