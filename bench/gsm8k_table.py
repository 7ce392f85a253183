#!/usr/bin/env python3
"""The GSM8K test-split table of docs/SCALING.md, from the recorded runs: every cell's accuracy
with its 95% Wilson interval, completion tokens per problem and per correct answer, seconds per
problem, and the exact McNemar p of every other cell against the 0.5B's plain answer (paired on
the problems both cells answered). Cells still running count only their finished problems.

    python3 bench/gsm8k_table.py docs/gsm8k/qwen0.5b-test docs/gsm8k/qwen1.5b-test \
        docs/gsm8k/llama-server-test
"""
import argparse
import collections
import json
import math
import pathlib

from accuracy import wilson  # bench/accuracy.py, beside this script


def mcnemar(won, lost):
    """Exact two-sided McNemar p: a binomial test on the discordant pairs."""
    n = won + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(won, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def thinkscale_cells(run, model):
    """{cell name: {problem id: (correct, completion tokens, seconds)}} of an `eval run` directory."""
    cells = collections.defaultdict(dict)
    for line in open(run / "results.jsonl"):
        r = json.loads(line)
        if r.get("error"):
            continue
        budget = r["budget"]
        name = "plain answer" if budget == "plain" else "reasoning_effort auto" if budget == "auto" else f"thinking budget {budget}"
        if r["samples"] > 1:
            name = f"{r['samples']} samples, {r['variant']}"
        cells[f"{model}: {name}"][r["id"]] = (bool(r["correct"]), r["completion_tokens"], r["latency_seconds"])
    return cells


def peer_cells(run):
    cells = collections.defaultdict(dict)
    for line in open(run / "results.jsonl"):
        r = json.loads(line)
        if "summary" in r:
            continue
        cells[f"{r['server']} (0.5B): {r['cell']}"][r["problem"]] = (bool(r["correct"]), r["completion_tokens"], r["seconds"])
    return cells


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=pathlib.Path, help="run directories: qwen*-test (eval run) or *llama-server* (bench/accuracy.py)")
    a = ap.parse_args()
    cells = {}
    for run in a.runs:
        if not (run / "results.jsonl").exists():
            continue
        if "llama-server" in run.name:
            cells.update(peer_cells(run))
        else:
            cells.update(thinkscale_cells(run, run.name.split("-")[0].replace("qwen", "")))
    base = cells.get("0.5b: plain answer", {})
    print("| cell | solved | 95% Wilson | completion tokens / problem | tokens / correct | seconds / problem | vs 0.5B plain (won/lost, exact McNemar p) |")
    print("|---|---|---|---|---|---|---|")
    def order(name):
        """0.5B cells first (plain, budgets by size, auto, sampled), then the 1.5B, then the peer."""
        model, _, cell = name.partition(": ")
        budget = cell.removeprefix("thinking budget ")
        rank = 0 if cell == "plain answer" else int(budget) if budget.isdigit() else 10**6 if "auto" in cell else 10**7
        return ("llama-server" in model, model, rank, cell)

    for name, per in sorted(cells.items(), key=lambda kv: order(kv[0])):
        n = len(per)
        k = sum(c for c, _, _ in per.values())
        lo, hi = wilson(k, n)
        tokens = sum(t for _, t, _ in per.values())
        seconds = sum(s for _, _, s in per.values()) / n
        paired = ""
        if base and per is not base:
            both = [p for p in per if p in base]
            won = sum(per[p][0] and not base[p][0] for p in both)
            lost = sum(base[p][0] and not per[p][0] for p in both)
            paired = f"{won}/{lost}, p = {mcnemar(won, lost):.3f}"
        tpc = f"{tokens / k:.0f}" if k else "–"
        print(f"| {name} | {k}/{n} ({100 * k / n:.1f}%) | {100 * lo:.1f}–{100 * hi:.1f} | {tokens / n:.0f} | {tpc} | {seconds:.1f} | {paired} |")


if __name__ == "__main__":
    main()
