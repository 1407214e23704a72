#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzingclient cases (loaded from the installed
``autobahntestsuite`` package) against a WebSocket echo server.

    fuzzingclient.py ws://127.0.0.1:9001 [--cases 1.*,2.*] [--exclude 9.*]
    fuzzingclient.py --spawn target/release/examples/echo [--spawn-arg --no-deflate]

Verdict per case (as in the Autobahn report):
  behavior      OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | FAILED
  behaviorClose OK | INFORMATIONAL | WRONG CODE | FAILED BY CLIENT | UNCLEAN | FAILED
A case counts as FAILED if behavior is FAILED or behaviorClose is FAILED or
UNCLEAN (Autobahn shows those red).  WRONG CODE / FAILED BY CLIENT are shown
as close warnings only.  Exit status 1 if any case FAILED.
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import py2load  # noqa: E402
from wsclient import FuzzingClientProtocol  # noqa: E402

DEFAULT_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*", "12.*", "13.*"]

OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED = "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"


def case_id(klass):
    return ".".join(klass.__name__[len("Case"):].split("_"))


def id_tuple(cid):
    return tuple(int(x) for x in cid.split("."))


def resolve_patterns(patterns, all_ids):
    """Autobahn's CaseSet.resolveCasePatternList semantics."""
    out = []
    for c in patterns:
        c = c.strip()
        if not c:
            continue
        if "*" in c:
            p = re.compile(c.replace(".", r"\.").replace("*", ".*"))
            out.extend(sorted((x for x in all_ids if p.match(x)), key=id_tuple))
        else:
            if c not in all_ids:
                raise SystemExit("unknown case id %r" % c)
            out.append(c)
    return out


def py2text(s, limit=None):
    """py2 byte-string (latin-1 str) or bytes -> readable text."""
    if s is None:
        return None
    if isinstance(s, str):
        try:
            b = s.encode("latin-1")
        except UnicodeEncodeError:
            return s[:limit] if limit else s
    else:
        b = bytes(s)
    if limit and len(b) > limit:
        b = b[:limit]
        suffix = " ..."
    else:
        suffix = ""
    try:
        return b.decode("utf-8") + suffix
    except UnicodeDecodeError:
        return "0x" + b.hex() + suffix


def clean_events(events):
    out = []
    for t in events or []:
        if t[0] == "message":
            out.append([t[0], py2text(t[1], 64), t[2]])
        elif t[0] in ("ping", "pong"):
            out.append([t[0], py2text(t[1], 64)])
        else:
            out.append([str(x) if not isinstance(x, (int, float, bool, type(None))) else x for x in t])
    return out


def json_safe(o):
    if isinstance(o, (bytes, bytearray)):
        return py2text(o, 256)
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(x) for x in o]
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    if hasattr(o, "__json__"):
        return json_safe(o.__json__())
    return repr(o)


def strip_html(s):
    s = py2text(s) or ""
    s = re.sub(r"<br\s*/?>", " ", s)
    s = re.sub(r"<[^>]+>", "", s)
    return " ".join(s.split())


def verdict_of(r):
    if r["harnessErrors"]:
        return FAILED
    b, bc = r["behavior"], r["behaviorClose"]
    if b == FAILED or bc in ("FAILED", "UNCLEAN"):
        return FAILED
    if b in (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED):
        return b
    return FAILED  # e.g. WRONG CODE written into behavior by a case


def failure_reason(r):
    if r["harnessErrors"]:
        return "harness/case error: " + "; ".join(r["harnessErrors"])
    parts = []
    if r["behavior"] == FAILED:
        msg = r["result"]
        if msg.startswith("Actual events match") and (r.get("expectedClose") or {}).get("closedByWrongEndpointIsFatal"):
            msg = "peer did not fail the connection itself (closedByWrongEndpointIsFatal)"
        if r.get("expected") and isinstance(r["expected"], dict) and r["expected"]:
            msg += " received=%s expected=%s" % (json.dumps(r["received"])[:160],
                                                 json.dumps(r["expected"])[:200])
        parts.append(msg)
    if r["behaviorClose"] in ("FAILED", "UNCLEAN"):
        msg = "close %s: %s" % (r["behaviorClose"], r["resultClose"])
        extra = []
        if r.get("wasNotCleanReason"):
            extra.append(r["wasNotCleanReason"])
        extra.append("closedByMe=%s remoteCloseCode=%s" % (r["closedByMe"], r["remoteCloseCode"]))
        msg += " (%s)" % "; ".join(extra)
        parts.append(msg)
    if r.get("violations"):
        parts.append("peer violations: " + "; ".join(r["violations"][:3]))
    return " | ".join(parts) or r.get("result", "")


