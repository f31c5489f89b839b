"""Sensory attributes (ASEGR teacher / student): accuracy where the truth is known, coverage where it is not.

    python scripts/bench_semantics.py --seeds 0 1 2 --industrial runs/quant/ind
Results: benchmarks/results/semantics_acceptance.{json,md}. Each synthetic run takes about a minute on one thread.

What it measures and how: sidrec/benchmark/semantics.py.
"""

from sidrec.benchmark.semantics import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
