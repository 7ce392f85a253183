#!/usr/bin/env python3
"""Where the time goes: `perf` profiles of thinkscale under streaming load and of the bare decode
loop (ceiling), at the same concurrency, thread count and model. Writes docs/bench/<date>-profile.md.
Needs `perf` (apt-get install linux-perf) and a release build (it carries debug info)."""
import argparse
import datetime
import subprocess
import threading
import time
from pathlib import Path

import run as bench

ROOT, BIN = bench.ROOT, bench.BIN


def report(data, sort, limit):
    """Top rows of `perf report`, self time only, as (percent, name) pairs."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none",
                          "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line.split()[0].endswith("%"):
            pct, rest = line.split(None, 1)
            rows.append((pct, " ".join(rest.split())))
    return rows[:limit]


def record(data, *target):
    """`perf record` of a command, or of a running process with `-p PID -- sleep S`."""
    subprocess.run(["perf", "record", "-F", "499", "-g", "-o", str(data), *target], check=True, capture_output=True)


def side_by_side(header, left, right):
    """Two (percent, name) lists as one markdown table, thinkscale left, ceiling right."""
    pad = lambda rows, i: rows[i] if i < len(rows) else ("", "")
    lines = [header, "|---|---|---|---|"]
    for i in range(max(len(left), len(right))):
        (sp, sn), (kp, kn) = pad(left, i), pad(right, i)
        lines.append(f"| {sn.replace('|', '/')} | {sp} | {kn.replace('|', '/')} | {kp} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--concurrency", default="1,8,16")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=bench.os.cpu_count())
    ap.add_argument("--out", default=str(ROOT / "docs/bench"))
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    tmp = Path("/tmp/thinkscale-profile")
    tmp.mkdir(exist_ok=True)
    port = bench.free_port()
    srv = bench.Server("thinkscale", [str(BIN), "serve", "--model", a.model, "--parallel", str(max(levels)), "--threads",
                                      str(a.threads), "--port", str(port)], port, "/health")
    eog = srv.models["data"][0].get("meta", {}).get("eog_token_ids") or []
    body = {"model": "p", "messages": [{"role": "user", "content": bench.PROMPT}], "temperature": 0, "max_tokens": 128,
            "logit_bias": {str(t): -100 for t in eog}}
    sections = []
    for c in levels:
        stop = threading.Event()
        workers = [threading.Thread(target=lambda: [bench.chat(port, body) for _ in iter(stop.is_set, True)]) for _ in range(c)]
        for w in workers:
            w.start()
        time.sleep(2)  # past the first prefills
        data = tmp / f"server-{c}.data"
        record(data, "-p", str(srv.proc.pid), "--", "sleep", str(a.seconds))
        stop.set()
        for w in workers:
            w.join()
        cdata = tmp / f"ceiling-{c}.data"
        # Same 128-token sequences as the server's requests (attention work grows with position),
        # repeated so that short levels still give the profiler a few seconds.
        record(cdata, "--", str(BIN), "bench-ceiling", "--model", a.model, "--seqs", ",".join([str(c)] * max(1, 8 // c)),
               "--tokens", "128", "--parallel", str(max(levels)), "--threads", str(a.threads))
        sections.append((c, {k: report(d, "comm,dso", 8) for k, d in (("server", data), ("ceiling", cdata))},
                         {k: report(d, "dso,sym", 15) for k, d in (("server", data), ("ceiling", cdata))}))
    srv.stop()
    date = datetime.date.today().isoformat()
    lines = [f"# Profile {date}", "", f"`bench/profile.py` on {bench.machine()['cpu']}, {bench.os.cpu_count()} cores, "
             f"{a.threads} threads, {Path(a.model).name}: `perf record -F 499 -g` of thinkscale for {a.seconds} s of "
             "streaming greedy 128-token requests at each concurrency (clients in this process), and of "
             "`thinkscale bench-ceiling` (the same 128 tokens per sequence, repeated) at the same concurrency. "
             "Self time, rows ≥ 0.5%.", ""]
    for c, by_thread, by_sym in sections:
        lines += [f"## Concurrency {c}", ""]
        lines += side_by_side("| thinkscale: thread, object | % | ceiling: thread, object | % |", by_thread["server"], by_thread["ceiling"])
        lines.append("")
        lines += side_by_side("| thinkscale: object, symbol | % | ceiling: object, symbol | % |", by_sym["server"], by_sym["ceiling"])
        lines.append("")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"{date}-profile.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
