"""Load benchmark of ``sidrec serve``: latency percentiles, requests/s and failed / invalid answers at several
numbers of concurrent clients. Results: benchmarks/results/serve_<name>.json and .md.

The script starts ``sidrec serve --run RUN`` on a free port of 127.0.0.1 (nothing else is contacted), then for each
load level runs ``clients`` closed-loop clients (each sends POST /recommend, waits for the answer, sends the next)
for ``--warmup`` seconds (not counted) and ``--seconds`` seconds (counted), cycling through the histories of the
run's ``--split`` split. Every load is bounded in time and stops by itself; the server is stopped at the end.

An answer is *failed* when the request errors or times out or its status is not 200, and *invalid* when its items
are not ``topk`` distinct catalogue items with their own SIDs, in non-increasing score order. Answers at more than
one client are also compared with the one-client answer for the same history (where batching cannot happen): the
count of differing lists is reported.

How to run it: ``scripts/bench_serve.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sidrec.benchmark import ROOT, positive_int


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory with a trained model (RUN/grpo/final or sft/final)")
    p.add_argument("--clients", type=positive_int, nargs="+", default=[1, 8, 32], help="concurrent clients per load level")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per load level")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    p.add_argument("--topk", type=positive_int, default=10, help="items asked for per request")
    p.add_argument("--split", default="test", help="split whose histories the clients send")
    p.add_argument("--histories", type=positive_int, default=500, help="distinct histories cycled through")
    p.add_argument("--timeout", type=float, default=30.0, help="a request slower than this counts as failed")
    p.add_argument("--threads", type=positive_int, default=None, help="the server's torch CPU threads (default: torch's)")
    p.add_argument("--server-args", default="", help="more `sidrec serve` flags, e.g. '--max-batch 64'")
    p.add_argument("--name", default=None, help="result name: serve_<name>.json (default: the run folder's name)")
    p.add_argument("--out", default="benchmarks/results")
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, port: int, threads: int | None, extra: list[str], log_path: Path) -> subprocess.Popen:
    """``sidrec serve`` in a subprocess; returns once GET /health answers (raises with its log if it dies)."""
    import httpx

    command = [sys.executable, "-m", "sidrec.cli", "serve", "--run", run, "--port", str(port), *extra]
    if threads:
        command += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sidrec serve exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"sidrec serve not up within 300 s:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.5)


def check_answer(body: dict, topk: int, sid_strings: dict[str, str]) -> str | None:
    """Why a 200 answer is invalid, or None when it is valid (module docstring)."""
    items = body.get("items")
    if not isinstance(items, list):
        return "no items list"
    want = min(topk, len(sid_strings))
    if len(items) != want:
        return f"{len(items)} items, expected {want}"
    ids = [i.get("item_id") for i in items]
    if len(set(ids)) != len(ids):
        return "duplicate items"
    for item in items:
        if item.get("item_id") not in sid_strings:
            return f"not a catalogue item: {item.get('item_id')!r}"
        if item.get("sid") != sid_strings[item["item_id"]]:
            return f"wrong SID for {item['item_id']}"
    scores = [i.get("score") for i in items]
    if not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
        return "a score is not a finite number"
    if any(a < b - 1e-6 for a, b in zip(scores, scores[1:])):
        return "scores not in decreasing order"
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, speaking just enough HTTP for POST + JSON.

    A general-purpose async client costs a few ms of CPU per request, as much as the server's own work on a
    2-core machine, so the clients would measure themselves; this one costs tens of microseconds.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(payload), payload))
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head[9:12])
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        body = await self.reader.readexactly(length)
        if "connection: close" in head:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load_level(host: str, port: int, clients: int, histories: list[list[str]], topk: int, warmup: float,
                     seconds: float, timeout: float, sid_strings: dict[str, str],
                     reference: dict[int, list[str]] | None) -> dict:
    """``clients`` closed-loop clients for ``warmup + seconds``; statistics of the measured part."""
    import httpx
    import numpy as np

    latencies: list[float] = []
    failed = invalid = differ = compared = 0
    reasons: dict[str, int] = {}
    answers: dict[int, list[str]] = {}
    payloads = [json.dumps({"history": h, "topk": topk}).encode() for h in histories]
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def client(worker: int) -> None:
        nonlocal failed, invalid, differ, compared
        connection = Connection(host, port)
        n = worker
        while time.perf_counter() < stop_at:
            index = n % len(histories)
            n += clients
            sent = time.perf_counter()
            try:
                status, raw = await asyncio.wait_for(connection.post("/recommend", payloads[index]), timeout)
                body = json.loads(raw) if status == 200 else None
            except (OSError, ValueError, IndexError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                connection.close()
                status, body = type(e).__name__, None
            done = time.perf_counter()
            if sent < measure_from or done > stop_at:
                continue  # warm-up, or finished after the measured window closed
            latencies.append((done - sent) * 1000)
            if body is None:
                failed += 1
                reasons[f"status {status}"] = reasons.get(f"status {status}", 0) + 1
                continue
            problem = check_answer(body, topk, sid_strings)
            if problem:
                invalid += 1
                reasons[problem] = reasons.get(problem, 0) + 1
                continue
            ids = [i["item_id"] for i in body["items"]]
            answers.setdefault(index, ids)
            if reference is not None and index in reference:
                compared += 1
                differ += ids != reference[index]
        connection.close()

    url = f"http://{host}:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        before = (await http.get("/health")).json()
        await asyncio.gather(*(client(w) for w in range(clients)))
        after = (await http.get("/health")).json()
    lat = np.asarray(latencies)
    batches = after["batches"] - before["batches"]
    queries = after["queries"] - before["queries"]
    return {"clients": clients, "requests": len(latencies), "seconds": seconds,
            "requests_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "mean_ms": round(float(lat.mean()), 2) if len(lat) else None,
            "failed": failed, "invalid": invalid, "problems": reasons,
            "mean_batch": round(queries / batches, 2) if batches else None,
            "compared_with_1_client": compared, "differ_from_1_client": differ,
            "load_average_1min_after": round(os.getloadavg()[0], 2), "_answers": answers}


def main(args: argparse.Namespace) -> dict:
    import httpx

    from sidrec.benchmark import cpu_name, environment, write_report
    from sidrec.data.store import load_data
    from sidrec.sid import SidTable

    run = Path(args.run)
    table = SidTable.load(run / "sids")
    sid_strings = {i: table.item_sid_string(i) for i in table.item_ids}
    histories = [list(h) for h in load_data(run / "data").split(args.split)["history"][:args.histories]]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    extra = shlex.split(args.server_args)
    log_path = Path(tempfile.gettempdir()) / f"bench_serve_{port}.log"
    load_before = os.getloadavg()
    server = start_server(str(run), port, args.threads, extra, log_path)
    try:
        health = httpx.get(url + "/health", timeout=10).json()
        levels, reference = [], None
        for clients in args.clients:
            level = asyncio.run(load_level("127.0.0.1", port, clients, histories, args.topk, args.warmup, args.seconds,
                                           args.timeout, sid_strings, reference))
            answers = level.pop("_answers")
            if clients == 1:
                reference = answers
            levels.append(level)
            print(f"{clients:>3} clients: {level['requests_per_s']:8.2f} req/s  p50 {level['p50_ms']} ms  "
                  f"p95 {level['p95_ms']} ms  p99 {level['p99_ms']} ms  batch {level['mean_batch']}  "
                  f"failed {level['failed']}  invalid {level['invalid']}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    log_path.unlink(missing_ok=True)
    rate = {lv["clients"]: lv["requests_per_s"] for lv in levels}
    lowest, highest = min(rate), max(rate)
    speedup = round(rate[highest] / rate[lowest], 2) if rate[lowest] else None
    device = (health["device"] if health["device"] != "cpu"
              else f"CPU ({cpu_name()}, {os.cpu_count()} cores; server: {health['torch_threads']} torch threads)")
    report = {"benchmark": "serve", **environment(dirty_paths=("sidrec/serve", "sidrec/decode/__init__.py",
                                                             "sidrec/decode/torch_backend.py",
                                                             "scripts/bench_serve.py", "sidrec/benchmark/serve.py")),
              "device": device, "load_average_before": [round(x, 2) for x in load_before],
              "config": {**{k: v for k, v in vars(args).items()}, "catalogue_items": len(sid_strings),
                         "server": {k: health[k] for k in ("model", "model_dir", "backend", "device", "beams",
                                                           "max_batch", "max_wait_ms", "torch_threads")}},
              "levels": levels, "speedup": {"from_clients": lowest, "to_clients": highest, "requests_per_s": speedup},
              "acceptance": {"zero_failed_or_invalid": all(lv["failed"] == lv["invalid"] == 0 for lv in levels),
                             "speedup_at_least_3x": bool(speedup is not None and speedup >= 3.0)}}
    report["config"]["run_config"] = _read(run / "config.yaml")
    model_dir = Path(health["model_dir"])
    shape = _read(model_dir / "config.json") or {}
    report["config"]["model"] = {**{k: shape.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size")},
                                 "prompt_settings": _read(model_dir / "sidrec.json")}
    name = args.name or run.name
    write_report(args.out, f"serve_{name}", report, _markdown(report))
    print(_markdown(report))
    return report


def _read(path: Path) -> dict | None:
    """A JSON or YAML file's contents, None when it is absent."""
    import yaml

    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _markdown(report: dict) -> str:
    cfg = report["config"]
    server = cfg["server"]
    lines = [f"# `sidrec serve` load benchmark ({report['device']})", "",
             f"{report['date']}, commit {report['commit']}, torch {report['torch']}; run `{cfg['run']}` "
             f"({cfg['catalogue_items']} items), model `{server['model_dir']}`, backend {server['backend']} on "
             f"{server['device']} ({_model_line(cfg)}), beams {server['beams']}, top-{cfg['topk']}; dynamic "
             f"batching: max batch "
             f"{server['max_batch']}, max wait {server['max_wait_ms']} ms. Closed-loop clients on 127.0.0.1 cycling "
             f"through {cfg['histories']} `{cfg['split']}` histories; {cfg['warmup']:g} s warm-up, then "
             f"{cfg['seconds']:g} s measured per level. Load average before the run: "
             f"{', '.join(map(str, report['load_average_before']))} (the machine is shared; the clients run on it "
             "too; the last column is the 1-minute load average when the level ended: 2 cores).", "",
             "| clients | requests/s | p50 ms | p95 ms | p99 ms | mean batch | requests | failed | invalid | "
             "differ from 1-client answer | load average after |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in report["levels"]:
        differ = f"{lv['differ_from_1_client']}/{lv['compared_with_1_client']}" if lv["clients"] != 1 else "-"
        lines.append(f"| {lv['clients']} | {lv['requests_per_s']} | {lv['p50_ms']} | {lv['p95_ms']} | "
                     f"{lv['p99_ms']} | {lv['mean_batch']} | {lv['requests']} | {lv['failed']} | {lv['invalid']} | "
                     f"{differ} | {lv['load_average_1min_after']} |")
    sp = report["speedup"]
    acc = report["acceptance"]
    lines += ["", f"Requests/s at {sp['to_clients']} clients / at {sp['from_clients']} client: "
                  f"**{sp['requests_per_s']}x** (acceptance: >= 3x: {'yes' if acc['speedup_at_least_3x'] else 'no'}); "
                  f"0 failed and 0 invalid at every level: {'yes' if acc['zero_failed_or_invalid'] else 'no'}.",
              "", "Failed: transport error, timeout or a status other than 200. Invalid: not `topk` distinct "
                  "catalogue items with their own SIDs in decreasing score order. 'Differ' compares each answer's item "
                  "list with the one-client (unbatched) answer for the same history.",
              "", "Command: `python scripts/bench_serve.py " + " ".join(_flags(cfg)) + "`"]
    return "\n".join(lines) + "\n"


def _model_line(cfg: dict) -> str:
    model = cfg.get("model") or {}
    settings = model.get("prompt_settings") or {}
    line = (f"Qwen2 {model.get('num_hidden_layers')} layers x {model.get('hidden_size')}, vocab "
            f"{model.get('vocab_size')}")
    if settings:
        line += f", {settings.get('prompt_format')} prompts of up to {settings.get('max_history')} items"
    return line


def _flags(cfg: dict) -> list[str]:
    flags = [f"--run {cfg['run']}", "--clients " + " ".join(map(str, cfg["clients"])),
             f"--seconds {cfg['seconds']:g}", f"--warmup {cfg['warmup']:g}", f"--topk {cfg['topk']}",
             f"--histories {cfg['histories']}"]
    if cfg.get("threads"):
        flags.append(f"--threads {cfg['threads']}")
    if cfg.get("server_args"):
        flags.append(f"--server-args {shlex.quote(cfg['server_args'])}")
    if cfg.get("name"):
        flags.append(f"--name {cfg['name']}")
    return flags
