"""Semantic IDs on Amazon Industrial_and_Scientific: our RQ-VAE (and rq-kmeans) beside MiniOneRec's own SIDs.

Each stage is one command under ~10 minutes on a shared 2-core machine; run them in separate invocations (the
timings are kept in RUN/bench_timings.json and reused by the report):

    python scripts/bench_quantize.py --stages prepare semantics
    python scripts/bench_quantize.py --stages quantize rq-kmeans
    python scripts/bench_quantize.py                      # report only: benchmarks/results/quantize_industrial.*

``--stages all`` runs everything in one go. Stages are run with ``--force`` so their time is measured, not skipped.

What it measures and how: sidrec/benchmark/quantize.py.
"""

from sidrec.benchmark.quantize import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
