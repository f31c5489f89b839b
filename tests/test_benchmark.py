"""sidrec.benchmark: the environment every result names (device, commit, date, torch) and the benchmarks' own
logic (the scripts in scripts/ only parse arguments and call it)."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch

from sidrec.benchmark import ROOT, cpu_name, environment, git_commit


def test_environment_names_commit_device_and_date():
    env = environment("cpu")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()
    assert git_commit(None) == head
    assert re.fullmatch(re.escape(head) + r"(\+dirty)?", env["commit"]) if head else env["commit"] == ""
    assert env["device"] == f"CPU ({cpu_name()}, {torch.get_num_threads()} torch threads)"
    assert env["torch"] == torch.__version__ and datetime.fromisoformat(env["date"]).tzinfo is not None


def test_write_report_writes_json_and_markdown(tmp_path):
    import json

    from sidrec.benchmark import reproducibility, write_report

    write_report(tmp_path / "results", "bench_x", {"HR@10": 0.5, "device": "CPU é"}, "# bench x\n")
    note = reproducibility({"HR@10": 0.5, "device": "CPU é"})
    assert "exactly" in note  # a CPU result: its model figures repeat
    assert json.loads((tmp_path / "results" / "bench_x.json").read_text()) == {"HR@10": 0.5, "device": "CPU é",
                                                                               "reproducibility": note}
    assert (tmp_path / "results" / "bench_x.md").read_text() == f"# bench x\n\n## Reproducibility\n\n{note}\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["bench_x.json", "bench_x.md"]


def test_ablation_variants_share_only_the_unchanged_stages(tmp_path):
    """bench_pipeline: an ablation reuses the main run's outputs exactly where its options match, never more."""
    import json

    import yaml

    from sidrec.benchmark import pipeline as bench
    from sidrec.pipeline import stage_hashes
    config = tmp_path / "cfg.yaml"
    main_root = tmp_path / "run"
    config.write_text(yaml.safe_dump({"run_dir": str(main_root), "data": {"source": "synthetic"},
                                      "quantize": {"levels": 2}, "model": {"tiny": {"hidden_size": 32}},
                                      "align": {"sa_init": True}, "grpo": {"enabled": True}}))
    args = bench.make_parser().parse_args(["--config", str(config), "--set", "sft.num_train_epochs=1"])
    main_cfg, root = bench.variant_config(args, "full")
    assert root == main_root and main_cfg.sft == {"num_train_epochs": 1} and main_cfg.grpo["enabled"] is True
    hashes = stage_hashes(main_cfg)
    for stage, folder in bench.SHARED:
        (main_root / folder).mkdir(parents=True)
        (main_root / ".pipeline").mkdir(exist_ok=True)
        (main_root / ".pipeline" / f"{stage}.json").write_text(json.dumps({"stage": stage, "hash": hashes[stage]}))
    (main_root / "model").mkdir()
    # Every ablation trains exactly as many optimisation steps as the full run's SFT did, so it needs that run.
    with pytest.raises(SystemExit, match="train --variants full first"):
        bench.variant_config(args, "text_sids")
    (main_root / "sft").mkdir()
    (main_root / "sft" / "sft_summary.json").write_text(json.dumps({"global_step": 321}))
    equal_steps = {"num_train_epochs": 1, "max_steps": 321, "early_stopping_patience": None}

    text, _ = bench.variant_config(args, "text_sids")
    assert text.run_dir == str(main_root / "ablations" / "text_sids")
    assert text.quantize == {"levels": 2, "embedding": "text"} and text.grpo["enabled"] is False
    assert text.sft == equal_steps
    bench.link_shared(main_cfg, text)
    var = Path(text.run_dir)
    assert (var / "data").is_symlink() and (var / "semantics").is_symlink() and (var / "model").is_symlink()
    assert not (var / "sids").exists() and not (var / ".pipeline" / "quantize.json").exists()

    no_init, _ = bench.variant_config(args, "no_sa_init")
    assert no_init.align == {"sa_init": False} and no_init.sft == equal_steps
    bench.link_shared(main_cfg, no_init)
    var = Path(no_init.run_dir)
    assert (var / "sids").resolve() == (main_root / "sids").resolve()
    assert json.loads((var / ".pipeline" / "quantize.json").read_text())["hash"] == stage_hashes(no_init)["quantize"]
    assert stage_hashes(no_init)["align"] != hashes["align"]

    # more_data changes the config's own sample cap (twice it) and needs one to change.
    with pytest.raises(SystemExit, match="sets no align.max_train_samples"):
        bench.variant_config(args, "more_data")
    capped = bench.make_parser().parse_args(["--config", str(config), "--set", "align.max_train_samples=40"])
    more, _ = bench.variant_config(capped, "more_data")
    assert more.align == {"sa_init": True, "max_train_samples": 80} and more.grpo["enabled"] is False
    assert bench.make_parser().parse_args(["--config", str(config)]).variants is None  # resolved from the config:
    variants = bench.variants_of(args)
    assert bench.default_variants(main_cfg, variants) == ["full", "text_sids", "no_sa_init", "no_ts_align"]
    main_only, _ = bench.variant_config(bench.make_parser().parse_args(
        ["--config", str(config), "--set", "align.ts_align=false"]), "full")
    assert bench.default_variants(main_only, variants) == ["full", "text_sids", "no_sa_init", "ts_align"]

    # An early-stopped config: ablations train as many steps with early stopping off; seed repeats keep the rule.
    early = bench.make_parser().parse_args(["--config", str(config), "--set", "sft.early_stopping_patience=3"])
    no_ts, _ = bench.variant_config(early, "no_ts_align")
    assert no_ts.sft == {"early_stopping_patience": None, "max_steps": 321}
    seed2, _ = bench.variant_config(early, "seed2")
    assert seed2.sft == {"early_stopping_patience": 3, "seed": 1}
    assert seed2.grpo["seed"] == 1 and seed2.run_dir == str(main_root / "ablations" / "seed2")


