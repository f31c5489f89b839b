"""Baselines stage: every backbone learns the synthetic catalogue, every fusion mode trains on the semantics stage's
embeddings, an interrupted run resumes to the same model, and bad options fail early with ConfigError."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

# Small and quick: hidden 32, one block, batches of 32 so a 200-user catalogue gives several steps per epoch.
FAST = dict(hidden_size=32, num_layers=1, num_heads=2, batch_size=32, lr=5e-3, device="cpu", eval_batch_size=256)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_config(data: Path, out: Path, **options):
    from sidrec.baselines import BaselineConfig
    from sidrec.config import resolve

    return resolve(BaselineConfig, overrides={**FAST, "data": str(data), "out": str(out), **options})


@pytest.fixture(scope="module")
def semantics(synthetic_data, tmp_path_factory) -> Path:
    """RUN/semantics for the synthetic catalogue (text, sensory, fused embeddings; a short student run)."""
    from sidrec.semantics import SemanticsConfig, run_semantics

    out = tmp_path_factory.mktemp("baseline-sem") / "semantics"
    run_semantics(SemanticsConfig(data=str(synthetic_data), out=str(out), student_epochs=2, progress=False))
    return out


@pytest.fixture(scope="module")
def random_hr10(synthetic_data, tmp_path_factory) -> float:
    from sidrec.baselines import train_baseline
    from sidrec.eval import evaluate

    out = tmp_path_factory.mktemp("random") / "predictions" / "random.jsonl"
    path = train_baseline(make_config(synthetic_data, out, model="random"))
    return evaluate(path, synthetic_data)["overall"]["HR@10"]


def losses(cfg) -> list[float]:
    return [json.loads(line)["loss"] for line in (cfg.checkpoint_path() / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model, epochs", [("sasrec", 4), ("bert4rec", 15), ("bsarec", 2), ("gru4rec", 10)])
def test_backbone_learns_and_beats_random(model, epochs, synthetic_data, random_hr10, tmp_path):
    from sidrec.baselines import train_baseline
    from sidrec.eval import evaluate

    cfg = make_config(synthetic_data, tmp_path / "predictions" / f"{model}_id.jsonl", model=model, epochs=epochs,
                      patience=epochs)
    path = train_baseline(cfg)
    report = evaluate(path, synthetic_data)  # validates every line against the split and the item table
    assert report["n_predicted"] == report["n_samples"] and report["min_list_length"] == cfg.topk
    curve = losses(cfg)
    assert len(curve) == epochs and curve[-1] < curve[0] - 0.1, curve
    assert report["overall"]["HR@10"] > random_hr10 + 0.05, (report["overall"], random_hr10)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    # The trainer's quick metrics (full-catalogue ranks) agree with the shared evaluator on the written top-50.
    assert summary["quick_metrics"]["test"]["HR@10"] == pytest.approx(report["overall"]["HR@10"])
    assert summary["quick_metrics"]["test"]["NDCG@10"] == pytest.approx(report["overall"]["NDCG@10"])
    assert not (cfg.checkpoint_path() / "last.pt").exists()  # the resume state goes once the run is finished


FUSION_PARAMS = {"asegr": "items.sensory.project.weight", "guided": "items.guided.project.0.weight",
                 "said": "items.said.project.0.weight", "llmesr": "adapter.0.weight"}


@pytest.mark.parametrize("fusion", sorted(FUSION_PARAMS))
def test_fusion_mode_trains_its_semantic_branch(fusion, synthetic_data, semantics, tmp_path):
    from sidrec.baselines import train_baseline
    from sidrec.baselines.sequences import train_sequences
    from sidrec.baselines.trainer import build_model, seed_everything
    from sidrec.data import load_data
    from sidrec.eval import evaluate

    cfg = make_config(synthetic_data, tmp_path / "predictions" / f"sasrec_{fusion}.jsonl", fusion=fusion,
                      semantics=str(semantics), epochs=2, patience=2, said_epochs=1)
    path = train_baseline(cfg)
    report = evaluate(path, synthetic_data)
    assert report["n_predicted"] == report["n_samples"]
    curve = losses(cfg)
    assert curve[-1] < curve[0], curve
    # The semantic branch received gradients: its weights moved away from the (seeded) initialisation.
    data = load_data(synthetic_data)
    seed_everything(cfg.seed)
    max_len = int(data.stats["max_history"])
    initial = build_model(cfg, data, max_len, train_sequences(data)[1], cfg.checkpoint_path(), torch.device("cpu"))
    trained = torch.load(cfg.checkpoint_path() / "best.pt")
    name = FUSION_PARAMS[fusion]
    assert not torch.allclose(initial.state_dict()[name], trained[name])


def test_llmesr_retrieves_semantic_neighbours_and_distils(synthetic_data, semantics):
    from sidrec.baselines.retrieval import similar_users
    from sidrec.baselines.semantic import load_item_embeddings
    from sidrec.baselines.sequences import train_sequences
    from sidrec.data import load_data

    data = load_data(synthetic_data)
    semantic, known = load_item_embeddings(semantics, "fused", data.item_ids)
    assert known[1:].all() and not known[0]
    _, seqs = train_sequences(data)
    neighbors, distill = similar_users(semantic, seqs, k=5, tail_frac=0.5)
    assert neighbors.shape == (len(seqs), 5)
    assert not (neighbors == torch.arange(len(seqs))[:, None]).any()  # never oneself
    lengths = torch.tensor([len(s) for s in seqs])
    assert lengths[distill].max() <= lengths[~distill].min()  # only the short (long-tail) users are distilled
    # A user's neighbours share more items than random users do (semantic user vectors carry taste).
    overlap = [len(set(seqs[u]) & set(seqs[v])) for u in range(len(seqs)) for v in neighbors[u].tolist()]
    shuffled = [len(set(seqs[u]) & set(seqs[(u + 7) % len(seqs)])) for u in range(len(seqs))]
    assert sum(overlap) / len(overlap) > sum(shuffled) / len(shuffled)


def test_llmesr_teacher_is_the_mean_of_the_retrieved_users_representations():
    """LLM-ESR §3.3 on a tiny case: the N retrieved users are the most cosine-similar by mean semantic item
    embedding, the teacher of a long-tail user is the mean of their representations (both refresh modes), and the
    distillation loss is the weighted MSE to it, for long-tail users only."""
    import torch.nn.functional as F

    from sidrec.baselines import BaselineConfig
    from sidrec.baselines.model import DualViewRecommender
    from sidrec.baselines.retrieval import similar_users
    from sidrec.baselines.sequences import left_pad

    torch.manual_seed(0)
    n_items, max_len = 6, 4
    semantic = torch.randn(n_items + 1, 12)
    known = torch.ones(n_items + 1, dtype=torch.bool)
    known[0] = False
    user_seqs = [[1, 2], [2, 3], [5], [6, 1, 2, 3], [4, 5, 6], [3]]
    neighbors, distill = similar_users(semantic, user_seqs, k=2, tail_frac=0.5)
    # Retrieval: brute-force cosine over mean item embeddings, oneself excluded.
    means = F.normalize(torch.stack([semantic[s].mean(0) for s in user_seqs]), dim=1)
    sims = (means @ means.T).fill_diagonal_(-2)
    assert torch.equal(neighbors, sims.topk(2, dim=1).indices)
    assert distill.tolist() == [True, True, True, False, False, True]  # lengths <= median 2

    cfg = BaselineConfig(hidden_size=8, num_layers=1, num_heads=2, llmesr_neighbors=2, llmesr_distill_weight=0.5)
    model = DualViewRecommender("sasrec", n_items, max_len, cfg, semantic, known,
                                user_sequences=left_pad(user_seqs, max_len), neighbors=neighbors,
                                distill_users=distill)
    model.train()
    model.start_epoch()  # the trainer's call: teachers from the current model, without dropout
    model.eval()
    table = model.item_table()
    with torch.no_grad():  # each user's representation alone, through the ranking path
        reps = torch.stack([model.user_representation(left_pad([s], max_len), table)[0] for s in user_seqs])
        expected = torch.stack([reps[neighbors[u]].mean(0) for u in range(len(user_seqs))])
        users = torch.arange(len(user_seqs))
        tail = users[distill]  # teachers are kept for the distilled users only
        assert torch.allclose(model.teacher(tail, table), expected[distill], atol=1e-5)
        model.teacher_refresh = "batch"
        assert torch.allclose(model.teacher(users, table), expected, atol=1e-5)
        # Not one random neighbour: the mean differs from each single retrieved user's representation.
        assert not torch.allclose(expected[0], reps[neighbors[0, 0]], atol=1e-4)

        hidden = torch.randn(len(user_seqs), max_len, 2 * cfg.hidden_size)
        loss = model.extra_loss({"user": users}, hidden, table)
        assert torch.isclose(loss, 0.5 * F.mse_loss(hidden[distill, -1], expected[distill]), atol=1e-6)
        head = users[~distill]
        assert model.extra_loss({"user": head}, hidden[head], table) == 0


def test_interrupted_training_resumes_to_the_same_model(synthetic_data, tmp_path, monkeypatch):
    from sidrec.baselines import train_baseline, trainer

    options = dict(model="sasrec", epochs=4, patience=4)
    reference = make_config(synthetic_data, tmp_path / "ref" / "predictions" / "sasrec_id.jsonl", **options)
    train_baseline(reference)

    cfg = make_config(synthetic_data, tmp_path / "run" / "predictions" / "sasrec_id.jsonl", **options)
    real_evaluate, calls = trainer.evaluate_scores, []

    def killed_at_third_validation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies during epoch 3's validation
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate_scores", killed_at_third_validation)
    with pytest.raises(KeyboardInterrupt):
        train_baseline(cfg)
    monkeypatch.undo()
    last = torch.load(cfg.checkpoint_path() / "last.pt", weights_only=False)
    assert last["state"]["epoch"] == 2
    train_baseline(cfg)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 4
    assert len(losses(cfg)) == 4  # the log keeps the epochs before the interruption
    assert losses(cfg) == pytest.approx(losses(reference), rel=1e-5)
    ours, theirs = (torch.load(c.checkpoint_path() / "best.pt") for c in (cfg, reference))
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in theirs)
    assert cfg.out_path().read_text() == reference.out_path().read_text()

    # A finished run of the same options is reused, not retrained.
    before = (cfg.checkpoint_path() / "best.pt").stat().st_mtime_ns
    train_baseline(cfg)
    assert (cfg.checkpoint_path() / "best.pt").stat().st_mtime_ns == before


def test_pipeline_call_and_valid_split(synthetic_data, tmp_path):
    """The pipeline passes split/semantics for every spec; split=valid writes validation predictions."""
    from sidrec.baselines import train_baseline
    from sidrec.eval import evaluate

    out = tmp_path / "predictions" / "popularity.jsonl"
    cfg = make_config(synthetic_data, out, model="popularity", split="valid", semantics=str(tmp_path / "none"))
    assert train_baseline(cfg) == out
    assert evaluate(out, synthetic_data, split="valid")["n_predicted"] > 0
    with pytest.raises(Exception, match="differs from the test split"):
        evaluate(out, synthetic_data, split="test")


def test_yaml_on_off_is_read_as_the_choice(synthetic_data):
    """``--set trim_padding=on`` reaches the config as YAML's boolean True; it means the choice "on"."""
    import yaml

    from sidrec.baselines import BaselineConfig
    from sidrec.config import resolve

    for text, choice in (("on", "on"), ("off", "off")):
        cfg = resolve(BaselineConfig, overrides={"data": str(synthetic_data), "trim_padding": yaml.safe_load(text)})
        assert cfg.trim_padding == choice


