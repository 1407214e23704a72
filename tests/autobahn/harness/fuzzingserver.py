#!/usr/bin/env python3
"""Autobahn|Testsuite's fuzzingserver on Python 3: the client cases (the
server role of the same case classes) for a WebSocket client under test.

    fuzzingserver.py [--listen 127.0.0.1:9001] [--cases 1.*,2.*] [--exclude 9.*]
    fuzzingserver.py --spawn-client 'target/release/examples/autobahn_client'

With ``--spawn-client CMD`` it runs ``CMD ws://HOST:PORT`` once the server
listens, waits for it to exit, and ends with the summary and an exit status
(1 if a case FAILED, or with --strict NON-STRICT too, or with
--fail-on-unimplemented UNIMPLEMENTED too).  Without it, it serves until
interrupted and reports each time a client calls /updateReports.

The client under test speaks wstest's protocol: it reads /getCaseCount,
runs every case with /runCase?case=N&agent=A (echoing every text and binary
message until the server closes), then calls /updateReports?agent=A.
"""

import argparse
import asyncio
import os
import shlex
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import py2load  # noqa: E402
from fuzzingclient import (FAILED, case_id, case_result, id_tuple, report_and_exit_code,  # noqa: E402
                           resolve_patterns)
from fuzzingclient import DEFAULT_CASES  # noqa: E402
from wsserver import FuzzingServerProtocol  # noqa: E402


class Server(object):
    """The case list and the results, per agent, across connections."""

    def __init__(self, loop, by_id, ids, args, categories):
        self.loop = loop
        self.by_id = by_id
        self.ids = ids
        self.args = args
        self.categories = categories
        self.results = {}  # agent -> {case id -> result}
        self.t0 = time.time()
        self.reported = loop.create_future()
        self.exit_code = 0
        self.url = None

    def route(self, p, path, params):
        """Checks the request of a connection; returns an error or None."""
        if path == "/runCase":
            if not p.caseAgent:
                return "need agent to run case"
            try:
                n = int(params["case"][0])
                cid = self.ids[n - 1]
                if n < 1:
                    raise IndexError
            except (KeyError, ValueError, IndexError):
                return "invalid or missing case number (1..%d)" % len(self.ids)
            p.Case = self.by_id[cid]
            p.caseId = cid
            p.runCase = p.Case(p)
            p.runStarted = time.time()
            p.logs = []
            p.log = p.logs.append
            if self.args.verbose:
                print("running case %s (%d/%d) for %s" % (cid, n, len(self.ids), p.caseAgent), flush=True)
        elif path == "/updateReports":
            if not p.caseAgent:
                return "need agent to update reports for"
        elif path != "/getCaseCount":
            return "unknown path %s (fuzzingserver: /getCaseCount, /runCase, /updateReports)" % path
        return None

    def on_command(self, p):
        if p.path == "/getCaseCount":
            p.sendMessage(str(len(self.ids)).encode("ascii"))
            p.sendClose()
        elif p.path == "/updateReports":
            self.exit_code = self.report(p.caseAgent)
            p.sendClose()
            if not self.reported.done():
                self.reported.set_result(p.caseAgent)

    def on_connection_lost(self, p):
        if p.runCase is None or p.caseId is None:
            return
        r = case_result(p, p.runCase, p.Case, p.runStarted, [], p.logs)
        self.results.setdefault(p.caseAgent, {})[p.caseId] = r
        if self.args.verbose or r["verdict"] == FAILED:
            line = "  %-9s %-13s close=%-16s code=%-5s %5dms" % (
                r["id"], r["verdict"], r["behaviorClose"], r["remoteCloseCode"], r["duration"])
            if r["verdict"] == FAILED:
                line += "  " + r["reason"][:300]
            print(line, flush=True)

    def report(self, agent):
        got = self.results.get(agent, {})
        results = [got[c] for c in self.ids if c in got]
        missing = [c for c in self.ids if c not in got]
        if missing:
            print("%s did not run %d cases: %s" % (agent, len(missing), " ".join(missing[:20])), flush=True)
        return report_and_exit_code(results, self.categories, self.url, agent, self.t0, self.args,
                                    "fuzzingserver (client)", strict=self.args.strict) or (1 if missing else 0)


async def serve(server, host, port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: FuzzingServerProtocol(loop, server), host, port)
    sock = srv.sockets[0].getsockname()
    server.url = "ws://%s:%d" % (sock[0], sock[1])
    print("fuzzingserver listening on %s (%d cases)" % (server.url, len(server.ids)), flush=True)
    return srv


async def main_async(args, server):
    host, _, port = args.listen.rpartition(":")
    srv = await serve(server, host or "127.0.0.1", int(port))
    try:
        if not args.spawn_client:
            await asyncio.Future()
        argv = shlex.split(args.spawn_client) + [server.url]
        print("spawning %s" % " ".join(argv), flush=True)
        proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True)
        try:
            rc = await asyncio.wait_for(proc.wait(), args.client_timeout)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            print("the client did not finish within %ds" % args.client_timeout, flush=True)
            return 1
        if rc != 0:
            print("the client exited with status %d" % rc, flush=True)
            return 1
        if not server.reported.done():
            print("the client exited without calling /updateReports", flush=True)
            return 1
        return server.exit_code
    finally:
        srv.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:9001", help="address to listen on (port 0: any)")
    ap.add_argument("--spawn-client", metavar="CMD", help="run CMD ws://HOST:PORT and report when it exits")
    ap.add_argument("--client-timeout", type=int, default=3600, help="seconds the spawned client may run")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma separated case patterns")
    ap.add_argument("--exclude", default="", help="comma separated case patterns to skip")
    ap.add_argument("--report-dir", default=os.path.join(os.path.dirname(HERE), "report", "clients"))
    ap.add_argument("--strict", action="store_true", help="count NON-STRICT as failure")
    ap.add_argument("--fail-on-unimplemented", action="store_true",
                    help="count UNIMPLEMENTED (permessage-deflate not negotiated) as failure")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args()

    case_mod, cases_mod, pkgdir = py2load.load_cases()
    by_id = {case_id(k): k for k in cases_mod.Cases}
    all_ids = sorted(by_id, key=id_tuple)
    excluded = set(resolve_patterns(args.exclude.split(","), all_ids)) if args.exclude else set()
    ids = []
    for c in resolve_patterns(args.cases.split(","), all_ids):
        if c not in excluded and c not in ids:
            ids.append(c)
    ids.sort(key=id_tuple)
    if not ids:
        raise SystemExit("no cases selected")
    os.makedirs(args.report_dir, exist_ok=True)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(loop, by_id, ids, args, dict(cases_mod.CaseCategories))
    try:
        return loop.run_until_complete(main_async(args, server))
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
