"""Stage ``semantics``: the offline extractor, the LLM teacher's parser, the metrics, the student, the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidrec.semantics.extract import ItemTexts, LexiconExtractor
from sidrec.semantics.metrics import facet_selection_scores, score_string_attributes, value_f1
from sidrec.semantics.teacher import ParseStats, parse_llm_output

# ---- the teacher's parser survives malformed outputs -------------------------------------------------------------
MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("{}", "empty"),
    ("I cannot find any attributes.", "invalid_json"),
    ('{"scent": "vanilla"', None),           # truncated: repaired by closing the object
    ("[1, 2, 3]", "not_object"),
    ('"just a string"', "not_object"),
    ('{"smelliness": "strong", "weight_kg": 3}', "no_valid_pairs"),
    ('{"scent": null, "color": {"nested": 1}}', "no_valid_pairs"),
    ("{'scent': 'pine', 'color': 'green',}", None),   # Python literal with a trailing comma: repaired
    ('```json\n{"taste": ["Sweet", "salty"]}\n```', None),
    ('Sure! Here it is: {"colour": "Grey", "material": "a very long value that is not a value at all"} Bye', None),
    ("{{{{", "invalid_json"),
    ("\x00\x01garbage}", "invalid_json"),
]


def test_parser_never_raises_and_counts_every_answer():
    stats = ParseStats()
    results = [parse_llm_output(answer, stats) for answer, _ in MALFORMED]
    assert stats.total == len(MALFORMED)
    expected = {"empty": 3, "invalid_json": 3, "not_object": 2, "no_valid_pairs": 2}
    for kind, count in expected.items():
        assert getattr(stats, kind) == count, kind
    assert stats.ok == 4
    assert results[4] == {"scent": ["vanilla"]}
    assert results[9] == {"scent": ["pine"], "color": ["green"]}
    assert results[10] == {"taste": ["sweet", "salty"]}
    assert results[11] == {"color": ["gray"]}  # synonym normalised, over-long value rejected
    assert stats.unknown_facets == 2 and stats.bad_values >= 2
    assert stats.as_dict()["malformed"] == 7
    assert parse_llm_output(None, stats) == {}  # type: ignore[arg-type]


# ---- offline extractor ----------------------------------------------------------------------------------------------
def test_lexicon_extractor_cues_bare_words_and_stop_phrases():
    ex = LexiconExtractor()
    items = [
        ItemTexts("a", "Lumen Vanilla Ivory Jar Candle", "A candle with material: soy wax.",
                  ["Love the vanilla scent.", "Color is a nice ivory."]),
        ItemTexts("b", "Dermalia Rose Face Cream", "A face cream.", ["It feels cooling on the skin."]),
        ItemTexts("c", "Sonora Warm Black Headphones", "", ["The sound is warm.", "Made of aluminum, feels solid."]),
        ItemTexts("d", "Steel staples 1/2 inch, 1000 count", "", []),
    ]
    out = ex.extract_corpus(items)
    assert out["a"] == {"color": ["ivory"], "scent": ["vanilla"], "material": ["soy wax"]}
    assert "color" not in out["b"]  # "face cream" is a product noun, not a colour
    assert out["b"]["feel"] == ["cooling"] and out["b"]["scent"] == ["rose"]
    assert out["c"]["sound"] == ["warm"] and out["c"]["material"] == ["aluminum"]
    assert "feel" not in out["c"]  # bare "warm" follows the facet it was cued with
    assert out["d"]["material"] == ["steel"] and out["d"]["size"] == ["1/2 inch"]


def test_extractor_reaches_acceptance_on_synthetic(synthetic_data):
    from sidrec.data import load_data
    from sidrec.semantics.stage import _item_texts

    data = load_data(synthetic_data)
    truth = data.ground_truth()["attributes"]
    out = LexiconExtractor().extract_corpus(_item_texts(data, True, 50))
    scores = facet_selection_scores({i: list(a) for i, a in out.items()}, truth)
    assert scores["facet_accuracy"] >= 0.75


# ---- metrics ----------------------------------------------------------------------------------------------------------
def _onehot_encoder(vocab):
    index = {v: i for i, v in enumerate(vocab)}

    def encode(values):
        out = np.zeros((len(values), len(vocab)), np.float32)
        for r, v in enumerate(values):
            out[r, index[v]] = 1.0
        return out
    return encode


def test_metrics_definitions():
    truth = {"x": {"scent": "vanilla", "color": "red"}, "y": {"taste": "sweet"}}
    pred = {"x": {"scent": ["vanilla"], "size": ["large"]}, "y": {"taste": ["salty"]}}
    fs = facet_selection_scores({i: list(a) for i, a in pred.items()}, truth)
    assert fs["facet_accuracy"] == pytest.approx((1 / 3 + 1) / 2)  # Jaccard per item, averaged
    assert fs["facet_exact_match"] == 0.5
    enc = _onehot_encoder(["vanilla", "red", "sweet", "salty", "large"])
    s = score_string_attributes(pred, truth, enc)
    assert s["value_precision"] == pytest.approx(1 / 3) and s["value_recall"] == pytest.approx(1 / 3)
    # A predicted vector halfway between two values: cosine 0.707 >= 0.6 matches, at tau 0.8 it does not.
    half = (enc(["sweet"]) + enc(["salty"]))[0] / np.sqrt(2)
    assert value_f1({"y": {"taste": half[None]}}, {"y": {"taste": "sweet"}}, enc)["value_f1"] == 1.0
    assert value_f1({"y": {"taste": half[None]}}, {"y": {"taste": "sweet"}}, enc, tau=0.8)["value_f1"] == 0.0


# ---- tiny Qwen2 (built locally) ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(['{"scent": "vanilla", "color": "ivory"}', "Love the vanilla scent. Product: candle"] * 20,
                            trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = Qwen2Config(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    import torch

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("tiny_qwen")
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path, model, fast


def test_llm_teacher_with_a_random_model_counts_instead_of_crashing(tiny_qwen):
    from sidrec.semantics.teacher import LLMExtractor

    _, model, tok = tiny_qwen
    teacher = LLMExtractor("tiny", batch_size=2, max_new_tokens=8, max_units=2, model=model, tokenizer=tok,
                           device="cpu")
    items = [ItemTexts("a", "Candle", "desc", ["Love the vanilla scent.", "Nice.", "ignored third review"]),
             ItemTexts("b", "Mug", "A mug.", [])]
    out = teacher.extract_corpus(items, progress=False)
    assert set(out) == {"a", "b"}
    assert teacher.stats.total == 3  # two reviews of a (max_units) + the description of b
    assert teacher.stats.ok + teacher.stats.empty + teacher.stats.malformed == 3


def test_causal_lm_mean_pooling_encoder(tiny_qwen):
    from sidrec.semantics.text import CausalLMEncoder

    path, _, _ = tiny_qwen
    enc = CausalLMEncoder(str(path), device="cpu")
    emb = enc.encode(["a vanilla candle", "a much longer text about an ivory candle made of soy wax", ""],
                     batch_size=2)
    assert emb.shape == (3, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Padding must not change a text's embedding: encode alone vs in a padded batch.
    alone = enc.encode(["a vanilla candle"], batch_size=1)
    assert np.allclose(alone[0], emb[0], atol=1e-4)


# ---- the stage end to end ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def semantics_dir(synthetic_data, tmp_path_factory):
    from sidrec.semantics import SemanticsConfig, run_semantics

    out = tmp_path_factory.mktemp("sem") / "semantics"
    cfg = SemanticsConfig(data=str(synthetic_data), out=str(out), student_epochs=6, student_holdout=0.2,
                          progress=False, text_fields=["title", "brand", "categories", "description", "sensory"])
    run_semantics(cfg)
    return out, cfg


def test_stage_outputs_and_resume(semantics_dir):
    from sidrec.semantics.stage import SemanticsStage, run_semantics
    from sidrec.stage import MARKER_FILE, read_marker

    out, cfg = semantics_dir
    index = json.loads((out / "item_index.json").read_text())
    item_emb, text_emb, sensory_emb = (np.load(out / f) for f in ("item_emb.npy", "text_emb.npy",
                                                                   "sensory_emb.npy"))
    assert len(index) == 60 and item_emb.shape[0] == text_emb.shape[0] == sensory_emb.shape[0] == 60
    assert text_emb.shape[1] == 384 and sensory_emb.shape[1] == 9 * cfg.sensory_dim
    assert item_emb.shape[1] == 384 + 9 * cfg.sensory_dim
    assert np.allclose(np.linalg.norm(item_emb, axis=1), 1.0, atol=1e-5)
    rows = [json.loads(line) for line in (out / "sensory.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in rows] == index and all(r["attributes"] for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["sensory"]["teacher_vs_truth"]["facet_accuracy"] >= 0.75
    assert stats["sensory"]["student_loss"]["last"] < stats["sensory"]["student_loss"]["first"]
    marker = read_marker(out / MARKER_FILE)
    assert marker.current and marker.fingerprint == SemanticsStage().fingerprint(cfg)[0]
    assert set(marker.fields["outputs"]) == {"sensory.jsonl", "sensory_emb.npy", "text_emb.npy", "item_emb.npy",
                                             "item_index.json"}  # new embeddings change what quantize records
    before = (out / "item_emb.npy").stat().st_mtime_ns
    run_semantics(cfg)  # resume: nothing redone
    assert (out / "item_emb.npy").stat().st_mtime_ns == before


def test_changing_fusion_redoes_only_fuse(semantics_dir, tmp_path):
    import dataclasses
    import shutil

    from sidrec.semantics.stage import run_semantics

    out, cfg = semantics_dir
    copy = tmp_path / "semantics"
    shutil.copytree(out, copy)
    text_before = (copy / "text_emb.npy").stat().st_mtime_ns
    cfg2 = dataclasses.replace(cfg, out=str(copy), fusion="pca", fusion_dim=32)
    run_semantics(cfg2)
    assert np.load(copy / "item_emb.npy").shape == (60, 32)
    assert (copy / "text_emb.npy").stat().st_mtime_ns == text_before


def test_an_interrupted_run_resumes_without_redoing_finished_parts(semantics_dir, tmp_path, monkeypatch):
    """The part ledger (_parts.json, written by the stage runner's run_parts): a run killed in `fuse` keeps the
    parts it finished, and the next run redoes only `fuse`; a ledger from before format 2 ({part: hash}) is read."""
    import dataclasses
    import shutil

    from sidrec.semantics import stage as semantics_stage
    from sidrec.stage import MARKER_FILE, PARTS_FILE, read_marker

    out, cfg = semantics_dir
    copy = tmp_path / "semantics"
    shutil.copytree(out, copy)
    cfg2 = dataclasses.replace(cfg, out=str(copy), max_text_chars=300)  # text and fuse are stale, sensory is not

    def mtimes() -> dict[str, int]:
        return {f: (copy / f).stat().st_mtime_ns for f in ("sensory_emb.npy", "text_emb.npy", "item_emb.npy")}

    before = mtimes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(semantics_stage, "_run_fuse", killed)
    with pytest.raises(KeyboardInterrupt):
        semantics_stage.run_semantics(cfg2)
    monkeypatch.undo()
    ledger = json.loads((copy / PARTS_FILE).read_text())
    assert ledger["format"] == 2 and set(ledger["parts"]) == {"sensory", "text"}  # fuse forgotten, not finished
    assert read_marker(copy / MARKER_FILE) is None  # the stage is not marked done
    killed_at = mtimes()
    assert killed_at["sensory_emb.npy"] == before["sensory_emb.npy"]  # unchanged options: not redone
    assert killed_at["text_emb.npy"] != before["text_emb.npy"]

    semantics_stage.run_semantics(cfg2)  # resume
    after = mtimes()
    assert after["text_emb.npy"] == killed_at["text_emb.npy"]  # finished before the kill: not redone
    assert after["item_emb.npy"] != killed_at["item_emb.npy"]
    assert read_marker(copy / MARKER_FILE).current

    # An old ledger ({part: fingerprint}) holds the same fingerprints: its parts count as done.
    (copy / MARKER_FILE).unlink()
    (copy / PARTS_FILE).write_text(json.dumps({part: entry["fingerprint"] for part, entry in
                                               json.loads((copy / PARTS_FILE).read_text())["parts"].items()}))
    semantics_stage.run_semantics(cfg2)
    assert mtimes() == after and read_marker(copy / MARKER_FILE).current


def test_embed_new_items_matches_catalogue_embedding(semantics_dir, synthetic_data):
    from sidrec.data import load_data
    from sidrec.semantics import embed_new_items

    out, cfg = semantics_dir
    data = load_data(synthetic_data)
    rows = [data.items[i] for i in range(3)]
    emb, attrs = embed_new_items(out, rows)
    catalogue = np.load(out / "item_emb.npy")[:3]
    assert emb.shape == catalogue.shape and len(attrs) == 3
    # The sensory block comes from the same student as the catalogue's, so it is identical. The text block differs
    # only through the sensory words in the text (teacher's from reviews there, the student's here).
    sensory = 9 * cfg.sensory_dim
    assert np.allclose(emb[:, -sensory:], catalogue[:, -sensory:], atol=1e-5)
    text_new, text_cat = emb[:, :-sensory], catalogue[:, :-sensory]
    cos = (text_new * text_cat).sum(1) / (np.linalg.norm(text_new, axis=1) * np.linalg.norm(text_cat, axis=1))
    assert (cos > 0.9).all(), cos


def test_tfidf_text_encoder_is_fitted_saved_and_reused_for_new_items(synthetic_data, tmp_path):
    """``encoder_kind: tfidf``: the text part fits TF-IDF + SVD on the catalogue and saves it beside the embeddings;
    a new item identical to a catalogue item gets that item's text embedding again (same vocabulary and
    projection, not a refit); a different ``tfidf_dim`` redoes the text part, while for other encoders the option
    is not in the fingerprint (runs made before it existed stay valid)."""
    from sidrec.data import load_data
    from sidrec.semantics import SemanticsConfig, embed_new_items, run_semantics
    from sidrec.semantics.stage import SemanticsStage
    from sidrec.semantics.text import TFIDF_FILE

    out = tmp_path / "semantics"
    cfg = SemanticsConfig(data=str(synthetic_data), out=str(out), encoder_kind="tfidf", tfidf_dim=16,
                          student_epochs=2, progress=False)
    run_semantics(cfg)
    text = np.load(out / "text_emb.npy")
    assert (out / TFIDF_FILE).is_file() and text.shape == (60, 16)
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    data = load_data(synthetic_data)
    emb, _ = embed_new_items(out, [data.items[i] for i in range(3)])
    text_width = text.shape[1]  # fused = [text * w, sensory * w], each block normalised first
    new_text = emb[:, :text_width] / np.linalg.norm(emb[:, :text_width], axis=1, keepdims=True)
    assert np.allclose(new_text, text[:3], atol=1e-5)
    stage = SemanticsStage()
    assert "tfidf_dim" in stage.options(cfg)
    plain = SemanticsConfig(data=str(synthetic_data), out=str(out))
    assert "tfidf_dim" not in stage.options(plain)
    assert stage.fingerprint(plain) == stage.fingerprint(SemanticsConfig(data=str(synthetic_data), out=str(out),
                                                                         tfidf_dim=7))
    assert stage.fingerprint(cfg) != stage.fingerprint(SemanticsConfig(**{**vars(cfg), "tfidf_dim": 8}))


def test_lexical_view_is_a_second_text_view_that_quantize_and_cold_start_read(synthetic_data, tmp_path):
    """``lexical_dim``: the text part also writes ``lexical_emb.npy`` (TF-IDF + SVD, its encoder saved) while
    ``text_emb.npy`` stays the text encoder's; ``quantize --embedding lexical`` makes SIDs from it; a new item equal
    to a catalogue item gets that item's lexical row back from ``embed_new_items(view="lexical")``; without the
    view, quantize's error names the option. ``lexical_dim: 0`` is not in the fingerprint (older runs stay valid)."""
    from sidrec.data import load_data
    from sidrec.errors import InputError
    from sidrec.quantize import QuantizeConfig, run_quantize
    from sidrec.semantics import SemanticsConfig, embed_new_items, run_semantics
    from sidrec.semantics.stage import SemanticsStage
    from sidrec.semantics.text import LEXICAL_FILE
    from sidrec.sid import SidTable

    out = tmp_path / "semantics"
    cfg = SemanticsConfig(data=str(synthetic_data), out=str(out), encoder_kind="tfidf", tfidf_dim=16,
                          lexical_dim=8, student_epochs=2, progress=False)
    run_semantics(cfg)
    text, lexical = np.load(out / "text_emb.npy"), np.load(out / "lexical_emb.npy")
    assert text.shape == (60, 16) and lexical.shape == (60, 8) and (out / LEXICAL_FILE).is_file()
    assert np.allclose(np.linalg.norm(lexical, axis=1), 1.0, atol=1e-5)
    data = load_data(synthetic_data)
    new, _ = embed_new_items(out, [data.items[i] for i in range(3)], view="lexical")
    assert np.allclose(new, lexical[:3], atol=1e-5)
    new_text, _ = embed_new_items(out, [data.items[i] for i in range(3)], view="text")
    assert np.allclose(new_text, text[:3], atol=1e-5)

    sids = run_quantize(QuantizeConfig(semantics=str(out), out=str(tmp_path / "sids"), embedding="lexical",
                                       method="rq-kmeans", levels=2, codebook_size=8, collision="extra_level"))
    table = SidTable.load(sids)
    assert len(table.item_ids) == 60 and len({tuple(c) for c in table.codes.tolist()}) == 60

    plain = tmp_path / "plain"
    run_semantics(SemanticsConfig(data=str(synthetic_data), out=str(plain), encoder_kind="tfidf", tfidf_dim=16,
                                  student_epochs=2, progress=False))
    assert not (plain / "lexical_emb.npy").exists()
    with pytest.raises(InputError, match="lexical_dim"):
        run_quantize(QuantizeConfig(semantics=str(plain), out=str(tmp_path / "sids2"), embedding="lexical",
                                    method="rq-kmeans", levels=2, codebook_size=8))
    with pytest.raises(InputError, match="lexical_dim 0"):
        embed_new_items(plain, [data.items[0]], view="lexical")
    stage = SemanticsStage()
    assert "lexical_dim" not in stage.options(SemanticsConfig(data=str(synthetic_data), out=str(plain)))
    assert stage.fingerprint(cfg) != stage.fingerprint(SemanticsConfig(**{**vars(cfg), "lexical_dim": 4}))


