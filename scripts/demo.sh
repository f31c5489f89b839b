#!/usr/bin/env bash
# Install (first run) and run the offline demo on the embedded synthetic catalogue:
#   bash scripts/demo.sh [RUN_DIR]
source "$(dirname "$0")/_env.sh" dev
RUN="${1:-runs/demo}"
sidrec data prepare --source synthetic --seed 0 --out "$RUN/data"
sidrec baseline --model popularity --data "$RUN/data" --out "$RUN/predictions/popularity.jsonl"
sidrec baseline --model random --data "$RUN/data" --out "$RUN/predictions/random.jsonl"
sidrec evaluate --predictions "$RUN/predictions/popularity.jsonl" --data "$RUN/data" --split test \
  --out "$RUN/metrics/popularity.json"
sidrec compare "$RUN/predictions/popularity.jsonl" "$RUN/predictions/random.jsonl" --data "$RUN/data" \
  --out "$RUN/report.md" --plot "$RUN/plots/compare.png"
