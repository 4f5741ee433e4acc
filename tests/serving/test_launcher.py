"""The launcher's model repository: a shared server gets N instances per model, same code."""

from __future__ import annotations

from pathlib import Path

from avalign.serving.launcher import DEFAULT_MODEL_REPOSITORY, _instanced_model


def test_instanced_model_keeps_the_code_and_sets_the_count(tmp_path):
    source = Path(DEFAULT_MODEL_REPOSITORY) / "av_scorer"
    _instanced_model(source.resolve(), tmp_path / "av_scorer", 3)
    config = (tmp_path / "av_scorer" / "config.pbtxt").read_text()
    assert "count: 3" in config and "count: 1" not in config
    original = (source / "config.pbtxt").read_text()
    assert config.replace("count: 3", "count: 1") == original  # nothing else changed
    assert (tmp_path / "av_scorer" / "1" / "model.py").resolve() == (source / "1" / "model.py").resolve()


def test_a_config_without_an_instance_group_gets_one(tmp_path):
    source = tmp_path / "src"
    (source / "1").mkdir(parents=True)
    (source / "1" / "model.py").write_text("# model")
    (source / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    _instanced_model(source, tmp_path / "m", 2)
    assert "instance_group [ { kind: KIND_CPU count: 2 } ]" in (tmp_path / "m" / "config.pbtxt").read_text()