@pytest.mark.parametrize("overrides, expected", [
    ({"model": "sasrec", "fusion": "llmesr"}, ["semantics:"]),
    ({"trim_padding": 1}, ["trim_padding:"]),
    ({"model": "popularity", "fusion": "asegr", "semantics": "x"}, ["fusion:"]),
    ({"hidden_size": 30, "num_heads": 4, "dropout": 1.5, "topk": 5}, ["num_heads:", "dropout:", "topk:"]),
    ({"model": "transformer"}, ["model"]),
    ({"guided_base_dim": 64, "bsarec_alpha": 2.0}, ["guided_base_dim:", "bsarec_alpha:"]),
    ({"split": "train"}, ["split"]),
    ({"llmesr_neighbors": 0, "llmesr_distill_weight": -0.1, "llmesr_tail_user_frac": 0.0},
     ["llmesr_neighbors:", "llmesr_distill_weight:", "llmesr_tail_user_frac:"]),
    ({"llmesr_tail_user_frac": 1.5}, ["llmesr_tail_user_frac:"]),
    ({"llmesr_teacher_refresh": "step"}, ["llmesr_teacher_refresh"]),
])
def test_bad_config_is_a_config_error(overrides, expected, synthetic_data):
    from sidrec.baselines import BaselineConfig
    from sidrec.config import resolve
    from sidrec.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        resolve(BaselineConfig, overrides={"data": str(synthetic_data), **overrides})
    for fragment in expected:
        assert fragment in str(e.value)