# The arms as they were written in code before they became configs/variants/ablations.yaml: the shipped file must
# give the same names, the same effective settings and the same row labels, so the existing pages stay reproducible.
OLD_ARMS = {
    "full": {},
    "text_sids": {"quantize.embedding": "text", "grpo.enabled": False},
    "no_sa_init": {"align.sa_init": False, "grpo.enabled": False},
    "no_ts_align": {"align.ts_align": False, "grpo.enabled": False},
    "ts_align": {"align.ts_align": True, "grpo.enabled": False},
    "more_data": {"align.max_train_samples": 2 * 40, "grpo.enabled": False},
    "rq_kmeans": {"quantize.method": "rq-kmeans", "quantize.collision": "reassign", "grpo.enabled": False},
    "dedup_level": {"quantize.method": "rqvae", "quantize.collision": "extra_level", "grpo.enabled": False},
    "reassign": {"quantize.method": "rqvae", "quantize.collision": "reassign", "grpo.enabled": False},
    "seed2": {"sft.seed": 5 + 1, "grpo.seed": 5 + 1},
    "seed3": {"sft.seed": 5 + 2, "grpo.seed": 5 + 2},
}
ADDED_ARMS = {  # arms added after the move to YAML, with their settings
    "tfidf_sids": {"semantics.lexical_dim": 128, "quantize.embedding": "lexical", "quantize.method": "rq-kmeans",
                   "grpo.enabled": False},
    "item_sids": {"quantize.method": "rqvae", "quantize.levels": 2, "quantize.collision": "item_level",
                  "grpo.enabled": False},
    "collaborative": {"quantize.collaborative_weight": 1.0, "grpo.enabled": False},
    "no_collaborative": {"quantize.collaborative_weight": 0.0, "grpo.enabled": False},
    "no_item_head": {"sft.item_loss": 0.0, "grpo.enabled": False},
    "item_loss3": {"sft.item_loss": 3.0, "grpo.enabled": False},
}
OLD_LABELS = {
    "full/grpo": "generative: SFT+GRPO (full)", "full/sft": "generative: SFT (no GRPO)",
    "text_sids/sft": "generative: SFT, text-only SIDs", "no_sa_init/sft": "generative: SFT, no SA-Init",
    "no_ts_align/sft": "generative: SFT, no TS-Align", "ts_align/sft": "generative: SFT, with TS-Align",
    "more_data/sft": "generative: SFT, 2x training examples", "rq_kmeans/sft": "generative: SFT, rq-kmeans SIDs",
    "dedup_level/sft": "generative: SFT, 4th SID level for collisions",
    "reassign/sft": "generative: SFT, colliding items reassigned"}


