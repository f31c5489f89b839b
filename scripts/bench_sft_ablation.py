"""Benchmark: SA-Init and TS-Align ablation of the SFT stage (random init vs SA-Init, with and without TS-Align).

Needs RUN/data, RUN/sids and RUN/align (``sidrec pipeline --config configs/demo.yaml --until align``). The
synthetic acceptance run (CPU, 2 cores):

    accelerate launch --config_file deepspeed_configs/cpu.yaml scripts/sft.py --config configs/sft/demo.yaml \\
        --align_dir runs/llm/demo/align --output_dir runs/llm/demo/sft4           # the acceptance run
    python scripts/bench_sft_ablation.py --run runs/llm/demo --name synthetic --reference-sft runs/llm/demo/sft4

What it measures and how: sidrec/benchmark/sft_ablation.py.
"""

from sidrec.benchmark.sft_ablation import main, make_parser

if __name__ == "__main__":
    main(make_parser().parse_args())
