#!/usr/bin/env bash
# Fetch the default model (Qwen2.5-Coder-0.5B-Instruct, the reference model), build, and serve it
# on 127.0.0.1:8080 (extra flags go to `serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null || ! command -v clang >/dev/null; then
  echo "building llama.cpp needs cmake, clang and libclang-dev:" >&2
  echo "  sudo apt-get install -y cmake clang libclang-dev" >&2
  exit 1
fi
models/fetch.sh qwen0.5
cargo build --release --locked
exec target/release/thinkscale serve "$@"