def test_semantics_of_another_catalogue_is_an_input_error(synthetic_data, tmp_path):
    import numpy as np

    from sidrec.baselines.semantic import load_item_embeddings
    from sidrec.errors import InputError

    (tmp_path / "item_index.json").write_text(json.dumps(["A", "B"]))
    np.save(tmp_path / "sensory_emb.npy", np.ones((2, 4), dtype=np.float32))
    with pytest.raises(InputError, match="no item of the dataset"):
        load_item_embeddings(tmp_path, "sensory", ["S00000", "S00001"])
    np.save(tmp_path / "sensory_emb.npy", np.ones((3, 4), dtype=np.float32))
    with pytest.raises(InputError, match="3 rows but item_index.json lists 2"):
        load_item_embeddings(tmp_path, "sensory", ["A"])


def test_shipped_configs_resolve():
    from sidrec.baselines import BaselineConfig
    from sidrec.config import resolve

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "baselines").rglob("*.yaml"))
    assert configs
    for path in configs:
        resolve(BaselineConfig, str(path), {}, section="baseline")


def test_said_with_a_frozen_lm_learns_to_reconstruct_item_text(synthetic_data, tmp_path, caplog):
    """SAID's own objective: the projector's soft prompt makes a frozen causal LM (a tiny local Qwen2) reproduce
    the item text."""
    import logging

    from sidrec.align import init_tiny_model
    from sidrec.baselines.said import said_embeddings
    from sidrec.data import load_data

    lm = init_tiny_model(synthetic_data, tmp_path / "lm", lm_epochs=0, vocab_size=400, hidden_size=64,
                         num_layers=1, intermediate_size=128)
    cfg = make_config(synthetic_data, tmp_path / "p.jsonl", fusion="said", semantics=str(tmp_path),
                      said_lm=str(lm), said_epochs=3, said_tokens=2, said_max_text_tokens=12)
    data = load_data(synthetic_data)
    with caplog.at_level(logging.INFO, logger="sidrec.baselines.said"):
        table, known = said_embeddings(cfg, data, tmp_path / "ckpt", torch.device("cpu"))
    epoch_losses = [r.args[1] for r in caplog.records if "LM reconstruction loss" in r.getMessage()]
    assert len(epoch_losses) == 3 and epoch_losses[0] > epoch_losses[1] > epoch_losses[2], epoch_losses
    assert table.shape == (len(data.item_ids) + 1, 2 * 64) and known[1:].all()
    assert len(list((tmp_path / "ckpt").glob("said_emb-*.pt"))) == 1  # cached for the next run of the same options
    stats = json.loads(next((tmp_path / "ckpt").glob("said_emb-*.json")).read_text())
    assert stats["losses"] == pytest.approx(epoch_losses) and "causal LM" in stats["objective"]