def test_shipped_variants_are_the_arms_the_pages_were_made_with(tmp_path):
    import yaml

    from sidrec.benchmark import pipeline as bench

    config = tmp_path / "cfg.yaml"
    base = {"run_dir": str(tmp_path / "run"), "seed": 5, "quantize": {"levels": 2, "method": "rq-kmeans"},
            "align": {"max_train_samples": 40}, "sft": {"num_train_epochs": 1}}
    config.write_text(yaml.safe_dump(base))
    args = bench.make_parser().parse_args(["--config", str(config)])
    variants = bench.variants_of(args)
    # The old arms keep their names and order (the pages' row order); arms added since come with their own rows.
    assert [name for name in variants if name in OLD_ARMS] == list(OLD_ARMS)
    assert set(variants) - set(OLD_ARMS) == set(ADDED_ARMS)
    labels = bench.labels_of(args)
    assert {k: v for k, v in labels.items() if k.split("/")[0] in OLD_ARMS} == OLD_LABELS
    assert {k for k in labels if k.split("/")[0] not in OLD_ARMS} == {f"{name}/sft" for name in ADDED_ARMS}
    assert [n for n, v in variants.items() if v.seed_repeat] == ["seed2", "seed3"]
    (tmp_path / "run" / "sft").mkdir(parents=True)  # the full run's SFT: the ablations take its step count
    (tmp_path / "run" / "sft" / "sft_summary.json").write_text('{"global_step": 7}')
    for name, changes in {**OLD_ARMS, **ADDED_ARMS}.items():
        expected = yaml.safe_load(yaml.safe_dump(base))
        for key, value in changes.items():
            section, option = key.split(".")
            expected.setdefault(section, {})[option] = value
        if name != "full" and not variants[name].seed_repeat:
            expected["sft"].update(max_steps=7, early_stopping_patience=None)
        expected["run_dir"] = base["run_dir"] if name == "full" else f"{base['run_dir']}/ablations/{name}"
        cfg, _ = bench.variant_config(args, name, check=True)
        got = {k: v for k, v in vars(cfg).items() if k in expected}
        assert got == expected, name


def test_a_misspelled_variant_key_is_an_error_naming_the_file_and_the_key(tmp_path):
    """A variants file is checked when it is read (its own keys, the sections it overrides) and each arm's
    overrides are resolved before the first arm trains: nothing runs, no run folder is made."""
    import yaml

    from sidrec.benchmark import pipeline as bench
    from sidrec.benchmark.variants import load_variants
    from sidrec.errors import ConfigError

    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "data": {"source": "synthetic"}}))
    arms = tmp_path / "arms.yaml"
    arms.write_text(yaml.safe_dump({"variants": {
        "full": {"default": True}, "sids": {"sett": {"quantize.embedding": "text"}},
        "sections": {"set": {"quantise.method": "rqvae"}, "labels": {"sfft": "x"}}}}))
    with pytest.raises(ConfigError) as err:
        load_variants(arms)
    message = str(err.value)
    assert str(arms) in message and "variants.sids: unknown key 'sett'" in message
    assert "'quantise.method': unknown section 'quantise'" in message and "unknown model 'sfft'" in message

    arms.write_text(yaml.safe_dump({"variants": {"full": {"default": True}, "text_sids": {
        "set": {"quantize": {"embeding": "text"}, "grpo.enabled": False}}}}))
    args = bench.make_parser().parse_args(["--config", str(config), "--variants-file", str(arms),
                                           "--variants", "full", "text_sids"])
    with pytest.raises(ConfigError) as err:
        bench.train(args)
    message = str(err.value)
    assert str(arms) in message and "variants.text_sids: quantize: unknown option 'embeding'" in message
    assert not (tmp_path / "run").exists()  # checked before the full run started
    with pytest.raises(SystemExit, match="--variants nope: not in"):
        bench.variants_of(bench.make_parser().parse_args(["--config", str(config), "--variants-file", str(arms),
                                                          "--variants", "nope"]))


