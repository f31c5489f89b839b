"""Evaluator: metrics against a brute-force reference, validation of predictions, groups, compare."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.data import load_data
from sidrec.errors import InputError
from sidrec.eval import compare, evaluate, per_sample_metrics, plot_bars, target_ranks, to_markdown
from sidrec.predictions import Prediction, write_predictions


def brute_force(ranked, target, k):
    top = ranked[:k]
    if target not in top:
        return 0.0, 0.0, 0.0
    r = top.index(target) + 1
    return 1.0, 1.0 / math.log2(r + 1), 1.0 / r


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.permutations(list(range(30))), st.integers(0, 40)), min_size=1, max_size=20),
       st.sampled_from([1, 3, 5, 10, 20]))
def test_metrics_match_brute_force(cases, k):
    ranked = [[str(i) for i in perm[: 5 + (t % 25)]] for perm, t in cases]
    targets = [str(t) for _, t in cases]
    m = per_sample_metrics(target_ranks(ranked, targets), ks=(k,))
    for i, (r, t) in enumerate(zip(ranked, targets)):
        hr, ndcg, mrr = brute_force(r, t, k)
        assert m[f"HR@{k}"][i] == hr
        assert m[f"NDCG@{k}"][i] == pytest.approx(ndcg)
        assert m[f"MRR@{k}"][i] == pytest.approx(mrr)


def test_ndcg_at_rank_r():
    m = per_sample_metrics(np.array([1, 2, 3, 10, 11]), ks=(10,))
    assert m["NDCG@10"].tolist() == pytest.approx([1.0, 1 / math.log2(3), 0.5, 1 / math.log2(11), 0.0])
    assert m["HR@10"].tolist() == [1, 1, 1, 1, 0]


def _oracle_predictions(data, split, path, hit_every=2, extra=None):
    """Target at rank 1 for every other sample, absent otherwise."""
    samples = data.split(split)
    others = [i for i in data.item_ids]
    preds = []
    for row, s in enumerate(samples):
        items = [i for i in others if i != s["target"]][:20]
        if row % hit_every == 0:
            items = [s["target"]] + items[:19]
        preds.append(Prediction(s["sample_id"], s["user_id"], s["target"], items))
    if extra:
        extra(preds)
    write_predictions(path, preds)
    return path


def test_evaluate_oracle_and_groups(synthetic_data, tmp_path):
    data = load_data(synthetic_data)
    p = _oracle_predictions(data, "test", tmp_path / "p.jsonl")
    m = evaluate(p, data, "test")
    n = len(data.split("test"))
    assert m["n_samples"] == n
    assert m["overall"]["HR@1"] == pytest.approx(math.ceil(n / 2) / n)
    assert m["overall"]["NDCG@10"] == pytest.approx(m["overall"]["HR@1"])
    g = m["groups"]
    assert g["head_items"]["n_samples"] + g["tail_items"]["n_samples"] == n
    assert g["head_users"]["n_samples"] + g["tail_users"]["n_samples"] == n
    assert 0 < g["head_users"]["n_samples"] < n


@pytest.mark.parametrize("case,expect", [
    ("unknown_item", "unknown item id 'NOPE'"),
    ("duplicate_item", "appears more than once"),
    ("missing_sample", "have no prediction"),
    ("duplicate_sample", "predicted twice"),
    ("wrong_target", "differs from the test split"),
    ("unknown_sample", "is not in the test split"),
    ("wrong_user", "user_id 'NOBODY' of sample .* differs from the test split's"),
    ("word_scores", "field 'scores' must be a list of numbers"),
])
def test_bad_predictions_are_rejected_with_line(synthetic_data, tmp_path, case, expect):
    data = load_data(synthetic_data)

    def corrupt(preds):
        if case == "unknown_item":
            preds[4].items[2] = "NOPE"
        elif case == "duplicate_item":
            preds[4].items[2] = preds[4].items[1]
        elif case == "missing_sample":
            del preds[4]
        elif case == "duplicate_sample":
            preds[5] = preds[4]
        elif case == "wrong_target":
            preds[4].target = preds[5].target if preds[5].target != preds[4].target else "S00001"
        elif case == "unknown_sample":
            preds[4].sample_id = 10**9
        elif case == "wrong_user":
            preds[4].user_id = "NOBODY"

    p = _oracle_predictions(data, "test", tmp_path / "bad.jsonl", extra=corrupt)
    if case == "word_scores":
        lines = p.read_text().splitlines()
        lines[4] = lines[4][:-1] + ', "scores": ' + json.dumps(["a"] * len(json.loads(lines[4])["items"])) + "}"
        p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=expect) as e:
        evaluate(p, data, "test")
    if case not in ("missing_sample",):
        assert "bad.jsonl:" in str(e.value)


def test_missing_samples_count_as_misses_when_allowed(synthetic_data, tmp_path):
    data = load_data(synthetic_data)
    p = _oracle_predictions(data, "test", tmp_path / "p.jsonl", hit_every=1, extra=lambda preds: preds.pop(0))
    m = evaluate(p, data, "test", allow_missing=True)
    n = len(data.split("test"))
    assert m["n_missing"] == 1 and m["overall"]["HR@1"] == pytest.approx((n - 1) / n)


def test_malformed_json_line(synthetic_data, tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"sample_id": 0, "target": "S00001", "items": []}\n{"sample_id": 1,\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: invalid JSON"):
        evaluate(p, synthetic_data, "test")


def test_compare_table_pvalues_and_plot(synthetic_data, tmp_path):
    data = load_data(synthetic_data)
    good = _oracle_predictions(data, "test", tmp_path / "good.jsonl", hit_every=1)
    bad = _oracle_predictions(data, "test", tmp_path / "bad.jsonl", hit_every=7)
    res = compare([bad, good], data, "test")
    assert res["rows"]["good"]["HR@10"] == 1.0
    assert res["pvalues"]["good"]["HR@10"] < 1e-6
    md = to_markdown(res)
    assert "| good | **1.0000**" in md
    png = plot_bars(res, tmp_path / "plots" / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_tells_same_named_files_apart_and_rejects_bad_names(synthetic_data, tmp_path):
    """Two runs' ``predictions/sft.jsonl`` get names from their paths (not a crash on equal stems); names that do not
    fit the files are a usage error (exit 2) naming the problem, not a traceback."""
    from click.testing import CliRunner

    from sidrec.cli import cli

    data = load_data(synthetic_data)
    a = _oracle_predictions(data, "test", tmp_path / "run_a" / "predictions" / "sft.jsonl", hit_every=1)
    b = _oracle_predictions(data, "test", tmp_path / "run_b" / "predictions" / "sft.jsonl", hit_every=7)
    res = compare([a, b], data, "test")
    assert list(res["rows"]) == ["run_a/predictions/sft", "run_b/predictions/sft"]
    assert res["rows"]["run_a/predictions/sft"]["HR@10"] == 1.0 > res["rows"]["run_b/predictions/sft"]["HR@10"]
    for names, message in (("x,x", "must be unique"), ("only_one", "1 model names for 2")):
        r = CliRunner().invoke(cli, ["compare", str(a), str(b), "--data", str(synthetic_data), "--names", names])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_cli_evaluate_writes_metrics(synthetic_data, tmp_path):
    from click.testing import CliRunner

    from sidrec.cli import cli

    data = load_data(synthetic_data)
    p = _oracle_predictions(data, "valid", tmp_path / "p.jsonl")
    out = tmp_path / "m.json"
    r = CliRunner().invoke(cli, ["evaluate", "--predictions", str(p), "--data", str(synthetic_data), "--split",
                                 "valid", "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["overall"]["HR@1"] == pytest.approx(math.ceil(len(data.split("valid")) / 2) / len(data.split("valid")))
    assert set(m["groups"]) == {"head_items", "tail_items", "head_users", "tail_users"}


def test_cli_evaluate_limit_scores_the_first_samples_and_says_so(synthetic_data, tmp_path):
    """`sidrec evaluate --limit N` scores the first N samples of the split (what `sidrec decode --limit N` wrote):
    a file holding only those passes without --allow-missing, and the report states the subset."""
    from click.testing import CliRunner

    from sidrec.cli import cli

    data = load_data(synthetic_data)
    n = len(data.split("valid"))
    p = _oracle_predictions(data, "valid", tmp_path / "p.jsonl", hit_every=3,
                            extra=lambda preds: preds.__delitem__(slice(7, None)))  # a smoke decode of 7 samples
    out = tmp_path / "m.json"
    args = ["evaluate", "--predictions", str(p), "--data", str(synthetic_data), "--split", "valid", "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code != 0 and f"{n - 7} of {n} valid samples have no prediction" in str(r.exception)
    r = CliRunner().invoke(cli, args + ["--limit", "7"])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["n_samples"] == 7 and m["limit"] == 7 and m["split_samples"] == n
    assert m["overall"]["HR@1"] == pytest.approx(3 / 7)  # rows 0, 3 and 6 hit
    assert f"first 7 of {n} samples" in " ".join(r.output.split())
    assert CliRunner().invoke(cli, args + ["--limit", "0"]).exit_code != 0


def test_seed_means_use_the_sample_std_and_paired_tests_agree_with_scipy():
    from scipy import stats as sps

    from sidrec.eval import mean_over_seeds, paired_delta, paired_pvalue, seed_stat

    assert seed_stat([0.1, 0.3]) == {"mean": pytest.approx(0.2), "std": pytest.approx(0.02 ** 0.5)}  # ddof=1
    assert seed_stat([0.4]) == {"mean": 0.4, "std": 0.0}
    reports = [{"overall": {"HR@10": v}, "groups": {"tail_items": {"HR@10": v / 2}}, "n_samples": 9}
               for v in (0.2, 0.4, 0.6)]
    mean = mean_over_seeds(reports, groups=("tail_items",))
    assert mean["overall"]["HR@10"] == pytest.approx(0.4) and mean["overall_std"]["HR@10"] == pytest.approx(0.2)
    assert mean["groups"]["tail_items"]["HR@10"] == pytest.approx(0.2) and mean["n_samples"] == 9
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    assert paired_pvalue(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert paired_pvalue(a, b, "wilcoxon") == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert paired_pvalue(a, a, "wilcoxon") == 1.0 and 0 < paired_pvalue(a, b, "bootstrap") <= 1
    with pytest.raises(ValueError, match="wilcoxon"):
        paired_pvalue(a, b, "sign")
    d = paired_delta({"HR@10": a}, {"HR@10": b}, metrics=("HR@10",))
    assert d["HR@10"]["delta"] == pytest.approx(a.mean() - b.mean())


def test_ranking_protocol_check_names_the_odd_model():
    from sidrec.eval import check_ranking_protocol, ranking_protocol, split_protocol

    assert check_ranking_protocol({"sasrec": [True, True], "grpo": True}) is True
    assert check_ranking_protocol({}) is False
    with pytest.raises(ValueError, match=r"sasrec was ranked with exclude_history \[False, True\]"):
        check_ranking_protocol({"sasrec": [True, False]}, expected=True)
    with pytest.raises(ValueError, match="popularity .*one ranking protocol"):
        check_ranking_protocol({"grpo": True, "popularity": False})
    assert "history masked" in ranking_protocol(True) and ranking_protocol(False) == "full ranking over all items"
    assert split_protocol({"split_protocol": "time"}).startswith("global time-based split")
    assert split_protocol({}) == "per-user leave-one-out"


def test_report_names_the_protocol_the_predictions_were_made_under(synthetic_data, tmp_path):
    """report.md says "history masked" when the decode sidecar says so, and warns when the rows disagree."""
    from sidrec.eval.report import write_report

    data = load_data(synthetic_data)
    run = tmp_path / "run"
    grpo = _oracle_predictions(data, "test", run / "predictions" / "grpo.jsonl")
    pop = _oracle_predictions(data, "test", run / "predictions" / "popularity.jsonl", hit_every=3)
    grpo.with_name("grpo.jsonl.config.json").write_text(json.dumps({"config": {"exclude_history": True}}))
    (run / "baselines" / "popularity").mkdir(parents=True)
    summary = run / "baselines" / "popularity" / "summary.json"
    summary.write_text(json.dumps({"config": {"exclude_history": True}}))
    text = write_report(run, synthetic_data, "test", generative=("grpo",)).read_text()
    assert "per-user leave-one-out, full ranking over the items outside the user's training history" in text
    assert "full ranking over all items" not in text
    summary.write_text(json.dumps({"config": {"exclude_history": False}}))
    text = write_report(run, synthetic_data, "test", generative=("grpo",)).read_text()
    assert "**mixed ranking protocols" in text and "popularity was ranked with exclude_history [False]" in text
    assert pop.is_file()


def test_cli_output_paths_are_checked_before_any_work(synthetic_data, tmp_path):
    """An --out that is a folder, or under a file, is an error naming the option (the console entry point prints
    it and exits 2); compare writes none of its outputs when its --plot path is bad."""
    from click.testing import CliRunner

    from sidrec.cli import cli

    data = load_data(synthetic_data)
    p = _oracle_predictions(data, "test", tmp_path / "p.jsonl")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    r = CliRunner().invoke(cli, ["evaluate", "--predictions", str(p), "--data", str(synthetic_data),
                                 "--out", str(tmp_path / "folder")])
    assert isinstance(r.exception, InputError) and "--out is a folder" in str(r.exception)
    r = CliRunner().invoke(cli, ["compare", str(p), str(p), "--names", "a,b", "--data", str(synthetic_data),
                                 "--out", str(tmp_path / "c.md"), "--plot", str(tmp_path / "file" / "p.png")])
    assert isinstance(r.exception, InputError) and "--plot:" in str(r.exception)
    assert "is a file, not a folder" in str(r.exception)
    assert not (tmp_path / "c.md").exists() and not (tmp_path / "c.json").exists()
