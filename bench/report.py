#!/usr/bin/env python3
"""Tables, BENCHMARKS.md and the SVG chart from the harness's raw JSON.

    python3 bench/report.py bench/results/echo.json   # regenerate without rerunning

Medians over rounds everywhere; ratios are peer / tower-ws for throughput (so
above 1 means the peer is faster) and for CPU and memory (above 1 means the peer
uses more). The SVG is written by hand to keep the harness dependency-free.
"""

import html
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

ECHO_ORDER = ["tower-ws", "floor", "uWebSockets", "tokio-tungstenite", "axum", "axum (tower-ws)", "fastwebsockets",
              "tokio-websockets"]
DEFLATE_ORDER = ["tower-ws (deflate)", "uWebSockets (shared)", "uWebSockets (dedicated)", "node-ws",
                 "tokio-tungstenite"]
# Idle rows with permessage-deflate negotiated, compared with tower-ws's.
IDLE_DEFLATE = ["tower-ws (deflate)", "node-ws (deflate)", "uWebSockets (dedicated)"]
# After one 20-byte echo per connection: what stays once traffic stopped.
IDLE_AFTER_ECHO = ["tower-ws after 1 echo", "floor after 1 echo", "floor (idle) after 1 echo",
                   "uWebSockets after 1 echo",
                   "fastwebsockets after 1 echo", "tokio-websockets after 1 echo"]
IDLE_ORDER = ECHO_ORDER[:2] + ["floor (idle)"] + ECHO_ORDER[2:] + ["node-ws"] + IDLE_AFTER_ECHO + IDLE_DEFLATE + ["tower-ws (h2)", "axum (h2)"]
H2_ORDER = ["tower-ws", "axum"]
CRATES = ["tokio", "hyper", "tokio-tungstenite", "tungstenite", "axum", "fastwebsockets",
          "tokio-websockets", "flate2", "zlib-rs"]
COLORS = ["#d62728", "#7f7f7f", "#17becf", "#1f77b4", "#2ca02c", "#8c564b", "#ff7f0e", "#9467bd",
          "#bcbd22", "#e377c2"]


def sh(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info():
    lscpu = sh("lscpu")
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), platform.processor())
    lock = tomllib.loads((BENCH / "Cargo.lock").read_text())
    versions = {}
    for pkg in lock.get("package", []):
        if pkg["name"] in CRATES:
            versions.setdefault(pkg["name"], []).append(pkg["version"])
    uws = BENCH / "target" / "uws" / "VERSION"
    if uws.exists():
        versions["uWebSockets"] = [uws.read_text().strip().removeprefix("uWebSockets/")]
    try:
        ws = json.loads((BENCH / "node" / "package-lock.json").read_text())
        versions["ws (npm)"] = [ws["packages"]["node_modules/ws"]["version"]]
    except (OSError, KeyError, ValueError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model,
        "cores": sh("nproc"),
        "kernel": platform.release(),
        "rustc": sh("rustc", "--version"),
        "node": sh("node", "--version"),
        # run.sh raises the soft limit to the hard one for the idle test.
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "tower_ws_commit": sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "versions": {k: ", ".join(v) for k, v in versions.items()},
    }


