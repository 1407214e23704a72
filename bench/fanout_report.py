"""The fan-out section of BENCHMARKS.md from bench/fanout.sh's JSON lines.

    python3 bench/fanout_report.py bench/results/fanout.json

Writes bench/results/fanout.md and puts it in BENCHMARKS.md between the
fan-out markers (appended the first time); bench/report.py keeps it there
when it rewrites the echo tables.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- fanout:start -->", "<!-- fanout:end -->"
ROWS = {"one-node": "one node, no backplane", "two-nodes": "two nodes through Redis"}


def median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def markdown(lines):
    first = lines[0]
    rounds = max(r["round"] for r in lines)
    out = [
        "## Fan-out: one publisher, many subscribers",
        "",
        f"`bash bench/fanout.sh`: one publisher and {first['subscribers']:,} subscriber connections "
        f"(`bench/src/bin/fanout.rs`), {first['size']} B binary messages, at most "
        f"{first['inflight']} in flight ahead of the slowest subscriber, against "
        "`examples/broadcast.rs` (every message broadcast to every client). Servers on core 0 "
        "(both in the two-node row), the load generator and redis-server on core 1. "
        f"Medians of {rounds} round(s), {first['seconds']} s each.",
        "",
        "| setup | broadcasts/s | delivered msgs/s | latency p50 / p99 (µs) | Redis messages per broadcast | lost | server core use |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, label in ROWS.items():
        rows = [r for r in lines if r.get("row") == row]
        if not rows:
            continue
        per = median(rows, "redis_publish_per_broadcast")
        out.append(
            f"| {label} | {fmt(median(rows, 'broadcasts_per_sec'))} "
            f"| {fmt(median(rows, 'delivered_per_sec'))} "
            f"| {fmt(median(rows, 'p50_us'))} / {fmt(median(rows, 'p99_us'))} "
            f"| {'–' if per is None else f'{per:.2f}'} | {fmt(median(rows, 'lost'))} "
            f"| {fmt(median(rows, 'server_cpu_util'), 2)} |"
        )
    busy = max((r.get("loadavg_before") or 0) for r in lines)
    if busy > 0.5:
        out += ["", f"**Noisy:** the machine's load average was {busy} before the run (other "
                "processes competing for both cores); rerun on an idle machine."]
    out += ["", "Raw data: `bench/results/fanout.json`.", ""]
    return "\n".join(out)


def splice(document, section):
    block = f"{START}\n{section}{END}\n"
    if START in document and END in document:
        head, rest = document.split(START, 1)
        return head + block + rest.split(END, 1)[1].lstrip("\n")
    return document.rstrip("\n") + "\n\n" + block


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fanout_report.py FANOUT.json")
    lines = [json.loads(l) for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()]
    if not lines:
        sys.exit("no rows")
    section = markdown(lines)
    (RESULTS / "fanout.md").write_text(section)
    target = ROOT / "BENCHMARKS.md"
    target.write_text(splice(target.read_text() if target.exists() else "", section))
    print(section)


if __name__ == "__main__":
    main()
