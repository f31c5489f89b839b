"""Sensory extraction on real text: the offline extractor scored on the hand-labelled development set (issue 19).

    python scripts/bench_sensory_dev.py                       # CPU, a few seconds
    python scripts/bench_sensory_dev.py --name sensory_dev_before   # at an older commit, for --compare

What it measures and how: sidrec/benchmark/sensory_dev.py.
"""

from sidrec.benchmark.sensory_dev import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
