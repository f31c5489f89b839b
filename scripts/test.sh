#!/usr/bin/env bash
# Install (first run) and run the test suite offline: `bash scripts/test.sh [pytest args]`.
#
# Without arguments (the README's test command; CI runs exactly this through .ci/run), two parts, each once, and
# a failure in either fails the whole:
#   1. .venv: the default suite (slow tests deselected) plus the real DeepSpeed runs (tests/test_deepspeed.py,
#      marked slow and deepspeed), on 2 workers;
#   2. .venv-vllm (built by scripts/_env_vllm.sh on the first run, ~3.5 min): the vLLM decoding tests
#      (tests/test_decode_vllm.py), where a missing vllm fails instead of skipping.
# With arguments, only pytest in .venv with them, e.g. `bash scripts/test.sh -m slow` (every slow test).
source "$(dirname "$0")/_env.sh" dev
if [ "$#" -gt 0 ]; then
  exec python -m pytest -n 2 --dist loadscope --durations=15 "$@"
fi
set +e  # run both parts, then fail if either failed
python -m pytest -n 2 --dist loadscope --durations=15 -m "not slow or deepspeed" --ignore tests/test_decode_vllm.py
suite=$?
echo "[sidrec] vLLM decoding tests in .venv-vllm"
started=$SECONDS
(
  set -euo pipefail
  source scripts/_env_vllm.sh
  SIDREC_REQUIRE_VLLM=1 OMP_NUM_THREADS=1 python -m pytest tests/test_decode_vllm.py -p no:xdist -p no:cacheprovider -v
)
vllm=$?
echo "[sidrec] vLLM part: $((SECONDS - started)) s (exit $vllm); main suite exit $suite"
[ "$suite" -eq 0 ] && [ "$vllm" -eq 0 ]
