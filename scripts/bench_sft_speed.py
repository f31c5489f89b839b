"""Benchmark the SFT path's speed: TRL's SFTTrainer vs a plain torch training loop, same model, batches and data.

    sidrec pipeline --config configs/scientific.yaml --until align        # any RUN/align
    python scripts/bench_sft_speed.py --align runs/scientific/align --config configs/sft/scientific_cpu.yaml \\
        --steps 30 --name scientific

What it measures and how: sidrec/benchmark/sft_speed.py.
"""

from sidrec.benchmark.sft_speed import main
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main)
