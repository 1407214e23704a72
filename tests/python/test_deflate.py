"""permessage-deflate (RFC 7692): negotiation and compressed traffic."""
import os
import random
import re
import zlib

import pytest
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

import wsraw
from conftest import run
from wsraw import BINARY, CONT, TEXT, RawWS

COMPRESSIBLE = "The quick brown fox jumps over the lazy dog. " * 2000


def periodic(period, total, seed):
    """Random block repeated: compressible only by back-references at `period`."""
    block = random.Random(seed).randbytes(period)
    return (block * (total // period + 1))[:total]


def messages():
    return [
        COMPRESSIBLE,
        os.urandom(20000),  # incompressible
        "",
        b"",
        COMPRESSIBLE,  # again: exercises context takeover
        "a",
        periodic(200, 6000, 1),  # back-references at distance 200 (< 256)
        periodic(300, 6000, 2),  # at distance 300: only if the window allows
        periodic(5000, 60000, 3),  # at distance 5000
        bytes(100000),
    ]


def ext_params(header):
    """Parse 'permessage-deflate; a; b=9' into {'a': True, 'b': '9'}."""
    assert header, "no Sec-WebSocket-Extensions header in the response"
    assert "," not in header, f"more than one extension accepted: {header}"
    name, *params = [p.strip() for p in header.split(";")]
    assert name == "permessage-deflate", header
    out = {}
    for p in params:
        k, eq, v = p.partition("=")
        assert k.strip() not in out, f"duplicate parameter in {header}"
        out[k.strip()] = v.strip().strip('"') if eq else True
    return out


async def echo_all(ws, msgs):
    for m in msgs:
        await ws.send(m)
        got = await ws.recv()
        assert type(got) is type(m) and got == m, f"echo mismatch for {type(m).__name__} len {len(m)}"


def connect_with(url, factory):
    return connect(url, extensions=[factory], compression=None, ping_interval=None,
                   open_timeout=10, close_timeout=5, max_size=2**24)


@pytest.mark.parametrize("cnct", [False, True], ids=["", "client_no_ctx"])
@pytest.mark.parametrize("snct", [False, True], ids=["", "server_no_ctx"])
@pytest.mark.parametrize("cmwb", range(9, 16))
def test_client_max_window_bits_and_no_context_takeover(echo, cmwb, snct, cnct):
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        client_max_window_bits=cmwb,
    )

    async def go():
        async with connect_with(echo.url, factory) as ws:
            await echo_all(ws, messages())
            return ws.protocol.extensions, ws.response.headers.get("Sec-WebSocket-Extensions")

    extensions, header = run(go())
    assert len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate), extensions
    ext = extensions[0]
    params = ext_params(header)
    if snct:
        assert params.get("server_no_context_takeover") is True, header
        assert ext.remote_no_context_takeover
    # the server may only lower the client's window, never raise it
    assert ext.local_max_window_bits <= cmwb
    if "client_max_window_bits" in params:
        assert 8 <= int(params["client_max_window_bits"]) <= cmwb, header
    if "server_max_window_bits" in params:
        # allowed (RFC 7692 §7.1.2.1): the server may announce a smaller window
        assert 8 <= int(params["server_max_window_bits"]) <= 15, header
        assert ext.remote_max_window_bits == int(params["server_max_window_bits"])


@pytest.mark.parametrize("smwb", range(8, 16))
def test_server_max_window_bits(echo, smwb):
    factory = ClientPerMessageDeflateFactory(server_max_window_bits=smwb)

    async def go():
        async with connect_with(echo.url, factory) as ws:
            # the client inflates with a window of exactly 2**smwb bytes: a server
            # that uses a larger window fails with "invalid distance too far back"
            await echo_all(ws, messages())
            return ws.protocol.extensions, ws.response.headers.get("Sec-WebSocket-Extensions")

    extensions, header = run(go())
    params = ext_params(header)
    assert "server_max_window_bits" in params, header
    got = int(params["server_max_window_bits"])
    assert 8 <= got <= smwb, header
    if smwb == 8:
        assert got == 8, header
    assert extensions[0].remote_max_window_bits == got


def test_no_deflate_negotiates_nothing(echo_nodeflate):
    async def go():
        async with connect(echo_nodeflate.url, ping_interval=None, open_timeout=10) as ws:
            await echo_all(ws, [COMPRESSIBLE, b"x"])
            return ws.protocol.extensions, ws.response.headers.get("Sec-WebSocket-Extensions")

    extensions, header = run(go())
    assert extensions == []
    assert header is None


def test_no_deflate_raw_offer_declined(echo_nodeflate):
    with RawWS(echo_nodeflate.host, echo_nodeflate.port,
               extensions="permessage-deflate; client_max_window_bits") as c:
        assert c.extensions is None
        c.send_frame(TEXT, COMPRESSIBLE.encode())
        op, data, rsv1, _ = c.recv_message()
        assert not rsv1 and data == COMPRESSIBLE.encode()


# -- on the wire ---------------------------------------------------------------

def test_rsv1_on_the_wire(echo):
    text = COMPRESSIBLE.encode()
    with RawWS(echo.host, echo.port, extensions="permessage-deflate; client_max_window_bits") as c:
        params = ext_params(c.extensions)
        compressed = wsraw.deflate_message(text)
        assert len(compressed) < len(text) // 10
        c.send_frame(TEXT, compressed, rsv1=True)
        f = c.recv_data_frame()
        assert f.opcode == TEXT and f.fin and not f.masked
        assert f.rsv1, "the server sent a compressible 90 kB message uncompressed (RSV1 clear)"
        assert len(f.payload) < len(text) // 10, f"poorly compressed: {len(f.payload)} bytes"
        wbits = int(params.get("server_max_window_bits", 15))
        assert wsraw.inflate_message(f.payload, wbits=wbits) == text