def test_cloze_mask_keeps_one_label_per_row_and_last_only_rows():
    from sidrec.baselines.sequences import cloze_mask

    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    gen = torch.Generator().manual_seed(0)
    inputs, labels = cloze_mask(items, 0.5, 99, gen)
    assert ((labels > 0).sum(1) >= 1).all()  # every row trains on something
    assert (labels[items == 0] == 0).all() and (inputs[labels > 0] == 99).all()
    inputs, labels = cloze_mask(items, 0.5, 99, gen, last_only_prob=1.0)
    assert labels[:, :-1].eq(0).all() and labels[:, -1].tolist() == [5, 5, 7]
    assert inputs[:, :-1].equal(items[:, :-1])


def interrupt_at_third_validation(cfg, monkeypatch) -> None:
    """Train ``cfg`` and kill it at its third validation, leaving the resume state of epoch 2."""
    from sidrec.baselines import train_baseline, trainer

    real_evaluate, calls = trainer.evaluate_scores, []

    def killed_at_third_validation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate_scores", killed_at_third_validation)
    with pytest.raises(KeyboardInterrupt):
        train_baseline(cfg)
    monkeypatch.undo()


def test_interrupted_training_resumes_under_a_new_time_budget(synthetic_data, tmp_path, monkeypatch):
    """An interrupted run goes on when only max_minutes changed; a zero budget stops it after one more epoch and a
    later run without a budget goes on from there."""
    from sidrec.baselines import train_baseline

    cfg = make_config(synthetic_data, tmp_path / "run" / "predictions" / "sasrec_id.jsonl", model="sasrec",
                      epochs=6, patience=6)
    interrupt_at_third_validation(cfg, monkeypatch)
    budgeted = dataclasses.replace(cfg, max_minutes=0.0)
    train_baseline(budgeted)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 3 and "time budget" in summary["stop_reason"]
    assert len(losses(cfg)) == 3 and budgeted.out_path().is_file()

    # The budget-cut run keeps its resume state (with the epoch it stopped at), so a run without a budget goes on.
    assert torch.load(cfg.checkpoint_path() / "last.pt", weights_only=False)["state"]["epoch"] == 3
    train_baseline(cfg)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 6 and not summary["budget_cut"]
    assert len(losses(cfg)) == 6 and not (cfg.checkpoint_path() / "last.pt").exists()

    # A run that stopped on its own is reused under any budget it fits in; a tighter one cannot reuse it.
    before = (cfg.checkpoint_path() / "best.pt").stat().st_mtime_ns
    train_baseline(dataclasses.replace(cfg, max_minutes=600.0))
    assert (cfg.checkpoint_path() / "best.pt").stat().st_mtime_ns == before
    train_baseline(budgeted)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    assert not summary["resumed"] and summary["epochs_run"] == 1 and summary["budget_cut"]


