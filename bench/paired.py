#!/usr/bin/env python3
"""Paired rounds over servers that are already up (each an OpenAI-compatible chat endpoint): every
round sends the same load to each server in turn (the order reversed every other round), so the ratio of each server to the first is
taken round by round and this VM's minute-to-minute drift cancels out. Prints one JSON line per
concurrency level: tokens/s per round, medians, and the median per-round ratio to the first
server. Start the servers one at a time beforehand and leave them idle between rounds.

    python3 bench/paired.py --servers peer=8081,thinkscale=8080 --concurrency 1,8 --rounds 5
"""
import argparse
import json
import statistics
import threading
import time
import urllib.request

PROMPT = "Write a story about a robot who learns to paint."


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def burst(port, body, clients):
    """`clients` requests at once; the tokens/s of the whole burst."""
    done = []
    threads = [threading.Thread(target=lambda i=i: done.append(post(port, {**body, "seed": i}))) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r["usage"]["completion_tokens"] for r in done) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", required=True, help="name=port,... ; ratios are to the first")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64, help="generated tokens per request (end-of-generation banned)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--eog", required=True, help="end-of-generation token ids, comma-separated (banned so every answer is --tokens long)")
    a = ap.parse_args()
    servers = {k: int(v) for k, v in (s.split("=") for s in a.servers.split(","))}
    body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": a.tokens,
            "temperature": a.temperature, "logit_bias": {t: -100 for t in a.eog.split(",")}}
    for port in servers.values():
        post(port, body)  # warm-up
    first = next(iter(servers))
    for clients in (int(c) for c in a.concurrency.split(",")):
        runs = {name: [] for name in servers}
        for r in range(a.rounds):
            # Odd rounds run the servers in reverse order: whoever goes first after an idle pause
            # (or right after another server's burst) is not always the same one.
            order = list(servers.items())
            for name, port in order if r % 2 == 0 else reversed(order):
                runs[name].append(burst(port, body, clients))
            print(f"c={clients} round {r + 1}/{a.rounds}", {k: round(v[-1], 1) for k, v in runs.items()}, flush=True)
        print(json.dumps({
            "concurrency": clients, "temperature": a.temperature, "tokens": a.tokens,
            "tok_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
            "median_tok_s": {k: round(statistics.median(v), 1) for k, v in runs.items()},
            f"median_ratio_to_{first}": {k: round(statistics.median([x / y for x, y in zip(v, runs[first])]), 3)
                                         for k, v in runs.items() if k != first},
        }), flush=True)


if __name__ == "__main__":
    main()
