#!/usr/bin/env python3
"""Replays `verifier: "tests"` with `adaptive: true` over a fixed-k run's recorded chains
(`thinkscale eval code --samples 8`, chains.jsonl), for choosing `reasoning.tests_wave` and
`tests_agree` on a dev split before any adaptive run on the test split.

The replay follows the server: samples start in waves of `wave`; the chains of a wave decode
side by side, so they finish in order of length; each finished program's verdict (it passed
every docstring example) is in at once; once `agree` passing programs share a behaviour group
the chains still decoding are cut where the deciding one ended (their tokens so far are spent)
and later waves never start. The choice is then the server's over the chains that finished:
most examples passed, then the largest behaviour group, then the most confident. A problem
without examples decodes one sample (the fixed rule keeps the first there).

With `--first DIR` (a greedy run whose programs were checked against the examples:
`eval code --regrade --examples`), the table replays a greedy chain decoded first and alone, as
the server's sample 0 of the 8: when its program passes, it is the answer; otherwise up to 7
sampled chains follow in waves as above, and the greedy chain joins the final choice. A problem
without examples keeps its greedy answer. The give-up table (`reasoning.tests_give_up`) counts
the greedy chain among the failed programs.

    bench/adaptive_select.py RUN_DIR [--greedy GREEDY_RUN_DIR] [--first GREEDY_EXAMPLES_RUN_DIR]
"""

import argparse
import collections
import json
import pathlib


def load(path):
    problems = collections.OrderedDict()
    for line in open(path):
        c = json.loads(line)
        problems.setdefault(c["task_id"], []).append(c)
    for chains in problems.values():
        chains.sort(key=lambda c: c["sample"])
    return problems


def passes(c):
    return c["examples_run"] > 0 and c["examples_passed"] == c["examples_run"]


def select(finished):
    """The server's choice (`code::select`): most examples passed, largest group, most confident."""
    size = collections.Counter(c["group"] for c in finished if c["group"] is not None)
    return max(finished, key=lambda c: (c["examples_passed"], size.get(c["group"], 0), c["confidence"]))


def replay(chains, wave, agree, cap=None, first=None, before=()):
    """(correct, completion tokens, chains decoded) of one problem under the adaptive rule; with
    `cap`, no wave starts once `cap` chains decoded without a passing program (giving up); with
    `first`, that chain (greedy) is decoded before the waves."""
    if first is not None:
        if first["examples_run"] == 0 or passes(first):
            return first["correct"], first["completion_tokens"], 1
        # The greedy chain is the server's sample 0: it and the sampled ones make the k.
        c, t, d = replay(chains[: len(chains) - 1], wave, agree, cap and cap - 1, None, [first])
        return c, t + first["completion_tokens"], d + 1
    if chains[0]["examples_run"] == 0:
        return chains[0]["correct"], chains[0]["completion_tokens"], 1
    finished, tokens, decoded = list(before), 0, 0
    for start in range(0, len(chains), wave):
        if cap is not None and decoded >= cap:
            break
        batch = sorted(chains[start : start + wave], key=lambda c: c["completion_tokens"])
        decoded += len(batch)
        for i, c in enumerate(batch):
            finished.append(c)
            passing = collections.Counter(f["group"] for f in finished if passes(f))
            if passing and max(passing.values()) >= agree:
                # The rest of the wave is cut where this chain ended.
                tokens += sum(c["completion_tokens"] for c in batch[: i + 1])
                tokens += c["completion_tokens"] * (len(batch) - i - 1)
                return select(finished)["correct"], tokens, decoded
        tokens += sum(c["completion_tokens"] for c in batch)
    return select(finished)["correct"], tokens, decoded


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=pathlib.Path)
    ap.add_argument("--greedy", type=pathlib.Path, help="a greedy run's directory, for tokens against greedy")
    ap.add_argument("--wave", type=int, default=2, help="for the give-up table: samples per wave")
    ap.add_argument("--first", type=pathlib.Path, help="a greedy run with example verdicts: decoded first")
    a = ap.parse_args()
    problems = load(a.run / "chains.jsonl")
    firsts = load(a.first / "chains.jsonl") if a.first else {}
    first = lambda t: firsts[t][0] if a.first else None
    n = len(problems)
    greedy = None
    if a.greedy:
        g = load(a.greedy / "chains.jsonl")
        greedy = sum(g[t][0]["completion_tokens"] for t in problems) / n, sum(g[t][0]["correct"] for t in problems)
    fixed_tokens = sum(sum(c["completion_tokens"] for c in ch) for ch in problems.values()) / n
    fixed_correct = sum(select(ch)["correct"] if ch[0]["examples_run"] else ch[0]["correct"] for ch in problems.values())
    print(f"{a.run}: {n} problems, {min(len(c) for c in problems.values())} chains each" + (f", {a.first}'s chain first" if a.first else ""))
    if greedy:
        print(f"greedy: {greedy[1]}/{n} correct, {greedy[0]:.0f} completion tokens per problem")
    print(f"fixed {len(next(iter(problems.values())))}: {fixed_correct}/{n} correct, {fixed_tokens:.0f} tokens per problem\n")
    print("| wave | agree | correct | tokens / problem | vs fixed | vs greedy | chains decoded / problem |")
    print("|---|---|---|---|---|---|---|")
    for wave in (1, 2, 3, 4):
        for agree in (1, 2):
            runs = [replay(ch, wave, agree, first=first(t)) for t, ch in problems.items()]
            correct = sum(r[0] for r in runs)
            tokens = sum(r[1] for r in runs) / n
            decoded = sum(r[2] for r in runs) / n
            vs_greedy = f"{tokens / greedy[0]:.2f}x" if greedy else ""
            print(f"| {wave} | {agree} | {correct}/{n} | {tokens:.0f} | {tokens / fixed_tokens:.2f}x | {vs_greedy} | {decoded:.2f} |")
    print(f"\nGiving up: waves of {a.wave}, agreement 1, no new wave once this many chains failed\n")
    print("| give up after | correct | tokens / problem | vs fixed | vs greedy |")
    print("|---|---|---|---|---|")
    for cap in (3, 5, 7, 8) if a.first else (2, 4, 6, 8):
        runs = [replay(ch, a.wave, 1, cap, first(t)) for t, ch in problems.items()]
        correct = sum(r[0] for r in runs)
        tokens = sum(r[1] for r in runs) / n
        vs_greedy = f"{tokens / greedy[0]:.2f}x" if greedy else ""
        print(f"| {cap} | {correct}/{n} | {tokens:.0f} | {tokens / fixed_tokens:.2f}x | {vs_greedy} |")


if __name__ == "__main__":
    main()
