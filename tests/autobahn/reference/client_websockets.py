"""Autobahn client cases, reference client: Python `websockets` (pinned in
requirements.txt), as in websockets' own compliance/ scripts: echo every
message of every case, then ask for the reports.

    python client_websockets.py ws://127.0.0.1:9001 [--agent NAME] [--no-deflate]
"""

import argparse
import asyncio
import os

# 9.3.1/9.4.1 send messages of 65536 fragments; websockets caps them at 4096 by default
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException


async def main(base, agent, compression):
    async with connect(base + "/getCaseCount") as ws:
        count = int(await ws.recv())
    for case in range(1, count + 1):
        url = "%s/runCase?case=%d&agent=%s" % (base, case, agent)
        try:
            async with connect(url, max_size=2 ** 26, compression=compression) as ws:
                async for msg in ws:
                    await ws.send(msg)
        except WebSocketException:
            pass
    async with connect("%s/updateReports?agent=%s" % (base, agent)) as ws:
        try:
            await ws.recv()
        except WebSocketException:
            pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--agent", default="websockets")
    ap.add_argument("--no-deflate", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.base, a.agent, None if a.no_deflate else "deflate"))
