#!/usr/bin/env python3
"""Accuracy and tokens per correct answer, thinkscale against a peer, on the same problems: for each
problem, one greedy answer from every server, then 8 samples. thinkscale votes its 8 in one
request (`reasoning.samples`; with --adaptive also a second cell that stops at the first wave's
consensus); a peer without samples gets 8 requests at once (seeds 1..8) and the client takes the
majority of their last numbers, as a user of that server would. Every answer is graded the same
way (its last number against the problem's), and costs are the completion tokens the servers
report. Start the servers one at a time beforehand (two llama.cpp processes on 2 cores slow each
other by orders of magnitude); the problems run one after another, each server in turn.

    thinkscale eval gen --count 30 --levels 1,2,3,4 --seed 7 --out problems.jsonl
    python3 bench/accuracy.py --servers thinkscale=8080,llama-server=8081 --data problems.jsonl --out docs/bench/X.jsonl

An --out that exists is resumed: its whole problems are kept and the rest are asked.
"""
import argparse
import collections
import json
import math
import os
import re
import sys
import threading
import time
import urllib.request

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.load(r)


def last_number(text):
    found = NUMBER.findall(text or "")
    if not found:
        return None
    n = found[-1].replace(",", "")
    return str(int(float(n))) if float(n) == int(float(n)) else n


def body(question, temperature, seed, max_tokens):
    return {"model": "bench", "messages": [{"role": "user", "content": question}], "temperature": temperature,
            "seed": seed, "max_tokens": max_tokens}


def answer_of(r):
    m = r["choices"][0]["message"]
    return m.get("content") or ""


def greedy(port, q, max_tokens):
    t0 = time.perf_counter()
    r = post(port, body(q, 0.0, 1, max_tokens))
    return last_number(answer_of(r)), r["usage"]["completion_tokens"], time.perf_counter() - t0


def voted_by_server(port, q, samples, max_tokens, adaptive):
    b = body(q, 0.7, 1, max_tokens)
    b["reasoning"] = {"enabled": False, "samples": samples, "adaptive": adaptive}
    t0 = time.perf_counter()
    r = post(port, b)
    return last_number(answer_of(r)), r["usage"]["completion_tokens"], time.perf_counter() - t0


def voted_by_client(port, q, samples, max_tokens):
    out = [None] * samples

    def one(i):
        out[i] = post(port, body(q, 0.7, i + 1, max_tokens))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(samples)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    answers = [last_number(answer_of(r)) for r in out]
    counts = collections.Counter(a for a in answers if a is not None)
    # The most common answer; ties go to the one seen first, as a simple client would do.
    best = max(counts.values(), default=0)
    winner = next((a for a in answers if a is not None and counts[a] == best), None)
    return winner, sum(r["usage"]["completion_tokens"] for r in out), wall


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", required=True, help="name=port,... ; a server named thinkscale* votes its own samples")
    ap.add_argument("--data", required=True, help="JSONL with question and answer ('#### N' at its end), as eval gen writes")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--adaptive", action="store_true", help="also a thinkscale cell that stops at the first wave's consensus")
    ap.add_argument("--out", required=True, help="JSONL: one line per (problem, cell), then a summary line")
    ap.add_argument("--summarize", action="store_true", help="only summarize --out's lines (of a run stopped early: whole problems only)")
    a = ap.parse_args()
    servers = [(k, int(v)) for k, v in (s.split("=") for s in a.servers.split(","))]
    rows = [json.loads(l) for l in open(a.out)] if os.path.exists(a.out) else []
    rows = [r for r in rows if "summary" not in r]
    # A run resumes where it stopped: a problem is done once every server's every cell of it is in.
    per = collections.Counter(r["problem"] for r in rows)
    full = sum(2 + (a.adaptive and n.startswith("thinkscale")) for n, _ in servers)
    rows = [r for r in rows if per[r["problem"]] == full]
    done = {r["problem"] for r in rows}
    cells = collections.defaultdict(lambda: {"correct": 0, "tokens": 0, "seconds": 0.0, "n": 0})
    for r in rows:
        add(cells, r)
    if a.summarize:
        return table(summarize(cells))
    problems = [json.loads(l) for l in open(a.data) if l.strip()]
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for i, p in enumerate(problems):
            if p.get("id", i) in done:
                continue
            expected = last_number(p["answer"].split("####")[-1])
            for name, port in servers:
                runs = [("greedy", lambda: greedy(port, p["question"], a.max_tokens))]
                if name.startswith("thinkscale"):
                    runs.append((f"{a.samples} voted", lambda: voted_by_server(port, p["question"], a.samples, a.max_tokens, False)))
                    if a.adaptive:
                        runs.append((f"{a.samples} voted, adaptive",
                                     lambda: voted_by_server(port, p["question"], a.samples, a.max_tokens, True)))
                else:
                    runs.append((f"{a.samples} voted by the client", lambda: voted_by_client(port, p["question"], a.samples, a.max_tokens)))
                for cell, run in runs:
                    got, tokens, seconds = run()
                    r = {"problem": p.get("id", i), "server": name, "cell": cell, "expected": expected, "answer": got,
                         "correct": got == expected, "completion_tokens": tokens, "seconds": round(seconds, 3)}
                    add(cells, r)
                    f.write(json.dumps(r) + "\n")
                    f.flush()
            print(f"\r{i + 1}/{len(problems)} problems", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        summary = summarize(cells)
        f.write(json.dumps({"summary": summary}) + "\n")
    table(summary)


def add(cells, r):
    c = cells[(r["server"], r["cell"])]
    c["correct"] += int(r["correct"])
    c["tokens"] += r["completion_tokens"]
    c["seconds"] += r["seconds"]
    c["n"] += 1


def summarize(cells):
    summary = []
    for (name, cell), c in cells.items():
        lo, hi = wilson(c["correct"], c["n"])
        summary.append({"server": name, "cell": cell, "n": c["n"], "correct": c["correct"], "accuracy": c["correct"] / c["n"],
                        "wilson": [round(lo, 3), round(hi, 3)], "tokens_per_problem": c["tokens"] / c["n"],
                        "tokens_per_correct": c["tokens"] / c["correct"] if c["correct"] else None,
                        "seconds_per_problem": c["seconds"] / c["n"]})
    return summary


def table(summary):
    print("| server | cell | accuracy | 95% Wilson | tokens / problem | tokens / correct answer | seconds / problem |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        tpc = f"{s['tokens_per_correct']:.0f}" if s["tokens_per_correct"] else "–"
        print(f"| {s['server']} | {s['cell']} | {100 * s['accuracy']:.1f}% ({s['correct']}/{s['n']}) | "
              f"{100 * s['wilson'][0]:.1f}–{100 * s['wilson'][1]:.1f} | {s['tokens_per_problem']:.0f} | {tpc} | {s['seconds_per_problem']:.1f} |")


if __name__ == "__main__":
    main()
