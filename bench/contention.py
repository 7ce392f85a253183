#!/usr/bin/env python3
"""CPU contention: aggregate throughput of thinkscale alone, beside a busy-looping process, and
with a second server loaded at the same time, at concurrency 1 and 8 (64-token greedy requests,
end-of-generation banned). Each setting is run under each OpenMP wait policy given, and the
ratios to "alone" are taken within the run. Writes docs/bench/<date>-contention.{md,json}.

  python3 bench/contention.py [--seconds 15] [--policies spin,passive,spin3000]
"""
import argparse
import datetime
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, free_port  # noqa: E402

MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
BODY = {"messages": [{"role": "user", "content": "Write a story about a robot who learns to paint."}],
        "max_tokens": 64, "temperature": 0, "ignore_eos": True}


def start(policy):
    port = free_port()
    env = {**os.environ, "RUST_LOG": "warn"}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    # "passive" / "spin": the server's --cpu-wait (spin is libgomp's default: spin, then sleep);
    # "spinN": spin N iterations at a barrier, then sleep (GOMP_SPINCOUNT).
    if policy.startswith("spin") and policy != "spin":
        env["GOMP_SPINCOUNT"] = policy[4:]
    wait = "passive" if policy == "passive" else "spin"
    proc = subprocess.Popen([str(BIN), "serve", "--model", str(MODEL), "--port", str(port), "--threads", "2", "--cpu-wait", wait], env=env, cwd=ROOT)
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
    ap.add_argument("--policies", default="spin,passive")
    args = ap.parse_args()
    rows = []
    for policy in args.policies.split(","):
        for conc in (1, 8):
            a, base_a = start(policy)
            b, base_b = start(policy)
            r = {}
            load(base_a, 1, 3, {}, "warm")
            load(base_b, 1, 3, {}, "warm")
            print(f"[{policy} c={conc}] alone", file=sys.stderr, flush=True)
            load(base_a, conc, args.seconds, r, "alone")
            print(f"[{policy} c={conc}] beside a busy loop", file=sys.stderr, flush=True)
            h = multiprocessing.Process(target=hog, daemon=True)
            h.start()
            load(base_a, conc, args.seconds, r, "hog")
            h.terminate()
            h.join()
            print(f"[{policy} c={conc}] two servers loaded", file=sys.stderr, flush=True)
            ta = threading.Thread(target=load, args=(base_a, conc, args.seconds, r, "two_a"))
            tb = threading.Thread(target=load, args=(base_b, conc, args.seconds, r, "two_b"))
            ta.start(); tb.start(); ta.join(); tb.join()
            for p in (a, b):
                p.terminate()
                p.wait()
            row = {"policy": policy, "concurrency": conc, **{k: round(v, 1) for k, v in r.items()}}
            row["hog_ratio"] = round(r["hog"] / r["alone"], 2)
            row["two_ratio"] = round(min(r["two_a"], r["two_b"]) / r["alone"], 2)
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    stamp = datetime.date.today().isoformat()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    out = ROOT / "docs" / "bench"
    (out / f"{stamp}-contention.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"# CPU contention {stamp}", "",
             f"- machine: {os.cpu_count()} cores; model SmolLM2-135M-Instruct Q4_1, 2 threads, 64-token greedy requests (EOS banned); git {git}",
             f"- each cell: completion tokens/s over {args.seconds:.0f} s of closed-loop clients; ratios against 'alone' in the same run",
             "- reproduce: `python3 bench/contention.py`", "",
             "| --cpu-wait | concurrency | alone tok/s | beside a busy loop | ratio | two servers (each) | ratio (lower) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['concurrency']} | {r['alone']} | {r['hog']} | {r['hog_ratio']}x | {r['two_a']} / {r['two_b']} | {r['two_ratio']}x |")
    (out / f"{stamp}-contention.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
