"""Benchmark constrained SID decoding: torch backend vs transformers generate (+ prefix_allowed_tokens_fn, and +
the vectorised trie processor) vs the vllm backend, in users/s, against the prefill-only floor. Results:
benchmarks/results/.

CPU (tiny Qwen2, 2 layers x 64 hidden; a ratio between backends, not absolute speed). The vllm backend needs the
second environment (.venv-vllm, built by ``bash scripts/test.sh`` or ``source scripts/_env_vllm.sh``), which also
runs the other backends, so all four share the model, prompts and machine in one run:
    source scripts/_env_vllm.sh
    python scripts/bench_decode.py --device cpu --model-shape tiny --beams 10 50 --threads 1 \
        --backends torch hf hf-prefix-fn vllm

The vllm backend gets the same weights (saved to a temporary folder), float32 on CPU, one engine started before
timing (not timed), its prefix cache emptied before every timed run (so no run reuses an earlier run's prefill),
and on CPU an in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0: ~2x faster here than a separate engine process).
GPU (random-init Qwen2.5-0.5B shape, bf16; the acceptance setting of issue 4):
    python scripts/bench_decode.py --device cuda --model-shape qwen2.5-0.5b --n-prompts 64 --prompt-tokens 200 \\
        --n-items 12000 --levels 3 --codebook 256 --beams 10 50

What it measures and how: sidrec/benchmark/decode.py.
"""

from sidrec.benchmark.decode import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
