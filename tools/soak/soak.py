#!/usr/bin/env python3
"""Soak load for the tower-ws echo server (see scripts/soak.sh).

Keeps about --connections WebSockets open against --url for --duration
seconds, in --waves waves of the same load (all clients leave between two
waves); the first wave is the warm-up. Each client connects (half of them offering permessage-deflate,
half not), exchanges a random number of messages of random sizes and kinds
(text or binary, compressible or not), each carrying a CRC-32 of its body and
checked byte for byte against what was sent, then closes normally or drops
the TCP connection abruptly, waits a little and starts over. Meanwhile the
server's resident memory and open file descriptors are sampled.

Prints a table every --interval seconds and a summary. Exits 1 if any
message was lost or corrupted, a connection failed unexpectedly, the
server's RSS peak in a later wave exceeds the warm-up wave's by more than
--rss-growth-mib, or its open fds exceed one per connection plus slack
(or do not return to the baseline between waves).

Loopback only, bounded in time: the run stops after --duration seconds.
"""

import argparse
import asyncio
import os
import random
import struct
import sys
import time
import zlib

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

LOOPBACK = ("127.", "localhost", "[::1]")


class Stats:
    def __init__(self):
        self.connects = 0
        self.connect_errors = 0
        self.deflate_conns = 0
        self.plain_conns = 0
        self.sent = 0
        self.received = 0
        self.bytes = 0
        self.lost = 0
        self.corrupted = 0
        self.unexpected_closes = 0
        self.normal_closes = 0
        self.aborts = 0
        self.open = 0
        self.errors = []

    def error(self, msg):
        if len(self.errors) < 20:
            self.errors.append(msg)