def medians(runs, noise_limit=0.05):
    """(row, server) -> {metric: median over successful rounds}. Rounds in which
    other processes used more than `noise_limit` of the machine are left out when
    a clean round exists; otherwise the cell is marked noisy."""
    groups = {}
    for r in runs:
        groups.setdefault((r["row"], r["server"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "failed" not in r]
        if not ok:
            out[key] = {"failed": rs[0]["failed"]}
            continue
        clean = [r for r in ok if r.get("foreign_cpu", 0) <= noise_limit]
        noisy = not clean
        ok = clean or ok
        m = {"noisy": noisy}
        for k in ["msgs_per_sec", "p50_us", "p99_us", "server_cpu_us_per_msg",
                  "server_cpu_util", "load_cpu_util",
                  "wire_bytes_out_per_msg", "wire_bytes_in_per_msg", "payload_bytes_per_msg"]:
            vals = [r[k] for r in ok if r.get(k) is not None]
            m[k] = statistics.median(vals) if vals else None
        m["errors"] = sum(r.get("errors", 0) for r in ok)
        m["negotiated_deflate"] = all(r.get("negotiated_deflate") for r in ok)
        m["rounds"] = len(ok)
        out[key] = m
    return out


def fmt_num(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(v, ref):
    if v is None or not ref:
        return ""
    return f" ({v / ref:.2f}x)"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def cell(med, row, server, ref, metric, digits=0):
    m = med.get((row, server))
    if m is None:
        return "n/a"
    if "failed" in m:
        return f"FAILED: {m['failed'][:40]}"
    r = med.get((row, ref), {})
    suffix = ratio(m[metric], r.get(metric)) if server != ref else ""
    err = f" ({m['errors']} err)" if m.get("errors") else ""
    noisy = " ~" if m.get("noisy") else ""
    return fmt_num(m[metric], digits) + suffix + err + noisy


def reference(servers, preferred, fallback):
    return preferred if preferred in servers else fallback


def markdown(data):
    limit = data["config"].get("noise_limit", 0.05)
    med = medians(data["runs"], limit)
    present = {r["server"] for r in data["runs"]}
    echo = [s for s in ECHO_ORDER if s in present]
    defl = [s for s in DEFLATE_ORDER if s in present]
    ref = reference(present, "tower-ws", "floor")
    dref = reference(present, "tower-ws (deflate)", "node-ws")
    cfg, mach = data["config"], data["machine"]
    out = []
    out.append("# Benchmarks\n")
    out.append("Generated by `bash bench/run.sh`; do not edit by hand. Echo servers, each on one "
               "pinned core, against a closed-loop load generator on the other core "
               "(`bench/src/bin/load.rs`, in the style of uWebSockets' load_test).\n")
    if data.get("missing"):
        out.append(f"**Not built for this run: {', '.join(data['missing'])}.** Ratios are "
                   f"relative to `{ref}` instead.\n")
    measured = [r for r in data["runs"] if "foreign_cpu" in r]
    noisy = sum(r["foreign_cpu"] > limit for r in measured)
    retried = sum(r.get("attempts", 1) > 1 for r in measured)
    noise_note = (f"Other processes' CPU is tracked during every run: {retried} of {len(measured)} runs "
                  f"were repeated because others used more than {limit:.0%} of the machine, "
                  f"{noisy} stayed above it and are left out of the medians where a clean round "
                  f"exists; cells marked `~` had no clean round.\n") if measured else ""
    out.append(f"Medians of {cfg['rounds']} round(s), {cfg['seconds']:g} s measured per run after "
               f"{cfg['warmup']:g} s warm-up; servers interleaved within each round. "
               f"Ratios in parentheses are peer / `{ref}`.\n")
    if noise_note:
        out.append(noise_note)
    out.append("## Machine\n")
    out.append(f"- CPU: {mach['cpu']} ({mach['cores']} cores; server pinned to core 0, load to core 1)")
    out.append(f"- Kernel: {mach['kernel']}; {mach['rustc']}; node {mach['node']}; "
               f"fd limit (`ulimit -n`) {mach.get('fd_limit', '?')}")
    out.append(f"- tower-ws commit: {mach['tower_ws_commit'] or 'unknown'}; run {mach['date']}")
    if "busy_before" in mach:
        noisy = " **(other work was running: treat as noisy)**" if max(
            mach["busy_before"], mach.get("busy_after", 0)) >= 0.10 else ""
        out.append(f"- Machine busy before / after the run (all cores, nothing of ours running): "
                   f"{mach['busy_before']:.0%} / {mach.get('busy_after', 0):.0%}{noisy}")
    out.append("- Versions: " + "; ".join(f"{k} {v}" for k, v in sorted(mach["versions"].items())) + "\n")

    out.append("## Throughput (messages/s, higher is better)\n")
    out.append(table(["conns x size"] + echo,
                     [[row] + [cell(med, row, s, ref, "msgs_per_sec") for s in echo]
                      for row in data["matrix"]]) + "\n")
    out.append("## Latency p50 / p99 (µs, lower is better)\n")
    out.append(table(["conns x size"] + echo,
                     [[row] + [lat(med.get((row, s))) for s in echo] for row in data["matrix"]]) + "\n")
    out.append("## Server CPU time per message (µs, lower is better)\n")
    out.append("utime + stime of the server process over the measured window, divided by the "
               "messages echoed in it (clock ticks are 10 ms, so short runs are coarse).\n")
    out.append(table(["conns x size"] + echo,
                     [[row] + [cell(med, row, s, ref, "server_cpu_us_per_msg", 2) for s in echo]
                      for row in data["matrix"]]) + "\n")

    out.append("## Core utilisation, server / load generator\n")
    out.append("Busy share of each pinned core over the measured window. When the load "
               "generator's core is near 100 % the row is bound by the client, and the server's "
               "CPU per message above is the fairer comparison.\n")
    out.append(table(["conns x size"] + echo,
                     [[row] + [util(med.get((row, s))) for s in echo] for row in data["matrix"]]) + "\n")

    if data["deflate_matrix"]:
        out.append("## permessage-deflate (JSON-like text)\n")
        out.append("The client offers `permessage-deflate; client_no_context_takeover; "
                   "client_max_window_bits` and compresses each message on its own; the server "
                   "may use context takeover. tokio-tungstenite declines the extension, so its row "
                   "is the uncompressed baseline. Wire bytes include frame headers.\n")
        rows = []
        for row in data["deflate_matrix"]:
            for s in defl:
                m = med.get((row, s))
                if not m or "failed" in m:
                    rows.append([row, s] + [m["failed"][:40] if m else "n/a"] + [""] * 5)
                    continue
                rows.append([row, s, cell(med, row, s, dref, "msgs_per_sec"),
                             cell(med, row, s, dref, "server_cpu_us_per_msg", 1),
                             fmt_num(m["payload_bytes_per_msg"]),
                             fmt_num(m["wire_bytes_out_per_msg"]),
                             fmt_num(m["wire_bytes_in_per_msg"]),
                             "yes" if m["negotiated_deflate"] else "no"])
        out.append(table(["payload", "server", "msgs/s", "CPU µs/msg", "payload B",
                          "wire B client→server", "wire B server→client", "deflate"], rows) + "\n")

    if data.get("h2_matrix"):
        out.append(h2_section(data, med))

    if data["idle"]:
        out.append("## Memory per idle connection\n")
        out.append("Server RSS growth (`VmRSS`) after the load tool opens and upgrades N connections "
                   "and holds them idle, divided by N. The `(deflate)` and `(dedicated)` rows negotiate "
                   "permessage-deflate first (node-ws allocates zlib state lazily). The `(h2)` rows "
                   "open the WebSockets as HTTP/2 streams, 100 per connection: bytes per WebSocket "
                   "stream, its share of the connection included. The `after 1 echo` rows echo one "
                   "20-byte message on every connection first (`load --idle --echo-once`): what an "
                   "idle connection keeps after traffic.\n")
        rows = []
        for s in IDLE_ORDER:
            i = data["idle"].get(s)
            if i is None:
                continue
            # Compressed connections are compared with compressed tower-ws.
            r = (dref if s in IDLE_DEFLATE else "tower-ws (h2)" if "(h2)" in s
                 else "tower-ws after 1 echo" if s in IDLE_AFTER_ECHO else ref)
            ref_idle = data["idle"].get(r, {}).get("bytes_per_conn")
            if "failed" in i:
                rows.append([s, "FAILED: " + i["failed"][:60], "", "", ""])
                continue
            label = s + (" (NOT negotiated)" if s in IDLE_DEFLATE and not i.get("negotiated_deflate") else "")
            rows.append([label, fmt_num(i["bytes_per_conn"]) + (ratio(i["bytes_per_conn"], ref_idle) if s != r else ""),
                         str(i["conns"]), fmt_num(i["rss_before_kib"]), fmt_num(i["rss_after_kib"])])
        out.append(table(["server", "bytes / connection", "connections", "RSS before (KiB)",
                          "RSS after (KiB)"], rows) + "\n")

    out.append("## The peers\n")
    out.append("- **tower-ws**: `examples/echo.rs --no-deflate`; the deflate rows run it without "
               "`--no-deflate`.")
    out.append("- **floor**: `bench/src/bin/floor_echo.rs`, the least work a correct echo can do on "
               "tokio: per read, unmask complete frames in place, rewrite headers, one write back. "
               "No UTF-8 checks, no limits: a yardstick, not a server.")
    out.append("- **floor (idle)**: `bench/src/bin/floor_idle.rs`, only in the idle rows: the least a "
               "server with one tokio task per connection holds per idle WebSocket. After the "
               "handshake each task keeps its socket and an unfinished frame's bytes, reads into "
               "one buffer per thread (as uWebSockets does per event loop) and echoes from there: "
               "idle, a connection is its task and tokio's registration of its socket.")
    out.append("- **uWebSockets**: `bench/uws/echo.cpp`, our echo on uWebSockets "
               f"{mach['versions'].get('uWebSockets', '(version unknown)')}, built by "
               "`bench/uws/build.sh` with `g++ -O3 -flto -DLIBUS_NO_SSL` and Debian's zlib: `ws->send` "
               "of every message. The deflate rows run it with `SHARED_COMPRESSOR` (one deflate "
               "stream per event loop, reset per message) and `DEDICATED_COMPRESSOR` (one per "
               "connection, context takeover); both inflate with the loop's shared inflater.")
    out.append("- **tokio-tungstenite**: `accept_async_with_config` + its example's `forward` loop.")
    out.append("- **axum**: 0.8 `WebSocketUpgrade`, `recv`/`send` loop; `axum::serve` with "
               "HTTP/1.1 and HTTP/2 (it enables RFC 8441), on every row.")
    out.append("- **axum (tower-ws)**: the same program with its `use axum::extract::ws` line switched "
               "to `tower_ws::axum` (`bench/src/bin/axum_tower_ws_echo.rs`).")
    out.append("- **fastwebsockets**: hyper 1 upgrade, `FragmentCollector`, auto close/pong.")
    out.append("- **tokio-websockets**: `ServerBuilder`, `next`/`send` loop.")
    out.append("- **node-ws**: `ws` with `perMessageDeflate` (its defaults) and `bufferutil`.")
    out.append("- All Rust servers: current-thread tokio runtime, `TCP_NODELAY`, 64 MiB message limit.\n")
    out.append("## Rerun\n")
    out.append("```sh\nbash bench/run.sh                       # full matrix, writes this file\n"
               "QUICK=1 bash bench/run.sh               # smoke test, writes bench/results/quick.*\n"
               "ROUNDS=5 SECONDS=10 bash bench/run.sh   # more rounds, longer runs\n"
               "python3 bench/report.py bench/results/echo.json   # re-render only\n"
               "bash bench/fanout.sh                    # the fan-out section below\n"
               "bash bench/scaling.sh                   # the 1 -> 2 worker threads section below\n"
               "bash bench/iomodel.sh                   # the epoll / io_uring section below\n```\n")
    out.append("Raw data: `bench/results/echo.json`; chart: `bench/results/echo.svg`.\n")
    out.append("![throughput relative to the fastest server per row](bench/results/echo.svg)\n")
    return "\n".join(out)


def h1_row(h2_label):
    """The HTTP/1.1 row with the same connections and size as an HTTP/2 row."""
    return h2_label.removeprefix("h2 ").split(",")[0]


def h2_section(data, med):
    """HTTP/2 rows: tower-ws and axum, and tower-ws's CPU per message over
    HTTP/2 against its own over HTTP/1.1 (target: within 1.5x)."""
    present = {r["server"] for r in data["runs"]}
    servers = [s for s in H2_ORDER if s in present]
    out = ["## WebSockets over HTTP/2 (RFC 8441)\n",
           "Clear-text HTTP/2 with prior knowledge; each WebSocket is an extended CONNECT "
           "stream, all of a row's streams on one connection or one connection per stream. "
           "The load generator speaks HTTP/2 with the `h2` crate (large flow-control windows, "
           "so a loopback run is not window-bound). Ratios are peer / `tower-ws`; the last "
           "column is tower-ws's server CPU per message over HTTP/2 divided by its own over "
           "HTTP/1.1 for the same connections and size (the HTTP/1.1 matrix above).\n"]
    rows = []
    for row in data["h2_matrix"]:
        h1 = med.get((h1_row(row), "tower-ws"), {})
        h2 = med.get((row, "tower-ws"), {})
        vs_h1 = ratio(h2.get("server_cpu_us_per_msg"), h1.get("server_cpu_us_per_msg")).strip(" ()")
        rows.append([row] + [cell(med, row, s, "tower-ws", "msgs_per_sec") for s in servers]
                    + [cell(med, row, s, "tower-ws", "server_cpu_us_per_msg", 2) for s in servers]
                    + [lat(med.get((row, s))) for s in servers]
                    + [vs_h1 or "-"])
    header = (["conns x size"] + [f"{s} msgs/s" for s in servers]
              + [f"{s} CPU µs/msg" for s in servers] + [f"{s} p50 / p99 µs" for s in servers]
              + ["tower-ws CPU/msg h2 ÷ h1"])
    out.append(table(header, rows) + "\n")
    return "\n".join(out)


def lat(m):
    if m is None:
        return "n/a"
    if "failed" in m:
        return "FAILED"
    return f"{fmt_num(m['p50_us'])} / {fmt_num(m['p99_us'])}"


def util(m):
    if m is None or "failed" in m:
        return "-"
    pct = [f"{v * 100:.0f} %" if v is not None else "?" for v in (m.get("server_cpu_util"), m.get("load_cpu_util"))]
    return " / ".join(pct)


def svg(data):
    """Grouped bars: per matrix row, each server's msgs/s relative to the row's best."""
    med = medians(data["runs"], data["config"].get("noise_limit", 0.05))
    present = {r["server"] for r in data["runs"]}
    servers = [s for s in ECHO_ORDER if s in present]
    return bar_chart("Echo throughput relative to the fastest server in each row (label: messages/s)",
                     [(row.replace(" x 16 in flight", "\nx 16 in flight"), row) for row in data["matrix"]],
                     servers, lambda row, s: (med.get((row, s)) or {}).get("msgs_per_sec"), "msg/s")


def bar_chart(title, groups, series, value, unit):
    """An SVG of grouped bars, each group scaled to its best value: `groups` are
    (label, key) pairs (a label may hold one line break), `value(key, series)`
    a number or None (drawn as ×). Written by hand to stay dependency-free."""
    bar, top, plot_h, left = 14, 100, 260, 50
    group_w = max(bar * len(series) + 24, 110)
    gap = group_w - bar * len(series)
    width = max(left + group_w * len(groups) + 20, 760)
    height = top + plot_h + 90
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{e(title)}</text>']
    for i, s in enumerate(series):
        x = left + i * 130
        parts.append(f'<rect x="{x}" y="34" width="12" height="12" fill="{COLORS[i % len(COLORS)]}"/>'
                     f'<text x="{x + 16}" y="44">{e(s)}</text>')
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left - 4}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{frac:.2f}</text>')
    for g, (label, key) in enumerate(groups):
        vals = {s: value(key, s) for s in series}
        best = max((v for v in vals.values() if v), default=0)
        gx = left + g * group_w + gap / 2
        for i, s in enumerate(series):
            v = vals[s]
            x = gx + i * bar
            if not v or not best:
                parts.append(f'<text x="{x + bar / 2}" y="{top + plot_h - 4}" text-anchor="middle" '
                             f'fill="#999">×</text>')
                continue
            h = plot_h * v / best
            y = top + plot_h - h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{COLORS[i % len(COLORS)]}"><title>{e(s)}: {v:,.0f} {unit}</title></rect>')
            parts.append(f'<text transform="translate({x + bar / 2 + 3},{y - 3:.1f}) rotate(-90)" '
                         f'font-size="8">{short(v)}</text>')
        for n, line in enumerate(label.split("\n")):
            parts.append(f'<text x="{gx + bar * len(series) / 2}" y="{top + plot_h + 16 + 14 * n}" '
                         f'text-anchor="middle">{e(line)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def short(v):
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def write_all(data, quick):
    stem = "quick" if quick else "echo"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    md = markdown(data)
    if quick:
        md = md.replace("bench/results/echo.svg", "quick.svg")
    (RESULTS / f"{stem}.svg").write_text(svg(data) + "\n")
    target = RESULTS / "quick.md" if quick else ROOT / "BENCHMARKS.md"
    fanout = RESULTS / "fanout.md"
    if not quick and fanout.exists():
        # The fan-out rows (bench/fanout.sh, bench/fanout_report.py) stay.
        md = md.rstrip("\n") + "\n\n<!-- fanout:start -->\n" + fanout.read_text() + "<!-- fanout:end -->\n"
    scaling = RESULTS / "scaling.md"
    if not quick and scaling.exists():
        # The scaling section (bench/scaling.sh) stays too; it has its markers.
        md = md.rstrip("\n") + "\n\n" + scaling.read_text()
    iomodel = RESULTS / "iomodel.md"
    if not quick and iomodel.exists():
        # And the I/O model section (bench/iomodel.sh).
        md = md.rstrip("\n") + "\n\n" + iomodel.read_text()
    target.write_text(md)
    print(md)
    print(f"\nwrote {target}, {RESULTS / (stem + '.json')}, {RESULTS / (stem + '.svg')}",
          file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS.json")
    path = Path(sys.argv[1])
    write_all(json.loads(path.read_text()), path.stem == "quick")
