"""A rebuild of two partitions logged to a throw-away SQLite store, read back with MlflowClient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from avalign.tracking.plots import spectrogram_pair_png
from avalign.tracking.runs import (
    PARENT_TAG,
    PartitionSummary,
    default_tracking_uri,
    log_rebuild,
    partition_metrics,
)

RATE = 16000


def _tone(seconds: float = 1.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * 440 * t) + noise * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _results(root: Path, partition: str, outcomes: list[str]) -> pd.DataFrame:
    """A results table whose improved clips have real source/edited audio files."""
    rows = []
    for i, outcome in enumerate(outcomes):
        clip = f"{partition}-clip{i}"
        source = root / "media" / f"{clip}.wav"
        edited = root / "audio" / f"{clip}.wav"
        source.parent.mkdir(parents=True, exist_ok=True)
        edited.parent.mkdir(parents=True, exist_ok=True)
        sf.write(source, _tone(noise=0.3, seed=i), RATE)
        quarantined = outcome == "quarantined"
        if outcome == "improved":
            sf.write(edited, _tone(), RATE)
        before = None if quarantined else 0.5 + 0.01 * i
        after = None if quarantined else (0.9 if outcome == "improved" else before)
        rows.append(
            {
                "clip_id": clip,
                "partition": partition,
                "run_id": "r1",
                "source_uri": str(source),
                "outcome": outcome,
                "cycles": 0 if quarantined else 1,
                "actions": "spectral_gate" if outcome == "improved" else "",
                "alignment_before": before,
                "alignment_after": after,
                "sync_before": before,
                "sync_after": after,
                "passed": outcome == "improved",
                "improved_or_passed": outcome == "improved",
                "audio_uri": str(edited) if outcome == "improved" else None,
                "offset_est_before_ms": None if quarantined else 40.0,
                "offset_est_after_ms": None if quarantined else 0.0,
                "seconds": 2.0 + i,
            }
        )
    return pd.DataFrame(rows)


def _summary(
    tmp_path: Path, partition: str, outcomes: list[str], *, success: bool, spectrograms=()
) -> PartitionSummary:
    root = tmp_path / partition
    frame = _results(root, partition, outcomes)
    results = root / "results.parquet"
    frame.to_parquet(results, index=False)
    validation = root / "gx" / "validation.json"
    validation.parent.mkdir()
    validation.write_text(json.dumps({"success": success, "results": []}))
    gate = {
        "success": success,
        "statistics": {
            "evaluated_expectations": 33,
            "unsuccessful_expectations": 0 if success else 1,
        },
        "failed_expectations": []
        if success
        else ["outcome: quarantined share 0.50 > 0.25 (2 of 4 clips)"],
        "result_uri": str(validation),
        "data_docs_uri": str(root / "gx" / "data_docs" / "index.html"),
    }
    return PartitionSummary(
        partition, str(results), gate, published=success, spectrograms=list(spectrograms)
    )


def test_a_rebuild_is_one_parent_with_a_nested_run_per_partition(tmp_path):
    from mlflow.tracking import MlflowClient

    given = tmp_path / "given.png"
    spectrogram_pair_png(_tone(noise=0.3), _tone(), RATE, "given pair", given)
    good = _summary(
        tmp_path,
        "part-00000",
        ["improved", "improved", "kept_original", "quarantined"],
        success=True,
    )
    bad = _summary(
        tmp_path,
        "part-00001",
        ["improved", "quarantined", "quarantined", "kept_original"],
        success=False,
        spectrograms=[given],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    parent_id = log_rebuild(
        uri,
        run_name="manual__1",
        params={"config": {"max_cycles": 3, "planner": "rules"}, "dataset": "/d"},
        partitions=[good, bad],
    )

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "manual__1"
    assert parent.data.params["config.max_cycles"] == "3"
    assert parent.data.metrics["n_clips"] == 8 and parent.data.metrics["n_improved"] == 3
    assert parent.data.metrics["n_partitions_published"] == 1
    assert (
        tmp_path / "artifacts" / "av_align"
    ).is_dir()  # artifacts next to the store, not in ./mlruns

    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'"
    )
    assert sorted(c.data.tags["avalign.partition"] for c in children) == [
        "part-00000",
        "part-00001",
    ]
    by_part = {c.data.tags["avalign.partition"]: c for c in children}
    all_runs = client.search_runs([parent.info.experiment_id])
    assert len(all_runs) == 3  # one parent, two children, nothing else

    for summary, child in ((good, by_part["part-00000"]), (bad, by_part["part-00001"])):
        frame = pd.read_parquet(summary.results_uri)
        metrics = child.data.metrics
        assert child.info.status == "FINISHED"
        assert child.data.params["partition"] == summary.partition
        assert child.data.params["config.planner"] == "rules"
        assert metrics["n_improved"] == (frame["outcome"] == "improved").sum()
        assert metrics["n_quarantined"] == (frame["outcome"] == "quarantined").sum()
        assert metrics["n_clips"] == len(frame)
        assert metrics["alignment_after_median"] == pytest.approx(frame["alignment_after"].median())
        assert metrics["seconds_per_clip_mean"] == pytest.approx(frame["seconds"].mean())
        assert metrics["gx_success"] == float(summary.gate["success"])
        top = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"results.parquet", "results.csv", "plots", "gx", "spectrograms"} <= top
        assert {a.path for a in client.list_artifacts(child.info.run_id, "plots")} == {
            "plots/alignment_hist.png",
            "plots/sync_hist.png",
        }
        assert {a.path for a in client.list_artifacts(child.info.run_id, "gx")} == {
            "gx/gate.json",
            "gx/validation.json",
        }

    assert (
        by_part["part-00001"]
        .data.tags["avalign.gx_failed"]
        .startswith("outcome: quarantined share")
    )
    # given PNGs are logged as they are; without them the best improved clips are drawn
    assert [
        a.path for a in client.list_artifacts(by_part["part-00001"].info.run_id, "spectrograms")
    ] == ["spectrograms/given.png"]
    drawn = [
        a.path for a in client.list_artifacts(by_part["part-00000"].info.run_id, "spectrograms")
    ]
    assert drawn == ["spectrograms/part-00000-clip0.png", "spectrograms/part-00000-clip1.png"]


def test_a_partition_without_results_is_logged_as_failed_and_the_rest_goes_on(tmp_path):
    from mlflow.tracking import MlflowClient

    good = _summary(tmp_path, "part-00000", ["improved", "kept_original"], success=True)
    lost = PartitionSummary(
        "part-00009", str(tmp_path / "nowhere" / "results.parquet"), {"success": False}, False
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    parent_id = log_rebuild(
        uri, run_name="r2", params={}, partitions=[good, lost], spectrograms_per_partition=0
    )

    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(parent_id).data.metrics["n_partitions_failed"] == 1
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
    )
    status = {c.data.tags["avalign.partition"]: c.info.status for c in children}
    assert status == {"part-00000": "FINISHED", "part-00009": "FAILED"}


def test_partition_metrics_ignore_missing_scores():
    frame = pd.DataFrame(
        {
            "outcome": ["improved", "quarantined", "kept_original"],
            "alignment_before": [0.2, None, 0.6],
            "alignment_after": [0.8, None, 0.6],
            "seconds": [1.0, 0.5, 3.0],
        }
    )
    m = partition_metrics(frame)
    assert (m["n_clips"], m["n_improved"], m["n_quarantined"], m["n_kept_original"]) == (3, 1, 1, 1)
    assert m["alignment_before_mean"] == pytest.approx(0.4)
    assert m["alignment_gain_mean"] == pytest.approx(0.3)
    assert m["alignment_after_p10"] == pytest.approx(0.62)  # linear interpolation
    assert m["seconds_per_clip_median"] == 1.0
    assert "sync_before_mean" not in m  # no column, no metric


def test_default_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = default_tracking_uri()
    assert uri.startswith("sqlite:///") and uri.endswith("/var/mlflow/mlflow.db")
    assert Path(uri[len("sqlite:///") :]).parent.is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_tracking_uri() == "http://mlflow:5000"


_START_TOGETHER = """
import sys, time
from avalign.tracking.runs import mlflow_client
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
client = mlflow_client(sys.argv[1])
print(len(client.search_experiments()))
"""


def test_processes_starting_together_on_a_fresh_sqlite_store_all_succeed(tmp_path):
    """Without the store lock, 4 of 6 such processes failed on MLflow's schema migrations."""
    import os
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    start = time.time() + 10.0  # after every interpreter has imported mlflow
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _START_TOGETHER, uri, str(start)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    assert all(out.strip() == "1" for out, _ in outs)  # the store works: its Default experiment
