# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse .venv in the repo root and install sidrec.
# On a machine without an NVIDIA GPU it pins the local CPU build of torch first, so no multi-GB CUDA wheel is
# downloaded. GPU users: install the torch build for your CUDA first (https://pytorch.org), or set SIDREC_GPU=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[sidrec] creating .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
extras="${1:-dev}"
stamp=".venv/.sidrec-$(cat pyproject.toml | sha256sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "[sidrec] installing sidrec[$extras] into .venv (first run only)"
  python -m pip install -q --upgrade pip
  if [ "${SIDREC_GPU:-0}" != "1" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q torch==2.13.0
  fi
  python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
