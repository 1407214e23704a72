// Node `ws` fan-out server for bench/fanout.sh: every message a client sends
// goes to every connected client (the sender included) with the common
// pattern, a loop over `wss.clients` calling `send`.
// Usage: node broadcast.js HOST:PORT [--deflate]
// --deflate enables permessage-deflate with ws's defaults (context takeover,
// messages under 1 KiB sent uncompressed); ws then compresses once per client.
'use strict';
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:9002').split(/:(?=\d+$)/);
const deflate = process.argv.includes('--deflate');

const wss = new WebSocketServer({
  host,
  port: Number(port),
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: deflate,
  backlog: 4096,
});

wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening on ws://${a.address}:${a.port}`);
});

wss.on('connection', (ws, req) => {
  req.socket.setNoDelay(true);
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      client.send(data, { binary: isBinary });
    }
  });
  ws.on('error', () => ws.terminate());
});
