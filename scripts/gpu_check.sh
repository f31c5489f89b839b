#!/usr/bin/env bash
# The GPU check (issue 20): one script for one device call of at most 8 minutes on a lent H200, writing
# gpu_<device>.md + .json (scripts/bench_gpu.py report):
#   - SFT tokens/s of sidrec's TRL path vs a plain torch loop, random-init Qwen2.5-0.5B shape, bf16, seq 256, MFU;
#     and the TRL path under DeepSpeed ZeRO-2 through `accelerate launch` on the one GPU;
#   - constrained decoding users/s, torch backend vs transformers + prefix_allowed_tokens_fn (and + the vectorised
#     trie processor) at beams 10 and 50, and the prefill-only floor, same model and prompts (scripts/bench_decode.py);
#   beside the H100 reference figures of ../shared/gpu/README.md.
#
# On a lent GPU (the device tool; its machine has no network and lacks trl, datasets and deepspeed):
#   bash ../shared/gpu/prepare_wheels.sh                      # here, once: ./.whl (~25 MiB, git-ignored)
#   device run, carry [".whl"], timeout_s 540:
#     source .whl/setup_on_device.sh && bash scripts/gpu_check.sh --out $OUT
#   then copy the returned gpu_*.md / gpu_*.json into benchmarks/results/ and commit them.
# On CPU with tiny shapes, end to end (~1.5 min; tests/test_gpu_check.py runs it so it cannot rot):
#   bash scripts/gpu_check.sh --smoke [--out DIR]
#
# Every step runs under its own time limit and logs to OUT/logs/<step>.log; a failed step is named on the page and
# the script exits non-zero, but the steps after it still run (one device call must bring back what it can).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
smoke=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (expected --smoke, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d -t gpu_check-XXXXXX)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ "$smoke" = 1 ]; then
  out="${out:-$work/results}"
  export OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu
  setup=(--shape tiny --seq-len 64 --n-examples 64)
  sft=(--batch-size 4 --steps 3 --warmup 1)
  zero2=deepspeed_configs/zero2_cpu.yaml
  decode=(--device cpu --model-shape tiny --n-prompts 8 --prompt-tokens 64 --n-items 300 --codebook 16
          --beams 10 50 --repeats 1 --threads 1)
  limits=(300 300 300 300)
else
  out="${out:-benchmarks/results}"
  setup=(--shape qwen2.5-0.5b --seq-len 256 --n-examples 1024)
  sft=(--batch-size 32 --steps 20 --warmup 3)
  zero2=deepspeed_configs/zero2.yaml
  decode=(--device cuda --model-shape qwen2.5-0.5b --n-prompts 64 --prompt-tokens 200 --n-items 12000 --levels 3
          --codebook 256 --beams 10 50 --repeats 2)
  limits=(90 120 120 150)  # seconds: setup, sft, zero2, decode (8 minutes with the report)
fi
mkdir -p "$out/logs"
failed=()
step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  local started=$SECONDS
  echo "[gpu_check] $name: $*"
  if timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$out/logs/$name.log" 2>&1; then
    echo "[gpu_check] $name: done in $((SECONDS - started)) s"
  else
    echo "[gpu_check] $name: FAILED (exit $?) after $((SECONDS - started)) s; last lines of $out/logs/$name.log:"
    tail -n 25 "$out/logs/$name.log"
    failed+=("$name")
  fi
}
"$PYTHON" -c "import torch; print('[gpu_check] torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
step setup "${limits[0]}" "$PYTHON" scripts/bench_gpu.py setup --work "$work" "${setup[@]}"
step sft "${limits[1]}" "$PYTHON" scripts/bench_gpu.py sft --work "$work" --arms trl plain --tag single "${sft[@]}"
step zero2 "${limits[2]}" "$PYTHON" -m accelerate.commands.launch --config_file "$zero2" --num_processes 1 \
  scripts/bench_gpu.py sft --work "$work" --arms trl --tag zero2 "${sft[@]}"
step decode "${limits[3]}" "$PYTHON" scripts/bench_decode.py "${decode[@]}" --backends torch hf-prefix-fn hf \
  --out "$work"
step report 60 "$PYTHON" scripts/bench_gpu.py report --work "$work" --out "$out" --failed "${failed[@]}"
cat "$out"/gpu_*.md 2>/dev/null
rm -rf "$work"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "[gpu_check] failed steps: ${failed[*]}" >&2
  exit 1
fi
