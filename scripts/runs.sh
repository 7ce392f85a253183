#!/usr/bin/env bash
# Reproduces a measured run in docs/runs/NAME: serves the default model and runs `thinkscale eval`
# with that run's settings (all sample from the whole vocabulary, top_k 0, as the runs did).
# Extra flags go to `thinkscale eval run`; a rerun resumes; OUT=dir writes elsewhere.
#   scaling          docs/SCALING.md: 200 problems x budgets {0,64,256,1024} x samples {1,4,8}
#   control          budget forcing: 30 problems x budgets {0,16,64,256}, one chain each
#   sc-fixed         self-consistency@8 on 50 one- and two-step problems, budget 64, T 0.7
#   sc-adaptive      the same with adaptive stopping (Beta rule)
#   sc-fixed-t03, sc-adaptive-t03   the same two at temperature 0.3
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/runs.sh scaling|control|sc-fixed|sc-adaptive|sc-fixed-t03|sc-adaptive-t03 [eval flags]}
shift
serve=()
case $name in
  scaling) serve=(--parallel 16 --ctx-size 32768)
           run=(--gen 200 --levels 1,2,3,4 --budgets 0,64,256,1024 --samples 1,4,8 --concurrency 16 --answer-tokens 16) ;;
  control) run=(--gen 30 --levels 1,2,3 --budgets 0,16,64,256 --samples 1) ;;
  sc-fixed|sc-adaptive|sc-fixed-t03|sc-adaptive-t03)
           run=(--gen 50 --levels 1,2 --budgets 64 --samples 8)
           [[ $name == *adaptive* ]] && run+=(--adaptive)
           [[ $name == *t03 ]] && run+=(--temperature 0.3) ;;
  *) echo "unknown run '$name'" >&2; exit 2 ;;
esac
models/fetch.sh
cargo build --release --locked
port=${PORT:-8181}
target/release/thinkscale serve --port "$port" "${serve[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { echo "server failed to start" >&2; exit 1; }
  sleep 0.5
done
target/release/thinkscale eval run --url "http://127.0.0.1:$port" --seed 1 --top-k 0 "${run[@]}" \
  --out "${OUT:-docs/runs/$name}" "$@"