def test_bench_baselines_runs_id_models_without_semantics_and_reuses_finished_runs(synthetic_data, tmp_path, capsys):
    """bench_baselines: id runs need no semantics folder (a fusion mode does, and says so); a finished run is
    re-scored from its cache, not retrained."""
    import json

    import pytest

    from sidrec.benchmark import baselines as bench
    argv = ["--data", str(synthetic_data), "--config-dir", str(tmp_path / "none"), "--work", str(tmp_path / "w"),
            "--models", "sasrec", "--fusions", "id", "--seeds", "3", "--ks", "5", "10", "--set", "epochs=1",
            "--results", str(tmp_path / "res")]
    parsed = bench.make_parser().parse_args(argv)
    assert parsed.semantics is None
    bench.main(parsed)
    run = tmp_path / "w" / "baselines" / "sasrec_id_s3"
    assert (tmp_path / "w" / "predictions" / "sasrec_id_s3.jsonl").is_file()
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 1
    rows = json.loads((tmp_path / "res.json").read_text())
    assert {"popularity", "random", "sasrec"} <= {r["model"] for r in rows["rows"]}
    page = (tmp_path / "res.md").read_text()  # the ranking its runs used, from their options
    assert page.startswith("# Discriminative baselines on Industrial_and_Scientific (test split, full ranking over "
                           "all items)")
    stamp = (run / "summary.json").stat().st_mtime_ns
    bench.main(bench.make_parser().parse_args(argv))
    assert (run / "summary.json").stat().st_mtime_ns == stamp  # cached: not trained again
    with pytest.raises(SystemExit):
        bench.cli(argv[:-4] + ["--fusions", "asegr"])
    assert "--semantics is required by --fusions asegr" in capsys.readouterr().err

    # bench_pipeline's paired table: popularity (HR@10 0.27 here) is the reference and random (0.18) falls below it.
    from sidrec.benchmark import pipeline
    from sidrec.data import load_data
    preds = tmp_path / "w" / "predictions"
    paired = pipeline._paired_vs_best_baseline({"random": [preds / "random_s3.jsonl"],
                                                "popularity": [preds / "popularity_s3.jsonl"]},
                                               load_data(synthetic_data), "test")
    assert paired["reference"] == "popularity"
    assert paired["rows"]["random"]["HR@10"]["delta"] < 0 and paired["rows"]["random"]["HR@10"]["p"] < 0.05
    work = str(tmp_path / "w")
    found = pipeline._collect_baselines([work, f"bucketed={work}"])
    assert sorted(found) == ["popularity", "random", "sasrec_id", "sasrec_id (bucketed)"]
    with pytest.raises(SystemExit, match="sasrec_id is in both"):
        pipeline._collect_baselines([work, work])
    with pytest.raises(SystemExit, match="is not a folder"):
        pipeline._collect_baselines([str(tmp_path / "missing")])

    # bench_pipeline's report over that folder: one ranking protocol or none (the generative model masks history
    # here, the baselines did not), seed means and paired tests from sidrec.eval, the protocol named on the page.
    import shutil

    import numpy as np
    import yaml

    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "data").symlink_to(synthetic_data, target_is_directory=True)
    shutil.copyfile(preds / "popularity_s3.jsonl", run / "predictions" / "grpo.jsonl")
    shutil.copyfile(preds / "random_s3.jsonl", run / "predictions" / "sft.jsonl")
    items = load_data(synthetic_data).item_ids
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps({item: [i // 8, i % 8] for i, item in enumerate(items)}))
    (run / "align").mkdir()
    (run / "align" / "stats.json").write_text(json.dumps({"sa_init": True, "dataset": {"train": {"per_task": {}}}}))
    config = tmp_path / "pipe.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(run), "data": {"source": "synthetic"},
                                      "decode": {"exclude_history": True}}))
    report_argv = ["--config", str(config), "--report-only", "--baselines-work", work, "--out",
                   str(tmp_path / "pages")]
    with pytest.raises(SystemExit, match=r"sasrec_id was ranked with exclude_history \[False\], not True"):
        pipeline.main(report_argv)
    config.write_text(yaml.safe_dump({"run_dir": str(run), "data": {"source": "synthetic"}}))
    pipeline.main(report_argv)
    page = json.loads((tmp_path / "pages" / "pipeline_pipe.json").read_text())
    assert page["protocol"] == "full ranking over all items" and page["rows"]["sasrec_id"]["seeds"] == 1
    assert page["rows"]["generative: SFT+GRPO (full)"]["overall"]["HR@10"] == page["rows"]["popularity"][
        "overall"]["HR@10"]
    paired = page["paired_vs_full_sft"]["generative: SFT+GRPO (full)"]["HR@10"]
    assert paired["delta"] > 0 and paired["p"] < 0.05  # popularity's list against random's, on the same samples
    assert np.isclose(paired["delta"], page["rows"]["popularity"]["overall"]["HR@10"]
                      - page["rows"]["random"]["overall"]["HR@10"])
    text = (tmp_path / "pages" / "pipeline_pipe.md").read_text()
    assert "samples; per-user leave-one-out, full ranking over all items, scored by item id." in text

    # A bad --set fails before any run starts (the popularity floor is planned first and must not run).
    from sidrec.errors import ConfigError

    fresh = tmp_path / "w2"
    with pytest.raises(ConfigError, match="dropout"):
        bench.cli([str(fresh) if a == str(tmp_path / "w") else a for a in argv[:-2]] + ["dropout=2"])
    assert not (fresh / "metrics").exists()


