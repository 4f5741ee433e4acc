"""A tiny comparison end to end: trains, evaluates, logs to a temporary MLflow store, registers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avalign.representation.compare import ComparisonSpec, aggregate, gate, run_comparison, targets


@pytest.fixture(scope="module")
def tiny_run(tiny_features, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("compare")
    spec = ComparisonSpec(source="features", features_dir=str(tiny_features), variants=["raw", "aligned"],
                          seeds=[0], epochs=2, batch_size=12, max_steps=3, device="cpu",
                          tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", out_dir=str(tmp / "eval"),
                          av_align_run_id="manual__test", run_name="tiny")
    result = run_comparison(spec, progress=lambda _m: None)
    return {"spec": spec, "result": result, "tmp": tmp}


def test_report_and_table_are_written(tiny_run):
    out = Path(tiny_run["spec"].out_dir)
    report = json.loads((out / "representation.json").read_text())
    assert set(report["summary"]) == {"raw", "aligned"}
    for key in ("probe_audio_top1", "a2v_r1", "a2v_r5", "v2a_r1", "sync_auroc", "sync_accuracy"):
        value = report["summary"]["aligned"][key]["mean"]
        assert 0.0 <= value <= 1.0, key
    assert report["dataset_version"]["av_align_run_id"] == "manual__test"
    assert [r["steps"] for r in report["runs"]] == [3, 3]  # 2 epochs x 2 steps, capped by max_steps
    table = (out / "representation.md").read_text()
    assert "| raw |" in table and "| aligned |" in table and "A→V R@1" in table
    control = report["untrained_control"]  # the network before training, same seeds
    assert 0.0 <= control["probe_audio_top1"]["mean"] <= 1.0 and "| untrained (control) |" in table
    assert report["targets"]["probe_audio_top1"]["untrained"] == pytest.approx(
        control["probe_audio_top1"]["mean"], abs=1e-4)
    assert control["a2v_r1"] != report["summary"]["raw"]["a2v_r1"]  # training moved the embeddings
    assert report["targets"]["a2v_r1"]["attainable"] is (report["summary"]["raw"]["a2v_r1"]["mean"] <= 0.95)


def test_identical_data_and_seed_give_identical_models_so_the_gate_passes(tiny_run):
    runs = {r["variant"]: r for r in tiny_run["result"]["runs"]}
    assert runs["raw"]["metrics"] == runs["aligned"]["metrics"]
    assert tiny_run["result"]["gate"]["passed"] is True


def test_mlflow_parent_children_metrics_plots_and_registered_model(tiny_run):
    from mlflow.tracking import MlflowClient

    spec = tiny_run["spec"]
    client = MlflowClient(spec.tracking_uri)
    parent_id = tiny_run["result"]["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert "aligned_a2v_r1_mean" in parent.data.metrics and parent.data.tags["avalign.gate"] == "passed"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.tags["avalign.variant"] for c in children) == ["aligned", "raw"]
    child = children[0]
    assert child.data.params["seed"] == "0" and "probe_audio_top1" in child.data.metrics
    assert len(client.get_metric_history(child.info.run_id, "epoch_loss")) == 2  # one point per epoch
    plots = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "plots")}
    assert {"loss_curves.png", "confusion_audio.png", "retrieval_examples.png"} <= plots
    versions = client.search_model_versions("name = 'av_representation'")
    assert len(versions) == 1
    version = versions[0]
    assert version.tags["av_align_run_id"] == "manual__test"
    assert json.loads(version.tags["dataset_version"])["av_align_run_id"] == "manual__test"
    assert version.run_id == next(c.info.run_id for c in children if c.data.tags["avalign.variant"] == "aligned")


def test_registered_model_exports_as_a_triton_av_scorer(tiny_run):
    from avalign.representation.export import export_scorer
    from avalign.representation.model import load

    exported = export_scorer("models:/av_representation/1", tiny_run["tmp"] / "repo",
                             tracking_uri=tiny_run["spec"].tracking_uri)
    assert (exported / "config.pbtxt").read_text().count('name: "av_scorer"') == 1
    assert (exported / "1" / "model.py").exists()
    _, extra = load(exported / "1" / "model.pt")
    assert extra["variant"] == "aligned" and set(extra["calibration"]) >= {"a", "b"}


def _summary(raw: list[float], aligned: list[float], auroc=(0.6, 0.7)) -> dict:
    rows = [{"variant": v, "seed": i, "train_s": 1.0,
             "metrics": {"probe_audio_top1": x, "a2v_r1": x, "sync_auroc": auroc[v == "aligned"]}}
            for v, xs in (("raw", raw), ("aligned", aligned)) for i, x in enumerate(xs)]
    return aggregate(rows)


def test_a_target_raw_leaves_no_room_for_is_marked_unattainable():
    summary = _summary([0.50, 0.52, 0.51], [0.60, 0.61, 0.62])
    summary["raw"]["probe_audio_top1"] = {"mean": 1.0, "std": 0.0}
    summary["aligned"]["probe_audio_top1"] = {"mean": 0.999, "std": 0.002}
    measured = targets(summary, {"probe_audio_top1": {"mean": 0.88, "std": 0.05}})
    assert measured["probe_audio_top1"] == {"delta_points": -0.1, "non_overlapping": False, "met": False,
                                            "attainable": False, "untrained": 0.88}
    assert measured["a2v_r1"]["attainable"] is True and "untrained" not in measured["a2v_r1"]
    assert gate(summary)["passed"] is True  # a tie at the ceiling is not a regression


def test_gate_and_targets_on_known_numbers():
    clear = _summary([0.50, 0.52, 0.51], [0.60, 0.61, 0.62])
    assert gate(clear)["passed"] is True
    measured = targets(clear)
    assert measured["a2v_r1"]["met"] and measured["a2v_r1"]["delta_points"] == pytest.approx(10.0)
    assert measured["sync_auroc"]["met"]
    overlapping = _summary([0.50, 0.40, 0.60], [0.56, 0.46, 0.66])
    assert not targets(overlapping)["a2v_r1"]["non_overlapping"]
    worse = _summary([0.6, 0.6, 0.6], [0.5, 0.5, 0.5])
    assert gate(worse)["passed"] is False and "a2v_r1" in gate(worse)["reason"]
    within_spread = _summary([0.60, 0.62, 0.64], [0.58, 0.60, 0.62])  # 0.60 ± 0.02 vs 0.62 ± 0.02
    assert gate(within_spread)["passed"] is True
    one_seed = _summary([0.60], [0.59])  # no spread: a plain >=
    assert gate(one_seed)["passed"] is False
    assert gate(aggregate([{"variant": "raw", "seed": 0, "train_s": 1.0, "metrics": {"a2v_r1": 1.0}}]))[
        "passed"] is False
