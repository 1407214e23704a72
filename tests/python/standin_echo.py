#!/usr/bin/env python3
"""Stand-in for target/release/examples/echo, with the same CLI contract.

    standin_echo.py [ADDR] [--no-deflate]

Listens on ADDR (default 127.0.0.1:9001; port 0 picks a free port), prints
``listening on ws://HOST:PORT`` as its first stdout line, echoes every text and
binary message, accepts permessage-deflate with all RFC 7692 parameters
(including server_max_window_bits=8, answered 8 and served with a zlib window
of 9: zlib never emits a distance above 250 with a 512-byte window, so the
stream is valid for a 256-byte window). Used to prove the interop suites
without the Rust build:

    TOWER_WS_ECHO=tests/python/standin_echo.py .venv/bin/pytest tests/python
    TOWER_WS_ECHO=tests/python/standin_echo.py node --test tests/node/
"""
import asyncio
import http
import os
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import (
    ServerPerMessageDeflateFactory,
    _extract_parameters,
)
from websockets.exceptions import ConnectionClosed

MAX_MESSAGE = 64 * 1024 * 1024


class Deflate8Factory(ServerPerMessageDeflateFactory):
    """Accepts server_max_window_bits=8 (plain websockets refuses it)."""

    def process_request_params(self, params, accepted_extensions):
        _, _, smwb, _ = _extract_parameters(params, is_server=True)
        if smwb != 8:
            return super().process_request_params(params, accepted_extensions)
        params = [(k, "9" if k == "server_max_window_bits" else v) for k, v in params]
        resp, ext = super().process_request_params(params, accepted_extensions)
        resp = [(k, "8" if k == "server_max_window_bits" else v) for k, v in resp]
        return resp, ext


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def not_upgrade(connection, request):
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def main(argv):
    deflate = "--no-deflate" not in argv
    args = [a for a in argv if not a.startswith("--")]
    addr = args[0] if args else "127.0.0.1:9001"
    host, _, port = addr.rpartition(":")
    kwargs = dict(
        max_size=MAX_MESSAGE,
        ping_interval=None,
        process_request=not_upgrade,
        compression=None,
        extensions=[Deflate8Factory(client_max_window_bits=15)] if deflate else None,
    )
    async with serve(echo, host, int(port), **kwargs) as server:
        sock = server.sockets[0]
        h, p = sock.getsockname()[:2]
        print(f"listening on ws://{h}:{p}", flush=True)
        parent = os.getppid()
        while os.getppid() == parent:  # exit when the test runner dies
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
