#!/usr/bin/env python3
"""Reference echo server on Python `websockets` (pinned in ../requirements.txt).

Same CLI as the project's echo example:  echo_websockets.py HOST:PORT [--no-deflate]
Prints ws://HOST:PORT as its first stdout line.
"""
import asyncio
import os
import sys

# 9.3.1/9.4.1 send messages of 65536 fragments; websockets caps them at 4096 by default
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import serve


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main():
    addr = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "127.0.0.1:0"
    host, port = addr.rsplit(":", 1)
    compression = None if "--no-deflate" in sys.argv else "deflate"
    async with serve(echo, host, int(port), compression=compression, max_size=None,
                     max_queue=None, ping_interval=None, server_header="websockets-reference") as server:
        port = server.sockets[0].getsockname()[1]
        print("ws://%s:%d" % (host, port), flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
