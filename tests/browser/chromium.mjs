// What the browser tests share: the paths of the demo binary and of
// Chromium, and the flags every test launches Chromium with.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
export const DEMO = process.env.DEMO_BIN || path.join(TARGET, 'release', 'examples', 'demo');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
// Why a test cannot run here, or false.
export const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}`
  : !existsSync(DEMO)
    ? `no demo binary at ${DEMO} (cargo build --release --example demo)`
    : false;
