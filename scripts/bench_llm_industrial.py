"""Benchmark: the LLM stages on Amazon Industrial_and_Scientific (MiniOneRec split): SFT and SFT+GRPO vs popularity.

Needs RUN/data, RUN/semantics and RUN/sids:

    sidrec data prepare --source minionerec --path ../shared/data/minionerec-amazon18 \\
        --dataset Industrial_and_Scientific --out runs/llm/ind/data
    sidrec semantics --config configs/semantics/industrial.yaml --data runs/llm/ind/data --out runs/llm/ind/semantics
    sidrec quantize --config configs/quantize/industrial.yaml --semantics runs/llm/ind/semantics \\
        --out runs/llm/ind/sids
    python scripts/bench_llm_industrial.py --run runs/llm/ind --name industrial

What it measures and how: sidrec/benchmark/llm_industrial.py.
"""

from sidrec.benchmark.llm_industrial import main, make_parser

if __name__ == "__main__":
    main(make_parser().parse_args())
