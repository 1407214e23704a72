"""Fragmentation, ping/pong and closing handshake."""
import asyncio
import os

import pytest
from websockets.asyncio.client import connect

import wsraw
from conftest import run
from wsraw import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWS


def client(url, **kw):
    return connect(url, ping_interval=None, open_timeout=10, close_timeout=5, **kw)


async def fragments(parts):
    for p in parts:
        await asyncio.sleep(0)
        yield p


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_fragmented_text_and_binary(echo, echo_nodeflate, deflate):
    server = echo if deflate else echo_nodeflate

    async def go():
        async with client(server.url) as ws:
            await ws.send(fragments(["hel", "lo ", "wö", "rld", ""]))
            t = await ws.recv()
            await ws.send(fragments([b"\x00\x01", b"", os.urandom(70000), b"end"]))
            b = await ws.recv()
            return t, b

    t, b = run(go())
    assert t == "hello wörld"
    assert isinstance(b, bytes) and len(b) == 2 + 70000 + 3 and b.endswith(b"end")


def test_fragmented_with_interleaved_pings_raw(echo_nodeflate):
    with RawWS(echo_nodeflate.host, echo_nodeflate.port) as c:
        c.send_frame(TEXT, b"frag-", fin=False)
        c.send_frame(PING, b"p1")
        c.send_frame(CONT, "mént-".encode(), fin=False)
        c.send_frame(PING, b"p2")
        c.send_frame(CONT, b"", fin=False)
        c.send_frame(CONT, b"end", fin=True)
        pongs, message = [], b""
        while True:
            f = c.recv_frame()
            if f.opcode == PONG:
                pongs.append(f.payload)
                continue
            assert f.opcode in (TEXT, CONT), f
            assert not f.masked, "server frames must not be masked"
            message += f.payload
            if f.fin:
                break
        while len(pongs) < 2:
            f = c.recv_frame()
            assert f.opcode == PONG, f
            pongs.append(f.payload)
        assert pongs == [b"p1", b"p2"]
        assert message.decode() == "frag-mént-end"


def test_utf8_char_split_across_fragments_raw(echo_nodeflate):
    text = "€uro 🦀"
    raw = text.encode()
    with RawWS(echo_nodeflate.host, echo_nodeflate.port) as c:
        # split inside the 3-byte euro sign and inside the 4-byte crab
        c.send_frame(TEXT, raw[:1], fin=False)
        c.send_frame(CONT, raw[1:7], fin=False)
        c.send_frame(CONT, raw[7:], fin=True)
        op, data, _, _ = c.recv_message()
        assert op == TEXT and data.decode() == text


def test_ping_payload_websockets(echo):
    async def go():
        async with client(echo.url) as ws:
            # the waiter resolves only on a pong carrying the same payload
            waiter = await ws.ping(b"payload-123")
            latency = await asyncio.wait_for(waiter, 5)
            await ws.send("still alive")
            return latency, await ws.recv()

    latency, msg = run(go())
    assert latency >= 0 and msg == "still alive"


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))], ids=["empty", "1", "125"])
def test_ping_pong_raw(echo, payload):
    with RawWS(echo.host, echo.port) as c:
        c.send_frame(PING, payload)
        f = c.recv_frame()
        assert f.opcode == PONG and f.fin and f.payload == payload, f


def test_unsolicited_pong_is_ignored(echo):
    with RawWS(echo.host, echo.port) as c:
        c.send_frame(PONG, b"unsolicited")
        c.send_frame(BINARY, b"after")
        op, data, _, _ = c.recv_message()
        assert (op, data) == (BINARY, b"after")


@pytest.mark.parametrize("code,reason", [(1000, "normal"), (4000, "bye"), (3001, "ünïcode"), (1001, "")])
def test_close_code_and_reason(echo, code, reason):
    async def go():
        async with client(echo.url) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(code, reason)
            return ws

    ws = run(go())
    assert ws.protocol.close_sent.code == code
    assert ws.protocol.close_rcvd is not None, "server sent no close frame"
    assert ws.protocol.close_rcvd.code == code, ws.protocol.close_rcvd
    assert ws.close_code == code
    # the reason is optional in the reply; if the server sends one, it is ours
    assert ws.close_reason in ("", reason)


def test_close_without_code(echo):
    with RawWS(echo.host, echo.port) as c:
        c.send_close()  # empty close payload = no status code (1005)
        f = c.expect_close()
        assert f.payload in (b"", b"\x03\xe8"), f  # empty, or 1000
        assert c.expect_eof()


def test_close_raw_echo_and_tcp_close(echo):
    with RawWS(echo.host, echo.port) as c:
        c.send_close(4321, "done".encode())
        f = c.expect_close()
        assert f.close_code() == 4321 and f.close_reason() in ("", "done")
        assert not f.masked
        assert c.expect_eof(), "server must close the TCP connection after the close handshake"


def test_data_after_close_is_not_echoed(echo):
    with RawWS(echo.host, echo.port) as c:
        c.send_close(1000)
        c.send_frame(TEXT, b"too late")
        f = c.recv_frame()
        assert f.opcode == CLOSE, f
        c.expect_eof()


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_one_byte_fragments_raw(echo, echo_nodeflate, deflate):
    server = echo if deflate else echo_nodeflate
    text = "fragment-by-fragment ünïcode 🦀 " * 10
    raw = text.encode()
    with RawWS(server.host, server.port) as c:  # no extension offered
        c.send_frame(TEXT, raw[:1], fin=False)
        for i in range(1, len(raw) - 1):
            c.send_frame(CONT, raw[i:i + 1], fin=False)
        c.send_frame(CONT, raw[-1:], fin=True)
        op, data, rsv1, _ = c.recv_message()
        assert op == TEXT and not rsv1 and data.decode() == text
