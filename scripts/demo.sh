#!/usr/bin/env bash
# Install (first run) and run the whole pipeline offline on the embedded synthetic catalogue:
#   bash scripts/demo.sh [extra `sidrec pipeline` options, e.g. --run-dir runs/demo2 or --from sft]
# Stages: prepare -> semantics -> quantize -> align -> sft -> grpo -> decode -> baselines -> report
# (about 7 minutes wall on a 2-core CPU after the install, measured with one core busy; a finished stage is skipped when the command is run again).
set -euo pipefail
source "$(dirname "$0")/_env.sh" dev
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
sidrec pipeline --config configs/demo.yaml "$@"
