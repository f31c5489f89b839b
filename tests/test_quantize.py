"""Stage ``quantize``: RQ-VAE training, residual k-means, unique SIDs under collisions, the SID table contract,
resume, cold-start assignment, config errors and the CLI (``sidrec quantize``, ``sidrec sids inspect``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sidrec.quantize import QuantizeConfig, add_items_to_sids, assign_sids, run_quantize, sid_stats
from sidrec.sid import SidTable

# A small, fast RQ-VAE (the defaults are sized for catalogues of thousands of items).
TINY = {"codebook_size": 8, "latent_dim": 16, "hidden_dims": [32], "epochs": 40, "batch_size": 64,
        "lr": 3e-3, "progress": False, "device": "cpu", "reseed_every": 10}


def write_semantics(folder: Path, item_ids: list[str], item_emb: np.ndarray, text_emb: np.ndarray | None = None
                    ) -> Path:
    """A semantics folder as `sidrec semantics all` leaves it (the files the quantizer reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "item_emb.npy", item_emb.astype(np.float32))
    np.save(folder / "text_emb.npy", (item_emb if text_emb is None else text_emb).astype(np.float32))
    (folder / "item_index.json").write_text(json.dumps(item_ids))
    return folder


def clustered(n_items: int, n_clusters: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``n_clusters`` random centres; returns (embeddings, cluster of each row)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    label = np.arange(n_items) % n_clusters
    x = centres[label] + noise * rng.standard_normal((n_items, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), label


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> tuple[Path, list[str], np.ndarray]:
    """120 clustered items (6 clusters) of which the first 30 share one identical embedding."""
    x, _ = clustered(120, 6, 24, 0.4, seed=0)
    x[:30] = x[0]
    ids = [f"I{i:03d}" for i in range(len(x))]
    return write_semantics(tmp_path_factory.mktemp("cat") / "semantics", ids, x), ids, x.astype(np.float32)


def quantize(semantics: Path, out: Path, **options) -> Path:
    return run_quantize(QuantizeConfig(semantics=str(semantics), out=str(out), **{**TINY, **options}))


# ---- RQ-VAE ------------------------------------------------------------------------------------------------------
def test_rqvae_loss_decreases_and_parameters_change():
    from sidrec.quantize.rqvae import RQVAE, residual_quantize
    from sidrec.quantize.stage import train_rqvae

    x, _ = clustered(200, 5, 24, 0.3, seed=1)
    cfg = QuantizeConfig(**{**TINY, "epochs": 30})
    torch.manual_seed(0)  # train_rqvae seeds the same way: `untrained` is its starting point
    untrained = RQVAE(24, cfg.hidden_dims, cfg.latent_dim, cfg.sizes).state_dict()
    model, history = train_rqvae(torch.from_numpy(x.astype(np.float32)), cfg, "cpu")
    assert len(history["loss"]) == 30
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"][::5]
    assert history["recon"][-1] < 0.5 * history["recon"][0]
    assert not torch.allclose(model.encoder[0].weight, untrained["encoder.0.weight"])
    # Codes are a pure function of the trained model: encoding twice gives the same codes.
    with torch.no_grad():
        z = model.encode(torch.from_numpy(x.astype(np.float32)))
        a, b = residual_quantize(z, model.codebooks)[0], residual_quantize(z, model.codebooks)[0]
    assert torch.equal(a, b) and a.shape == (200, 3)


def test_sinkhorn_spreads_items_over_codes():
    from sidrec.quantize.rqvae import sinkhorn_assign

    # Every row is nearest to code 0; a balanced assignment still uses all 4 codes about equally.
    dist = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(40, 1) + 0.01 * torch.rand(40, 4)
    codes = sinkhorn_assign(dist, epsilon=0.05)
    counts = torch.bincount(codes, minlength=4)
    assert dist.argmin(1).unique().tolist() == [0]
    assert counts.min() >= 5, counts


# ---- unique SIDs under collisions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rqvae", "rq-kmeans"])
@pytest.mark.parametrize("collision", ["reassign", "extra_level"])
def test_identical_embeddings_still_get_unique_sids(catalogue, tmp_path, method, collision):
    semantics, ids, _ = catalogue
    out = quantize(semantics, tmp_path / "sids", method=method, collision=collision)
    stats = json.loads((out / "stats.json").read_text())
    before = stats["before_resolution"]
    # The 30 identical items necessarily collide before resolution.
    assert before["largest_collision_group"] >= 30 and stats["collision_rate_before"] >= 30 / 120
    table = SidTable.load(out)  # raises on any duplicate SID
    assert table.item_ids == ids and len({tuple(c) for c in table.codes}) == 120
    assert stats["final"]["unique_fraction"] == 1.0
    if collision == "extra_level":
        assert table.n_levels == 4 and table.codebook_sizes[-1] == before["largest_collision_group"]
        assert stats["collision_resolution"]["items_with_nonzero_extra"] == \
            round(before["collision_rate"] * 120) - before["colliding_groups"]
    else:
        assert table.n_levels == 3 and table.codebook_sizes == [8, 8, 8]
        assert stats["collision_resolution"]["moved_items"] == \
            round(before["collision_rate"] * 120) - before["colliding_groups"]
        # Moving only rewrites the last two levels: the first-level code of every item is kept.
        raw = json.loads((out / "sids.json").read_text())
        assert len({raw[i][0] for i in ids[:30]}) == 1


def test_reassign_fails_clearly_when_a_prefix_cannot_hold_its_items(tmp_path):
    from sidrec.errors import InputError

    x = np.tile(np.eye(4)[:1], (20, 1))  # 20 identical items, 2 x 3 last-level slots under every prefix
    semantics = write_semantics(tmp_path / "semantics", [f"i{i}" for i in range(20)], x)
    with pytest.raises(InputError, match="extra_level"):
        quantize(semantics, tmp_path / "sids", method="rq-kmeans", codebook_sizes=[2, 2, 3])
    out = quantize(semantics, tmp_path / "sids", method="rq-kmeans", codebook_sizes=[2, 2, 3],
                   collision="extra_level")
    assert SidTable.load(out).codebook_sizes[-1] == 20


# ---- residual k-means ------------------------------------------------------------------------------------------------
def test_rq_kmeans_first_level_recovers_clusters(tmp_path):
    x, label = clustered(96, 8, 32, 0.2, seed=2)
    ids = [f"i{i}" for i in range(96)]
    out = quantize(write_semantics(tmp_path / "semantics", ids, x), tmp_path / "sids", method="rq-kmeans")
    codes = SidTable.load(out).codes
    # Each true cluster maps to exactly one first-level code and each code to one cluster.
    assert all(len(set(codes[label == k, 0])) == 1 for k in range(8))
    assert len(set(codes[:, 0])) == 8
    stats = json.loads((out / "stats.json").read_text())
    tc = stats["final"]["text_cosine"]
    assert tc["same_first_code_cosine"] > 0.9 > 0.2 > tc["random_pair_cosine"]
    assert stats["training"]["first_loss"] is None and stats["reconstruction_mse"] < 0.05
    assert not (out / "history.json").exists()


def test_sid_stats_definitions():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0]])
    s = sid_stats(codes, [2, 4])
    assert s["unique_sids"] == 3 and s["collision_rate"] == 0.5 and s["largest_collision_group"] == 2
    assert s["levels"][0]["used_codes"] == 2 and s["levels"][1]["usage"] == 0.5
    assert s["levels"][0]["perplexity"] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    tc = sid_stats(np.array([[0], [0], [1], [1]]), None, emb)["text_cosine"]
    assert tc["same_first_code_cosine"] == pytest.approx(1.0)
    assert tc["random_pair_cosine"] == pytest.approx(2 / 6)  # 2 of the 6 pairs are identical, 4 orthogonal


