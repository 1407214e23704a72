"""Our client (examples/client.rs, tower_ws::client) against the Python
`websockets` server: every permessage-deflate parameter on both sides
(window bits 8 included), large and fragmented messages, close codes both
ways, subprotocols and headers.

The client binary is $CARGO_TARGET_DIR (default target)/release/examples/client
(`cargo build --release --examples`); TOWER_WS_CLIENT overrides the path.
"""
import asyncio
import itertools
import os
import queue
import subprocess
import threading

import pytest
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from conftest import ROOT, TARGET, _die_with_parent

CLIENT = os.environ.get("TOWER_WS_CLIENT") or str(TARGET / "release" / "examples" / "client")
TIMEOUT = 15.0


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def binary_payload(n):
    return bytes((i * 31 + 7) & 0xFF for i in range(n))


class Peer:
    """A websockets echo server on its own thread. A text message
    "close-me CODE REASON" makes it close with that code; it records the
    close code and reason each connection ended with, and the request."""

    def __init__(self, **kwargs):
        self.closes = queue.Queue()
        self.requests = queue.Queue()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def handler(ws):
            self.requests.put(ws.request)
            try:
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith("close-me "):
                        _, code, reason = msg.split(" ", 2)
                        await ws.close(int(code), reason)
                        break
                    await ws.send(msg)
            finally:
                await ws.wait_closed()
                self.closes.put((ws.close_code, ws.close_reason))

        async def main():
            self.server = await serve(handler, "127.0.0.1", 0, max_size=2 ** 25, **kwargs)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=lambda: self._run(main()), daemon=True)
        self.thread.start()
        assert started.wait(10), "websockets server did not start"
        self.url = "ws://127.0.0.1:%d/path?q=1" % self.port

    def _run(self, coro):
        try:
            self.loop.run_until_complete(coro)
        except asyncio.CancelledError:
            pass

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)


@pytest.fixture
def peer_factory():
    peers = []

    def make(**kwargs):
        p = Peer(**kwargs)
        peers.append(p)
        return p
    yield make
    for p in peers:
        p.stop()


