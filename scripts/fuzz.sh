#!/usr/bin/env bash
# Fuzz the request checks and the output parsers for a bounded time each (libFuzzer through
# libfuzzer-sys), starting from the committed seeds; a crash fails the run and leaves its input in
# target/fuzz/artifacts/<target>/ (fix it, and keep the input as a unit test).
#   scripts/fuzz.sh [SECONDS per target, default 60]
# Runs on the stable toolchain: the targets are built with the coverage instrumentation cargo-fuzz
# uses (SanitizerCoverage), without AddressSanitizer (which needs nightly; the code is safe Rust
# but for llama.cpp, which these targets never call). Its own target directory, so the first run
# compiles llama.cpp once more (one CPU variant, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=target/fuzz
# Only the code under test is instrumented: --target keeps build scripts and proc macros plain.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked -p thinkscale-fuzz --target "$triple" --bins
for target in request text; do
  corpus=target/fuzz/corpus/$target artifacts=target/fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  echo "== fuzz $target: ${secs}s" >&2
  status=0
  "target/fuzz/$triple/release/$target" "$corpus" "fuzz/seeds/$target" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=4096 -artifact_prefix="$artifacts/" -print_final_stats=1 >"target/fuzz/$target.log" 2>&1 || status=$?
  grep -E "^(#[0-9]+\s+DONE|Done|stat::number_of_executed_units|stat::new_units_added|SUMMARY)|panicked" "target/fuzz/$target.log" >&2 || true
  if [ "$status" != 0 ] || [ -n "$(ls -A "$artifacts")" ]; then
    tail -40 "target/fuzz/$target.log" >&2
    echo "fuzz $target: crashed (input in $artifacts)" >&2
    exit 1
  fi
done
echo "fuzz: no crashes" >&2
