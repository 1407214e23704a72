// Autobahn client cases, reference client: Node `ws` (pinned in
// package-lock.json): echo every message of every case, then ask for the
// reports.
//
//   node client_ws.js ws://127.0.0.1:9001 [--agent NAME] [--skip-utf8-validation]
'use strict';
const WebSocket = require('ws');

const args = process.argv.slice(2);
const base = args.find((a) => a.startsWith('ws://'));
const agentAt = args.indexOf('--agent');
const agent = agentAt >= 0 ? args[agentAt + 1] : 'ws';
const options = {
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
  // 9.3.1/9.4.1 send 65536 fragments; ws limits fragments to 16384 by default
  maxFragments: 0,
  // The negative control of the harness self-test: a client that does not
  // check UTF-8 must fail the cases that expect close code 1007.
  skipUTF8Validation: args.includes('--skip-utf8-validation'),
};

function session(url, onMessage) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, options);
    ws.on('message', (data, isBinary) => onMessage(ws, data, isBinary));
    ws.on('error', () => {});
    ws.on('close', resolve);
  });
}

async function main() {
  let count = 0;
  await session(`${base}/getCaseCount`, (ws, data) => { count = Number(data.toString()); });
  for (let i = 1; i <= count; i++) {
    await session(`${base}/runCase?case=${i}&agent=${agent}`, (ws, data, isBinary) => {
      ws.send(data, { binary: isBinary });
    });
  }
  await session(`${base}/updateReports?agent=${agent}`, () => {});
}

main().catch((e) => { console.error(e); process.exit(1); });
