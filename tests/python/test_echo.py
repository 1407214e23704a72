"""Echo of text and binary messages through the websockets client."""
import asyncio
import os
import socket

import pytest
from websockets.asyncio.client import connect

from conftest import run

MAX = 64 * 1024 * 1024


async def roundtrip(url, messages, **kw):
    async with connect(url, max_size=MAX, ping_interval=None, open_timeout=10,
                       close_timeout=5, **kw) as ws:
        out = []
        for m in messages:
            await ws.send(m)
            out.append(await ws.recv())
        return out


def test_text(echo):
    assert run(roundtrip(echo.url, ["hello"])) == ["hello"]


def test_binary(echo):
    data = bytes(range(256))
    got = run(roundtrip(echo.url, [data]))
    assert got == [data] and isinstance(got[0], bytes)


def test_empty_text_and_binary(echo):
    got = run(roundtrip(echo.url, ["", b""]))
    assert got == ["", b""]
    assert isinstance(got[0], str) and isinstance(got[1], bytes)


def test_unicode_text(echo):
    text = "héllo wörld — 🦀 日本語 Ελληνικά \u0000 \U0010FFFF " * 50
    assert run(roundtrip(echo.url, [text])) == [text]


@pytest.mark.parametrize("size", [1, 125, 126, 127, 65535, 65536, 65537])
@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_sizes(echo, echo_nodeflate, size, deflate):
    server = echo if deflate else echo_nodeflate
    data = os.urandom(size)
    text = ("abcdefgh" * (size // 8 + 1))[:size]
    assert run(roundtrip(server.url, [data, text])) == [data, text]


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_16mib_binary(echo, echo_nodeflate, deflate):
    server = echo if deflate else echo_nodeflate
    data = os.urandom(16 * 1024 * 1024)
    got = run(roundtrip(server.url, [data]))
    assert len(got[0]) == len(data) and got[0] == data


def test_16mib_compressible_text(echo):
    text = ("tower-ws echoes this line. " * 700_000)[: 16 * 1024 * 1024]
    got = run(roundtrip(echo.url, [text]))
    assert got[0] == text


def test_many_messages_in_order(echo):
    msgs = [f"message {i}" if i % 2 else os.urandom(i) for i in range(200)]

    async def go():
        async with connect(echo.url, ping_interval=None, open_timeout=10) as ws:
            for m in msgs:
                await ws.send(m)
            return [await ws.recv() for _ in msgs]

    assert run(go()) == msgs


def test_any_path_is_accepted(echo):
    assert run(roundtrip(echo.url + "/some/path?x=1", ["ok"])) == ["ok"]


def test_plain_http_get_gets_a_response(echo):
    with socket.create_connection((echo.host, echo.port), timeout=10) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {echo.host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    status = data.split(b"\r\n", 1)[0].split()
    assert status[0].startswith(b"HTTP/1."), data[:200]
    assert status[1] != b"101", data[:200]


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_concurrent_connections(echo, echo_nodeflate, deflate):
    server = echo if deflate else echo_nodeflate

    async def one(i):
        msgs = [f"client {i} message {j} " * (j + 1) for j in range(20)] + [os.urandom(3000)]
        async with connect(server.url, ping_interval=None, open_timeout=10) as ws:
            for m in msgs:
                await ws.send(m)
            return [await ws.recv() for _ in msgs] == msgs

    async def go():
        return await asyncio.gather(*(one(i) for i in range(50)))

    assert all(run(go()))
