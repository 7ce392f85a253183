#!/usr/bin/env bash
# Fuzz the request checks and the output parsers for a bounded time each (cargo-fuzz, libFuzzer).
#   scripts/fuzz.sh [SECONDS per target, default 60]
# Needs a nightly toolchain and cargo-fuzz (rustup toolchain install nightly; cargo install
# cargo-fuzz). A crash leaves its input in fuzz/artifacts/<target>/; fix it and keep the input as
# a unit test. The first build compiles llama.cpp again under fuzz/target (several minutes).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
for target in request text; do
  mkdir -p "corpus/$target"
  echo "== $target: ${secs}s" >&2
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$secs" -timeout=10 2>&1 \
    | grep -E "^(#[0-9]+\s+DONE|Done|==[0-9]+==|SUMMARY|thread '.*' panicked)" || true
  test -z "$(ls -A "artifacts/$target" 2>/dev/null)" || { echo "$target: crash inputs in fuzz/artifacts/$target" >&2; exit 1; }
done
echo "no crashes" >&2
