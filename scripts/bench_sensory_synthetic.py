"""Sensory extraction on synthetic text, circular and not (issue 19).

    python scripts/bench_sensory_synthetic.py --seeds 0 1 2        # CPU, under a minute

What it measures and how: sidrec/benchmark/sensory_synthetic.py.
"""

from sidrec.benchmark.sensory_synthetic import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