def test_uncompressed_message_on_deflate_connection(echo):
    with RawWS(echo.host, echo.port, extensions="permessage-deflate") as c:
        assert c.extensions
        c.send_frame(BINARY, b"plain, RSV1 clear")
        op, data, _, _ = c.recv_message()
        assert (op, data) == (BINARY, b"plain, RSV1 clear")


def test_fragmented_compressed_message(echo):
    text = COMPRESSIBLE.encode()
    with RawWS(echo.host, echo.port, extensions="permessage-deflate") as c:
        assert c.extensions
        comp = wsraw.deflate_message(text)
        third = len(comp) // 3
        c.send_frame(TEXT, comp[:third], rsv1=True, fin=False)  # RSV1 on the first frame only
        c.send_frame(wsraw.PING, b"mid")
        c.send_frame(CONT, comp[third:2 * third], fin=False)
        c.send_frame(CONT, comp[2 * third:], fin=True)
        op, data, rsv1, _ = c.recv_message()
        assert op == TEXT and data == text


@pytest.mark.parametrize("server_no_ctx", [False, True], ids=["takeover", "server_no_context_takeover"])
def test_server_context_takeover_on_the_wire(echo, server_no_ctx):
    msg = random.Random(7).randbytes(1500).hex().encode()  # 3000 bytes, ~50% compressible
    offer = "permessage-deflate" + ("; server_no_context_takeover" if server_no_ctx else "")
    with RawWS(echo.host, echo.port, extensions=offer) as c:
        params = ext_params(c.extensions)
        no_ctx = params.get("server_no_context_takeover") is True
        if server_no_ctx:
            assert no_ctx, c.extensions
        inflater = zlib.decompressobj(-15)
        sizes = []
        for _ in range(3):
            c.send_frame(BINARY, msg)
            f = c.recv_data_frame()
            assert f.fin and f.rsv1, f"expected a compressed frame, got {f}"
            sizes.append(len(f.payload))
            if no_ctx:
                inflater = zlib.decompressobj(-15)
            assert wsraw.inflate_message(f.payload, inflater) == msg
        if no_ctx:
            assert sizes[0] == sizes[1] == sizes[2], sizes
        else:
            # the repeat is one back-reference when the window is kept
            assert sizes[1] < sizes[0] // 4 and sizes[2] < sizes[0] // 4, sizes


def test_client_context_takeover_on_the_wire(echo):
    """The server keeps its inflate window between our messages (we reference it)."""
    msg = random.Random(8).randbytes(1000).hex().encode()
    with RawWS(echo.host, echo.port, extensions="permessage-deflate") as c:
        params = ext_params(c.extensions)
        if params.get("client_no_context_takeover") is True:
            pytest.skip(f"server asked for client_no_context_takeover: {c.extensions}")
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        first = wsraw.deflate_message(msg, compressor=deflater)
        second = wsraw.deflate_message(msg, compressor=deflater)
        assert len(second) < 50  # refers to the first message
        inflater = zlib.decompressobj(-15)
        for comp in (first, second):
            c.send_frame(BINARY, comp, rsv1=True)
            if params.get("server_no_context_takeover") is True:
                inflater = zlib.decompressobj(-15)
            op, data, _, _ = c.recv_message(decompressor=inflater)
            assert data == msg


def test_client_max_window_bits_8_raw(echo):
    """websockets can't compress with an 8-bit window; do it by hand: zlib's
    Z_RLE strategy only emits distance-1 matches, valid in a 256-byte window."""
    with RawWS(echo.host, echo.port,
               extensions="permessage-deflate; client_max_window_bits=8; server_max_window_bits=8") as c:
        params = ext_params(c.extensions)
        assert params.get("server_max_window_bits") == "8", c.extensions
        if "client_max_window_bits" in params:
            assert params["client_max_window_bits"] == "8", c.extensions
        deflater = zlib.compressobj(6, zlib.DEFLATED, -9, 8, zlib.Z_RLE)
        inflater = zlib.decompressobj(-8)
        for msg in [b"a" * 5000, periodic(100, 3000, 4), periodic(300, 3000, 5), b"", COMPRESSIBLE.encode()]:
            comp = wsraw.deflate_message(msg, compressor=deflater)
            c.send_frame(BINARY, comp, rsv1=True)
            op, data, rsv1, frames = c.recv_message(decompressor=inflater)
            assert data == msg


def test_offer_with_unknown_parameter_falls_back(echo):
    """An offer with an unknown parameter must be declined; a later valid one may be accepted."""
    with RawWS(echo.host, echo.port,
               extensions="permessage-deflate; x-unknown=1, permessage-deflate; client_no_context_takeover") as c:
        if c.extensions:
            params = ext_params(c.extensions)
            assert "x-unknown" not in params
        c.send_frame(TEXT, b"ok")
        op, data, _, _ = c.recv_message()
        assert data == b"ok"


def test_invalid_offer_values_are_declined(echo):
    for offer in ["permessage-deflate; server_max_window_bits=7",
                  "permessage-deflate; server_max_window_bits=16",
                  "permessage-deflate; client_max_window_bits=abc"]:
        with RawWS(echo.host, echo.port, extensions=offer) as c:
            assert c.extensions is None, (offer, c.extensions)
            c.send_frame(TEXT, b"ok")
            assert c.recv_message()[1] == b"ok"