def test_bench_remeasure_puts_old_and_new_rows_beside_each_other_and_keeps_the_page(tmp_path):
    import json

    from sidrec.benchmark import remeasure

    def record(folder: Path, model: str, fusion: str, seed: int, hr10: float) -> None:
        metrics = {"HR@5": hr10 / 2, "NDCG@5": hr10 / 4, "HR@10": hr10, "NDCG@10": hr10 / 3}
        groups = {g: {"n_samples": 5, "HR@10": hr10, "NDCG@10": hr10 / 3}
                  for g in ("head_items", "tail_items", "head_users", "tail_users")}
        (folder / "metrics").mkdir(parents=True, exist_ok=True)
        (folder / "metrics" / f"{model}_{fusion}_s{seed}.json").write_text(json.dumps({
            "model": model, "fusion": fusion, "seed": seed, "overall": metrics, "groups": groups, "valid": {},
            "train_seconds": 1.0, "epochs_run": 2, "seconds_per_epoch": 0.5, "trainable_parameters": 10,
            "config": {"llmesr_neighbors": 10, "semantics": "S", "lr": 0.1}}))

    old, new = tmp_path / "old", tmp_path / "new"
    for seed, hr in enumerate((0.10, 0.12)):
        record(old, "sasrec", "llmesr", seed, hr)
        record(new, "sasrec", "llmesr", seed, hr + 0.02)
    record(new, "sasrec", "asegr", 0, 0.09)
    page = tmp_path / "page"
    (tmp_path / "page.json").write_text(json.dumps({"rows": {"sasrec_id": {"x": 1}}, "headline_model": "g"}))
    (tmp_path / "page.md").write_text("# page\n\nold table\n")
    argv = ["--page", str(page), "--old", str(old), "--new", str(new), "--ks", "5", "10", "--key", "k",
            "--title", "Re-measured"]
    remeasure.main(argv)
    remeasure.main(argv)  # a re-run replaces its section
    result = json.loads((tmp_path / "page.json").read_text())
    assert result["rows"] == {"sasrec_id": {"x": 1}} and result["headline_model"] == "g"
    pairs = {(p["model"], p["fusion"]): p for p in result["remeasured"]["k"]["rows"]}
    llmesr = pairs[("sasrec", "llmesr")]
    assert llmesr["old"]["overall"]["HR@10"]["mean"] == pytest.approx(0.11)
    assert llmesr["new"]["overall"]["HR@10"]["mean"] == pytest.approx(0.13)
    assert llmesr["new"]["overall"]["HR@10"]["std"] == pytest.approx(0.02 ** 0.5 / 10)  # sample std of 2 seeds
    assert pairs[("sasrec", "asegr")]["old"] is None
    text = (tmp_path / "page.md").read_text()
    assert text.startswith("# page\n\nold table\n") and text.count("## Re-measured") == 1
    assert "| sasrec / llmesr | new | 2 | 0.0650 ± 0.0071 | 0.1300 ± 0.0141 |" in text and "+0.0200" in text
    assert "| sasrec / asegr | new (no old row) | 1 |" in text and "llmesr_neighbors=10" in text
    assert "; full ranking over all items;" in text  # the runs' own protocol (no exclude_history in their configs)
    record(new, "sasrec", "asegr", 1, 0.09)
    masked = json.loads((new / "metrics" / "sasrec_asegr_s1.json").read_text())
    masked["config"]["exclude_history"] = True
    (new / "metrics" / "sasrec_asegr_s1.json").write_text(json.dumps(masked))
    remeasure.main(argv)
    text = (tmp_path / "page.md").read_text()
    assert "mixed ranking protocols" in text and "sasrec_asegr (new)" in text and "full ranking over all" not in text


