"""Benchmark the discriminative baselines: every backbone x fusion mode, several seeds, one shared evaluator.

Industrial (issue 5), CPU:
    sidrec data prepare --source minionerec --path ../shared/data/minionerec-amazon18 \\
        --dataset Industrial_and_Scientific --out runs/base/ind/data
    sidrec semantics all --config configs/semantics/industrial.yaml --data runs/base/ind/data \\
        --out runs/base/ind/semantics
    sidrec model init-tiny --data runs/base/ind/data --out runs/base/ind/said_lm      # SAID's frozen LM
    timeout 590 python scripts/bench_baselines.py --data runs/base/ind/data --semantics runs/base/ind/semantics \\
        --config-dir configs/baselines/industrial --work runs/base/ind/bench --seeds 0 1 2 \\
        --set said_lm=runs/base/ind/said_lm --results benchmarks/results/baselines_industrial --budget-minutes 8

What it measures and how: sidrec/benchmark/baselines.py.
"""

from sidrec.benchmark.baselines import cli
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(cli)
