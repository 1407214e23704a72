'use strict';
// WebSockets over HTTP/2 (RFC 8441) with the ws client: Node's http2 client
// opens an extended CONNECT stream, and ws runs over that stream. ws has no
// public API for it; its users do what jasnell/http2ws showed: a WebSocket
// built with a null address, handed the Http2Stream with setSocket(). Here
// it is made a client (masking its frames) and given the permessage-deflate
// agreement the response carried, as ws's own HTTP/1.1 client does.
const http2 = require('node:http2');
const path = require('node:path');
const WebSocket = require('ws');

// ws's package exports hide lib/; the files are there all the same.
const WS_LIB = path.join(path.dirname(require.resolve('ws')), 'lib');
const PerMessageDeflate = require(path.join(WS_LIB, 'permessage-deflate.js'));
const { format, parse } = require(path.join(WS_LIB, 'extension.js'));

const MAX_PAYLOAD = 64 * 1024 * 1024;

// An HTTP/2 session to `origin` (http: prior knowledge, https: ALPN h2),
// resolved once the server's SETTINGS allow extended CONNECT (RFC 8441 §3).
function connect(origin, { ca, alpn } = {}) {
  const session = http2.connect(origin, {
    rejectUnauthorized: !!ca,
    ca,
    // Large windows like a browser's, for 16 MiB messages.
    settings: { initialWindowSize: 4 * 1024 * 1024 },
  });
  return new Promise((resolve, reject) => {
    session.once('error', reject);
    session.once('remoteSettings', (settings) => {
      session.off('error', reject);
      session.setLocalWindowSize(32 * 1024 * 1024);
      session.on('error', () => {});
      if (alpn !== undefined && session.alpnProtocol !== alpn) {
        reject(new Error(`ALPN agreed ${session.alpnProtocol}, not ${alpn}`));
      } else if (!settings.enableConnectProtocol) {
        reject(new Error('the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL'));
      } else {
        resolve(session);
      }
    });
  });
}

// Opens a WebSocket on a new stream of `session` for ws://HOST/PATH (or
// wss://). `options`: perMessageDeflate (true, false or ws's options),
// protocols, headers. Resolves with the ws WebSocket, open; rejects with
// the status of a refused handshake (err.status, err.headers).
function openOn(session, url, options = {}) {
  const u = new URL(url);
  const headers = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': u.protocol === 'wss:' ? 'https' : 'http',
    ':authority': u.host,
    ':path': u.pathname + u.search,
    'sec-websocket-version': '13',
    ...options.headers,
  };
  const deflateOpts = options.perMessageDeflate === undefined ? true : options.perMessageDeflate;
  let pmd = null;
  if (deflateOpts) {
    pmd = new PerMessageDeflate(deflateOpts === true ? {} : deflateOpts, false, MAX_PAYLOAD);
    headers['sec-websocket-extensions'] = format({ [PerMessageDeflate.extensionName]: [pmd.offer()] });
  }
  if (options.protocols) headers['sec-websocket-protocol'] = options.protocols.join(', ');
  const stream = session.request(headers, { endStream: false });
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
    stream.once('response', (res) => {
      stream.removeAllListeners('error');
      stream.removeAllListeners('close');
      const status = res[':status'];
      if (status !== 200) {
        stream.close();
        return reject(Object.assign(new Error(`handshake answered ${status}`), { status, headers: res }));
      }
      // closeTimeout: ws arms its close timer with it (undefined would fire at
      // once and destroy the stream under the closing handshake).
      const ws = new WebSocket(null, undefined, { autoPong: true, closeTimeout: 30000 });
      ws._isServer = false; // mask what we send, refuse masked frames
      const offered = res['sec-websocket-extensions'];
      ws.extensionsHeader = offered;
      ws.responseHeaders = res;
      if (offered !== undefined) {
        if (!pmd) return reject(new Error(`extension ${offered} not offered`));
        pmd.accept(parse(offered)[PerMessageDeflate.extensionName]);
        ws._extensions[PerMessageDeflate.extensionName] = pmd;
      }
      ws._protocol = res['sec-websocket-protocol'] || '';
      // The wire bytes this stream received (a net.Socket counts its own).
      stream.bytesRead = 0;
      stream.on('data', (chunk) => {
        stream.bytesRead += chunk.length;
      });
      ws.setSocket(stream, Buffer.alloc(0), { maxPayload: MAX_PAYLOAD });
      resolve(ws);
    });
  });
}

module.exports = { connect, openOn, http2 };

// One session per origin, shared by the WebSockets a test suite opens, as
// a browser shares one connection per origin.
const sessions = new Map();

// `helpers.open` over HTTP/2: a WebSocket on a stream of the origin's session.
async function open(url, options = {}) {
  const u = new URL(url);
  const origin = (u.protocol === 'wss:' ? 'https://' : 'http://') + u.host;
  if (!sessions.has(origin)) sessions.set(origin, connect(origin, options.tls));
  return openOn(await sessions.get(origin), url, options);
}

// Closes every shared session.
function closeSessions() {
  for (const session of sessions.values()) session.then((s) => s.close(), () => {});
  sessions.clear();
}

module.exports.open = open;
module.exports.closeSessions = closeSessions;
