// Node `ws` echo server with permessage-deflate: the compression reference row.
// Usage: node echo.js HOST:PORT [--no-deflate]
// bufferutil is ws's native masking helper, the setup ws recommends for speed.
'use strict';
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:9001').split(/:(?=\d+$)/);
const deflate = !process.argv.includes('--no-deflate');

const wss = new WebSocketServer({
  host,
  port: Number(port),
  maxPayload: 64 * 1024 * 1024,
  // ws defaults, spelled out: context takeover both ways, 15-bit windows,
  // messages under 1 KiB are sent uncompressed.
  perMessageDeflate: deflate ? { threshold: 1024 } : false,
});

wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening on ws://${a.address}:${a.port}`);
});

wss.on('connection', (ws, req) => {
  req.socket.setNoDelay(true);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
