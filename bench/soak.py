#!/usr/bin/env python3
"""Overload and soak: 4x the server's slots of concurrent clients for a fixed time, mixing plain,
streamed, voted and cancelled chat requests, against a server with a short queue so that it must
shed load. Checks every answer as it comes: a 429 carries Retry-After, a 200 is one well-formed
response (a stream: one finish per choice, one [DONE]), no response id is seen twice, nothing is a
5xx. Records per window: requests by outcome, p50/p99 latency of completed requests, server RSS.
Writes docs/bench/<date>-soak.{md,json}.

  python3 bench/soak.py [--seconds 600] [--parallel 8] [--queue-size 8] [--window 60]
"""
import argparse
import datetime
import http.client
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, free_port  # noqa: E402

MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = ["What is 12 + 7?", "Name a colour.", "Write a haiku about rain.", "What is the capital of France?"]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (time, kind, outcome, latency)
        self.ids = set()
        self.problems = []

    def add(self, kind, outcome, latency, rid=None):
        with self.lock:
            self.events.append((time.time(), kind, outcome, latency))
            if rid is not None:
                if rid in self.ids:
                    self.problems.append(f"duplicate response id {rid}")
                self.ids.add(rid)

    def problem(self, text):
        with self.lock:
            self.problems.append(text)


def one(port, kind, rng, stats):
    body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "max_tokens": 32, "temperature": 0.7}
    if kind == "voted":
        body.update({"reasoning": {"samples": 3}, "thinking_budget_tokens": 16, "max_tokens": 64})
    if kind in ("stream", "cancel"):
        body.update({"stream": True, "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.time()
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        if r.status == 429:
            if not r.getheader("Retry-After"):
                stats.problem("429 without Retry-After")
            r.read()
            stats.add(kind, "429", time.time() - t0)
            return float(r.getheader("Retry-After") or 1)
        if r.status != 200:
            stats.problem(f"{kind}: HTTP {r.status} {r.read()[:200]!r}")
            stats.add(kind, f"http{r.status}", time.time() - t0)
            return 0
        if kind == "cancel":
            r.readline()
            r.readline()  # the first event arrived: hang up mid-stream
            conn.close()
            stats.add(kind, "cancelled", time.time() - t0)
            return 0
        if kind in ("plain", "voted"):
            v = json.loads(r.read())
            if len(v.get("choices", [])) != 1 or v["choices"][0].get("finish_reason") not in ("stop", "length"):
                stats.problem(f"{kind}: malformed response {str(v)[:200]}")
            stats.add(kind, "ok", time.time() - t0, v.get("id"))
            return 0
        ids, finishes, done = set(), 0, 0
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done += 1
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                stats.problem(f"stream error {chunk['error']}")
                continue
            ids.add(chunk["id"])
            finishes += sum(1 for c in chunk["choices"] if c.get("finish_reason"))
        if len(ids) != 1 or finishes != 1 or done != 1:
            stats.problem(f"stream: ids {len(ids)}, finishes {finishes}, [DONE] {done}")
        stats.add(kind, "ok", time.time() - t0, next(iter(ids), None))
        return 0
    except (OSError, http.client.HTTPException, json.JSONDecodeError) as e:
        stats.problem(f"{kind}: {type(e).__name__} {e}")
        stats.add(kind, "error", time.time() - t0)
        return 1
    finally:
        conn.close()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--window", type=float, default=60)
    args = ap.parse_args()
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", "--model", str(MODEL), "--port", str(port), "--parallel", str(args.parallel),
                             "--queue-size", str(args.queue_size)], cwd=ROOT, env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin"})
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.1)
    stats = Stats()
    start = time.time()
    stop = start + args.seconds
    rss = []

    def client(i):
        rng = random.Random(i)
        while time.time() < stop:
            kind = rng.choices(["plain", "stream", "voted", "cancel"], weights=[4, 4, 1, 1])[0]
            wait = one(port, kind, rng, stats)
            if wait:
                time.sleep(min(wait, 2) * rng.random())

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4 * args.parallel)]
    for t in clients:
        t.start()
    while time.time() < stop:
        time.sleep(min(5, max(0, stop - time.time())))
        rss.append((time.time(), rss_mb(proc.pid)))
        done = len(stats.events)
        print(f"[{time.time() - start:5.0f}s] {done} requests, RSS {rss[-1][1]:.0f} MB, problems {len(stats.problems)}", file=sys.stderr, flush=True)
    for t in clients:
        t.join(timeout=300)
    alive = proc.poll() is None
    proc.terminate()
    code = proc.wait(timeout=60)
    windows = []
    n = int(args.seconds // args.window)
    for w in range(n):
        lo, hi = start + w * args.window, start + (w + 1) * args.window
        ev = [e for e in stats.events if lo <= e[0] < hi]
        lat = [e[3] for e in ev if e[2] == "ok"]
        mem = [m for t, m in rss if lo <= t < hi]
        windows.append({
            "minute": w + 1, "ok": sum(e[2] == "ok" for e in ev), "429": sum(e[2] == "429" for e in ev),
            "cancelled": sum(e[2] == "cancelled" for e in ev), "failed": sum(e[2] not in ("ok", "429", "cancelled") for e in ev),
            "p50_s": round(pct(lat, 0.5), 2), "p99_s": round(pct(lat, 0.99), 2), "rss_mb": round(max(mem), 1) if mem else None,
        })
    result = {"args": vars(args), "clients": 4 * args.parallel, "server_alive_at_end": alive, "exit_code": code,
              "problems": stats.problems[:50], "problem_count": len(stats.problems), "windows": windows}
    stamp = datetime.date.today().isoformat()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    out = ROOT / "docs" / "bench"
    (out / f"{stamp}-soak.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Overload and soak, {stamp}", "",
             f"- {4 * args.parallel} closed-loop clients against `--parallel {args.parallel} --queue-size {args.queue_size}` for {args.seconds:.0f} s "
             f"(SmolLM2-135M, 2 cores, git {git}); mix 4:4:1:1 of plain (32 tokens), streamed, voted (3 samples, 16-token budget) "
             "and cancelled (hang up after the first event) chat requests; a 429 client waits a random part of Retry-After",
             f"- server alive at the end: {alive}; exit code after SIGTERM: {code}; problems found: {len(stats.problems)}"
             " (5xx, 429 without Retry-After, malformed or duplicated responses, broken streams)",
             "- reproduce: `python3 bench/soak.py`", "",
             "| minute | completed | 429 | cancelled | failed | p50 s | p99 s | RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for w in windows:
        lines.append(f"| {w['minute']} | {w['ok']} | {w['429']} | {w['cancelled']} | {w['failed']} | {w['p50_s']} | {w['p99_s']} | {w['rss_mb']} |")
    lines += [""] + [f"- problem: {p}" for p in stats.problems[:20]]
    (out / f"{stamp}-soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(1 if stats.problems or not alive else 0)


if __name__ == "__main__":
    main()
