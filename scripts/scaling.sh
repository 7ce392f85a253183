#!/usr/bin/env bash
# Reproduces docs/SCALING.md: serves the default model and sweeps 200 generated problems over
# thinking budgets {0,64,256,1024} x samples {1,4,8}. Extra flags go to `thinkscale eval run`
# (a rerun resumes; --out elsewhere starts fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
models/fetch.sh
cargo build --release --locked
port=${PORT:-8181}
target/release/thinkscale serve --port "$port" --parallel 16 --ctx-size 32768 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { echo "server failed to start" >&2; exit 1; }
  sleep 0.5
done
target/release/thinkscale eval run --url "http://127.0.0.1:$port" --gen 200 --levels 1,2,3,4 --seed 1 \
  --budgets 0,64,256,1024 --samples 1,4,8 --concurrency 16 --answer-tokens 16 --top-k 0 --out docs/runs/scaling "$@"
