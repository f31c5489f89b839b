#!/usr/bin/env bash
# Install (first run) and run the test suite offline: `bash scripts/test.sh [pytest args]`.
# Slow tests are deselected by default; run them with `bash scripts/test.sh -m slow`.
source "$(dirname "$0")/_env.sh" dev
python -m pytest -n 2 --dist loadscope --durations=15 "$@"
