"""Put re-measured baseline rows on an existing results page, each beside the row it re-measures.

Issue 19 (new sensory extractor, LLM-ESR's self-distillation from the mean of N retrieved users), CPU:
    python scripts/bench_remeasure.py --page benchmarks/results/baselines_industrial --old page \\
        --new runs/ind19/bench --models sasrec bsarec --fusions id asegr llmesr --ks 3 5 10 \\
        --old-label "page rows (commit dd18195)" --new-label "issue 19" \\
        --title "asegr / llmesr re-measured (issue 19)"
    python scripts/bench_remeasure.py --page benchmarks/results/pipeline_scientific \\
        --old runs/scientific/bench runs/sci_sem2/bench_old --new runs/sci_sem2/bench \\
        --models sasrec bsarec --fusions id asegr llmesr --ks 5 10 20 \\
        --old-label "before issue 19" --new-label "issue 19" --title "asegr / llmesr re-measured (issue 19)"

What it measures and how: sidrec/benchmark/remeasure.py.
"""

from sidrec.benchmark.remeasure import main
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main)
