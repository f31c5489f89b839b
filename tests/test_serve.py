"""``sidrec serve``: the real server on a free local port, called over HTTP. Answers equal ``sidrec recommend``;
bad requests get a 4xx naming the field and the next request still succeeds; concurrent requests are batched;
items added to the run are served after POST /reload. Plus the batcher on its own."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
CODEBOOK = 5  # 3 levels x 5 codes: 125 SIDs for 60 items, room for added ones
MAX_BODY = 4096


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sid_codes(index: int) -> list[int]:
    return [index // CODEBOOK ** 2, index // CODEBOOK % CODEBOOK, index % CODEBOOK]


def _scent(i: int) -> str:
    return "vanilla" if i % 2 == 0 else "citrus"


@pytest.fixture(scope="module")
def tiny_run(synthetic_data, tmp_path_factory) -> Path:
    """The smallest servable run: the synthetic data, random unique 3-level SIDs, a tiny random Qwen2 in
    sft/final, a max_history, SID-token keywords and one sensory attribute per item (for `explain`)."""
    from sidrec.data import load_data
    from sidrec.decode.tiny import save_tiny_lm
    from sidrec.sid import SidTable

    run = tmp_path_factory.mktemp("serve") / "run"
    shutil.copytree(synthetic_data, run / "data")
    items = load_data(run / "data").item_ids
    combos = np.random.default_rng(0).permutation(CODEBOOK ** 3)[:len(items)]
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps({i: _sid_codes(int(c)) for i, c in zip(items, combos)}))
    (run / "sids" / "stats.json").write_text(json.dumps({"codebook_sizes": [CODEBOOK] * 3}))
    save_tiny_lm(run / "sft" / "final", SidTable.load(run / "sids"), num_layers=1)
    (run / "align").mkdir()
    (run / "align" / "stats.json").write_text(json.dumps({"max_history": 5}))
    tokens = {f"<{level}_{c}>": {"keywords": [f"kw-{level}{c}"]} for level in "abc" for c in range(CODEBOOK)}
    (run / "align" / "sid_keywords.json").write_text(json.dumps({"tokens": tokens}))
    (run / "semantics").mkdir()
    (run / "semantics" / "sensory.jsonl").write_text("".join(
        json.dumps({"item_id": item, "attributes": {"scent": [_scent(i)]}}) + "\n" for i, item in enumerate(items)))
    return run


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The same model loaded in this process: what `sidrec recommend` computes."""
    import torch

    from sidrec.serve import Recommender

    torch.set_num_threads(1)
    return Recommender.load(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def histories(tiny_run) -> list[list[str]]:
    from sidrec.data import load_data

    return [list(h) for h in load_data(tiny_run / "data").split("test")["history"][:40]]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """`sidrec serve` in a subprocess on a free port; yields its base URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve_log") / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "sidrec.cli", "serve", "--run", str(tiny_run), "--port",
                                 str(port), "--max-body-bytes", str(MAX_BODY), "--threads", "1"],
                                stdout=log_file, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, "server exited:\n" + log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "server not up within 180 s:\n" + log_path.read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _expected(reference, history, topk=10, exclude_history=False) -> list[tuple[str, float]]:
    from sidrec.serve import Query

    return reference.recommend([Query(tuple(history), topk, exclude_history)])[0]


def _assert_same(items: list[dict], expected: list[tuple[str, float]]) -> None:
    assert [i["item_id"] for i in items] == [item for item, _ in expected]
    np.testing.assert_allclose([i["score"] for i in items], [s for _, s in expected], atol=1e-4)


def test_recommend_equals_the_recommend_cli(server, tiny_run, histories, reference):
    history = histories[0]
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", "recommend", "--run", str(tiny_run), "--history",
                           ",".join(history), "--topk", "10"], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli_rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    response = httpx.post(server + "/recommend", json={"history": history, "topk": 10}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["item_id"] for i in body["items"]] == [row[1] for row in cli_rows]
    np.testing.assert_allclose([i["score"] for i in body["items"]], [float(row[2]) for row in cli_rows], atol=2e-3)
    assert body["model"] == "sft" and body["latency_ms"] > 0
    catalogue = reference.catalogue
    for item in body["items"]:
        assert item["title"] == catalogue.items[item["item_id"]]["title"]
        assert item["sid"] == catalogue.sid_table.item_sid_string(item["item_id"])
        assert "why" not in item


@pytest.mark.parametrize("topk, exclude_history", [(1, False), (7, True), (25, False), (60, False)])
def test_recommend_options_equal_the_model(server, histories, reference, topk, exclude_history):
    """topk beyond the beam width widens the beams (as `sidrec recommend` does); exclude_history drops the
    history's items; topk = the catalogue size ranks every item."""
    for history in histories[1:4]:
        response = httpx.post(server + "/recommend", timeout=60,
                              json={"history": history, "topk": topk, "exclude_history": exclude_history})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        _assert_same(items, _expected(reference, history, topk, exclude_history))
        assert len(items) == topk and len({i["item_id"] for i in items}) == topk
        if exclude_history:
            assert not {i["item_id"] for i in items} & set(history)


def test_explain_adds_why(server, histories, reference):
    history = histories[5]
    response = httpx.post(server + "/recommend", json={"history": history, "topk": 5, "explain": True}, timeout=60)
    assert response.status_code == 200, response.text
    items = reference.catalogue.sid_table.item_ids
    scent = {item: _scent(i) for i, item in enumerate(items)}
    for item in response.json()["items"]:
        tokens = item["sid"].replace(">", "> ").split()
        assert item["why"]["token_keywords"] == {t: [f"kw-{t[1]}{t[3:-1]}"] for t in tokens}
        shared = [f"scent: {scent[item['item_id']]}"] if scent[item["item_id"]] in {scent[h] for h in history} else []
        assert item["why"]["shared_attributes"] == shared


def test_sidrec_explain_gives_the_same_reasons(tiny_run, reference, tmp_path):
    """`sidrec explain` (from a predictions file) and the service's `why` come from one helper."""
    from sidrec.data import load_data
    from sidrec.eval.explain import explain

    run = tmp_path / "run"
    for part in ("data", "sids", "align", "semantics"):
        shutil.copytree(tiny_run / part, run / part)
    sample = load_data(run / "data").split("test")[0]
    ranked = reference.catalogue.sid_table.item_ids[:4]
    (run / "predictions").mkdir()
    (run / "predictions" / "sft.jsonl").write_text(json.dumps(
        {"sample_id": sample["sample_id"], "user_id": sample["user_id"], "target": sample["target"],
         "items": ranked}) + "\n")
    result = explain(run, sample["user_id"], top=4)
    assert [r["item_id"] for r in result["recommendations"]] == ranked
    for r in result["recommendations"]:
        why = reference.catalogue.why(r["item_id"], sample["history"])
        assert r["token_keywords"] == why["token_keywords"] and r["shared_attributes"] == why["shared_attributes"]
        assert len(r["token_keywords"]) == 3 and r["sid"] == reference.catalogue.sid_strings[r["item_id"]]
    # the file holds test predictions: asking for the valid split's sample of this user is refused, not mixed up
    from sidrec.errors import InputError

    valid = load_data(run / "data").split("valid")
    row = list(valid["user_id"]).index(sample["user_id"])
    (run / "predictions" / "sft.jsonl").write_text(json.dumps(  # valid's sample id (ids restart per split)
        {"sample_id": valid["sample_id"][row], "user_id": sample["user_id"], "target": sample["target"],
         "items": ranked}) + "\n")
    with pytest.raises(InputError, match="holds another split's predictions"):
        explain(run, sample["user_id"], split="valid", top=4)
    (run / "sids" / "sids.json").write_text("{broken")
    with pytest.raises(InputError, match=r"sids.json:1: invalid JSON"):
        explain(run, sample["user_id"], top=4)


def test_batch_endpoint_equals_single_requests(server, histories, reference):
    users = [{"history": h, "topk": k} for h, k in zip(histories[6:12], (3, 10, 10, 22, 5, 10))]
    response = httpx.post(server + "/recommend/batch", json={"users": users}, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(users)
    for user, result in zip(users, results):
        _assert_same(result["items"], _expected(reference, user["history"], user["topk"]))


def test_health_and_items(server, reference):
    health = httpx.get(server + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["items"] == 60 and health["backend"] == "torch"
    item = reference.catalogue.sid_table.item_ids[3]
    body = httpx.get(f"{server}/items/{item}", timeout=10).json()
    assert body["item_id"] == item and body["sid"] == reference.catalogue.sid_table.item_sid_string(item)
    assert body["title"] == reference.catalogue.items[item]["title"]
    assert httpx.get(server + "/docs", timeout=10).status_code == 200
    assert "/recommend/batch" in httpx.get(server + "/openapi.json", timeout=10).json()["paths"]


def _chunks(payload: bytes, size: int = 1000):
    for start in range(0, len(payload), size):
        yield payload[start:start + size]


def _bad_requests(known: str) -> list[tuple[str, str, dict, int, str, str]]:
    """(name, path, httpx.post kwargs, status, field, words of the message)."""
    big = json.dumps({"history": [known] * 600}).encode()
    assert len(big) > MAX_BODY
    return [
        ("unknown item", "/recommend", {"json": {"history": [known, "NOPE"]}}, 422, "history[1]", "NOPE"),
        ("empty history", "/recommend", {"json": {"history": []}}, 422, "history", "empty"),
        ("missing history", "/recommend", {"json": {"topk": 3}}, 422, "history", "required"),
        ("history not a list", "/recommend", {"json": {"history": known}}, 422, "history", "list"),
        ("topk zero", "/recommend", {"json": {"history": [known], "topk": 0}}, 422, "topk", "between 1 and 60"),
        ("topk too large", "/recommend", {"json": {"history": [known], "topk": 61}}, 422, "topk", "got 61"),
        ("topk not a number", "/recommend", {"json": {"history": [known], "topk": "ten"}}, 422, "topk", "integer"),
        ("topk as text", "/recommend", {"json": {"history": [known], "topk": "5"}}, 422, "topk", "integer"),
        ("topk as a flag", "/recommend", {"json": {"history": [known], "topk": True}}, 422, "topk", "integer"),
        ("flag as text", "/recommend", {"json": {"history": [known], "explain": "false"}}, 422, "explain", "bool"),
        ("misspelt field", "/recommend", {"json": {"history": [known], "top_k": 3}}, 422, "top_k",
         "did you mean 'topk'?"),
        ("batch: misspelt field", "/recommend/batch", {"json": {"user": []}}, 422, "user", "did you mean 'users'?"),
        ("malformed JSON", "/recommend", {"content": b'{"history": ["' + known.encode() + b'",',
                                          "headers": {"content-type": "application/json"}},
         400, "body", "malformed JSON"),
        ("oversized body", "/recommend", {"content": big, "headers": {"content-type": "application/json"}},
         413, "body", f"limit of {MAX_BODY} bytes"),
        ("oversized chunked body", "/recommend", {"content": _chunks(big),
                                                  "headers": {"content-type": "application/json"}},
         413, "body", f"limit of {MAX_BODY} bytes"),
        ("batch: no users", "/recommend/batch", {"json": {"users": []}}, 422, "users", "1 to 256"),
        ("batch: unknown item", "/recommend/batch",
         {"json": {"users": [{"history": [known]}, {"history": ["NOPE"], "topk": 0}]}},
         422, "users[1].history[0]", "NOPE"),
    ]


def test_bad_requests_name_the_field_and_the_service_stays_up(server, histories, reference):
    known = histories[0][0]
    valid = {"history": histories[0], "topk": 4}
    for name, path, kwargs, status, field, words in _bad_requests(known):
        response = httpx.post(server + path, timeout=60, **kwargs)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        body = response.json()
        assert field in [e["field"] for e in body["errors"]], f"{name}: {body}"
        assert words in body["detail"], f"{name}: {body}"
        follow = httpx.post(server + "/recommend", json=valid, timeout=60)
        assert follow.status_code == 200, f"after {name}: {follow.text}"
        _assert_same(follow.json()["items"], _expected(reference, histories[0], 4))
    # Every problem of a request is reported, not only the first.
    response = httpx.post(server + "/recommend/batch", timeout=60,
                          json={"users": [{"history": [known]}, {"history": ["NOPE"], "topk": 0}]})
    assert {e["field"] for e in response.json()["errors"]} == {"users[1].history[0]", "users[1].topk"}
    response = httpx.get(server + "/items/NOPE", timeout=10)
    assert response.status_code == 404 and response.json()["errors"][0]["field"] == "item_id"


def test_concurrent_requests_are_batched_and_correct(server, histories, reference):
    before = httpx.get(server + "/health", timeout=10).json()
    work = [(histories[i % len(histories)], 5 + i % 3) for i in range(96)]

    def call(job):
        history, topk = job
        with httpx.Client(timeout=120) as client:
            return client.post(server + "/recommend", json={"history": history, "topk": topk})

    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(call, work))
    assert [r.status_code for r in responses] == [200] * len(work)
    for (history, topk), response in zip(work, responses):
        _assert_same(response.json()["items"], _expected(reference, history, topk))
    after = httpx.get(server + "/health", timeout=10).json()
    assert after["queries"] - before["queries"] == len(work)
    assert after["batches"] - before["batches"] < len(work) and after["largest_batch"] > 1


def test_reload_serves_added_items(server, tiny_run, histories, reference):
    """What `sidrec add-items` writes (new rows in data/items, new SIDs in sids.json) is served after
    POST /reload, with no restart and no retraining."""
    import datasets

    from sidrec.data.store import ITEM_FEATURES

    new_ids = ["NEW0", "NEW1"]
    assert httpx.get(server + "/items/NEW0", timeout=10).status_code == 404
    sids_path = tiny_run / "sids" / "sids.json"
    sids = json.loads(sids_path.read_text())
    taken = {tuple(c) for c in sids.values()}
    free = [c for c in range(CODEBOOK ** 3) if tuple(_sid_codes(c)) not in taken][:2]
    sids_path.write_text(json.dumps({**sids, "GHOST": _sid_codes(free[0])}))  # a SID without an item row
    response = httpx.post(server + "/reload", timeout=60)
    assert response.status_code == 409 and "GHOST" in response.text, response.text
    assert httpx.get(server + "/items/GHOST", timeout=10).status_code == 404  # the old catalogue still serves
    items = datasets.load_from_disk(str(tiny_run / "data" / "items")).to_list()
    rows = [{**items[0], "item_id": i, "title": f"{i} title"} for i in new_ids]
    shutil.rmtree(tiny_run / "data" / "items")
    datasets.Dataset.from_list(items + rows, features=ITEM_FEATURES).save_to_disk(str(tiny_run / "data" / "items"))
    sids_path.write_text(json.dumps({**sids, **{i: _sid_codes(c) for i, c in zip(new_ids, free)}}))

    response = httpx.post(server + "/reload", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 2 and response.json()["items"] == 62
    assert httpx.get(server + "/items/NEW1", timeout=10).json()["title"] == "NEW1 title"
    reference.reload_catalogue()
    # Exhaustive decoding ranks every item, the new ones included; a history may hold them too.
    for history in (histories[0], histories[1] + ["NEW0"]):
        response = httpx.post(server + "/recommend", json={"history": history, "topk": 62}, timeout=60)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert set(new_ids) <= {i["item_id"] for i in items}
        _assert_same(items, _expected(reference, history, 62))


def test_serve_without_a_run_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", "serve", "--run", str(tmp_path / "missing")],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "run:" in proc.stderr and "not a directory" in proc.stderr


# ------------------------------------------------------------------ the batcher alone
def test_batcher_groups_concurrent_queries_and_survives_a_failure():
    from sidrec.serve.batching import DynamicBatcher

    sizes: list[int] = []

    def decode(queries: list[int]) -> list[int]:
        if -1 in queries:
            raise ValueError("bad query")
        time.sleep(0.02)
        sizes.append(len(queries))
        return [q * 10 for q in queries]

    async def scenario():
        batcher = DynamicBatcher(decode, max_batch=8, max_wait_s=0.01)
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit([i]) for i in range(20)))
            with pytest.raises(ValueError, match="bad query"):
                await batcher.submit([-1])
            after_failure = await batcher.submit([3, 4])
        finally:
            await batcher.stop()
        return results, after_failure

    results, after_failure = asyncio.run(scenario())
    assert results == [[i * 10] for i in range(20)] and after_failure == [30, 40]
    assert sizes[:3] == [8, 8, 4] and max(sizes) <= 8


def test_field_names_of_validation_errors():
    pytest.importorskip("fastapi")
    from sidrec.serve.app import field_name

    assert field_name(("body", "users", 3, "history", 1)) == "users[3].history[1]"
    assert field_name(("body", "topk")) == "topk"
    assert field_name(("body",)) == "body"
