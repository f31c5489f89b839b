"""The pipeline's base model follows the config's ``model.tiny`` section."""

import json


def test_a_changed_tiny_section_rebuilds_the_base_model(synthetic_data, tmp_path):
    from sidrec.pipeline import PipelineConfig, Run, _model_source

    tiny = {"vocab_size": 400, "hidden_size": 64, "num_layers": 1, "head_dim": 32, "num_kv_heads": 1,
            "intermediate_size": 128, "lm_epochs": 0.0}
    run = Run(PipelineConfig(run_dir=str(tmp_path / "run"), model={"tiny": tiny}))
    run.root.mkdir()
    (run.root / "data").symlink_to(synthetic_data)

    def built() -> tuple[int, int]:
        config = json.loads((run.root / "model" / "tiny" / "config.json").read_text())
        return config["hidden_size"], config["num_hidden_layers"]

    source = _model_source(run)["model"]
    assert built() == (64, 1)
    stamp = (run.root / "model" / "tiny" / "config.json").stat().st_mtime_ns
    assert _model_source(run)["model"] == source  # same options: the built model is kept
    assert (run.root / "model" / "tiny" / "config.json").stat().st_mtime_ns == stamp
    # The same data through another path (a benchmark arm links the main run's folders) keeps the model too.
    arm = Run(PipelineConfig(run_dir=str(tmp_path / "arm"), model={"tiny": tiny}))
    arm.root.mkdir()
    (arm.root / "data").symlink_to(synthetic_data)
    (arm.root / "model").symlink_to(run.root / "model")
    _model_source(arm)
    assert (run.root / "model" / "tiny" / "config.json").stat().st_mtime_ns == stamp
    # A larger model in the config must not silently reuse the old one (it used to: only config.json was checked).
    run.cfg.model = {"tiny": {**tiny, "hidden_size": 96, "num_layers": 2}}
    _model_source(run)
    assert built() == (96, 2)
