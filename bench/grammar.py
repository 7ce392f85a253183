#!/usr/bin/env python3
"""What structured output costs: aggregate tokens/s of thinkscale with no constraint, with
`response_format: json_object` and with a `json_schema`, at the same concurrency and token cap.
Every sampled token is checked against the grammar over the whole vocabulary, so the cost is
per token. Writes docs/bench/<date>-grammar.md. Needs a release build."""
import argparse
import datetime
import os
import statistics
from pathlib import Path

import run as bench

FORMATS = {
    "none": None,
    "json_object": {"type": "json_object"},
    # 48 two-digit numbers: long enough to time, fixed in shape so every run writes alike.
    "json_schema (48 integers)": {"type": "json_schema", "json_schema": {"name": "numbers", "schema": {
        "type": "array", "items": {"type": "integer", "minimum": 10, "maximum": 99}, "minItems": 48, "maxItems": 48}}},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(bench.ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(bench.ROOT / "docs/bench"))
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    port = bench.free_port()
    srv = bench.Server("thinkscale", [str(bench.BIN), "serve", "--model", a.model, "--parallel", str(max(levels)),
                                      "--threads", str(a.threads), "--port", str(port)], port, "/health")
    base = {"model": "bench", "messages": [{"role": "user", "content": "List some numbers in JSON."}],
            "temperature": 0, "max_tokens": a.tokens}
    eog = srv.models["data"][0]["meta"]["eog_token_ids"]
    rows = []
    try:
        bench.chat(port, base)  # warm-up
        for c in levels:
            for name, fmt in FORMATS.items():
                # Unconstrained runs write the full cap (end banned); constrained ones end with their JSON.
                body = {**base, **({"response_format": fmt} if fmt else {"logit_bias": {str(t): -100 for t in eog}})}
                runs = [bench.load(srv, c, max(8, 2 * c), body) for _ in range(a.repeat)]
                tps = statistics.median(r["tokens_per_s"] for r in runs)
                tokens = statistics.median(r["tokens"] / r["requests"] for r in runs)
                print(f"c={c} {name}: {tps:.1f} tok/s, {tokens:.0f} tokens per request")
                rows.append((c, name, tps, tokens))
    finally:
        srv.stop()
    m = bench.machine()
    git = bench.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=bench.ROOT, capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    plain = {c: tps for c, name, tps, _ in rows if name == "none"}
    lines = [f"# Structured output cost {date}", "",
             f"- machine: {m['cpu']}, {m['cores']} cores; model {Path(a.model).name}; {a.threads} threads; git {git}",
             f"- greedy, at most {a.tokens} tokens per request, median of {a.repeat} runs; reproduce: `python3 bench/grammar.py`", "",
             "| concurrency | response_format | tokens per request | aggregate tok/s | vs no constraint |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {name} | {tok:.0f} | {tps:.1f} | {tps / plain[c]:.2f}x |" for c, name, tps, tok in rows]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{date[:10]}-grammar.md"
    path.write_text("\n".join(lines) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
