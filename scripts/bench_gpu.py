"""The GPU check's SFT speed parts and its results page (scripts/gpu_check.sh runs every step; read that first).

What it measures and how: sidrec/benchmark/gpu.py.
"""

from sidrec.benchmark.gpu import main
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main)