async def run_case(loop, url, klass, case_timeout, verbose):
    logs = []

    def log(msg):
        logs.append(msg)
        if verbose > 1:
            print("    " + msg, flush=True)

    p = FuzzingClientProtocol(loop, url, log)
    harness_errors = []
    started = time.time()
    case = klass(p)
    p.runCase = case
    p.caseStart = started
    u = urlparse(url)
    timed_out = False
    try:
        await asyncio.wait_for(loop.create_connection(lambda: p, u.hostname, u.port or 80), 10)
    except Exception as e:
        p.wasNotCleanReason = "could not connect: %s" % (e,)
        harness_errors.append("could not connect to %s: %s" % (url, e or type(e).__name__))
        p.state = p.STATE_CLOSED
    else:
        waitsecs = getattr(case, "WAITSECS", None)
        limit = case_timeout if case_timeout else (max(30.0, float(waitsecs) + 30.0) if waitsecs else 30.0)
        try:
            await asyncio.wait_for(asyncio.shield(p.done), limit)
        except asyncio.TimeoutError:
            timed_out = True
            log("harness watchdog: case did not finish within %.0fs, dropping connection" % limit)
            p.wasNotCleanReason = "harness watchdog timeout (%.0fs)" % limit
            p.dropConnection(abort=True)
            await p.done
    return case_result(p, case, klass, started, harness_errors, logs, timed_out)


def case_result(p, case, klass, started, harness_errors, logs, timed_out=False):
    """Lets the case judge the finished connection (its onConnectionLost) and
    returns the report entry; shared with the fuzzing server (wsserver.py)."""
    harness_errors = list(harness_errors) + list(getattr(p, "harness_errors", []))
    try:
        case.onConnectionLost(p.failedByMe)
    except Exception as e:
        import traceback
        traceback.print_exc()
        harness_errors.append("onConnectionLost: %s: %s" % (type(e).__name__, e))
    ended = time.time()
    if timed_out:
        harness_errors.append("watchdog timeout")

    expected = {}
    try:
        expected = {k: clean_events(v) for k, v in (case.expected or {}).items()}
    except Exception:
        expected = repr(case.expected)
    r = {
        "id": case_id(klass),
        "description": strip_html(getattr(klass, "DESCRIPTION", ""))[:400],
        "expectation": strip_html(getattr(klass, "EXPECTATION", ""))[:400],
        "behavior": case.behavior,
        "behaviorClose": case.behaviorClose,
        "result": py2text(case.result),
        "resultClose": py2text(case.resultClose),
        "received": clean_events(case.received),
        "expected": expected,
        "expectedClose": json_safe(case.expectedClose),
        "duration": int(round(1000 * (ended - started))),
        "reportTime": case.reportTime,
        "agent": p.agent,
        "closedByMe": p.closedByMe,
        "failedByMe": p.failedByMe,
        "droppedByMe": p.droppedByMe,
        "wasClean": p.wasClean,
        "wasNotCleanReason": p.wasNotCleanReason,
        "wasServerConnectionDropTimeout": p.wasServerConnectionDropTimeout,
        "wasOpenHandshakeTimeout": p.wasOpenHandshakeTimeout,
        "wasCloseHandshakeTimeout": p.wasCloseHandshakeTimeout,
        "localCloseCode": p.localCloseCode,
        "localCloseReason": py2text(p.localCloseReason, 130),
        "remoteCloseCode": p.remoteCloseCode,
        "remoteCloseReason": p.remoteCloseReason,
        "handshakeError": p.handshakeError,
        "violations": p.violations,
        "perMessageCompress": json_safe(p._perMessageCompress),
        "trafficStats": json_safe(case.trafficStats) if case.trafficStats else None,
        "txFrameStats": json_safe(p.txFrameStats),
        "rxFrameStats": json_safe(p.rxFrameStats),
        "httpRequest": getattr(p, "http_request_data", None),
        "httpResponse": p.http_response_data,
        "harnessErrors": harness_errors,
        "log": logs[-20:],
    }
    r["verdict"] = verdict_of(r)
    if r["verdict"] == FAILED:
        r["reason"] = failure_reason(r)
        r["wirelog"] = json_safe(list(p.wirelog)[-120:])
    return r


