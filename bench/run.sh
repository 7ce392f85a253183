#!/usr/bin/env bash
# One command for the whole benchmark: installs the peer (llama-cpp-python's OpenAI server, built
# from source by pip), builds thinkscale, runs every row, writes docs/bench/<date>.{md,json}.
#   bench/run.sh [--skip-peer] [--tokens 128] [--threads N] ...   (see bench/run.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
models/fetch.sh
if [[ " $* " != *" --skip-peer "* ]] && ! python3 -c "import llama_cpp.server" 2>/dev/null; then
  echo "installing the peer: pip install 'llama-cpp-python[server]' (compiles llama.cpp, several minutes)"
  python3 -m pip install --quiet 'llama-cpp-python[server]'
fi
cargo build --release --locked
exec python3 bench/run.py "$@"
