"""The fan-out section of BENCHMARKS.md and its charts from bench/fanout.sh's JSON lines.

    python3 bench/fanout_report.py bench/results/fanout.json

Writes bench/results/fanout.md, fanout.svg (closed loop, no compression) and
fanout-deflate.svg (closed loop, compressed), and puts the section in
BENCHMARKS.md between the fan-out markers (appended the first time);
bench/report.py keeps it there when it rewrites the echo tables. A file
other than fanout.json (QUICK=1 writes fanout-quick.json) leaves BENCHMARKS.md alone.
Medians over rounds; ratios are server / tower-ws.
"""
import json
import statistics
import sys
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- fanout:start -->", "<!-- fanout:end -->"
PLAIN = ["tower-ws", "tower-ws (room)", "uWebSockets", "node-ws", "floor", "tower-ws (2 nodes via Redis)"]
DEFLATE = ["tower-ws", "uWebSockets (shared)", "uWebSockets (dedicated)", "node-ws", "floor"]
REF = "tower-ws"
METRICS = ["delivered_per_sec", "server_cpu_us_per_delivery", "p50_us", "p99_us", "lag_p50_us",
           "lag_p99_us", "lost", "stalls", "errors", "server_cpu_util", "load_cpu_util", "rate",
           "redis_publish_per_broadcast"]


def key(r):
    return (r["subscribers"], r["size"], r.get("loop", "closed"), "on" if r.get("deflate") else "off")


def medians(lines):
    """(subscribers, size, loop, compression, server) -> {metric: median}, or {"error": ...}."""
    groups = {}
    for r in lines:
        if "subscribers" in r and "server" in r:
            groups.setdefault(key(r) + (r["server"],), []).append(r)
        elif "server" in r:
            groups.setdefault(("error", r["server"]), []).append(r)
    out = {}
    for k, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out[k] = {"error": rs[0].get("error", "failed")}
            continue
        m = {}
        for metric in METRICS:
            vals = [r[metric] for r in ok if r.get(metric) is not None]
            m[metric] = statistics.median(vals) if vals else None
        m["negotiated_deflate"] = all(r.get("negotiated_deflate") for r in ok)
        out[k] = m
    return out


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def size_label(size):
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def cell(med, cfg, server, metric, digits=0):
    m = med.get(cfg + (server,))
    if m is None:
        return "n/a"
    if "error" in m:
        return "FAILED"
    v = m.get(metric)
    ref = med.get(cfg + (REF,), {}).get(metric)
    ratio = f" ({v / ref:.2f}x)" if server != REF and v and ref else ""
    trouble = [f"{fmt(m[k])} {k}" for k in ("lost", "stalls", "errors") if m.get(k)]
    return fmt(v, digits) + ratio + (f" ({', '.join(trouble)})" if trouble else "")


def latency(med, cfg, server):
    m = med.get(cfg + (server,))
    if m is None or "error" in m:
        return "n/a" if m is None else "FAILED"
    ms = lambda v: "–" if v is None else f"{v / 1000:,.1f}"
    return f"{ms(m['p50_us'])} / {ms(m['p99_us'])} · {ms(m['lag_p99_us'])}"


def cores(med, cfg, server):
    m = med.get(cfg + (server,))
    if m is None or "error" in m:
        return "–"
    pct = lambda v: "?" if v is None else f"{v * 100:.0f} %"
    return f"{pct(m['server_cpu_util'])} / {pct(m['load_cpu_util'])}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def section(med, configs, loop, compression, servers):
    cfgs = [c for c in configs if c[2] == loop and c[3] == compression]
    servers = [s for s in servers if any(c + (s,) in med for c in cfgs)]
    if not cfgs or not servers:
        return []
    label = lambda c: f"{c[0]:,} × {size_label(c[1])}"
    title = {("closed", "off"): "Closed loop, no compression", ("closed", "on"): "Closed loop, permessage-deflate",
             ("open", "off"): "Open loop (fixed rate), no compression",
             ("open", "on"): "Open loop (fixed rate), permessage-deflate"}[(loop, compression)]
    out = [f"### {title}", ""]
    if loop == "closed":
        out += ["Delivered messages per second (higher is better):", "",
                table(["subscribers × size"] + servers,
                      [[label(c)] + [cell(med, c, s, "delivered_per_sec") for s in servers] for c in cfgs]), ""]
    else:
        rate = lambda c: next((m.get("rate") for k, m in med.items() if k[:4] == c and m.get("rate")), None)
        rates = [f"{label(c)}: {fmt(rate(c), 1)}/s" for c in cfgs]
        out += ["Broadcasts per second, the same for every server: " + "; ".join(rates) + ". "
                "Delivered messages per second (below the offered rate when a server falls behind):", "",
                table(["subscribers × size"] + servers,
                      [[label(c)] + [cell(med, c, s, "delivered_per_sec") for s in servers] for c in cfgs]), ""]
    out += ["Server CPU time per delivered message (µs, lower is better):", "",
            table(["subscribers × size"] + servers,
                  [[label(c)] + [cell(med, c, s, "server_cpu_us_per_delivery", 2) for s in servers] for c in cfgs]),
            "",
            "Publish-to-delivery latency p50 / p99 · slowest-subscriber lag p99 (ms, lower is better):", "",
            table(["subscribers × size"] + servers,
                  [[label(c)] + [latency(med, c, s) for s in servers] for c in cfgs]), "",
            "Core use, server / load generator:", "",
            table(["subscribers × size"] + servers,
                  [[label(c)] + [cores(med, c, s) for s in servers] for c in cfgs]), ""]
    return out