# ---- the stage's outputs: the SID table contract, resume ---------------------------------------------------------------
def test_run_quantize_writes_the_sid_table_and_resumes(catalogue, tmp_path):
    semantics, ids, _ = catalogue
    out = quantize(semantics, tmp_path / "sids")
    for name in ("sids.json", "rqvae.pt", "stats.json", "config.yaml", "history.json"):
        assert (out / name).is_file(), name
    table = SidTable.load(out)
    assert table.codebook_sizes == [8, 8, 8] and len(table.tokens()) == 24
    stats = json.loads((out / "stats.json").read_text())
    assert stats["training"]["final_loss"] < stats["training"]["first_loss"]
    assert stats["n_items"] == 120 and stats["codebook_sizes"] == [8, 8, 8]
    mtime = (out / "sids.json").stat().st_mtime_ns
    quantize(semantics, tmp_path / "sids")  # same options and embeddings: skipped
    assert (out / "sids.json").stat().st_mtime_ns == mtime
    quantize(semantics, tmp_path / "sids", progress=True)  # options that do not change the SIDs: still skipped
    assert (out / "sids.json").stat().st_mtime_ns == mtime
    quantize(semantics, tmp_path / "sids", seed=1)  # a different seed: redone
    assert (out / "sids.json").stat().st_mtime_ns != mtime
    assert "seed: 1" in (out / "config.yaml").read_text().splitlines()


