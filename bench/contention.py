#!/usr/bin/env python3
"""CPU contention: aggregate throughput of thinkscale alone, beside a busy-looping process, and
with a second server loaded at the same time, at concurrency 1 and 8 (64-token greedy requests,
end-of-generation banned). Each setting is run under each wait policy given, for each model, and
the ratios to "alone" are taken within the run. Writes docs/bench/<date>-cpu-wait.{md,json}.

  python3 bench/contention.py [--seconds 15] [--repeat 3] [--models smollm2,qwen0.5] [--policies auto,spin,passive,threads1]

With --repeat N every cell is measured N times, the policies taking turns within each round (this
machine's speed drifts by 10-30% over minutes), and the table gives each figure's median.

Policies: the server's --cpu-wait values (auto, spin, passive); "threads1": one compute thread
(--threads 1); "spinN": spin N iterations at a barrier, then sleep (GOMP_SPINCOUNT).
"""
import argparse
import datetime
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, free_port  # noqa: E402

MODELS = {"smollm2": ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
          "qwen0.5": ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"}
BODY = {"messages": [{"role": "user", "content": "Write a story about a robot who learns to paint."}],
        "max_tokens": 64, "temperature": 0, "ignore_eos": True}


def start(policy, model):
    port = free_port()
    env = {**os.environ, "RUST_LOG": "warn"}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    threads = "1" if policy == "threads1" else "2"
    wait = policy if policy in ("auto", "passive") else "spin"
    if policy.startswith("spin") and policy != "spin":
        env["GOMP_SPINCOUNT"] = policy[4:]
    proc = subprocess.Popen([str(BIN), "serve", "--model", str(MODELS[model]), "--port", str(port), "--threads", threads,
                             "--cpu-wait", wait], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def load(base, concurrency, seconds, out, key):
    """Closed-loop clients for `seconds`; completion tokens per second of finished requests."""
    stop = time.time() + seconds
    tokens = [0] * concurrency

    def client(i):
        while time.time() < stop:
            req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(BODY).encode(), headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                tokens[i] += json.load(r)["usage"]["completion_tokens"]

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out[key] = sum(tokens) / (time.time() - t0)


def hog():
    while True:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--policies", default="auto,spin,passive,threads1")
    ap.add_argument("--models", default="smollm2,qwen0.5")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    runs = {}
    cells = [(m, p, c) for _ in range(args.repeat) for m in args.models.split(",") for c in (1, 8) for p in args.policies.split(",")]
    for model, policy, conc in cells:
        a, base_a = start(policy, model)
        b, base_b = start(policy, model)
        r = {}
        load(base_a, 1, 3, {}, "warm")
        load(base_b, 1, 3, {}, "warm")
        print(f"[{model} {policy} c={conc}] alone", file=sys.stderr, flush=True)
        load(base_a, conc, args.seconds, r, "alone")
        print(f"[{model} {policy} c={conc}] beside a busy loop", file=sys.stderr, flush=True)
        h = multiprocessing.Process(target=hog, daemon=True)
        h.start()
        load(base_a, conc, args.seconds, r, "hog")
        h.terminate()
        h.join()
        print(f"[{model} {policy} c={conc}] two servers loaded", file=sys.stderr, flush=True)
        ta = threading.Thread(target=load, args=(base_a, conc, args.seconds, r, "two_a"))
        tb = threading.Thread(target=load, args=(base_b, conc, args.seconds, r, "two_b"))
        ta.start(); tb.start(); ta.join(); tb.join()
        for p in (a, b):
            p.terminate()
            p.wait()
        print(model, policy, conc, {k: round(v, 1) for k, v in r.items()}, file=sys.stderr, flush=True)
        runs.setdefault((model, policy, conc), []).append(r)
    rows = []
    for (model, policy, conc), rs in runs.items():
        row = {"model": model, "policy": policy, "concurrency": conc, "rounds": len(rs)}
        for k in ("alone", "hog", "two_a", "two_b"):
            row[k] = round(statistics.median(r[k] for r in rs), 1)
        row["hog_ratio"] = round(statistics.median(r["hog"] / r["alone"] for r in rs), 2)
        row["two_ratio"] = round(statistics.median(min(r["two_a"], r["two_b"]) / r["alone"] for r in rs), 2)
        rows.append(row)
    stamp = datetime.date.today().isoformat()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    out = ROOT / "docs" / "bench"
    (out / f"{stamp}-cpu-wait.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"# CPU wait policies {stamp}", "",
             f"- machine: {os.cpu_count()} cores; 2 compute threads (threads1: 1), 64-token greedy requests (EOS banned); git {git}",
             f"- each cell: completion tokens/s over {args.seconds:g} s of closed-loop clients, median of {args.repeat} round(s); ratios against 'alone' in the same round",
             f"- reproduce: `python3 bench/contention.py --seconds {args.seconds:g} --models {args.models} --policies {args.policies} --repeat {args.repeat}`", "",
             "| model | policy | concurrency | alone tok/s | beside a busy loop | ratio | two servers (each) | ratio (lower) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['policy']} | {r['concurrency']} | {r['alone']} | {r['hog']} | {r['hog_ratio']}x | {r['two_a']} / {r['two_b']} | {r['two_ratio']}x |")
    (out / f"{stamp}-cpu-wait.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
