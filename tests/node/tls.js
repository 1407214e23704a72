'use strict';
// A throwaway certificate for 127.0.0.1 and localhost, made with the
// openssl CLI in a temporary directory (never committed).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function makeCert() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-ws-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-days', '1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { dir, cert, key, pem: fs.readFileSync(cert), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

module.exports = { makeCert };
