"""Protocol violations from a raw socket: the server fails the connection with
the right close code (RFC 6455 §7.4.1), closes TCP, and keeps serving others."""
import struct

import pytest
from websockets.asyncio.client import connect

from conftest import run
from wsraw import BINARY, CLOSE, CONT, PING, TEXT, RawWS, encode_frame


def still_serving(server):
    async def go():
        async with connect(server.url, ping_interval=None, open_timeout=10) as ws:
            await ws.send("after the violation")
            return await ws.recv()
    assert run(go()) == "after the violation"


def expect_failure(server, codes, frames, extensions=None):
    with RawWS(server.host, server.port, extensions=extensions) as c:
        for f in frames:
            c.send_raw(f)
        close = c.expect_close()
        assert close.close_code() in codes, f"expected close code {codes}, got {close}"
        assert not close.masked
        assert c.expect_eof(), "server must drop the TCP connection after failing it"
    still_serving(server)


CASES = {
    "unmasked-frame": ({1002}, [encode_frame(TEXT, b"hello", mask=False)]),
    "reserved-opcode-3": ({1002}, [encode_frame(0x3, b"x")]),
    "reserved-opcode-7": ({1002}, [encode_frame(0x7, b"")]),
    "reserved-opcode-B": ({1002}, [encode_frame(0xB, b"")]),
    "reserved-opcode-F": ({1002}, [encode_frame(0xF, b"x")]),
    "rsv2": ({1002}, [encode_frame(TEXT, b"x", rsv2=True)]),
    "rsv3": ({1002}, [encode_frame(BINARY, b"x", rsv3=True)]),
    "rsv1-without-deflate": ({1002}, [encode_frame(TEXT, b"x", rsv1=True)]),
    "continuation-without-start": ({1002}, [encode_frame(CONT, b"x")]),
    "text-inside-fragmented": ({1002}, [encode_frame(TEXT, b"a", fin=False), encode_frame(TEXT, b"b")]),
    "fragmented-ping": ({1002}, [encode_frame(PING, b"x", fin=False)]),
    "ping-126-bytes": ({1002}, [encode_frame(PING, b"x" * 126)]),
    "invalid-utf8": ({1007}, [encode_frame(TEXT, b"ok \xff\xfe")]),
    "invalid-utf8-surrogate": ({1007}, [encode_frame(TEXT, "ab".encode() + b"\xed\xa0\x80")]),
    "invalid-utf8-fragmented": ({1007}, [encode_frame(TEXT, b"ok", fin=False),
                                         encode_frame(CONT, b"\xc0\xaf", fin=True)]),
    "truncated-utf8-at-end": ({1007}, [encode_frame(TEXT, "€".encode()[:2])]),
    "close-1-byte": ({1002}, [encode_frame(CLOSE, b"\x03")]),
    "close-code-1005": ({1002}, [encode_frame(CLOSE, struct.pack("!H", 1005))]),
    "close-code-999": ({1002}, [encode_frame(CLOSE, struct.pack("!H", 999))]),
    "close-code-1004": ({1002}, [encode_frame(CLOSE, struct.pack("!H", 1004))]),
    "close-code-5000": ({1002}, [encode_frame(CLOSE, struct.pack("!H", 5000))]),
    "close-reason-invalid-utf8": ({1002, 1007}, [encode_frame(CLOSE, struct.pack("!H", 1000) + b"\xff")]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_violation(echo_nodeflate, name):
    codes, frames = CASES[name]
    expect_failure(echo_nodeflate, codes, frames)


@pytest.mark.parametrize("name", ["unmasked-frame", "reserved-opcode-3", "invalid-utf8", "rsv2"])
def test_violation_on_deflate_server(echo, name):
    codes, frames = CASES[name]
    expect_failure(echo, codes, frames)


def test_rsv1_on_continuation_frame(echo):
    expect_failure(echo, {1002}, [encode_frame(TEXT, b"", fin=False),
                                  encode_frame(CONT, b"x", rsv1=True)],
                   extensions="permessage-deflate")


def test_rsv1_on_control_frame(echo):
    expect_failure(echo, {1002}, [encode_frame(PING, b"x", rsv1=True)],
                   extensions="permessage-deflate")


def test_invalid_utf8_in_compressed_text(echo):
    import wsraw
    expect_failure(echo, {1007}, [encode_frame(TEXT, wsraw.deflate_message(b"abc\xff"), rsv1=True)],
                   extensions="permessage-deflate")


def test_garbage_deflate_data(echo):
    # not a valid deflate stream (BTYPE=11 is reserved)
    expect_failure(echo, {1002, 1007, 1011}, [encode_frame(BINARY, b"\xff\xff\xff\xff", rsv1=True)],
                   extensions="permessage-deflate")


def test_message_over_64mib_is_refused(echo_nodeflate):
    # announce 64 MiB + 1 without sending it: the server must refuse on the header
    header = encode_frame(BINARY, b"", length=64 * 1024 * 1024 + 1)
    expect_failure(echo_nodeflate, {1009}, [header])


def test_fragmented_message_over_64mib_is_refused(echo_nodeflate):
    chunk = 8 * 1024 * 1024
    with RawWS(echo_nodeflate.host, echo_nodeflate.port) as c:
        c.send_frame(BINARY, bytes(chunk), fin=False)
        code = None
        try:
            for _ in range(8):
                c.send_frame(CONT, bytes(chunk), fin=False)
            c.send_frame(CONT, b"x", fin=True)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            code = c.expect_close().close_code()
        except Exception as e:  # reset before we could read it
            pytest.fail(f"no close frame: {e!r}")
        assert code == 1009
    still_serving(echo_nodeflate)


def test_handshake_without_key_is_rejected(echo):
    with RawWS(echo.host, echo.port, handshake=False) as c:
        c.send_raw(f"GET / HTTP/1.1\r\nHost: {echo.host}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        status, _ = c.read_http_head()
        assert status != 101 and 400 <= status < 500


def test_handshake_wrong_version_is_rejected(echo):
    with RawWS(echo.host, echo.port, handshake=False) as c:
        c.send_raw(f"GET / HTTP/1.1\r\nHost: {echo.host}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 8\r\n\r\n".encode())
        status, headers = c.read_http_head()
        assert status != 101 and 400 <= status < 500
        if status == 426:
            assert "13" in headers.get("sec-websocket-version", "")