def test_resume_under_the_other_history_protocol_rescores_the_best_model(synthetic_data, tmp_path, monkeypatch):
    """Switching exclude_history on an interrupted run keeps its training and re-scores its best model, so early
    stopping compares validation figures of one protocol."""
    from sidrec.baselines import train_baseline

    cfg = make_config(synthetic_data, tmp_path / "run" / "predictions" / "sasrec_id.jsonl", model="sasrec",
                      epochs=4, patience=4)
    interrupt_at_third_validation(cfg, monkeypatch)
    masked = dataclasses.replace(cfg, exclude_history=True)
    train_baseline(masked)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 4
    records = [json.loads(line) for line in (cfg.checkpoint_path() / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if not r.get("rescored")] == [1, 2, 3, 4]
    rescored = [r for r in records if r.get("rescored")]
    assert len(rescored) == 1 and rescored[0]["exclude_history"] is True
    first = next(r for r in records if r["epoch"] == rescored[0]["epoch"] and not r.get("rescored"))
    assert rescored[0]["valid"] != first["valid"]  # masking the history changes the figures


def test_training_is_a_stage_redone_on_a_changed_option_or_dataset(synthetic_data, tmp_path):
    """The checkpoint folder carries the runner's done marker: the same options and inputs reuse the model, another
    option or a new dataset at the same path retrains it, and a summary.json written before the marker (with its
    own fingerprint) is still reused rather than retrained."""
    import shutil

    from sidrec.baselines import train_baseline
    from sidrec.baselines.trainer import legacy_fingerprint
    from sidrec.data import PrepareConfig, load_data, prepare
    from sidrec.stage import MARKER_FILE, read_marker

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    cfg = make_config(data, tmp_path / "predictions" / "sasrec_id.jsonl", model="sasrec", epochs=1)
    ckpt = cfg.checkpoint_path()
    train_baseline(cfg)
    marker = read_marker(ckpt / MARKER_FILE)
    assert marker.current and marker.stage == "baseline" and marker.fields["inputs"]["data"]
    assert "fingerprint" not in json.loads((ckpt / "summary.json").read_text())  # one resume record: the marker

    def best_stamp() -> int:
        return (ckpt / "best.pt").stat().st_mtime_ns

    stamp = best_stamp()
    train_baseline(cfg)
    assert best_stamp() == stamp  # same options and inputs: reused
    train_baseline(dataclasses.replace(cfg, lr=1e-3))
    assert best_stamp() != stamp  # another option: retrained
    stamp = best_stamp()
    train_baseline(dataclasses.replace(cfg, lr=1e-3, eval_batch_size=64, device="cpu"))
    assert best_stamp() == stamp  # run-only options do not retrain

    # Upstream: a new dataset prepared at the same path retrains the model even though its options are the same.
    prepare(PrepareConfig(source="synthetic", out=str(data), n_users=200, n_items=60, seed=1))
    train_baseline(dataclasses.replace(cfg, lr=1e-3))
    assert best_stamp() != stamp

    # A folder trained before the marker existed: summary.json held the fingerprint; it is reused, not retrained.
    old = dataclasses.replace(cfg, lr=1e-3)
    (ckpt / MARKER_FILE).unlink()
    summary = json.loads((ckpt / "summary.json").read_text())
    summary["fingerprint"] = legacy_fingerprint(old, load_data(data))
    (ckpt / "summary.json").write_text(json.dumps(summary))
    stamp = best_stamp()
    train_baseline(old)
    assert best_stamp() == stamp
    summary["fingerprint"] = "0123456789abcdef"  # made from other options: retrained
    (ckpt / "summary.json").write_text(json.dumps(summary))
    train_baseline(old)
    assert best_stamp() != stamp and read_marker(ckpt / MARKER_FILE).current
