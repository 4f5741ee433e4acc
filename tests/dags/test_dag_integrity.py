"""The av_align DAG file parses fast, imports nothing heavy, and has the promised shape.

Parsing runs in a fresh interpreter with the repository's Airflow environment pointed at an empty
AIRFLOW_HOME, exactly as the DAG processor would import it; the subprocess reports what it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avalign.orchestration import airflow_env

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "great_expectations", "avalign", "tritonclient", "transformers", "pandas")

PROBE = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag

t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
wall = time.perf_counter() - t0
dag = bag.dags.get("av_align")
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
       "parse_s": max((s.duration.total_seconds() for s in bag.dagbag_stats), default=None),
       "wall_s": wall, "modules": sorted(sys.modules)}
if dag is not None:
    out.update(
        type=f"{type(dag).__module__}.{type(dag).__name__}",
        catchup=dag.catchup, schedule=str(dag.schedule), max_active_runs=dag.max_active_runs,
        params={k: dag.params.get_param(k).value for k in dag.params},
        tasks={t.task_id: {"mapped": bool(getattr(t, "is_mapped", False)), "pool": t.pool,
                           "pool_slots": t.pool_slots, "downstream": sorted(t.downstream_task_ids),
                           "outlets": [{"name": o.name, "uri": o.uri} for o in t.outlets],
                           "map_index_template": getattr(t, "map_index_template", None),
                           "multiple_outputs": getattr(t, "multiple_outputs", None)}
               for t in dag.tasks})
print("PROBE:" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, **airflow_env(REPO_ROOT, home=home)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT / "dags" / "av_align.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE:")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("PROBE:"):])
    result["home"] = home
    return result


def test_parses_without_import_errors_into_a_task_sdk_dag(parsed):
    assert parsed["import_errors"] == {}
    assert parsed["type"] == "airflow.sdk.definitions.dag.DAG"


def test_parse_is_fast(parsed):
    assert parsed["parse_s"] < 2.0, parsed["parse_s"]


def test_nothing_heavy_is_imported_at_parse(parsed):
    heavy = [m for m in parsed["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == []


def test_parsing_never_touches_the_metadata_db(parsed):
    assert not (parsed["home"] / "airflow.db").exists()


def test_schedule_catchup_and_single_active_run(parsed):
    assert parsed["catchup"] is False
    assert parsed["schedule"] == "@daily"
    assert parsed["max_active_runs"] == 1


def test_tasks_and_their_order(parsed):
    tasks = parsed["tasks"]
    assert set(tasks) == {"prepare", "ingest", "list_partitions", "align_partition", "validate_partition",
                          "publish_partition", "announce", "log_to_mlflow"}
    assert tasks["prepare"]["downstream"] == sorted(
        ["ingest", "list_partitions", "align_partition", "validate_partition", "publish_partition",
         "announce", "log_to_mlflow"])
    assert tasks["ingest"]["downstream"] == ["list_partitions"]
    assert tasks["list_partitions"]["downstream"] == ["align_partition"]
    assert tasks["align_partition"]["downstream"] == ["validate_partition"]
    assert tasks["validate_partition"]["downstream"] == ["publish_partition"]
    assert tasks["publish_partition"]["downstream"] == ["announce", "log_to_mlflow"]


def test_partition_tasks_are_mapped_and_align_uses_the_triton_pool(parsed):
    tasks = parsed["tasks"]
    for name in ("align_partition", "validate_partition", "publish_partition"):
        assert tasks[name]["mapped"], name
        assert tasks[name]["map_index_template"] == "{{ partition }}"
    assert (tasks["align_partition"]["pool"], tasks["align_partition"]["pool_slots"]) == ("triton", 1)
    assert not tasks["prepare"]["mapped"] and tasks["prepare"]["pool"] == "default_pool"


def test_results_travel_as_one_xcom_each(parsed):
    # A `-> dict` return annotation would make TaskFlow push every key as its own XCom.
    assert {name for name, t in parsed["tasks"].items() if t["multiple_outputs"]} == set()


def test_only_announce_has_the_aligned_asset_outlet(parsed):
    with_outlets = {name: t["outlets"] for name, t in parsed["tasks"].items() if t["outlets"]}
    assert with_outlets == {"announce": [{"name": "av_aligned", "uri": "avalign://aligned/"}]}


def test_params_leave_config_defaults_to_alignconfig(parsed):
    params = parsed["params"]
    assert set(params) >= {"dataset_uri", "output_uri", "partitions", "max_cycles", "alignment_threshold",
                           "sync_threshold", "triton_url", "mlflow_tracking_uri", "max_quarantined_share",
                           "min_improved_or_passed_share", "rebuild_id"}
    for name in ("max_cycles", "alignment_threshold", "sync_threshold", "max_quarantined_share",
                 "min_improved_or_passed_share", "mlflow_tracking_uri", "rebuild_id"):
        assert params[name] is None, name
    assert params["partitions"] == [] and params["triton_url"] == ""
    assert params["dataset_uri"] and params["output_uri"]