class Client:
    def __init__(self, url, *args):
        if not os.path.exists(CLIENT):
            pytest.fail("client example not found at %s; build it: (cd %s && cargo build --release "
                        "--examples)" % (CLIENT, ROOT), pytrace=False)
        self.proc = subprocess.Popen([CLIENT, url, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def expect(self):
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            pytest.fail("the client said nothing within %ss; stderr: %s" % (TIMEOUT, self.proc.stderr.read()))
        assert line is not None, "the client exited: %s" % self.proc.stderr.read().decode()
        return line

    def finish(self):
        self.proc.stdin.close()
        rest = []
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                break
            rest.append(line)
        self.proc.wait(TIMEOUT)
        return rest


def echo_round(client, text_repeat=2000, binary_len=70_000):
    text = "compress me, please! " * text_repeat
    client.send("repeat %d compress me, please! " % text_repeat)
    assert client.expect() == "text %d %s" % (len(text), fnv1a(text.encode()))
    client.send("binary %d" % binary_len)
    assert client.expect() == "binary %d %s" % (binary_len, fnv1a(binary_payload(binary_len)))


SERVER_PARAMS = [
    dict(server_no_context_takeover=snct, client_no_context_takeover=cnct,
         server_max_window_bits=smwb, client_max_window_bits=cmwb)
    for snct, cnct, smwb, cmwb in itertools.product([False, True], [False, True], [None, 9, 12], [None, 8, 11])
]

CLIENT_OFFERS = [
    [],  # the default offer: permessage-deflate; client_max_window_bits
    # websockets declines server_max_window_bits=8 (its zlib cannot
    # compress with 8 bits): the second offer, in preference order, is taken.
    ["client_max_window_bits; server_max_window_bits=8", "client_max_window_bits=9"],
    ["client_max_window_bits=10; server_no_context_takeover; client_no_context_takeover"],
    ["server_max_window_bits=10; client_max_window_bits", "client_max_window_bits"],
]


def offer_args(offers):
    args = []
    for o in offers:
        args += ["--offer", o]
    return args


@pytest.mark.parametrize("params", SERVER_PARAMS, ids=lambda p: "-".join(
    "%s=%s" % ("".join(w[0] for w in k.split("_")), v) for k, v in p.items()))
def test_every_deflate_parameter_on_both_sides(peer_factory, params):
    peer = peer_factory(compression=None, extensions=[ServerPerMessageDeflateFactory(**params)])
    for offers in CLIENT_OFFERS:
        c = Client(peer.url, *offer_args(offers))
        connected = c.expect()
        assert connected.startswith("connected 101 permessage-deflate"), (offers, connected)
        echo_round(c)
        echo_round(c, text_repeat=7, binary_len=5)
        c.send("close 1000 done")
        assert c.expect() == "close 1000 done"
        assert c.finish() == ["end"]
        assert peer.closes.get(timeout=TIMEOUT) == (1000, "done")


def test_client_window_bits_8(peer_factory):
    # websockets inflates what we compress within a 256-byte window (its own
    # compressor stops at 9 bits: the Node suite covers server bits 8).
    peer = peer_factory(compression=None, extensions=[ServerPerMessageDeflateFactory(
        server_max_window_bits=9, client_max_window_bits=8)])
    c = Client(peer.url)
    ext = c.expect()
    assert "server_max_window_bits=9" in ext and "client_max_window_bits=8" in ext, ext
    for _ in range(3):
        echo_round(c)
    c.send("close 1000")
    assert c.expect() == "close 1000 "
    c.finish()


def test_large_and_fragmented_messages(peer_factory):
    peer = peer_factory()
    c = Client(peer.url, "--frame-size", "1000")
    assert c.expect().startswith("connected 101")
    echo_round(c, text_repeat=200_000, binary_len=4 << 20)
    c.finish()
    c = Client(peer.url, "--no-deflate", "--frame-size", "65536")
    assert c.expect() == "connected 101 -"
    echo_round(c, text_repeat=200_000, binary_len=8 << 20)
    c.finish()


def test_close_codes_both_ways(peer_factory):
    peer = peer_factory()
    c = Client(peer.url)
    c.expect()
    c.send("close 4001 client says bye")
    assert c.expect().startswith("close 4001")
    assert c.finish() == ["end"]
    assert peer.closes.get(timeout=TIMEOUT) == (4001, "client says bye")

    for code, reason in [(1001, "going away"), (4002, "server says bye"), (1011, "oops")]:
        c = Client(peer.url)
        c.expect()
        c.send("text close-me %d %s" % (code, reason))
        assert c.expect() == "close %d %s" % (code, reason)
        assert c.finish() == ["end"]
        assert peer.closes.get(timeout=TIMEOUT)[0] == code


def test_pings_subprotocols_and_headers(peer_factory):
    peer = peer_factory(subprotocols=["v2", "v1"])
    c = Client(peer.url, "--protocol", "v1", "--protocol", "v2", "--header", "Authorization: Bearer xyz")
    assert c.expect().startswith("connected 101")
    request = peer.requests.get(timeout=TIMEOUT)
    assert request.headers["Authorization"] == "Bearer xyz"
    assert request.headers["Sec-WebSocket-Protocol"] == "v1, v2"
    assert request.path == "/path?q=1"
    c.send("ping hello")
    assert c.expect() == "pong hello"
    c.finish()


def test_a_refused_handshake_is_a_clear_error(peer_factory):
    async def refuse(connection, request):
        return connection.respond(403, "go away\n")
    peer = peer_factory(process_request=refuse)
    c = Client(peer.url)
    line = c.expect()
    assert line.startswith("error WebSocket handshake failed: the server answered 403 Forbidden"), line
    c.finish()
