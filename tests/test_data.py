"""Data layer: every source, k-core, both split protocols, and clear errors with nothing half-written."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from sidrec.data import PrepareConfig, load_data, prepare
from sidrec.data.split import UserSequence, k_core, leave_one_out, time_split
from sidrec.errors import ConfigError, InputError


def _review(user, item, ts, text="nice"):
    return {"reviewerID": user, "asin": item, "overall": 5.0, "reviewText": text, "summary": "ok",
            "unixReviewTime": ts}


def _write_lines(path: Path, records, gz=True, literal=False):
    lines = [(repr(r) if literal else json.dumps(r)) + "\n" for r in records]
    data = "".join(lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _toy_reviews(n_users=6, n_items=5):
    return [_review(f"U{u}", f"I{(u + j) % n_items}", 1000 * j + u) for u in range(n_users) for j in range(n_items)]


def test_k_core_reaches_fixed_point():
    seqs = [UserSequence("a", ["1", "2", "3"], [1, 2, 3]), UserSequence("b", ["1", "2"], [1, 2]),
            UserSequence("c", ["1", "4", "2"], [1, 2, 3])]
    out = k_core(seqs, 3)
    # item 4 and 3 occur once; after dropping them user c has 2 items -> dropped; then nobody has 3.
    assert out == []
    assert [s.user_id for s in k_core(seqs, 2)] == ["a", "b", "c"]
    assert all("4" not in s.item_ids and "3" not in s.item_ids for s in k_core(seqs, 2))


def test_leave_one_out_targets_and_windows():
    seqs = [UserSequence("u", [str(i) for i in range(8)], list(range(8)))]
    splits, train = leave_one_out(seqs, max_history=3)
    assert splits["test"].target == ["7"] and splits["test"].history == [["4", "5", "6"]]
    assert splits["valid"].target == ["6"] and splits["valid"].history == [["3", "4", "5"]]
    assert train["u"] == [str(i) for i in range(6)]
    assert splits["train"].target == ["1", "2", "3", "4", "5"]
    assert splits["train"].history[-1] == ["2", "3", "4"]


def test_time_split_windows():
    seqs = [UserSequence("a", ["1", "2", "3", "4"], [1, 2, 9, 10]), UserSequence("b", ["5", "6", "7"], [3, 4, 8])]
    splits, train = time_split(seqs, max_history=10, valid_frac=0.15, test_frac=0.25)
    assert splits["test"].target == ["3", "4"]  # timestamps 9, 10 are the last quarter
    assert splits["valid"].target == ["7"]
    assert train == {"a": ["1", "2"], "b": ["5", "6"]}
    assert splits["test"].history[1] == ["1", "2", "3"]


def test_synthetic_is_reproducible_and_structured(tmp_path):
    a = prepare(PrepareConfig(out=str(tmp_path / "a"), n_users=100, n_items=40, seed=3))
    b = prepare(PrepareConfig(out=str(tmp_path / "b"), n_users=100, n_items=40, seed=3))
    da, db = load_data(a), load_data(b)
    assert da.splits["test"]["target"] == db.splits["test"]["target"]
    assert da.items["title"] == db.items["title"]
    truth = da.ground_truth()["attributes"]
    assert set(truth) == set(da.item_ids)
    # Reviews mention true attribute values of the reviewed item.
    mentions = sum(any(v in r["text"].lower() for v in truth[r["item_id"]].values()) for r in da.reviews)
    assert mentions / len(da.reviews) > 0.8
    # Held-out interactions have no review (never read the target's own future).
    held = set(zip(da.splits["test"]["user_id"], da.splits["test"]["target"]))
    assert not held & set(zip(da.reviews["user_id"], da.reviews["item_id"]))


def test_prepare_resume_and_force(tmp_path):
    out = tmp_path / "data"
    prepare(PrepareConfig(out=str(out), n_users=30, n_items=20))
    stamp = (out / "stats.json").stat().st_mtime_ns
    prepare(PrepareConfig(out=str(out), n_users=30, n_items=20))
    assert (out / "stats.json").stat().st_mtime_ns == stamp  # same options: skipped
    prepare(PrepareConfig(out=str(out), n_users=30, n_items=20, force=True))
    assert (out / "stats.json").stat().st_mtime_ns != stamp


def test_amazon2018_json_and_literal_lines(tmp_path):
    records = _toy_reviews()
    meta = [{"asin": f"I{i}", "title": f"Item {i}", "description": ["A", "b"], "category": ["Beauty", "Skin"],
             "brand": "X", "price": "$1,234.50"} for i in range(5)]
    for literal in (False, True):
        rev = _write_lines(tmp_path / f"reviews_{literal}.json.gz", records, literal=literal)
        met = _write_lines(tmp_path / f"meta_{literal}.json.gz", meta, literal=literal)
        out = prepare(PrepareConfig(source="amazon2018", reviews=str(rev), meta=str(met), k_core=3,
                                    out=str(tmp_path / f"out_{literal}")))
        d = load_data(out)
        assert d.stats["n_users"] == 6 and d.stats["n_items"] == 5
        item = d.items[d.item_index["I1"]]
        assert item["price"] == 1234.5 and item["categories"] == ["Beauty", "Skin"] and item["description"] == "A b"
        assert len(d.splits["test"]) == 6


def test_amazon2023_layout(tmp_path):
    reviews = [{"user_id": f"U{u}", "parent_asin": f"P{(u + j) % 4}", "asin": "x", "rating": 4, "title": "t",
                "text": "smells of vanilla", "timestamp": 1_600_000_000_000 + j * 1000 + u}
               for u in range(5) for j in range(4)]
    meta = [{"parent_asin": f"P{i}", "title": f"P {i}", "description": ["d"], "features": ["f"],
             "categories": ["Home"], "store": "S", "price": None, "main_category": "All"} for i in range(4)]
    rev = _write_lines(tmp_path / "r.jsonl", reviews, gz=False)
    met = _write_lines(tmp_path / "m.jsonl", meta, gz=False)
    d = load_data(prepare(PrepareConfig(source="amazon2023", reviews=str(rev), meta=str(met), k_core=3,
                                        out=str(tmp_path / "o"))))
    assert d.stats["n_users"] == 5 and d.items[0]["brand"] == "S" and d.items[0]["price"] is None


@pytest.mark.parametrize("case", ["invalid_json", "missing_field", "empty", "truncated_gzip", "conflict"])
def test_bad_raw_input_names_file_and_line_and_writes_nothing(tmp_path, case):
    records = _toy_reviews()
    rev = tmp_path / "reviews.json.gz"
    meta_path = None
    expect = ""
    if case == "invalid_json":
        lines = [json.dumps(r) for r in records]
        lines[3] = '{"reviewerID": "U1", "asin": '
        rev.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        expect = "reviews.json.gz:4"
    elif case == "missing_field":
        records[2].pop("asin")
        _write_lines(rev, records)
        expect = "reviews.json.gz:3: missing required field 'asin'"
    elif case == "empty":
        rev.write_bytes(gzip.compress(b""))
        expect = "empty file"
    elif case == "truncated_gzip":
        full = gzip.compress(("\n".join(json.dumps(r) for r in records * 50)).encode())
        rev.write_bytes(full[: len(full) // 2])
        expect = "truncated or corrupt gzip"
    else:
        _write_lines(rev, records)
        meta_path = _write_lines(tmp_path / "meta.json", [{"asin": "I1", "title": "A"}, {"asin": "I1", "title": "B"}],
                                 gz=False)
        expect = "meta.json:2: duplicate item id 'I1' with conflicting metadata (title)"
    out = tmp_path / "out"
    with pytest.raises(InputError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        prepare(PrepareConfig(source="amazon2018", reviews=str(rev), meta=str(meta_path) if meta_path else None,
                              k_core=3, out=str(out)))
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_lenient_mode_skips_and_reports(tmp_path):
    lines = [json.dumps(r) for r in _toy_reviews()] + ["not json"]
    rev = tmp_path / "r.json"
    rev.write_text("\n".join(lines) + "\n")
    d = load_data(prepare(PrepareConfig(source="amazon2018", reviews=str(rev), k_core=3, lenient=True,
                                        out=str(tmp_path / "o"))))
    report = d.stats["read_reports"][0]
    assert report["skipped"] == 1 and "line 31" in report["first_skipped"][0]


def test_failed_force_keeps_the_previous_dataset(tmp_path):
    out = tmp_path / "data"
    prepare(PrepareConfig(out=str(out), n_users=30, n_items=20))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops\n")
    with pytest.raises(InputError):
        prepare(PrepareConfig(source="amazon2018", reviews=str(bad), out=str(out), force=True))
    assert load_data(out).stats["source"] == "synthetic"


def test_config_errors_are_collected():
    from sidrec.config import resolve

    with pytest.raises(ConfigError) as e:
        resolve(PrepareConfig, overrides={"source": "minionerec", "max_history": 0})
    msg = str(e.value)
    assert "path: required" in msg and "dataset: required" in msg and "max_history" in msg


def test_yaml_unknown_key_suggests(tmp_path):
    from sidrec.config import resolve

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  sourc: synthetic\n  n_users: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'source'"):
        resolve(PrepareConfig, cfg, section="data")


def test_seqfile_and_lcrec(tmp_path):
    seq = tmp_path / "Toy.txt"
    seq.write_text("\n".join(f"{u} " + " ".join(str(1 + (u + j) % 7) for j in range(5)) for u in range(1, 9)) + "\n")
    items = tmp_path / "items.tsv"
    items.write_text("item_id\tasin\ttitle\n" + "".join(f"{i}\tB{i}\tTitle {i}\n" for i in range(1, 8)))
    d = load_data(prepare(PrepareConfig(source="seqfile", path=str(seq), items=str(items), out=str(tmp_path / "s"))))
    assert d.item_ids == [str(i) for i in range(1, 8)] and len(d.splits["test"]) == 8
    assert d.items[0]["title"] == "Title 1"
    (tmp_path / "L").mkdir()
    (tmp_path / "L" / "X.inter.json").write_text(json.dumps({"0": [0, 1, 2, 3], "1": [3, 2, 1, 0, 4]}))
    (tmp_path / "L" / "X.item.json").write_text(json.dumps(
        {str(i): {"title": f"t{i}", "description": "", "brand": "", "categories": "A,B"} for i in range(5)}))
    d = load_data(prepare(PrepareConfig(source="lcrec", path=str(tmp_path / "L"), dataset="X",
                                        out=str(tmp_path / "l"))))
    assert d.splits["test"]["target"] == ["3", "4"] and d.items[0]["categories"] == ["A", "B"]


def test_minionerec_industrial(shared_data, tmp_path):
    src = shared_data / "minionerec-amazon18"
    d = load_data(prepare(PrepareConfig(source="minionerec", path=str(src), dataset="Industrial_and_Scientific",
                                        out=str(tmp_path / "ind"))))
    test, valid = d.splits["test"], d.splits["valid"]
    assert len(test) == 4533 and len(valid) == 4532
    assert test["sample_id"] == list(range(4533))
    assert d.item_ids == [str(i) for i in range(3686)]
    import csv

    with open(next((src / "test").glob("*.csv")), newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in (0, 1234, 4532):
        assert test[r]["target"] == rows[r]["item_id"] and test[r]["user_id"] == rows[r]["user_id"]
    # Reconstructed training targets are never valid/test sample targets of the same user's eval windows.
    assert d.stats["samples"]["train"] > 5000 and max(len(h) for h in test["history"]) == 10


def _layout_naming_a_missing_item(tmp_path: Path, source: str) -> tuple[dict, str]:
    """A tiny input of ``source`` where one file names an item the item table given with it lacks: (prepare
    options, the ``file:line`` that names it)."""
    if source in ("amazon2018", "amazon2023"):
        records = _toy_reviews() + [_review("U0", "GHOST", 99_999)]  # line 31
        meta = [{"asin": f"I{i}", "title": f"Item {i}"} for i in range(5)]
        if source == "amazon2023":
            records = [{"user_id": r["reviewerID"], "parent_asin": r["asin"], "rating": 5, "text": "t",
                        "timestamp": r["unixReviewTime"]} for r in records]
            meta = [{"parent_asin": m["asin"], "title": m["title"]} for m in meta]
        rev = _write_lines(tmp_path / "r.jsonl", records, gz=False)
        met = _write_lines(tmp_path / "m.jsonl", meta, gz=False)
        return {"reviews": str(rev), "meta": str(met), "k_core": 3}, f"{rev}:31: item 'GHOST' is not in {met}"
    if source == "seqfile":
        seq = tmp_path / "Toy.txt"
        seq.write_text("1 1 2 3 4\n2 2 3 4 5\n3 3 4 99 5\n4 4 5 1 2\n")
        items = tmp_path / "items.tsv"
        items.write_text("item_id\tasin\ttitle\n" + "".join(f"{i}\tB{i}\tTitle {i}\n" for i in range(1, 6)))
        return {"path": str(seq), "items": str(items)}, f"{seq}:3: item '99' is not in {items}"
    if source == "lcrec":
        (tmp_path / "L").mkdir()
        inter = tmp_path / "L" / "X.inter.json"
        inter.write_text(json.dumps({"0": [0, 1, 2, 3], "1": [3, 2, 9, 0, 4]}, indent=1))  # "1" is on line 8
        (tmp_path / "L" / "X.item.json").write_text(json.dumps({str(i): {"title": f"t{i}"} for i in range(5)}))
        return {"path": str(tmp_path / "L"), "dataset": "X"}, f"{inter}:8: item '9' is not in X.item.json"
    root = tmp_path / "M"  # minionerec: its own valid / test csv files
    (root / "index").mkdir(parents=True)
    (root / "index" / "X.item.json").write_text(json.dumps({str(i): {"title": f"t{i}"} for i in range(6)}))
    header = "user_id,history_item_id,item_id\n"
    for split, rows in (("valid", ['0,"[\'0\', \'1\']",2', '1,"[\'3\', \'4\']",5']),
                        ("test", ['0,"[\'0\', \'1\', \'2\']",3', '1,"[\'3\', \'7\', \'5\']",0'])):
        (root / split).mkdir()
        (root / split / "X.csv").write_text(header + "\n".join(rows) + "\n")
    return {"path": str(root), "dataset": "X"}, f"{root / 'test' / 'X.csv'}:3: item '7' is not in X.item.json"


@pytest.mark.parametrize("source", ["amazon2018", "amazon2023", "seqfile", "lcrec", "minionerec"])
def test_an_item_missing_from_the_item_table_names_file_and_line(tmp_path, source):
    """Cross-file consistency: an item a sequence / review names must be in the item table given with it; an
    error naming the file and line, or with --lenient a counted warning in stats.json (item kept, no metadata)."""
    options, where = _layout_naming_a_missing_item(tmp_path, source)
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        prepare(PrepareConfig(source=source, out=str(out), **options))
    assert str(e.value).startswith(where) and "--lenient" in str(e.value)
    assert not out.exists()
    d = load_data(prepare(PrepareConfig(source=source, out=str(out), lenient=True, **options)))
    (unknown,) = d.stats["unknown_ids"]
    assert (unknown["references"], unknown["items"]) == (1, 1)
    assert unknown["path"] == where.split(":")[0] and unknown["first"][0].startswith(f"line {where.split(':')[1]}")


@pytest.mark.parametrize("case", ["time_word", "rating_word", "item_object", "user_list"])
def test_a_bad_field_value_names_file_line_and_field(tmp_path, case):
    """A value of the wrong kind (a word for a timestamp or a rating, an object for an id) is an error naming the
    file, line and field, not a traceback; with --lenient the line is skipped and counted."""
    records = _toy_reviews()
    field, value, expect = {"time_word": ("unixReviewTime", "yesterday", "should be a number, got 'yesterday'"),
                            "rating_word": ("overall", "five", "should be a number, got 'five'"),
                            "item_object": ("asin", {"x": 1}, "should be an id (a string or an integer), got dict"),
                            "user_list": ("reviewerID", ["U1"], "should be an id (a string or an integer), got list")
                            }[case]
    records[4][field] = value
    rev = _write_lines(tmp_path / "r.json", records, gz=False)
    with pytest.raises(InputError, match=re.escape(f"r.json:5: field '{field}' {expect}")):
        prepare(PrepareConfig(source="amazon2018", reviews=str(rev), k_core=3, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()
    d = load_data(prepare(PrepareConfig(source="amazon2018", reviews=str(rev), k_core=0, lenient=True,
                                        out=str(tmp_path / "o"))))
    report = d.stats["read_reports"][0]
    assert report["skipped"] == 1 and report["first_skipped"][0].startswith(f"line 5: field '{field}'")


def test_amazon2023_text_lists_given_as_one_string_stay_whole(tmp_path):
    reviews = [{"user_id": f"U{u}", "parent_asin": f"P{(u + j) % 4}", "rating": 4, "text": "t",
                "timestamp": 1_600_000_000_000 + j * 1000 + u} for u in range(5) for j in range(4)]
    meta = [{"parent_asin": f"P{i}", "title": f"P {i}", "description": "A nice cream", "features": 5}
            for i in range(4)]
    d = load_data(prepare(PrepareConfig(source="amazon2023", reviews=str(_write_lines(tmp_path / "r", reviews)),
                                        meta=str(_write_lines(tmp_path / "m", meta)), k_core=3,
                                        out=str(tmp_path / "o"))))
    assert d.items[0]["description"] == "A nice cream 5"


def _lcrec(tmp_path: Path, inter, items=None) -> dict:
    root = tmp_path / "L"
    root.mkdir(exist_ok=True)
    (root / "X.inter.json").write_text(json.dumps(inter, indent=1))
    (root / "X.item.json").write_text(json.dumps(items if items is not None else
                                                 {str(i): {"title": f"t{i}"} for i in range(5)}, indent=1))
    return {"source": "lcrec", "path": str(root), "dataset": "X"}


@pytest.mark.parametrize("case", ["inter_list", "sequence_string", "nested_id", "item_string"])
def test_lcrec_structure_errors_name_file_and_entry(tmp_path, case):
    good = {"0": [0, 1, 2, 3], "1": [3, 2, 1, 0, 4]}
    inter, items, expect = {
        "inter_list": ([[0, 1, 2]], None, r"X.inter.json:1: expected a JSON object \{user: a list"),
        "sequence_string": ({**good, "2": "123"}, None, r"X.inter.json:\d+: user '2': expected a list of item ids, "
                                                        r"got str '123'"),
        "nested_id": ({**good, "2": [0, [1, 2]]}, None, r"X.inter.json:\d+: user '2': item id \[1, 2\]"),
        "item_string": (good, {"0": "just a string"}, r"X.item.json:2: item id '0': expected an object of item "
                                                      r"fields, got str"),
    }[case]
    options = _lcrec(tmp_path, inter, items)
    with pytest.raises(InputError, match=expect):
        prepare(PrepareConfig(out=str(tmp_path / "o"), **options))


def test_seqfile_refuses_a_user_on_two_lines(tmp_path):
    seq = tmp_path / "Toy.txt"
    seq.write_text("1 1 2 3 4\n2 2 3 4 5\n1 5 6 7\n")
    with pytest.raises(InputError, match=r"Toy.txt:3: user '1' has a second line \(first at line 1\)"):
        prepare(PrepareConfig(source="seqfile", path=str(seq), out=str(tmp_path / "o")))


@pytest.mark.parametrize("case", ["short_row", "empty_history", "header_only"])
def test_minionerec_bad_rows(tmp_path, case):
    root = tmp_path / "M"
    (root / "index").mkdir(parents=True)
    (root / "index" / "X.item.json").write_text(json.dumps({str(i): {"title": f"t{i}"} for i in range(9)}))
    header = "user_id,history_item_id,item_id\n"
    rows = [f'u{u},"[\'{u}\', \'{u + 1}\']",{u + 2}' for u in range(5)]
    test_rows = {"short_row": rows[:2] + ["u9"], "empty_history": rows[:2] + ['u9,"[]",3'], "header_only": []}[case]
    for split, body in (("valid", rows), ("test", test_rows)):
        (root / split).mkdir()
        (root / split / "X.csv").write_text(header + "".join(r + "\n" for r in body))
    expect = {"short_row": r"X.csv:4: row has 1 of 3 columns: no value for 'history_item_id'",
              "empty_history": r"X.csv:4: empty 'history_item_id'", "header_only": r"X.csv: no samples"}[case]
    with pytest.raises(InputError, match=expect):
        prepare(PrepareConfig(source="minionerec", path=str(root), dataset="X", out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_an_options_file_is_read_flat_or_by_section_never_ignored(tmp_path):
    """``--config`` takes a stage's options at the top level or under its section; a file with neither (or an
    empty one, or a list) is an error, so options are never silently dropped for the defaults."""
    from sidrec.config import resolve

    flat, sectioned, pipeline, stray, empty = (tmp_path / f"{n}.yaml" for n in
                                               ("flat", "sectioned", "pipeline", "stray", "empty"))
    flat.write_text("source: synthetic\nn_users: 60\n")
    sectioned.write_text("data:\n  n_users: 70\n")
    pipeline.write_text("run_dir: runs/x\nquantize:\n  levels: 2\n")
    stray.write_text("n_user: 60\n")
    empty.write_text("")
    assert resolve(PrepareConfig, flat, section="data").n_users == 60
    assert resolve(PrepareConfig, sectioned, section="data").n_users == 70
    assert resolve(PrepareConfig, pipeline, section="data").n_users == PrepareConfig().n_users  # no data: section
    with pytest.raises(ConfigError, match="no 'data:' section, and none of its options at the top level"):
        resolve(PrepareConfig, stray, section="data")
    with pytest.raises(ConfigError, match="the file is empty"):
        resolve(PrepareConfig, empty, section="data")
    flat.write_text("source: synthetic\nn_user: 60\n")
    with pytest.raises(ConfigError, match="unknown option 'n_user' \\(did you mean 'n_users'\\?\\)"):
        resolve(PrepareConfig, flat, section="data")


def test_a_damaged_prepared_dataset_is_named(tmp_path):
    """A prepared folder with a split deleted or an arrow file cut short is an InputError naming the part."""
    import shutil

    out = prepare(PrepareConfig(source="synthetic", n_users=40, n_items=30, out=str(tmp_path / "d")))
    shutil.rmtree(Path(out) / "splits" / "test")
    with pytest.raises(InputError, match=r"d/splits: damaged \(FileNotFoundError"):
        load_data(out)
    out = prepare(PrepareConfig(source="synthetic", n_users=40, n_items=30, out=str(tmp_path / "e")))
    arrow = next((Path(out) / "items").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    with pytest.raises(InputError, match=r"e/items: damaged \(ArrowInvalid"):
        load_data(out)
    out = prepare(PrepareConfig(source="synthetic", n_users=40, n_items=30, out=str(tmp_path / "f")))
    (Path(out) / "stats.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"f/stats.json: damaged: expected a JSON object"):
        load_data(out)


def test_seqfile_item_table_with_an_extra_column_is_refused(tmp_path):
    seq = tmp_path / "Toy.txt"
    seq.write_text("".join(f"{u} 1 2 3 4\n" for u in range(1, 5)))
    items = tmp_path / "items.tsv"
    items.write_text("item_id\tasin\ttitle\n" + "".join(f"{i}\tB{i}\tTitle {i}\t\n" for i in range(1, 5)))
    d = load_data(prepare(PrepareConfig(source="seqfile", path=str(seq), items=str(items), out=str(tmp_path / "a"))))
    assert d.items[0]["title"] == "Title 1"  # an empty trailing column is harmless
    items.write_text(items.read_text().replace("Title 3\t", "Title 3\tsurprise"))
    with pytest.raises(InputError, match=r"items.tsv:4: expected 3 tab-separated columns"):
        prepare(PrepareConfig(source="seqfile", path=str(seq), items=str(items), out=str(tmp_path / "b")))


def test_amazon2023_metadata_of_odd_shapes_is_read(tmp_path):
    """A ``details`` that is text, or one category given as a number, are read rather than crashing."""
    reviews = [{"user_id": f"U{u}", "parent_asin": f"P{(u + j) % 4}", "rating": 4, "text": "t",
                "timestamp": 1_600_000_000_000 + j * 1000 + u} for u in range(5) for j in range(4)]
    meta = [{"parent_asin": f"P{i}", "title": f"P {i}", "details": "Brand: Lumen", "categories": 5, "store": None}
            for i in range(4)]
    d = load_data(prepare(PrepareConfig(source="amazon2023", reviews=str(_write_lines(tmp_path / "r", reviews)),
                                        meta=str(_write_lines(tmp_path / "m", meta)), k_core=3,
                                        out=str(tmp_path / "o"))))
    assert d.items[0]["categories"] == ["5"] and d.items[0]["brand"] == ""


def test_metadata_texts_and_prices_of_odd_types():
    from sidrec.data.sources import make_item

    item = make_item("x", title={"en": "Vanilla", "fr": ["Vanille"]}, price=[1, 2])
    assert item["title"] == "Vanilla Vanille" and item["price"] is None
    assert make_item("y", price="$3.50")["price"] == 3.5 and make_item("z", price=True)["price"] is None
