#!/usr/bin/env python3
"""Soak load for the tower-ws ops example (see scripts/soak.sh).

Keeps about --connections WebSockets open against the server at --addr for
--duration seconds, churning: each client connects (a share offering
permessage-deflate), lives a random while, then closes normally or drops the
TCP connection abruptly, pauses and starts over. Kinds of clients:

- talkers (most): receive the server's broadcast feed and check every message
  (sequence numbers without gaps, body byte for byte), and send text
  messages carrying a CRC-32 that the server echoes, checked byte for byte;
- slow readers (--slow share): read in bursts with pauses; the server may
  close them with 1013 when their queue overflows, never drop their messages
  silently (a gap without that close is a loss);
- dead readers (--dead share): complete the handshake and never read again;
  the server must close them (keepalive 1011, queue overflow 1013 or the
  memory budget).

Every second it samples the server's resident memory, open file descriptors
and counters (/metrics), writes them to a CSV and, at the end, a PNG plot.
Exits 1 if a message was lost or corrupted, a talker was closed or failed
unexpectedly, or the server's memory or descriptors grew after the warm-up
(the first --warmup share of the run) beyond --rss-growth-mib / --fd-slack.

Loopback only, bounded in time. A light asyncio client written for this
(frames parsed by hand), so one Python process drives 10,000 connections.
"""

import argparse
import asyncio
import base64
import csv
import http.client
import os
import random
import struct
import sys
import threading
import time
import zlib

LOOPBACK = ("127.", "localhost")
PATTERN = bytes(range(256)) * 4200  # feed bodies are (seq + i) % 256


class Stats:
    def __init__(self):
        self.connects = 0
        self.refused = 0
        self.connect_errors = 0
        self.open = 0
        self.feed = 0
        self.echoes = 0
        self.sent = 0
        self.lost = 0
        self.corrupted = 0
        self.unexpected = 0
        self.normal_closes = 0
        self.aborts = 0
        self.server_closes = {}
        self.deflate = 0
        self.errors = []

    def error(self, msg):
        self.unexpected += 1
        if len(self.errors) < 20:
            self.errors.append(msg)

    def closed_by_server(self, code):
        self.server_closes[code] = self.server_closes.get(code, 0) + 1


def mask(payload, key):
    """RFC 6455 §5.3 masking, a word at a time through int XOR."""
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(opcode, payload, rsv1=False):
    key = os.urandom(4)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + key + mask(payload, key)


class Client(asyncio.Protocol):
    """One WebSocket connection, frames parsed from data_received."""

    def __init__(self, kind, deflate, stats):
        self.kind, self.deflate, self.stats = kind, deflate, stats
        self.buf = bytearray()
        self.handshake = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.last_seq = None
        self.pending = []  # texts sent, echoes expected in order
        self.close_code = None
        self.transport = None
        self.fragments = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            self.upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(head)
            if self.kind == "dead":
                self.transport.pause_reading()
                return
        self.parse()

    def parse(self):
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from(">H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from(">Q", buf, 2)[0], 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            del buf[: pos + n]
            self.on_frame(b0 & 0x0F, bool(b0 & 0x40), payload)

    def on_frame(self, opcode, rsv1, payload):
        if opcode == 0x9:
            self.transport.write(frame(0xA, payload))
            return
        if opcode == 0x8:
            self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result(self.close_code)
            self.transport.write(frame(0x8, payload[:2]))
            return
        if opcode in (0x1, 0x2):
            if rsv1:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 0x2:
                self.on_feed(payload)
            else:
                self.on_echo(payload)

    def on_feed(self, payload):
        self.stats.feed += 1
        seq = struct.unpack(">Q", payload[:8])[0]
        body = payload[8:]
        start = seq % 256
        if body != PATTERN[start : start + len(body)]:
            self.stats.corrupted += 1
            self.stats.errors.append(f"feed {seq}: corrupted")
        if self.last_seq is not None and seq != self.last_seq + 1:
            # A gap: a loss, unless the server then closes this slow or
            # dead reader for its full queue (judged at the end).
            self.gap = True
        self.last_seq = seq

    def on_echo(self, payload):
        text = payload.decode()
        if not self.pending:
            self.stats.corrupted += 1
            self.stats.errors.append("an echo nobody sent")
            return
        expected = self.pending.pop(0)
        self.stats.echoes += 1
        if text != expected or int(text[:8], 16) != zlib.crc32(text[8:].encode()):
            self.stats.corrupted += 1
            self.stats.errors.append(f"corrupted echo of {len(expected)} bytes")

    def connection_lost(self, exc):
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed before the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text):
        self.pending.append(text)
        data = text.encode()
        if self.deflate:
            c = zlib.compressobj(wbits=-15)
            packed = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
            self.transport.write(frame(0x1, packed[:-4], rsv1=True))
        else:
            self.transport.write(frame(0x1, data))
        self.stats.sent += 1


