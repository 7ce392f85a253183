#!/usr/bin/env python3
"""Remote-backend overhead, and the embedded engine against an earlier build, in one run.

Rows (each level run --repeat times, interleaved, the median run reported):
  direct     clients call a thinkscale holding the model (embedded backend)
  remote     clients call a thinkscale over that same process (`serve --backend URL`)
  baseline   clients call an earlier build's thinkscale (--baseline-bin), for the embedded figures
Ratios are taken within the run: remote / direct, and direct / baseline.
Writes docs/bench/<date>-scaleout.{md,json}."""
import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, Server, free_port, load, machine, median_run  # noqa: E402  (bench/run.py)


def serve(name, binary, args):
    port = free_port()
    return Server(name, [str(binary), "serve", "--port", str(port), *args], port, "/health")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--requests", type=int, default=0, help="requests per level (default: max(8, 2 x concurrency))")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-bin", default=None, help="an earlier build's binary (embedded comparison)")
    ap.add_argument("--baseline-git", default="", help="the commit that binary was built from (recorded)")
    ap.add_argument("--skip-remote", action="store_true", help="only the embedded rows (direct against baseline)")
    ap.add_argument("--out", default=str(ROOT / "docs/bench"))
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    engine_args = ["--model", a.model, "--threads", str(a.threads), "--parallel", str(max(levels)), "--ctx-size", "16384"]
    body = {"messages": [{"role": "user", "content": "Write a story about a robot who learns to paint."}],
            "max_tokens": a.tokens, "ignore_eos": True, "temperature": 0.0}
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "model": Path(a.model).name, "tokens_per_request": a.tokens, "threads": a.threads, "repeat": a.repeat,
              "build": {"git": git, "baseline_git": a.baseline_git or None}, "levels": {}}
    runs = {}
    def measure(rep, name, srv):
        for c in levels:
            r = load(srv, c, a.requests or max(8, 2 * c), body)
            runs.setdefault((name, c), []).append(r)
            print(f"repeat {rep + 1}/{a.repeat} {name:8} c={c}: {r['tokens_per_s']:.1f} tok/s", flush=True)

    def current(rep):
        inner = serve("direct", BIN, engine_args)
        measure(rep, "direct", inner)
        if not a.skip_remote:
            # Only one process decodes at a time: the remote row's outer server does no decoding.
            outer = serve("remote", BIN, ["--backend", f"http://127.0.0.1:{inner.port}", "--parallel", str(max(levels))])
            measure(rep, "remote", outer)
            outer.stop()
        inner.stop()

    def baseline(rep):
        base = serve("baseline", a.baseline_bin, engine_args)
        measure(rep, "baseline", base)
        base.stop()

    for rep in range(a.repeat):
        # The two builds take turns going first, so neither always follows the other.
        order = [current, baseline] if a.baseline_bin else [current]
        for row in order if rep % 2 == 0 else order[::-1]:
            row(rep)
    rows = []
    for c in levels:
        med = {name: median_run(runs[(name, c)], "tokens_per_s") for name in ("direct", "remote", "baseline") if (name, c) in runs}
        report["levels"][str(c)] = {k: v for k, v in med.items()}
        rows.append((c, med))
    day = datetime.date.today().isoformat()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{day}-scaleout" + ("-embedded" if a.skip_remote else "")
    (out / f"{name}.json").write_text(json.dumps({**report, "runs": {f"{k[0]}@{k[1]}": v for k, v in runs.items()}}, indent=1))
    lines = [f"# Remote backend overhead and embedded throughput ({day})", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores. Model {report['model']}, "
             f"{a.tokens} tokens per request (end-of-generation banned), greedy, {a.threads} threads, median of {a.repeat} interleaved runs. "
             f"Build {git}" + (f"; baseline {a.baseline_git}" if a.baseline_git else "") + ".", "",
             "| concurrency | direct tok/s | remote tok/s | remote / direct | direct p50 e2e s | remote p50 e2e s |"
             + (" baseline tok/s | direct / baseline |" if a.baseline_bin else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if a.baseline_bin else "")]
    for c, m in rows:
        d, r = m["direct"], m.get("remote")
        line = (f"| {c} | {d['tokens_per_s']:.1f} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / d['tokens_per_s']:.3f} | {d['e2e_p50_s']:.2f} | {r['e2e_p50_s']:.2f} |"
                if r else f"| {c} | {d['tokens_per_s']:.1f} | – | – | {d['e2e_p50_s']:.2f} | – |")
        if "baseline" in m:
            b = m["baseline"]
            line += f" {b['tokens_per_s']:.1f} | {d['tokens_per_s'] / b['tokens_per_s']:.3f} |"
        lines.append(line)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