def test_config_problems_are_collected():
    from sidrec.config import resolve
    from sidrec.errors import ConfigError
    from sidrec.semantics import SemanticsConfig

    with pytest.raises(ConfigError) as e:
        resolve(SemanticsConfig, overrides={"teacher": "llm", "text_fields": ["title", "colour"],
                                            "student_holdout": 0.95, "max_text_chars": -5})
    msg = str(e.value)
    assert "teacher_model" in msg and "colour" in msg and "student_holdout" in msg
    assert "max_text_chars: must be >= 1" in msg


def test_sensory_jsonl_reader_takes_both_layouts_and_names_a_bad_line(tmp_path):
    """One reader serves the align keywords, explanations and the text stage: attribute maps and pair lists both
    load, and a broken line is reported with its file and line number."""
    from sidrec.align.keywords import load_sensory_values
    from sidrec.errors import InputError
    from sidrec.eval.explain import load_sensory
    from sidrec.semantics.extract import read_sensory_jsonl

    path = tmp_path / "sensory.jsonl"
    path.write_text(json.dumps({"item_id": "a", "attributes": {"scent": ["vanilla", "rose"], "color": "red"}}) + "\n\n"
                    + json.dumps({"item_id": 7, "pairs": [["texture", "silky"], ["bad"]]}) + "\n")
    assert read_sensory_jsonl(path) == {"a": {"scent": ["vanilla", "rose"], "color": ["red"]},
                                        "7": {"texture": ["silky"]}}
    assert load_sensory(path) == read_sensory_jsonl(path)
    assert load_sensory_values(tmp_path) == {"a": ["vanilla", "rose", "red"], "7": ["silky"]}
    assert load_sensory(tmp_path / "absent.jsonl") == {} and load_sensory_values(tmp_path / "nowhere") == {}

    path.write_text(json.dumps({"item_id": "a", "attributes": {}}) + "\n{not json\n")
    with pytest.raises(InputError, match=r"sensory\.jsonl:2: invalid JSON"):
        read_sensory_jsonl(path)
    path.write_text(json.dumps({"attributes": {}}) + "\n")
    with pytest.raises(InputError, match="item_id"):
        load_sensory(path)
