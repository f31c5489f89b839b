"""Load benchmark of ``sidrec serve``: latency percentiles, requests/s and failed / invalid answers at several

CPU (the demo run; about 2 minutes):
    python scripts/bench_serve.py --run runs/demo --clients 1 8 32 --seconds 15
GPU (a server on the GPU; same command, the server picks CUDA by itself):
    python scripts/bench_serve.py --run runs/demo --clients 1 8 32 --seconds 15 --name demo_gpu

What it measures and how: sidrec/benchmark/serve.py.
"""

from sidrec.benchmark.serve import main, make_parser
from sidrec.errors import run_script

if __name__ == "__main__":
    run_script(main, make_parser().parse_args())
