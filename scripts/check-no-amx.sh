#!/usr/bin/env bash
# Proves from the artefacts, not from a run, that no code this build produces or the server loads
# can execute an Intel AMX instruction (ggml's AMX kernels segfault: llama.cpp #20824): disassembles
# the binary, every shared library and CPU variant beside it (what the server loads), and every
# library llama-cpp-sys-2 built (what the build produces), and fails on any AMX tile instruction.
# First it checks itself on an object that does hold them, so it cannot pass by matching nothing.
#
#   scripts/check-no-amx.sh [PROFILE_DIR]     (default target/release)
#   scripts/check-no-amx.sh FILE...           only these files (scripts/llama-server.sh's binary)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/release}
amx='\s(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilerelease|tilezero|tdpb[a-z]*|tdpfp16ps|tcmmimfp16ps|tcmmrlfp16ps)(\s|$)'

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'ldtilecfg (%%rdi)\ntdpbssd %%tmm2, %%tmm1, %%tmm0\ntilerelease\n' | as -o "$probe/amx.o" -
[ "$(objdump -d --no-show-raw-insn "$probe/amx.o" | grep -cE "$amx")" = 3 ] \
  || { echo "check-no-amx: the disassembler does not show AMX instructions; this check would prove nothing" >&2; exit 1; }

shopt -s nullglob
if [ -f "$dir" ]; then
  files=("$@")
  variants=()
else
  files=("$dir"/thinkscale "$dir"/lib*.so* "$dir"/build/llama-cpp-sys-2-*/out/lib/*.so* "$dir"/build/llama-cpp-sys-2-*/out/backends/*.so)
  variants=("$dir"/libggml-cpu-*.so)
  [ ${#variants[@]} -ge 2 ] || { echo "check-no-amx: no CPU variants beside the binary in $dir (build first)" >&2; exit 1; }
fi
found=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  hits=$(objdump -d --no-show-raw-insn "$f" | grep -cE "$amx" || true)
  if [ "$hits" != 0 ]; then
    echo "check-no-amx: $f holds $hits AMX instructions" >&2
    found=1
  fi
done
[ "$found" = 0 ] || exit 1
if [ -f "$dir" ]; then
  echo "check-no-amx: no AMX instruction in ${files[*]}"
  exit
fi
[ ! -e "$dir/libggml-cpu-sapphirerapids.so" ] || { echo "check-no-amx: the sapphirerapids variant is shipped beside the binary" >&2; exit 1; }
echo "check-no-amx: no AMX instruction in ${#files[@]} files (${#variants[@]} CPU variants shipped: $(basename -a "${variants[@]}" | sed 's/libggml-cpu-//; s/\.so//' | tr '\n' ' '))"