def test_missing_or_broken_embeddings_are_input_errors(tmp_path):
    from sidrec.errors import InputError

    with pytest.raises(InputError, match="item_emb.npy"):
        quantize(tmp_path / "nothing", tmp_path / "sids")
    x = np.ones((5, 4))
    x[2, 1] = np.nan
    semantics = write_semantics(tmp_path / "semantics", [f"i{i}" for i in range(5)], x)
    with pytest.raises(InputError, match="NaN"):
        quantize(semantics, tmp_path / "sids")
    (semantics / "item_index.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(InputError, match="does not match 2 items"):
        quantize(semantics, tmp_path / "sids")
    assert not (tmp_path / "sids").exists()
    (semantics / "item_index.json").write_text('["a", "b", ')
    with pytest.raises(InputError, match=r"item_index.json:1: invalid JSON"):
        quantize(semantics, tmp_path / "sids")
    (semantics / "item_index.json").write_text(json.dumps(["a", "b", "c", "b", "e"]))
    with pytest.raises(InputError, match=r"item_index.json: item 'b' is listed more than once"):
        quantize(semantics, tmp_path / "sids")
    (semantics / "item_index.json").write_text(json.dumps(list("abcde")))
    (semantics / "item_emb.npy").write_text("not numbers")
    with pytest.raises(InputError, match=r"item_emb.npy: not a .npy file"):
        quantize(semantics, tmp_path / "sids")
    np.save(semantics / "item_emb.npy", np.array([["x"] * 4] * 5))
    with pytest.raises(InputError, match=r"item_emb.npy: not a numeric .npy array"):
        quantize(semantics, tmp_path / "sids")
    assert not (tmp_path / "sids").exists()


# ---- cold start ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rqvae", "rq-kmeans"])
@pytest.mark.parametrize("collision", ["reassign", "extra_level"])
def test_assign_sids_reproduces_catalogue_codes(catalogue, tmp_path, method, collision):
    """Removing items from sids.json and adding them back as new items gives them their SIDs again."""
    semantics, ids, x = catalogue
    out = quantize(semantics, tmp_path / "sids", method=method, collision=collision)
    full = json.loads((out / "sids.json").read_text())
    # Items that were unique before resolution (their SID is their quantizer code), from the clustered part.
    n_levels = 3
    prefix_count: dict[tuple, int] = {}
    for sid in full.values():
        prefix_count[tuple(sid[:n_levels])] = prefix_count.get(tuple(sid[:n_levels]), 0) + 1
    rows = [r for r in range(30, 120) if prefix_count[tuple(full[ids[r]][:n_levels])] == 1][:10]
    assert len(rows) >= 5
    removed = [ids[r] for r in rows]
    cold = tmp_path / "cold"
    shutil.copytree(out, cold)
    (cold / "sids.json").write_text(json.dumps({k: v for k, v in full.items() if k not in removed}))
    new = add_items_to_sids(cold, removed, x[rows])
    assert new == {i: full[i] for i in removed}
    assert json.loads((cold / "sids.json").read_text()) == full
    assert SidTable.load(cold).codebook_sizes == SidTable.load(out).codebook_sizes


@pytest.mark.parametrize("collision", ["reassign", "extra_level"])
def test_new_items_identical_to_catalogue_items_get_free_sids(catalogue, tmp_path, collision):
    semantics, ids, x = catalogue
    out = quantize(semantics, tmp_path / "sids", method="rq-kmeans", collision=collision)
    sizes = SidTable.load(out).codebook_sizes
    new_ids = [f"N{i}" for i in range(12)]
    # Twelve copies of the item 30 others already share, and of an ordinary item.
    added = add_items_to_sids(out, new_ids, np.concatenate([np.repeat(x[:1], 6, 0), np.repeat(x[40:41], 6, 0)]))
    table = SidTable.load(out)  # unique, and the codebook sizes (the token vocabulary) did not change
    assert len(table.item_ids) == 132 and table.codebook_sizes == sizes
    assert all(len(sid) == len(sizes) for sid in added.values())
    from sidrec.errors import InputError

    with pytest.raises(InputError, match="already have SIDs"):
        add_items_to_sids(out, ["N0"], x[:1])
    with pytest.raises(InputError, match="expects"):
        assign_sids(out, np.zeros((2, 5), np.float32))
    assert assign_sids(out, np.zeros((0, x.shape[1]), np.float32)) == []


# ---- configuration ---------------------------------------------------------------------------------------------------
def test_bad_config_is_a_config_error_listing_every_problem(tmp_path):
    from sidrec.config import resolve
    from sidrec.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        resolve(QuantizeConfig, overrides={"levels": 2, "codebook_sizes": [16, 16, 16], "epochs": 0,
                                           "latent_dim": 0})
    msg = str(e.value)
    assert "codebook_sizes" in msg and "epochs" in msg and "latent_dim" in msg
    with pytest.raises(ConfigError, match="'pq' is not one of"):
        resolve(QuantizeConfig, overrides={"method": "pq"})
    with pytest.raises(ConfigError, match="codebook sizes must be >= 2"):
        resolve(QuantizeConfig, overrides={"codebook_size": 1})
    yaml_file = tmp_path / "q.yaml"
    yaml_file.write_text("quantize:\n  levls: 4\n  collision: extra\n")
    with pytest.raises(ConfigError) as e:
        resolve(QuantizeConfig, yaml_file, section="quantize")
    assert "did you mean 'levels'" in str(e.value) and "collision" in str(e.value)
    # A list on the command line: comma-separated, or written as --help shows the default ("[256, 128]").
    for given in ("64,32", "[64, 32]", "[64,32]"):
        assert resolve(QuantizeConfig, overrides={"hidden_dims": given}).hidden_dims == [64, 32]
    with pytest.raises(ConfigError, match="hidden_dims: expected int, got 'x'"):
        resolve(QuantizeConfig, overrides={"hidden_dims": "[64, x]"})


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("configs/quantize/*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_configs_resolve(path):
    from sidrec.config import resolve

    cfg = resolve(QuantizeConfig, path, section="quantize")
    assert cfg.levels >= 1 and not cfg.problems()


# ---- the CLI ---------------------------------------------------------------------------------------------------------
def test_cli_quantize_and_inspect(synthetic_data, tmp_path):
    """`sidrec quantize` then `sidrec sids inspect` on the synthetic catalogue (embeddings: category + noise)."""
    from click.testing import CliRunner

    from sidrec.cli import cli as main
    from sidrec.data import load_data
    from sidrec.errors import InputError

    items = load_data(synthetic_data).items
    categories = sorted({c[0] for c in items["categories"]})
    label = np.array([categories.index(c[0]) for c in items["categories"]])
    rng = np.random.default_rng(0)
    x = np.eye(len(categories))[label] + 0.05 * rng.standard_normal((len(label), len(categories)))
    semantics = write_semantics(tmp_path / "semantics", list(items["item_id"]), x)
    out = tmp_path / "sids"
    runner = CliRunner()
    r = runner.invoke(main, ["quantize", "--semantics", str(semantics), "--out", str(out), "--data",
                             str(synthetic_data), "--method", "rq-kmeans", "--codebook-size", str(len(categories)),
                             "--collision", "extra_level", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "100% unique" in r.output and "level 0: 8/8 codes used" in r.output
    codes = SidTable.load(out).codes
    assert all(len(set(codes[label == k, 0])) == 1 for k in range(len(categories)))
    r = runner.invoke(main, ["sids", "inspect", str(out)], catch_exceptions=False)
    assert r.exit_code == 0 and "60 items, 8 first-level codes" in r.output
    assert "candle" in r.output.lower()  # keywords shared by the items of a first-level code
    code = int(codes[label == categories.index("Candles"), 0][0])
    r = runner.invoke(main, ["sids", "inspect", str(out), "--prefix", f"<a_{code}>"], catch_exceptions=False)
    assert r.exit_code == 0 and f"<a_{code}>: {int((label == categories.index('Candles')).sum())} items" in r.output
    assert "candle" in r.output.lower()
    r = runner.invoke(main, ["sids", "inspect", str(out), "--prefix", "<b_1>"])
    assert isinstance(r.exception, InputError) and "should be level 'a'" in str(r.exception)
    r = runner.invoke(main, ["sids", "inspect", str(out), "--data", str(tmp_path / "no_such_data")])
    assert isinstance(r.exception, InputError) and "--data: not a folder" in str(r.exception)
    (out / "sids.json").write_text((out / "sids.json").read_text()[:40])
    r = runner.invoke(main, ["sids", "inspect", str(out)])
    assert isinstance(r.exception, InputError) and "sids.json:1: invalid JSON" in str(r.exception)


def test_item_level_gives_every_item_its_own_last_token_and_refuses_cold_start(catalogue, tmp_path):
    """``collision: item_level``: the quantizer's codes stay as the prefix, the last code is the item's own index
    (one token per item), and a new item is an error (it would need a new token), naming the folder's model."""
    from sidrec.errors import InputError

    semantics, ids, x = catalogue
    out = quantize(semantics, tmp_path / "sids", levels=2, collision="item_level")
    plain = quantize(semantics, tmp_path / "plain", levels=2, collision="extra_level")
    table, full = SidTable.load(out), json.loads((out / "sids.json").read_text())
    assert table.codebook_sizes == [8, 8, 120]
    assert sorted(sid[-1] for sid in full.values()) == list(range(120))
    first = json.loads((plain / "sids.json").read_text())
    assert all(full[i][:2] == first[i][:2] for i in ids)  # same quantizer, same semantic prefix
    assert json.loads((out / "stats.json").read_text())["collision_resolution"]["strategy"] == "item_level"
    with pytest.raises(InputError, match="one token per item"):
        assign_sids(out, x[:3])


# ---- the collaborative view ------------------------------------------------------------------------------------------
def test_collaborative_view_groups_items_bought_together(synthetic_data, tmp_path):
    """Semantic embeddings of pure noise + the collaborative view (an ID-only SASRec on the training split): items
    under one first-level code are bought together in training sequences far more often than items under different
    codes; without the view the codes follow the noise. The recommender trains beside the SIDs and is reused, the
    fingerprint follows the data, and a new item (no interactions) gets a SID from its semantic embedding alone."""
    from sidrec.baselines.sequences import train_sequences
    from sidrec.data import load_data
    from sidrec.errors import InputError

    data = load_data(synthetic_data)
    ids = list(data.item_ids)
    noise = np.random.default_rng(0).standard_normal((len(ids), 16))
    semantics = write_semantics(tmp_path / "semantics", ids, noise)
    together = np.zeros((len(ids), len(ids)))
    for seq in train_sequences(data)[1]:
        for a, b in zip(seq, seq[1:]):
            together[a - 1, b - 1] += 1
            together[b - 1, a - 1] += 1

    def within_over_across(out: Path) -> float:
        first = SidTable.load(out).codes[:, 0]
        same = first[:, None] == first[None, :]
        np.fill_diagonal(same, False)
        across = ~same
        np.fill_diagonal(across, False)
        return together[same].mean() / together[across].mean()

    options = {"method": "rq-kmeans", "collision": "extra_level", "codebook_size": 6, "levels": 2,
               "data": str(synthetic_data)}
    plain = quantize(semantics, tmp_path / "plain", **options)
    collab = {"hidden_size": 16, "num_heads": 1, "epochs": 40, "patience": 5, "device": "cpu"}
    out = quantize(semantics, tmp_path / "sids", collaborative_weight=3.0, collaborative=collab, **options)
    assert within_over_across(plain) < 1.5 and within_over_across(out) > 3.0  # measured: 0.84 and 5.5
    stats = json.loads((out / "stats.json").read_text())["collaborative"]
    assert stats["model"] == "sasrec" and stats["dim"] == 16 and stats["weight"] == 3.0
    cf = np.load(out / "collaborative_emb.npy")
    assert cf.shape == (len(ids), 16)
    assert (tmp_path / "sids_collaborative" / "best.pt").is_file()
    mtime = (out / "sids.json").stat().st_mtime_ns
    quantize(semantics, tmp_path / "sids", collaborative_weight=3.0, collaborative=collab, **options)
    assert (out / "sids.json").stat().st_mtime_ns == mtime  # same options, semantics and data: skipped
    # Cold start: a new item's semantic embedding alone (its collaborative part is empty) gets a free SID.
    before = {tuple(s) for s in json.loads((out / "sids.json").read_text()).values()}
    added = add_items_to_sids(out, ["NEW"], noise[:1])
    assert len(added["NEW"]) == 3 and tuple(added["NEW"]) not in before
    assert len(SidTable.load(out).item_ids) == len(ids) + 1
    with pytest.raises(InputError, match="expects"):  # neither the semantic nor the combined width
        assign_sids(out, np.zeros((1, 5), np.float32))


def test_collaborative_view_errors(catalogue, tmp_path):
    from sidrec.config import resolve
    from sidrec.errors import ConfigError, InputError

    semantics, _, _ = catalogue
    with pytest.raises(ConfigError, match="collaborative_weight: needs data"):
        resolve(QuantizeConfig, overrides={"collaborative_weight": 1.0})
    with pytest.raises(ConfigError, match="collaborative_weight: must be >= 0"):
        resolve(QuantizeConfig, overrides={"collaborative_weight": -1.0, "data": "x"})
    with pytest.raises(InputError, match="ID-only neural model"):
        quantize(semantics, tmp_path / "sids", collaborative_weight=1.0, data=str(tmp_path),
                 collaborative={"model": "popularity"})
    assert not (tmp_path / "sids").exists()