def test_benchmarks_score_predictions_files_through_the_evaluator(synthetic_data, tmp_path):
    """sidrec.benchmark.scoring: a model's decode file and the popularity floor's baseline file, read by the one
    evaluator on the first N samples, give the ranks the in-memory scoring gave before (target_ranks_on_split and
    the most-popular list); a re-run decodes nothing; predictions for later samples are ignored, unknown ones not."""
    import json

    import numpy as np

    from sidrec.benchmark.scoring import decode_model, per_sample, popularity_predictions
    from sidrec.data import load_data
    from sidrec.decode.tiny import save_tiny_lm
    from sidrec.errors import InputError
    from sidrec.eval.evaluator import aligned_ranks
    from sidrec.eval.metrics import per_sample_metrics, target_ranks
    from sidrec.sid import SidTable

    data = load_data(synthetic_data)
    run = tmp_path / "run"
    (run / "sids").mkdir(parents=True)
    (run / "data").symlink_to(synthetic_data, target_is_directory=True)
    codes = np.random.default_rng(0).permutation(6 * 6 * 6)[: len(data.item_ids)]
    (run / "sids" / "sids.json").write_text(json.dumps(
        {item: [int(c // 36), int(c // 6 % 6), int(c % 6)] for item, c in zip(data.item_ids, codes)}))
    model_dir = save_tiny_lm(run / "model", SidTable.load(run / "sids"))
    out = run / "predictions" / "tiny_valid.jsonl"
    path, seconds = decode_model(model_dir, run, "valid", out, beams=12, topk=10, limit=30, max_history=5)
    assert path == out and seconds is not None and seconds >= 0
    scored = per_sample(path, data, "valid", (5, 10), limit=30)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.train.grpo import target_ranks_on_split

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = target_ranks_on_split(model, tokenizer, SidTable.load(run / "sids"), run / "data", "valid", 30,
                                   beams=12, topk=10, max_history=5)
    assert len(scored["HR@10"]) == 30 and scored["HR@10"].sum() > 0
    for name, values in per_sample_metrics(before, (5, 10)).items():
        assert np.array_equal(scored[name], values), name
    stamp = out.stat().st_mtime_ns
    decode_model(model_dir, run, "valid", out, beams=12, topk=10, limit=30, max_history=5)
    assert out.stat().st_mtime_ns == stamp  # up to date: not decoded again

    popularity = popularity_predictions(run / "data", "valid", run / "work" / "popularity_valid.jsonl")
    pop = data.train_popularity
    top = sorted(data.item_ids, key=lambda i: (-pop.get(i, 0), data.item_ids.index(i)))[:10]
    targets = data.split("valid")["target"][:40]
    expected = per_sample_metrics(target_ranks([top] * 40, targets), (5, 10))
    got = per_sample(popularity, data, "valid", (5, 10), limit=40)
    assert all(np.array_equal(got[m], expected[m]) for m in expected) and got["HR@10"].sum() > 0

    bad = run / "bad.jsonl"
    bad.write_text(out.read_text() + json.dumps({"sample_id": 10**9, "target": "x", "items": []}) + "\n")
    with pytest.raises(InputError, match="is not in the valid split"):
        aligned_ranks(bad, data, "valid", limit=30)
    assert len(aligned_ranks(popularity, data, "valid", limit=5)[0]) == 5
