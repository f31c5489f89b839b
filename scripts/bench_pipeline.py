"""Benchmark one dataset end to end: the generative pipeline and its ablations beside the baselines, in one table.

Scientific (issue 10), CPU:
    sidrec pipeline --config configs/scientific.yaml --until quantize
    python scripts/bench_baselines.py --data runs/scientific/data --semantics runs/scientific/semantics \\
        --config-dir configs/baselines/scientific --work runs/scientific/bench --fusions id asegr llmesr \\
        --seeds 0 --ks 5 10 20 --results benchmarks/results/baselines_scientific
    python scripts/bench_pipeline.py --config configs/scientific.yaml --variants full          # then, in parallel:
    python scripts/bench_pipeline.py --config configs/scientific.yaml --variants text_sids no_sa_init no_ts_align
    python scripts/bench_pipeline.py --config configs/scientific.yaml --report-only --name scientific \\
        --baselines-work runs/scientific/bench --aim "HR@10 1.5x SASRec-id's"

Beauty (issue 9; BSARec's protocol, history items masked, set in configs/beauty.yaml and configs/baselines/beauty/):
    sidrec pipeline --config configs/beauty.yaml --until quantize
    python scripts/bench_baselines.py --data runs/beauty/data --config-dir configs/baselines/beauty \\
        --work runs/beauty/bench --models bsarec --fusions id --seeds 42 --ks 5 10 20 --set max_minutes=150
    python scripts/bench_baselines.py --data runs/beauty/data --config-dir configs/baselines/beauty \\
        --work runs/beauty/bench_sasrec48 --models sasrec --fusions id --seeds 42 --ks 5 10 20 --set max_minutes=48
    python scripts/bench_baselines.py --data runs/beauty/data --config-dir configs/baselines/beauty \\
        --work runs/beauty/bench_bucketed --models sasrec --fusions id --seeds 42 43 44 --ks 5 10 20 \\
        --set trim_padding=on          # SASRec, length-bucketed batches (exact, less padding): 3 seeds
    python scripts/bench_pipeline.py --config configs/beauty.yaml --variants full   # then the three ablations
    python scripts/bench_pipeline.py --config configs/beauty.yaml --variants more_data   # opt-in: 2x the samples
    python scripts/bench_pipeline.py --config configs/beauty.yaml --report-only --name beauty \\
        --baselines-work runs/beauty/bench runs/beauty/bench_bucketed \\
        "random batches, 48-min cut=runs/beauty/bench_sasrec48" --aim "beat BSARec-id"

What it measures and how: sidrec/benchmark/pipeline.py.
"""

from sidrec.benchmark.pipeline import main
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main)
