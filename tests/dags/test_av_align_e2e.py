"""The av_align DAG end to end: `airflow dags test` on a tiny generated dataset, real Triton.

One throw-away Airflow home (SQLite) and four DAG runs, in this order:

A  passing gate, shared Triton          → results per clip, a published pointer, an asset event, MLflow
C  A's conf with rebuild_id = A's id    → the staging is reused, nothing duplicated, no new asset event
B  A's conf again (new Airflow run id)  → the same outputs (sha256): A's pointer stays, no second event
D  impossible gate (1.01), local Triton → the partition stays unpublished with its GX report

The gate of A/B/C is made lenient on purpose: this test checks the DAG's routing, not the
loop's quality (tests/agent/ does that). About 2-4 minutes on the shared 2-core machine.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from avalign.orchestration import airflow_env, ensure_airflow_db, run_dag_test

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITION = "part-00000"
OUTCOMES = {"improved", "kept_original", "quarantined"}
LENIENT_GATE = {"max_quarantined_share": 1.0, "min_improved_or_passed_share": 0.0}
TIMINGS: dict[str, float] = {}


class Airflow:
    """A throw-away Airflow home and the read side of its metadata DB."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = airflow_env(REPO_ROOT, home=home)
        self.env["AVALIGN_VAR"] = str(home.parent / "var")

    def query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return db.execute(sql, args).fetchall()

    def run(self, name: str, conf: dict) -> str:
        """One `airflow dags test`; returns its Airflow run id (the newest run)."""
        t0 = time.perf_counter()
        proc = run_dag_test(conf, self.env, timeout_s=1200)
        TIMINGS[f"dags_test_{name}_s"] = round(time.perf_counter() - t0, 1)
        (self.home / f"dags_test_{name}.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        ((run_id, state),) = self.query(
            "select run_id, state from dag_run where dag_id = 'av_align' order by id desc limit 1")
        assert state == "success"
        return run_id

    def states(self, run_id: str) -> dict[tuple[str, int], str]:
        rows = self.query("select task_id, map_index, state from task_instance where run_id = ?", run_id)
        return {(task, index): state for task, index, state in rows}

    def xcom(self, run_id: str, task_id: str, map_index: int = -1):
        rows = self.query("select value from xcom where run_id = ? and task_id = ? and map_index = ?"
                          " and key = 'return_value'", run_id, task_id, map_index)
        return json.loads(rows[0][0]) if rows else None

    def asset_events(self) -> list[dict]:
        rows = self.query("select e.extra, e.source_run_id from asset_event e join asset a on a.id = e.asset_id"
                          " where a.name = 'av_aligned' order by e.id")
        return [{"extra": json.loads(extra), "run_id": run_id} for extra, run_id in rows]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Airflow:
    pytest.importorskip("avalign.agent.partition")
    af = Airflow(tmp_path_factory.mktemp("e2e") / "airflow")
    TIMINGS.update(ensure_airflow_db(af.env))
    return af


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from avalign.data.dataset import build_dataset

    root = tmp_path_factory.mktemp("dataset")
    assert build_dataset(str(root), partitions=1, clips_per_partition=3, duration_s=2.0, seed=0,
                         progress=None) == [PARTITION]
    return root


@pytest.fixture(scope="module")
def runs(airflow, dataset, triton_server, tmp_path_factory) -> dict:
    """The four DAG runs, in order, with what each left behind."""
    out = tmp_path_factory.mktemp("out")
    conf = {"dataset_uri": str(dataset), "output_uri": str(out / "pass"), "triton_url": triton_server.grpc_url,
            "mlflow_tracking_uri": f"sqlite:///{out / 'mlflow.db'}", **LENIENT_GATE}
    found: dict = {"out": out, "conf": conf}

    found["A"] = airflow.run("A", conf)
    found["A_spec"] = airflow.xcom(found["A"], "prepare")
    found["A_pointer"] = json.loads((out / "pass" / "published" / f"{PARTITION}.json").read_text())
    found["A_events"] = airflow.asset_events()

    found["C"] = airflow.run("C", {**conf, "rebuild_id": found["A_spec"]["run_id"]})
    found["C_events"] = airflow.asset_events()

    found["B"] = airflow.run("B", conf)
    found["B_spec"] = airflow.xcom(found["B"], "prepare")
    found["B_pointer"] = json.loads((out / "pass" / "published" / f"{PARTITION}.json").read_text())

    fail_conf = {**conf, "output_uri": str(out / "fail"), "triton_url": "",
                 "min_improved_or_passed_share": 1.01}
    found["D"] = airflow.run("D", fail_conf)
    found["D_spec"] = airflow.xcom(found["D"], "prepare")
    print("\nav_align e2e timings:", json.dumps(TIMINGS))
    return found


def _results(out_uri: str, run_id: str) -> pd.DataFrame:
    return pd.read_parquet(Path(out_uri) / "runs" / run_id / PARTITION / "results.parquet")


