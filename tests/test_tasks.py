"""The av_align task bodies without Airflow: spec resolution, dataset detection, gate → publish →
asset extra → MLflow on a hand-built results table (real GX, real MLflow on SQLite, no Triton)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from avalign import tasks
from avalign.agent.config import AlignConfig
from avalign.agent.partition import RESULT_COLUMNS, results_table, stage_uri
from avalign.errors import AvalignError

AIRFLOW_RUN_ID = "manual__2026-01-02T03:04:05.678+00:00"


def test_rebuild_id_is_the_airflow_run_id_made_path_safe():
    assert tasks.rebuild_id(AIRFLOW_RUN_ID) == "manual__2026-01-02T03_04_05.678_00_00"
    assert tasks.rebuild_id("scheduled__2026-01-01T00:00:00+00:00") == "scheduled__2026-01-01T00_00_00_00_00"
    assert tasks.rebuild_id(AIRFLOW_RUN_ID, "nightly-7") == "nightly-7"
    assert tasks.rebuild_id("../../etc") == "_.._etc"  # no separators survive
    with pytest.raises(AvalignError):
        tasks.rebuild_id("  ")


def _spec(tmp_path: Path, **params) -> dict:
    base = {"dataset_uri": str(tmp_path / "ds"), "output_uri": str(tmp_path / "out"),
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return tasks.resolve_spec({**base, **params}, AIRFLOW_RUN_ID)


def test_spec_takes_unset_settings_from_alignconfig(tmp_path):
    spec = _spec(tmp_path, alignment_threshold=None, max_cycles=None, partitions=[])
    assert spec["config"] == AlignConfig().to_dict()
    assert spec["run_id"] == "manual__2026-01-02T03_04_05.678_00_00"
    assert spec["airflow_run_id"] == AIRFLOW_RUN_ID
    assert spec["partitions"] == [] and spec["triton_url"] == "" and spec["partition_size"] == 64
    json.dumps(spec)  # XCom-safe


def test_spec_applies_overrides_and_validates_them(tmp_path):
    spec = _spec(tmp_path, max_cycles=2, sync_threshold=0.6, min_improved_or_passed_share=1.0,
                 partitions=["part-00001"], triton_url="127.0.0.1:8001", rebuild_id="again")
    assert (spec["config"]["max_cycles"], spec["config"]["sync_threshold"]) == (2, 0.6)
    assert spec["config"]["min_improved_or_passed_share"] == 1.0
    assert spec["partitions"] == ["part-00001"] and spec["triton_url"] == "127.0.0.1:8001"
    assert spec["run_id"] == "again"
    with pytest.raises(AvalignError, match="max_cycles"):
        _spec(tmp_path, max_cycles=0)
    with pytest.raises(AvalignError, match="must differ"):
        tasks.resolve_spec({"dataset_uri": str(tmp_path), "output_uri": str(tmp_path)}, AIRFLOW_RUN_ID)


def test_spec_defaults_the_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    spec = tasks.resolve_spec({"dataset_uri": "/a", "output_uri": "/b"}, AIRFLOW_RUN_ID)
    assert spec["tracking_uri"] == f"sqlite:///{tmp_path / 'env.db'}"


def _touch_manifests(dataset: Path, *names: str) -> None:
    (dataset / "manifests").mkdir(parents=True)
    for name in names:
        (dataset / "manifests" / f"{name}.parquet").write_bytes(b"")


def test_a_dataset_is_a_uri_with_manifests(tmp_path):
    _touch_manifests(tmp_path / "ds", "part-00000")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.mp4").write_bytes(b"\x00")
    assert tasks.is_manifest_dataset(str(tmp_path / "ds"))
    assert not tasks.is_manifest_dataset(str(tmp_path / "raw"))
    assert not tasks.is_manifest_dataset(str(tmp_path / "missing"))
    spec = _spec(tmp_path)
    assert tasks.ingest_if_raw(spec, progress=lambda _: None) == {"dataset_uri": str(tmp_path / "ds"),
                                                                  "ingested": False}


def test_partitions_are_listed_and_selected(tmp_path):
    ds = tmp_path / "ds"
    _touch_manifests(ds, "part-00000", "part-00001", "part-00002")
    items = tasks.list_partition_manifests(str(ds))
    assert [i["partition"] for i in items] == ["part-00000", "part-00001", "part-00002"]
    assert items[1]["manifest_uri"] == str(ds / "manifests" / "part-00001.parquet")
    assert [i["partition"] for i in tasks.list_partition_manifests(str(ds), ["part-00002"])] == ["part-00002"]
    with pytest.raises(AvalignError, match="part-00009"):
        tasks.list_partition_manifests(str(ds), ["part-00009"])
    with pytest.raises(AvalignError):
        tasks.list_partition_manifests(str(tmp_path / "empty"))


def _row(i: int, outcome: str, run_id: str, partition: str) -> dict:
    improved = outcome == "improved"
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update({
        "clip_id": f"clip-{i}", "partition": partition, "run_id": run_id, "source_uri": f"/src/clip-{i}.mp4",
        "outcome": outcome, "reason": None if improved else "no_gain", "cycles": 1,
        "actions": "time_shift" if improved else "", "plan_json": "[]",
        "alignment_before": 0.5, "sync_before": 0.5,
        "alignment_after": 0.9 if improved else 0.5, "sync_after": 0.9 if improved else 0.5,
        "passed": improved, "improved_or_passed": improved,
        "duration_in_s": 2.0, "duration_out_s": 2.0, "duration_error_s": 0.0, "peak_out": 0.5,
        "clipped_fraction_out": 0.0, "output_uri": f"/out/clip-{i}.mp4", "output_sha256": "0" * 64,
        "seconds": 1.0, "corruption_types": "offset",
    })
    return row


def _stage_results(spec: dict, partition: str, outcomes: list[str]) -> dict:
    """What align_partition returns, with the table run_partition would have written."""
    stage = stage_uri(spec["output_uri"], spec["run_id"], partition)
    Path(stage).mkdir(parents=True)
    results = str(Path(stage) / "results.parquet")
    rows = [_row(i, o, spec["run_id"], partition) for i, o in enumerate(outcomes)]
    for row in rows:  # real staged outputs: publishing checksums every object
        media = Path(stage) / "clips" / f"{row['clip_id']}.mp4"
        media.parent.mkdir(exist_ok=True)
        media.write_bytes(row["clip_id"].encode() * 100)
        row["output_uri"], row["output_sha256"] = str(media), hashlib.sha256(media.read_bytes()).hexdigest()
    results_table(rows).to_parquet(results)
    (Path(stage) / "_SUCCESS").write_text(json.dumps({"n_clips": len(outcomes), "manifest_uri": None}))
    return {"partition": partition, "run_id": spec["run_id"], "stage_uri": stage, "results_uri": results,
            "counts": {}, "n_clips": len(outcomes), "seconds": 1.0, "reused": False,
            "manifest_uri": f"/ds/manifests/{partition}.parquet"}


def test_gate_publish_announce_and_log(tmp_path):
    spec = _spec(tmp_path, min_improved_or_passed_share=0.6)
    good = tasks.gate_partition(_stage_results(spec, "part-00000", ["improved"] * 3), spec)
    bad = tasks.gate_partition(_stage_results(spec, "part-00001", ["improved", "kept_original", "kept_original"]),
                               spec)
    assert good["gate"]["success"] is True and bad["gate"]["success"] is False
    assert bad["gate"]["failed_expectations"]
    assert Path(bad["gate"]["result_uri"]).is_file()  # the rejected partition keeps its GX report
    assert Path(bad["gate"]["result_uri"]).parent == Path(bad["stage_uri"]) / "gx"

    published = [tasks.publish(g, spec) for g in (good, bad)]
    assert published[0]["pointer_uri"] == str(tmp_path / "out" / "published" / "part-00000.json")
    assert published[1]["pointer_uri"] is None
    assert sorted(p.name for p in (tmp_path / "out" / "published").iterdir()) == ["part-00000.json"]
    json.dumps(published)  # XCom-safe

    extra = tasks.asset_event_extra(published, spec)
    assert extra == {"output_uri": spec["output_uri"], "run_id": spec["run_id"], "partitions": ["part-00000"],
                     "pointers": [published[0]["pointer_uri"]], "rejected": ["part-00001"]}
    again = [tasks.publish(g, spec) for g in (good, bad)]  # a retry: same content, nothing new
    assert again[0]["already_published"] is True
    assert tasks.asset_event_extra(again, spec) is None

    logged = tasks.log_to_mlflow(published, spec)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=spec["tracking_uri"])
    parent = client.get_run(logged["mlflow_run_id"])
    assert parent.data.params["run_id"] == spec["run_id"]
    assert parent.data.params["alignment_threshold"] == str(AlignConfig().alignment_threshold)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["avalign.partition"] for c in children) == ["part-00000", "part-00001"]


def test_a_folder_of_videos_is_ingested_into_the_output(tmp_path):
    from avalign.data.dataset import build_dataset

    build_dataset(str(tmp_path / "gen"), partitions=1, clips_per_partition=2, duration_s=1.0, progress=None)
    spec = _spec(tmp_path, dataset_uri=str(tmp_path / "gen" / "media"))
    assert not tasks.is_manifest_dataset(spec["dataset_uri"])
    result = tasks.ingest_if_raw(spec, progress=lambda _: None)
    assert result["dataset_uri"] == str(tmp_path / "out" / "dataset") and result["ingested"] is True
    assert (result["partitions"], result["n_accepted"], result["n_rejected"]) == (["part-00000"], 2, 0)
    json.dumps(result)
    items = tasks.list_partition_manifests(result["dataset_uri"])
    assert [i["partition"] for i in items] == ["part-00000"]
    assert len(pd.read_parquet(items[0]["manifest_uri"])) == 2