def markdown(lines, charts):
    med = medians(lines)
    measured = [r for r in lines if "subscribers" in r]
    configs = sorted({key(r) for r in measured})
    rounds = max((r.get("round", 1) for r in lines), default=1)
    seconds = next((r["seconds"] for r in measured), "?")
    uws = RESULTS.parent / "target" / "uws" / "VERSION"
    out = [
        "## Fan-out: one publisher, many subscribers",
        "",
        "`bash bench/fanout.sh`: one publisher and N subscriber connections (`bench/src/bin/fanout.rs`); "
        "every message the publisher sends is broadcast by the server to every client (the publisher's "
        "own copy is not counted). Messages carry a sequence number and the send time, then JSON-like "
        "text. Closed loop: the next message goes out when every subscriber has the previous one. Open "
        "loop: a fixed rate for every server. Servers on core 0, the load generator (one thread; it "
        "reads every delivery, so with 10,000 subscribers its core is often the busier one) and "
        "redis-server on core 1: compare server CPU per delivery where the load generator's core is "
        f"full. Medians of {rounds} round(s), {seconds} s each. Ratios are server / `tower-ws`; "
        "slowest-subscriber lag is the time from publishing a message to its last delivery.",
        "",
        "- **tower-ws**: `examples/broadcast.rs`, `Clients::broadcast` from the `Hub` callbacks; "
        "**tower-ws (room)**: the same with `--room` (every client joins one room, `Clients::to(room)`); "
        "compressed: `--deflate` (`DeflateConfig::default()`: each message compressed once, shared by "
        "every recipient; messages under 128 B stay uncompressed).",
        f"- **uWebSockets**: `bench/uws/pubsub.cpp` on uWebSockets "
        f"{uws.read_text().strip().removeprefix('uWebSockets/') if uws.exists() else '(version unknown)'}: "
        "every connection subscribes to one topic, each message is `App::publish`ed to it; compressed "
        "with `SHARED_COMPRESSOR` (this version compresses once per recipient, each time from a reset "
        "stream) or `DEDICATED_COMPRESSOR` (a stream per connection, context takeover).",
        "- **node-ws**: `bench/node/broadcast.js`, a loop over `wss.clients` calling `send`; compressed "
        "with ws's default `perMessageDeflate` (per connection, messages under 1 KiB uncompressed).",
        "- **floor**: `bench/src/bin/floor_fanout.rs`, the least work on tokio: each message framed "
        "(and compressed) once, that buffer written to every socket with one `send` each.",
        "- **tower-ws (2 nodes via Redis)**: two `broadcast.rs --redis` processes (both on core 0) joined "
        "through a local redis-server, subscribers split over both, the publisher on the first.",
        "",
    ]
    for loop in ("closed", "open"):
        for compression in ("off", "on"):
            out += section(med, configs, loop, compression, PLAIN if compression == "off" else DEFLATE)
    redis = [m.get("redis_publish_per_broadcast") for k, m in med.items()
             if k[-1] == "tower-ws (2 nodes via Redis)" and m.get("redis_publish_per_broadcast") is not None]
    if redis:
        out += [f"Redis PUBLISH calls per broadcast in the two-node rows: {', '.join(f'{v:.2f}' for v in redis)} "
                "(1.00: one Redis message per broadcast whatever the number of recipients).", ""]
    failed = sorted({(k[-1], m["error"]) for k, m in med.items() if "error" in m})
    if failed:
        out += ["Failed runs: " + "; ".join(f"{s}: {e}" for s, e in failed) + ".", ""]
    busy = max((r.get("loadavg_before") or 0 for r in lines), default=0)
    if busy > 0.5:
        out += [f"**Noisy:** the machine's load average reached {busy} before a run (other processes "
                "competing for both cores); rerun on an idle machine.", ""]
    out += [f"Raw data: `bench/results/{charts[0]}.json`; charts: closed loop without and with compression.", ""]
    out += [f"![fan-out, closed loop: delivered messages/s relative to the fastest server](bench/results/{c}.svg)"
            for c in charts] + [""]
    return "\n".join(out)


def chart(lines, compression):
    med = medians(lines)
    configs = sorted(c for c in {key(r) for r in lines if "subscribers" in r} if c[2] == "closed" and c[3] == compression)
    servers = [s for s in (PLAIN if compression == "off" else DEFLATE) if any(c + (s,) in med for c in configs)]
    groups = [(f"{c[0]:,} subs\n{size_label(c[1])}", c) for c in configs]
    title = ("Fan-out, closed loop" + (", permessage-deflate" if compression == "on" else "")
             + ": delivered messages/s relative to the fastest server")
    return report.bar_chart(title, groups, servers,
                            lambda c, s: (med.get(c + (s,)) or {}).get("delivered_per_sec"), "msg/s")


def splice(document, section):
    block = f"{START}\n{section}{END}\n"
    if START in document and END in document:
        head, rest = document.split(START, 1)
        return head + block + rest.split(END, 1)[1].lstrip("\n")
    return document.rstrip("\n") + "\n\n" + block


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fanout_report.py FANOUT.json")
    path = Path(sys.argv[1])
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    if not lines:
        sys.exit("no rows")
    stem = path.stem
    charts = [stem, f"{stem}-deflate"]
    for name, compression in zip(charts, ("off", "on")):
        (RESULTS / f"{name}.svg").write_text(chart(lines, compression) + "\n")
    section = markdown(lines, charts)
    (RESULTS / f"{stem}.md").write_text(section)
    if stem == "fanout":
        target = ROOT / "BENCHMARKS.md"
        target.write_text(splice(target.read_text() if target.exists() else "", section))
    print(section)


if __name__ == "__main__":
    main()