class Spawned(object):
    def __init__(self, cmd, args, logpath):
        argv = shlex.split(cmd) + ["127.0.0.1:0"] + list(args)
        self.logf = open(logpath, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.logf,
                                     start_new_session=True)
        self.url = None
        deadline = time.time() + 60
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(rb"ws://[0-9A-Za-z.\[\]:_-]+(?:/\S*)?", line)
            if m:
                self.url = m.group(0).decode()
                break
        if not self.url:
            self.stop()
            raise SystemExit("spawned server %r did not print a ws:// URL (got %r); see %s"
                             % (argv, line, logpath))

        # keep draining stdout so the server never blocks on a full pipe
        def drain():
            for ln in self.proc.stdout:
                self.logf.write(b"[stdout] " + ln)
        threading.Thread(target=drain, daemon=True).start()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


def section_of(cid):
    return cid.split(".")[0]


def print_summary(results, categories, out=sys.stdout):
    cols = [OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED]
    hdr = "%-4s %-44s %6s %6s %6s %6s %6s %6s %9s" % ("sec", "category", "total", "OK", "NONSTR",
                                                     "INFO", "UNIMPL", "FAILED", "closeWarn")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    secs = sorted({section_of(r["id"]) for r in results}, key=int)
    tot = {c: 0 for c in cols}
    totw = 0
    for s in secs:
        rs = [r for r in results if section_of(r["id"]) == s]
        cnt = {c: sum(1 for r in rs if r["verdict"] == c) for c in cols}
        warn = sum(1 for r in rs if r["behaviorClose"] in ("WRONG CODE", "FAILED BY CLIENT") and r["verdict"] != FAILED)
        for c in cols:
            tot[c] += cnt[c]
        totw += warn
        print("%-4s %-44s %6d %6d %6d %6d %6d %6d %9d" % (s, categories.get(s, "?")[:44], len(rs), cnt[OK],
                                                          cnt[NON_STRICT], cnt[INFORMATIONAL], cnt[UNIMPLEMENTED],
                                                          cnt[FAILED], warn), file=out)
    print("-" * len(hdr), file=out)
    print("%-4s %-44s %6d %6d %6d %6d %6d %6d %9d" % ("all", "", len(results), tot[OK], tot[NON_STRICT],
                                                      tot[INFORMATIONAL], tot[UNIMPLEMENTED], tot[FAILED], totw),
          file=out)
    return tot


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="ws://host:port of the echo server under test")
    ap.add_argument("--spawn", metavar="CMD", help="start CMD 127.0.0.1:0 [spawn args]; it must print its ws:// URL")
    ap.add_argument("--spawn-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for --spawn (repeatable), e.g. --spawn-arg=--no-deflate")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help="comma separated case patterns (default: %(default)s)")
    ap.add_argument("--exclude", default="", help="comma separated case patterns to skip, e.g. 9.*,12.*,13.*")
    ap.add_argument("--agent", help="agent name used in the report (default: server header or spawn cmd)")
    ap.add_argument("--report-dir", default=os.path.join(os.path.dirname(HERE), "report"))
    ap.add_argument("--case-timeout", type=float, default=0,
                    help="harness watchdog per case in s (default: 30, or case WAITSECS+30)")
    ap.add_argument("--fail-on-unimplemented", action="store_true",
                    help="count UNIMPLEMENTED (e.g. permessage-deflate not negotiated) as failure")
    ap.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args()

    case_mod, cases_mod, pkgdir = py2load.load_cases()
    by_id = {case_id(k): k for k in cases_mod.Cases}
    all_ids = sorted(by_id, key=id_tuple)
    selected = resolve_patterns(args.cases.split(","), all_ids)
    excluded = set(resolve_patterns(args.exclude.split(","), all_ids)) if args.exclude else set()
    seen = set()
    ids = []
    for c in selected:
        if c not in excluded and c not in seen:
            seen.add(c)
            ids.append(c)
    ids.sort(key=id_tuple)
    if args.list:
        print("\n".join(ids))
        print("%d cases" % len(ids), file=sys.stderr)
        return 0
    if not ids:
        raise SystemExit("no cases selected")
    if bool(args.url) == bool(args.spawn):
        ap.error("give exactly one of URL or --spawn CMD")

    os.makedirs(args.report_dir, exist_ok=True)
    spawned = None
    if args.spawn:
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.agent or os.path.basename(shlex.split(args.spawn)[-1]))
        spawned = Spawned(args.spawn, args.spawn_arg, os.path.join(args.report_dir, "server-%s.log" % tag))
        url = spawned.url
        print("spawned %s -> %s" % (args.spawn, url), flush=True)
    else:
        url = args.url

    categories = dict(cases_mod.CaseCategories)
    results = []
    t0 = time.time()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for i, cid in enumerate(ids):
            if spawned and not spawned.alive():
                print("spawned server exited with %s before case %s" % (spawned.proc.returncode, cid), flush=True)
            r = loop.run_until_complete(run_case(loop, url, by_id[cid], args.case_timeout, args.verbose))
            results.append(r)
            if args.verbose or r["verdict"] == FAILED:
                line = "[%d/%d] %-9s %-13s close=%-16s code=%-5s %5dms" % (
                    i + 1, len(ids), cid, r["verdict"], r["behaviorClose"], r["remoteCloseCode"], r["duration"])
                if r["verdict"] == FAILED:
                    line += "  " + r["reason"][:300]
                print(line, flush=True)
            elif (i + 1) % 25 == 0 or r["duration"] > 5000:
                print("[%d/%d] %s %s %dms (%.0fs elapsed)" % (i + 1, len(ids), cid, r["verdict"], r["duration"],
                                                           time.time() - t0), flush=True)
    finally:
        loop.close()
        if spawned:
            spawned.stop()

    agent = args.agent or (args.spawn and os.path.basename(shlex.split(args.spawn)[-1])) or \
        next((r["agent"] for r in results if r["agent"]), None) or "server"
    return report_and_exit_code(results, categories, url, agent, t0, args, "fuzzingclient")