def text_message(rng):
    size = int(2 ** rng.uniform(0, 14))
    body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz é€") for _ in range(min(size, 64)))
    body = (body * (size // max(len(body), 1) + 1))[:size]
    return f"{zlib.crc32(body.encode()):08x}" + body


async def client(cid, args, stats, deadline):
    rng = random.Random(args.seed * 1000003 + cid)
    roll = rng.random()
    kind = "dead" if roll < args.dead else "slow" if roll < args.dead + args.slow else "talker"
    deflate = kind == "talker" and cid % 2 == 0
    loop = asyncio.get_running_loop()
    host, port = args.addr.rsplit(":", 1)
    await asyncio.sleep(rng.uniform(0, args.ramp))
    while time.monotonic() < deadline:
        proto = Client(kind, deflate, stats)
        try:
            transport, _ = await loop.create_connection(lambda: proto, host, int(port))
        except OSError as e:
            stats.connect_errors += 1
            if stats.connect_errors < 5:
                stats.errors.append(f"connect: {e}")
            await asyncio.sleep(1)
            continue
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n" if deflate else ""
        transport.write(
            (f"GET /ws HTTP/1.1\r\nHost: {args.addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
             f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode()
        )
        try:
            head = await asyncio.wait_for(proto.handshake, 30)
        except Exception as e:  # noqa: BLE001 - any failure is counted
            transport.abort()
            stats.connect_errors += 1
            if stats.connect_errors < 5:
                stats.errors.append(f"handshake: {type(e).__name__}: {e}")
            await asyncio.sleep(1)
            continue
        if not head.startswith("HTTP/1.1 101"):
            transport.abort()
            stats.refused += 1
            await asyncio.sleep(1 + rng.random())
            continue
        if deflate:
            if "permessage-deflate" not in head:
                stats.error("deflate not negotiated")
            stats.deflate += 1
        stats.connects += 1
        stats.open += 1
        proto.gap = False
        try:
            await live(proto, kind, rng, args, stats, deadline)
        finally:
            stats.open -= 1
        await asyncio.sleep(rng.uniform(0, args.pause))


async def live(proto, kind, rng, args, stats, deadline):
    t = proto.transport
    until = min(deadline, time.monotonic() + rng.uniform(args.life / 4, args.life))
    while time.monotonic() < until and not proto.closed.done():
        if kind == "talker":
            proto.send_text(text_message(rng))
            waited = time.monotonic()
            while proto.pending and not proto.closed.done():
                if time.monotonic() - waited > args.timeout:
                    stats.lost += 1
                    stats.errors.append(f"no echo within {args.timeout} s")
                    t.abort()
                    return
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0, args.think))
        elif kind == "slow":
            t.pause_reading()
            await asyncio.sleep(rng.uniform(0.5, 3))
            t.resume_reading()
            await asyncio.sleep(rng.uniform(0.1, 0.5))
        else:
            await asyncio.sleep(0.5)
    if proto.closed.done():
        code = proto.close_code
        stats.closed_by_server(code)
        if kind == "talker":
            stats.error(f"talker closed by the server with {code}")
        elif proto.gap and code not in (1013, 1011, None):
            stats.lost += 1
        t.abort()
        return
    if proto.gap and kind != "dead":
        stats.lost += 1
        stats.errors.append(f"{kind} reader missed feed messages without being closed")
    if kind == "dead" or rng.random() < args.abort:
        t.abort()
        stats.aborts += 1
        return
    t.write(frame(0x8, struct.pack(">H", 1000)))
    try:
        code = await asyncio.wait_for(proto.closed, 10)
        if code == 1000:
            stats.normal_closes += 1
        else:
            stats.error(f"close answered with {code}")
    except asyncio.TimeoutError:
        stats.error("no close reply within 10 s")
    t.abort()


def server_sample(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def metrics(addr):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def pick(values, prefix, label=""):
    return sum(v for k, v in values.items() if k.startswith(prefix) and label in k)


COLUMNS = ["t", "rss_mib", "fds", "client_open", "server_open", "buffered_mib", "msgs_in",
           "msgs_out", "keepalive_timeouts", "overflow_closes", "budget_closes", "feed_received",
           "echoes", "lost", "corrupted"]


def monitor(args, stats, start, stop, rows):
    """Samples every --interval seconds, on a thread of its own so a busy
    event loop does not delay it."""
    print(" ".join(f"{c:>9}" for c in COLUMNS[:11]), flush=True)
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - start
        rss, fds = server_sample(args.server_pid)
        try:
            m = metrics(args.addr)
        except OSError:
            m = {}
        row = [round(now, 1), round(rss / 2**20, 1), fds, stats.open,
               int(pick(m, "tower_ws_connections_open")),
               round(pick(m, "tower_ws_buffered_bytes") / 2**20, 1),
               int(pick(m, "tower_ws_messages_total", 'direction="in"')),
               int(pick(m, "tower_ws_messages_total", 'direction="out"')),
               int(pick(m, "tower_ws_keepalive_timeouts_total")),
               int(pick(m, "tower_ws_hub_overflow_closes_total")),
               int(pick(m, "tower_ws_budget_closes_total")),
               stats.feed, stats.echoes, stats.lost, stats.corrupted]
        rows.append(row)
        if len(rows) % 10 == 1:
            print(" ".join(f"{v:>9}" for v in row[:11]), flush=True)
        next_at += args.interval
        stop.wait(max(0.0, next_at - time.monotonic()))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(t, [r[1] for r in rows], label="server RSS (MiB)")
    axes[0].plot(t, [r[5] for r in rows], label="buffered, by the budget (MiB)")
    axes[0].set_ylabel("MiB")
    axes[0].legend(loc="upper left")
    axes[1].plot(t, [r[2] for r in rows], label="server open fds")
    axes[1].plot(t, [r[4] for r in rows], label="server open WebSockets")
    axes[1].plot(t, [r[3] for r in rows], label="client open WebSockets")
    axes[1].legend(loc="upper left")
    rate = [0] + [(rows[i][6] + rows[i][7] - rows[i - 1][6] - rows[i - 1][7]) / max(rows[i][0] - rows[i - 1][0], 1e-9)
                  for i in range(1, len(rows))]
    axes[2].plot(t, rate, label="messages/s in+out (server)")
    axes[2].plot(t, [r[8] for r in rows], label="keepalive timeouts (total)")
    axes[2].plot(t, [r[9] for r in rows], label="overflow closes (total)")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper left")
    fig.suptitle("tower-ws soak: server memory, descriptors and traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="host:port of the ops example")
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--ramp", type=float, default=15, help="seconds to open the first connections")
    p.add_argument("--life", type=float, default=40, help="most seconds a connection lives")
    p.add_argument("--think", type=float, default=5, help="most seconds between two texts")
    p.add_argument("--pause", type=float, default=2, help="most seconds between connections")
    p.add_argument("--abort", type=float, default=0.3, help="share of connections dropped abruptly")
    p.add_argument("--slow", type=float, default=0.05, help="share of slow readers")
    p.add_argument("--dead", type=float, default=0.05, help="share of dead readers")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for an echo")
    p.add_argument("--interval", type=float, default=1, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=0.4, help="share of the run that warms up")
    p.add_argument("--rss-growth-mib", type=float, default=64)
    p.add_argument("--fd-slack", type=int, default=512)
    p.add_argument("--out", default="target/soak", help="directory for soak.csv and soak.png")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if not args.addr.startswith(LOOPBACK):
        sys.exit("soak.py: loopback addresses only")
    os.makedirs(args.out, exist_ok=True)

    stats, rows = Stats(), []
    start = time.monotonic()
    deadline = start + args.duration
    stop = threading.Event()
    mon = threading.Thread(target=monitor, args=(args, stats, start, stop, rows))
    mon.start()
    await asyncio.gather(*(client(i, args, stats, deadline) for i in range(args.connections)))
    await asyncio.sleep(5)  # let the server notice the last closes
    stop.set()
    mon.join()

    csv_path, png_path = os.path.join(args.out, "soak.csv"), os.path.join(args.out, "soak.png")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)
    plot(rows, png_path)

    failures = []
    if stats.lost:
        failures.append(f"{stats.lost} messages lost")
    if stats.corrupted:
        failures.append(f"{stats.corrupted} messages corrupted")
    if stats.unexpected:
        failures.append(f"{stats.unexpected} unexpected closes or errors")
    if stats.connect_errors > max(stats.connects // 100, 10):
        failures.append(f"{stats.connect_errors} failed connects")
    if not stats.echoes or not stats.feed:
        failures.append("no echo or no feed message was checked")
    warm = [r for r in rows if r[0] <= args.duration * args.warmup]
    late = [r for r in rows if r[0] >= args.duration * (1 - args.warmup / 2) and r[0] <= args.duration]
    if warm and late:
        growth = max(r[1] for r in late) - max(r[1] for r in warm)
        if growth > args.rss_growth_mib:
            failures.append(f"server RSS grew {growth:.1f} MiB after the warm-up (bound {args.rss_growth_mib})")
        fd_growth = max(r[2] for r in late) - max(r[2] for r in warm)
        if fd_growth > args.fd_slack:
            failures.append(f"server fds grew by {fd_growth} after the warm-up (bound {args.fd_slack})")
    end_rss, end_fds = rows[-1][1], rows[-1][2]

    print()
    print(f"connections: {stats.connects} ({stats.deflate} with permessage-deflate), {stats.normal_closes} closed "
          f"normally, {stats.aborts} dropped, {stats.refused} refused (503), {stats.connect_errors} connect errors")
    print(f"closed by the server, by code: {dict(sorted((str(k), v) for k, v in stats.server_closes.items()))}")
    print(f"messages: {stats.feed} feed messages and {stats.echoes} of {stats.sent} echoes checked; "
          f"{stats.lost} lost, {stats.corrupted} corrupted")
    print(f"server RSS: peak {max(r[1] for r in rows):.1f} MiB (warm-up peak "
          f"{max(r[1] for r in warm) if warm else 0:.1f}), {end_rss:.1f} MiB at the end; "
          f"fds peak {max(r[2] for r in rows)}, {end_fds} at the end")
    print(f"wrote {csv_path} and {png_path}")
    for e in stats.errors[:20]:
        print("  error:", e)
    if failures:
        print("SOAK FAILED: " + "; ".join(failures))
        return 1
    print("SOAK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
