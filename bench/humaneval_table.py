#!/usr/bin/env python3
"""The HumanEval test-split table of docs/SCALING.md, from recorded `thinkscale eval code` runs:
each run's server choice (the chain marked `chosen`; a greedy run's one chain) with its 95% Wilson
interval, completion tokens per problem (every chain the run decoded, and what the verifier had
the model write) and its multiple of the
first run's, chains decoded per problem, and the exact McNemar p of each run against each
`--against` run, paired on the problems both answered. `--without` leaves problems out (the
test-split problems whose docstrings shaped the example parser), for the same table without them.

    python3 bench/humaneval_table.py docs/humaneval/qwen0.5b-greedy docs/humaneval/qwen0.5b-k8-test \
        docs/humaneval/qwen0.5b-k8-test-rerun docs/humaneval/qwen0.5b-k8-adaptive-test \
        --against qwen0.5b-greedy,qwen0.5b-k8-test-rerun --range 64..164
"""
import argparse
import json
import pathlib

from accuracy import wilson  # bench/accuracy.py, beside this script
from gsm8k_table import mcnemar

# HumanEval 68, 79, 84, 108, 120, 133, 135 (quoted by the parser's first unit tests) and 142
# (133's phrasing): docs/SCALING.md.
SHAPED_PARSER = [68, 79, 84, 108, 120, 133, 135, 142]


def problems(run):
    """{task number: (solved, completion tokens, chains decoded)} of one run directory."""
    out = {}
    for line in open(pathlib.Path(run) / "chains.jsonl"):
        c = json.loads(line)
        n = int(c["task_id"].split("/")[1])
        solved, tokens, chains = out.get(n, (False, 0, 0))
        # verifier_tokens: what the verifier had the model write (tests: "generated").
        spent = c["completion_tokens"] + c.get("verifier_tokens", 0)
        out[n] = (solved or (c["chosen"] and c["correct"]), tokens + spent, chains + 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--against", default="", help="comma-separated run names (directory names) to pair every run with")
    ap.add_argument("--range", default="64..164", help="task numbers [START, END)")
    ap.add_argument("--without", action="store_true", help="leave out the problems that shaped the example parser")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.range.split(".."))
    keep = set(range(lo, hi)) - (set(SHAPED_PARSER) if a.without else set())
    runs = {pathlib.Path(r).name: {n: v for n, v in problems(r).items() if n in keep} for r in a.runs}
    against = [x for x in a.against.split(",") if x]
    first = next(iter(runs.values()))
    base_tokens = sum(t for _, t, _ in first.values()) / max(len(first), 1)
    head = "| run | solved | 95% Wilson | completion tokens / problem | vs the first run | chains / problem |"
    head += "".join(f" vs {x} (lost/won, p) |" for x in against)
    print(head)
    print("|---" * (6 + len(against)) + "|")
    for name, rows in runs.items():
        n = len(rows)
        k = sum(s for s, _, _ in rows.values())
        lo_ci, hi_ci = wilson(k, n)
        tokens = sum(t for _, t, _ in rows.values()) / max(n, 1)
        chains = sum(c for _, _, c in rows.values()) / max(n, 1)
        line = f"| {name} | {k}/{n} ({100 * k / max(n, 1):.1f}%) | {100 * lo_ci:.1f}–{100 * hi_ci:.1f} | {tokens:.0f} | {tokens / base_tokens:.2f}× | {chains:.2f} |"
        for x in against:
            other = runs[x]
            both = rows.keys() & other.keys()
            if x == name or not both:
                line += " |"
                continue
            won = sum(1 for p in both if rows[p][0] and not other[p][0])
            lost = sum(1 for p in both if other[p][0] and not rows[p][0])
            line += f" {lost}/{won}, p = {mcnemar(won, lost):.3g} |"
        print(line)


if __name__ == "__main__":
    main()