def test_a_run_writes_one_outcome_per_clip(runs, dataset, airflow):
    spec = runs["A_spec"]
    assert spec["run_id"] == runs["A"].replace(":", "_").replace("+", "_")
    manifest = pd.read_parquet(dataset / "manifests" / f"{PARTITION}.parquet")
    table = _results(spec["output_uri"], spec["run_id"])
    assert sorted(table["clip_id"]) == sorted(manifest["clip_id"])
    assert set(table["outcome"]) <= OUTCOMES
    assert set(table["run_id"]) == {spec["run_id"]} and set(table["partition"]) == {PARTITION}
    states = airflow.states(runs["A"])
    assert set(states.values()) == {"success"}, states
    assert (("align_partition", 0)) in states and ("align_partition", 1) not in states
    pool, label = airflow.query("select pool, rendered_map_index from task_instance"
                                " where run_id = ? and task_id = 'align_partition'", runs["A"])[0]
    assert (pool, label) == ("triton", PARTITION)


def test_a_passing_partition_is_published_and_announced(runs):
    spec, pointer = runs["A_spec"], runs["A_pointer"]
    assert pointer["partition"] == PARTITION and pointer["run_id"] == spec["run_id"]
    assert Path(pointer["gx_result_uri"]).is_file()
    assert (events := runs["A_events"]) and events[-1]["run_id"] == runs["A"]
    assert events[-1]["extra"] == {
        "output_uri": spec["output_uri"], "run_id": spec["run_id"], "partitions": [PARTITION],
        "pointers": [str(Path(spec["output_uri"]) / "published" / f"{PARTITION}.json")], "rejected": []}


def test_each_run_is_logged_to_mlflow_with_metrics(runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs["conf"]["mlflow_tracking_uri"])
    experiment = client.get_experiment_by_name("av_align")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`avalign.kind` = 'rebuild'")
    a, b, d = (runs[f"{n}_spec"]["run_id"] for n in "ABD")
    assert sorted(r.data.params["run_id"] for r in parents) == sorted([a, a, b, d])  # C reused A's id
    parent = next(r for r in parents if r.data.params["run_id"] == b)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics, "the parent run has no metrics"
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags["avalign.partition"] for c in children] == [PARTITION]
    assert children[0].data.metrics


def test_rerunning_the_same_rebuild_id_reuses_its_staging_and_announces_nothing(runs, airflow):
    spec = runs["A_spec"]
    assert airflow.xcom(runs["C"], "prepare")["run_id"] == spec["run_id"]
    assert sorted(p.name for p in (Path(spec["output_uri"]) / "runs").iterdir()) == sorted(
        [spec["run_id"], runs["B_spec"]["run_id"]])
    published = airflow.xcom(runs["C"], "publish_partition", 0)
    assert published["reused"] is True and published["already_published"] is True
    assert airflow.states(runs["C"])[("announce", -1)] == "skipped"
    assert runs["C_events"] == runs["A_events"]  # no new asset event


def test_a_fresh_rerun_gives_the_same_outputs_and_one_pointer(runs, airflow):
    a, b = runs["A_pointer"], runs["B_pointer"]
    assert runs["B_spec"]["run_id"] != runs["A_spec"]["run_id"]
    # same content: publishing is idempotent, A's pointer stays and B announces nothing
    assert b == a and airflow.states(runs["B"])[("announce", -1)] == "skipped"
    assert airflow.xcom(runs["B"], "publish_partition", 0)["already_published"] is True
    assert sorted(p.name for p in (Path(runs["conf"]["output_uri"]) / "published").iterdir()) == [
        f"{PARTITION}.json"]
    sha_a = {o["clip_id"]: (o["outcome"], o["sha256"]) for o in a["outputs"]}
    sha_b = {o["clip_id"]: (o["outcome"], o["sha256"]) for o in b["outputs"]}
    assert sha_a == sha_b
    table_a = _results(runs["A_spec"]["output_uri"], runs["A_spec"]["run_id"]).set_index("clip_id")
    table_b = _results(runs["B_spec"]["output_uri"], runs["B_spec"]["run_id"]).set_index("clip_id")
    assert table_a["output_sha256"].to_dict() == table_b["output_sha256"].to_dict()


def test_a_failing_gate_leaves_the_partition_unpublished_with_its_report(runs, airflow):
    spec = runs["D_spec"]
    assert spec["triton_url"] == "" and spec["config"]["min_improved_or_passed_share"] == 1.01
    out = Path(spec["output_uri"])
    assert not (out / "published").exists() or not list((out / "published").iterdir())
    stage = out / "runs" / spec["run_id"] / PARTITION
    assert (stage / "results.parquet").is_file() and (stage / "_SUCCESS").is_file()
    report = json.loads((stage / "gx" / "validation.json").read_text())
    assert report["success"] is False
    gated = airflow.xcom(runs["D"], "validate_partition", 0)
    assert gated["gate"]["success"] is False and gated["gate"]["failed_expectations"]
    states = airflow.states(runs["D"])
    assert states[("publish_partition", 0)] == "success" and states[("announce", -1)] == "skipped"
    assert states[("log_to_mlflow", -1)] == "success"
    assert all(e["extra"]["output_uri"] != str(out) for e in airflow.asset_events())
