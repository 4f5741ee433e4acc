"""The av_train_eval DAG parses like the DAG processor would, imports nothing heavy, runs on the
avalign://aligned asset; and its spec resolution turns an asset event into the dataset to use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avalign.orchestration import airflow_env

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "avalign", "sklearn", "tritonclient", "pandas", "numpy", "matplotlib")

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("av_train_eval")
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "modules": sorted(sys.modules),
       "parse_s": max((s.duration.total_seconds() for s in bag.dagbag_stats), default=None)}
if dag is not None:
    out.update(
        schedule=str(dag.schedule), catchup=dag.catchup, max_active_runs=dag.max_active_runs,
        assets=[{"name": a.name, "uri": a.uri}
                for a in getattr(dag.timetable.asset_condition, "objects", [dag.timetable.asset_condition])],
        params={k: dag.params.get_param(k).value for k in dag.params},
        tasks={t.task_id: {"mapped": bool(getattr(t, "is_mapped", False)), "downstream": sorted(t.downstream_task_ids)}
               for t in dag.tasks})
print("PROBE:" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, **airflow_env(REPO_ROOT, home=home)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT / "dags" / "av_train_eval.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE:")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("PROBE:"):])
    out["home"] = home
    return out


def test_parses_without_errors_and_without_heavy_imports(parsed):
    assert parsed["import_errors"] == {}
    assert [m for m in parsed["modules"] if m.split(".")[0] in HEAVY] == []
    assert parsed["parse_s"] < 2.0
    assert not (parsed["home"] / "airflow.db").exists()


def test_scheduled_on_the_aligned_asset(parsed):
    assert [a["uri"].rstrip("/") for a in parsed["assets"]] == ["avalign://aligned"]
    assert parsed["assets"][0]["name"] == "av_aligned"
    assert parsed["catchup"] is False and parsed["max_active_runs"] == 1


def test_params_and_task_shape(parsed):
    params = parsed["params"]
    assert params["variants"] == ["raw", "aligned", "clean"] and params["seeds"] == [0, 1, 2]
    assert params["epochs"] >= 1 and params["device"] == "auto"
    tasks = parsed["tasks"]
    assert tasks["train_eval"]["mapped"] is True
    assert tasks["summarize"]["downstream"] == ["register"]
    assert "train_eval" in tasks["prepare"]["downstream"] and "prepare" in tasks["resolve"]["downstream"]


def test_resolve_spec_takes_the_dataset_from_the_asset_event(tmp_path):
    from avalign.representation.tasks import resolve_spec

    event = {"output_uri": "s3://bucket/aligned", "run_id": "scheduled__2026", "partitions": ["part-00001"]}
    spec = resolve_spec({"variants": ["raw", "aligned"], "seeds": [1], "epochs": 3, "device": "cpu",
                         "mlflow_tracking_uri": f"sqlite:///{tmp_path}/m.db"}, [event], "run__1")
    assert spec["source"] == "published" and spec["output_uri"] == "s3://bucket/aligned"
    assert spec["partitions"] == ["part-00001"] and spec["av_align_run_id"] == "scheduled__2026"
    assert spec["variants"] == ["raw", "aligned"] and spec["seeds"] == [1] and spec["epochs"] == 3
    manual = resolve_spec({"source": "procedural", "mlflow_tracking_uri": "sqlite:///x.db"}, [], "manual__1")
    assert manual["source"] == "procedural" and manual["output_uri"] is None
    with pytest.raises(ValueError):
        resolve_spec({"variants": ["nope"], "mlflow_tracking_uri": "sqlite:///x.db"}, [], None)
