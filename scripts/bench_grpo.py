"""Benchmark: does GRPO after SFT improve ranking? SFT checkpoint vs SFT+GRPO on the same split, same decoder.

Needs RUN/data, RUN/sids and RUN/align (``sidrec pipeline --config configs/demo.yaml --until align``, or the stage
commands). Synthetic demo catalogue on CPU (the acceptance run):
    python scripts/bench_grpo.py --run runs/demo --seeds 0 1 --name synthetic
Industrial (MiniOneRec split), test split, MiniOneRec's cut-offs, one SFT reused for both GRPO seeds:
    python scripts/bench_grpo.py --run runs/industrial --split test --ks 3 5 10 --name industrial \\
        --sft-config configs/sft/industrial.yaml --grpo-config configs/grpo/industrial.yaml --seeds 42

What it measures and how: sidrec/benchmark/grpo.py.
"""

from sidrec.benchmark.grpo import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