def report_and_exit_code(results, categories, url, agent, t0, args, mode, strict=False):
    """Prints the summary, writes report/<agent>.json and index.json, and
    returns the exit status: 1 if any case FAILED (or UNIMPLEMENTED with
    --fail-on-unimplemented, or NON-STRICT when strict)."""
    print()
    print("Autobahn|Testsuite 25.10.1 %s cases vs %s (%s), %.0fs" % (mode, url, agent, time.time() - t0))
    tot = print_summary(results, categories)
    failed = [r for r in results if r["verdict"] == FAILED]
    if failed:
        print("\nFAILED cases:")
        for r in failed:
            print("  %-9s %s" % (r["id"], r["reason"][:400]))
    warn = [r for r in results if r["behaviorClose"] in ("WRONG CODE", "FAILED BY CLIENT") and r["verdict"] != FAILED]
    if warn and args.verbose:
        print("\nclose warnings:")
        for r in warn:
            print("  %-9s %s: %s" % (r["id"], r["behaviorClose"], r["resultClose"]))

    report = {
        "testsuite": "autobahntestsuite 25.10.1 (py3 harness)",
        "url": url,
        "agent": agent,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "duration_s": round(time.time() - t0, 1),
        "cases": args.cases,
        "exclude": args.exclude,
        "summary": tot,
        "results": {r["id"]: r for r in results},
    }
    fn = os.path.join(args.report_dir, "%s.json" % re.sub(r"[^A-Za-z0-9_.-]+", "_", agent))
    with open(fn, "w") as f:
        json.dump(json_safe(report), f, indent=1, sort_keys=False)
    # Autobahn-style index.json (agent -> case -> behavior)
    idx_fn = os.path.join(args.report_dir, "index.json")
    index = {}
    if os.path.exists(idx_fn):
        try:
            index = json.load(open(idx_fn))
        except ValueError:
            index = {}
    index[agent] = {r["id"]: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"],
                              "remoteCloseCode": r["remoteCloseCode"], "duration": r["duration"],
                              "verdict": r["verdict"]} for r in results}
    with open(idx_fn, "w") as f:
        json.dump(index, f, indent=1)
    print("\nreport: %s" % fn)
    bad = tot[FAILED] + (tot[UNIMPLEMENTED] if args.fail_on_unimplemented else 0) + (tot[NON_STRICT] if strict else 0)
    print("%d passed, %d failed" % (len(results) - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