def make_payload(rng, size, text):
    """A body of `size` bytes prefixed with its CRC-32; compressible or not."""
    kind = rng.random()
    if text:
        if kind < 0.5:
            body = ("lorem ipsum dolor sit amet é€ " * (size // 30 + 1))[: max(size, 0)]
        else:
            body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(min(size, 4096)))
            body = (body * (size // max(len(body), 1) + 1))[:size]
        crc = zlib.crc32(body.encode())
        return f"{crc:08x}" + body
    if kind < 0.5:
        body = os.urandom(size)
    else:
        body = bytes([rng.randrange(4)]) * size
    return struct.pack(">I", zlib.crc32(body)) + body


def check_payload(msg):
    if isinstance(msg, str):
        return int(msg[:8], 16) == zlib.crc32(msg[8:].encode())
    return struct.unpack(">I", msg[:4])[0] == zlib.crc32(msg[4:])


def random_size(rng, max_size):
    # Mostly small, sometimes large: log-uniform between 0 and max_size.
    if rng.random() < 0.05:
        return 0
    return int(min(max_size, 2 ** rng.uniform(0, max_size.bit_length())))


async def client(cid, args, stats, deadline):
    rng = random.Random(args.seed * 100003 + cid)
    deflate = cid % 2 == 0
    # Spread the initial connects over the ramp-up.
    await asyncio.sleep(rng.uniform(0, args.ramp))
    while time.monotonic() < deadline:
        try:
            ws = await connect(
                args.url,
                compression="deflate" if deflate else None,
                max_size=None,
                ping_interval=None,
                open_timeout=20,
                close_timeout=10,
            )
        except Exception as e:  # noqa: BLE001 - any failure is counted
            stats.connect_errors += 1
            stats.error(f"connect: {type(e).__name__}: {e}")
            await asyncio.sleep(1)
            continue
        stats.connects += 1
        stats.open += 1
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        if deflate:
            stats.deflate_conns += 1
            if not negotiated or "permessage-deflate" not in negotiated:
                stats.error(f"deflate not negotiated: {negotiated!r}")
                stats.unexpected_closes += 1
        else:
            stats.plain_conns += 1
            if negotiated:
                stats.error(f"extension without offer: {negotiated!r}")
                stats.unexpected_closes += 1
        try:
            for _ in range(rng.randint(1, args.messages)):
                if time.monotonic() >= deadline:
                    break
                text = rng.random() < 0.5
                payload = make_payload(rng, random_size(rng, args.max_size), text)
                await ws.send(payload)
                stats.sent += 1
                try:
                    echo = await asyncio.wait_for(ws.recv(), timeout=args.timeout)
                except asyncio.TimeoutError:
                    stats.lost += 1
                    stats.error(f"client {cid}: no echo within {args.timeout}s")
                    break
                stats.received += 1
                stats.bytes += len(payload)
                if echo != payload or not check_payload(echo):
                    stats.corrupted += 1
                    stats.error(f"client {cid}: corrupted echo of {len(payload)} bytes")
                await asyncio.sleep(rng.uniform(0, args.think))
            if rng.random() < args.abort:
                ws.transport.abort()
                stats.aborts += 1
            else:
                await ws.close()
                if ws.close_code != 1000:
                    stats.unexpected_closes += 1
                    stats.error(f"client {cid}: close code {ws.close_code}")
                else:
                    stats.normal_closes += 1
        except ConnectionClosed as e:
            stats.unexpected_closes += 1
            stats.error(f"client {cid}: closed: {e}")
        except Exception as e:  # noqa: BLE001
            stats.unexpected_closes += 1
            stats.error(f"client {cid}: {type(e).__name__}: {e}")
            ws.transport.abort()
        finally:
            stats.open -= 1
        await asyncio.sleep(rng.uniform(0, args.pause))


def sample(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


async def monitor(args, stats, start, stop, samples):
    print(
        f"{'t(s)':>6} {'open':>6} {'conns':>7} {'msgs':>9} {'msg/s':>7} {'MiB':>8} "
        f"{'lost':>5} {'bad':>5} {'unexp':>6} {'srvRSS MiB':>10} {'srv fds':>7}",
        flush=True,
    )
    last_msgs, last_t = 0, start
    while True:
        now = time.monotonic()
        rss, fds = sample(args.server_pid)
        samples.append((now - start, rss, fds, stats.open))
        rate = (stats.received - last_msgs) / max(now - last_t, 1e-9)
        last_msgs, last_t = stats.received, now
        print(
            f"{now - start:6.0f} {stats.open:6d} {stats.connects:7d} {stats.received:9d} {rate:7.0f} "
            f"{stats.bytes / 2**20:8.1f} {stats.lost:5d} {stats.corrupted:5d} "
            f"{stats.unexpected_closes:6d} {rss / 2**20:10.1f} {fds:7d}",
            flush=True,
        )
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.interval)
            return
        except asyncio.TimeoutError:
            pass


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--duration", type=float, default=120, help="seconds of load, all waves")
    p.add_argument("--waves", type=int, default=2, help="waves of load; the first is the warm-up")
    p.add_argument("--ramp", type=float, default=10, help="seconds to open the first connections")
    p.add_argument("--messages", type=int, default=40, help="most messages per connection")
    p.add_argument("--max-size", type=int, default=64 << 10)
    p.add_argument("--think", type=float, default=3.0, help="most seconds between messages")
    p.add_argument("--pause", type=float, default=1.0, help="most seconds between connections")
    p.add_argument("--abort", type=float, default=0.2, help="share of connections dropped abruptly")
    p.add_argument("--timeout", type=float, default=15, help="seconds to wait for an echo")
    p.add_argument("--interval", type=float, default=5, help="seconds between samples")
    p.add_argument("--drain", type=float, default=5, help="seconds after the load to sample")
    p.add_argument("--rss-growth-mib", type=float, default=64,
                   help="allowed growth of the RSS peak over the warm-up wave's")
    p.add_argument("--fd-slack", type=int, default=64, help="fds allowed above open connections")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    host = args.url.split("//", 1)[-1]
    if not host.startswith(LOOPBACK):
        sys.exit("soak.py: loopback addresses only")

    stats = Stats()
    start = time.monotonic()
    samples = []
    base_rss, base_fds = sample(args.server_pid)
    stop = asyncio.Event()
    mon = asyncio.create_task(monitor(args, stats, start, stop, samples))
    # Waves of the same load: the first warms the server up (buffers, zlib
    # state, allocator); each later wave must fit in the same memory.
    waves = []
    wave_len = args.duration / args.waves
    for w in range(args.waves):
        wave_start = time.monotonic() - start
        deadline = time.monotonic() + wave_len
        clients = [
            asyncio.create_task(client(w * args.connections + i, args, stats, deadline))
            for i in range(args.connections)
        ]
        await asyncio.gather(*clients)
        # Every client closed or dropped: let the server notice, then sample.
        await asyncio.sleep(args.drain)
        rss, fds = sample(args.server_pid)
        wave_end = time.monotonic() - start
        samples.append((wave_end, rss, fds, stats.open))
        peak = max(s[1] for s in samples if wave_start <= s[0] <= wave_end)
        waves.append((wave_start, wave_end, peak, rss, fds))
        print(f"-- wave {w + 1}/{args.waves}: server RSS peak {peak / 2**20:.1f} MiB, "
              f"{rss / 2**20:.1f} MiB and {fds} fds after its clients left", flush=True)
    stop.set()
    await mon

    # Verdict.
    failures = []
    if stats.lost:
        failures.append(f"{stats.lost} messages lost")
    if stats.corrupted:
        failures.append(f"{stats.corrupted} messages corrupted")
    if stats.unexpected_closes:
        failures.append(f"{stats.unexpected_closes} unexpected closes")
    if stats.connect_errors > stats.connects // 100:
        failures.append(f"{stats.connect_errors} failed connects")
    if stats.received == 0:
        failures.append("no message was echoed")
    warm_peak = waves[0][2]
    growth = (max(w[2] for w in waves[1:]) - warm_peak) / 2**20 if len(waves) > 1 else 0.0
    if growth > args.rss_growth_mib:
        failures.append(
            f"server RSS peak grew {growth:.1f} MiB after the warm-up wave (bound {args.rss_growth_mib})"
        )
    for t, _rss, fds, _open in samples:
        # One fd per connection plus the server's own few; clients that
        # dropped may still be closing: allow the configured slack.
        if fds > base_fds + args.connections + args.fd_slack:
            failures.append(f"server fds {fds} at t={t:.0f}s over {base_fds} + {args.connections} + slack")
            break
    for i, (_s, _e, _peak, _rss, fds) in enumerate(waves):
        if fds > base_fds + args.fd_slack // 4:
            failures.append(f"server fds {fds} after wave {i + 1}, baseline {base_fds}")
    end_rss, end_fds = waves[-1][3], waves[-1][4]
    ref_rss, peak_rss = warm_peak, max(w[2] for w in waves)

    print()
    print(f"connections: {stats.connects} ({stats.deflate_conns} deflate, {stats.plain_conns} plain), "
          f"{stats.normal_closes} closed normally, {stats.aborts} aborted, {stats.connect_errors} connect errors")
    print(f"messages: {stats.sent} sent, {stats.received} echoed and verified, "
          f"{stats.bytes / 2**20:.1f} MiB, {stats.lost} lost, {stats.corrupted} corrupted")
    print(f"server RSS: {base_rss / 2**20:.1f} MiB at start, peak {ref_rss / 2**20:.1f} in the warm-up wave, "
          f"peak {peak_rss / 2**20:.1f} overall (+{growth:.1f} after warm-up), {end_rss / 2**20:.1f} at the end")
    print(f"server fds: {base_fds} at start, peak {max(s[2] for s in samples)}, {end_fds} at the end")
    for e in stats.errors:
        print("  error:", e)
    if failures:
        print("SOAK FAILED: " + "; ".join(failures))
        return 1
    print("SOAK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
