#!/usr/bin/env node
// Reference echo server on Node `ws` (pinned in package.json / package-lock.json).
// Same CLI as the project's echo example:  echo_ws.js HOST:PORT [--no-deflate] [--skip-utf8-validation]
// Prints ws://HOST:PORT as its first stdout line.
'use strict';
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const addr = args.find((a) => !a.startsWith('--')) || '127.0.0.1:0';
const idx = addr.lastIndexOf(':');
const host = addr.slice(0, idx);
const port = Number(addr.slice(idx + 1));
const deflate = !args.includes('--no-deflate');
// negative control for the harness: a server that does not validate UTF-8
// must FAIL the invalid-UTF-8 cases (6.3.*, 6.4.*, invalid 6.x.y, 7.5.1)
const skipUTF8Validation = args.includes('--skip-utf8-validation');

const wss = new WebSocketServer({
  host,
  port,
  perMessageDeflate: deflate,
  maxPayload: 64 * 1024 * 1024,
  // 9.3.1/9.4.1 send 65536 fragments; ws limits fragments to 16384 by default
  maxFragments: 0,
  skipUTF8Validation,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`ws://${host}:${wss.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
