"""The distributed profile for real: Airflow on PostgreSQL, CeleryExecutor on Redis, 2 Celery
workers (separate processes), a shared Triton behind the ``triton`` pool, MLflow on PostgreSQL.

The reference is the same rebuild run in one process (the DAG's task bodies, in order). The
distributed run must give the same outcome per clip and the same output checksums; so must a run
during which the worker holding a partition is SIGKILLed mid-partition (retried elsewhere, nothing
partial visible, nothing duplicated). Uses its own database names; drops them afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from avalign import tasks
from avalign.agent.verify import verify_dataset
from avalign.data import storage

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(1800)]
LENIENT_GATE = {"max_quarantined_share": 1.0, "min_improved_or_passed_share": 0.0}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from avalign.data.dataset import build_dataset

    root = tmp_path_factory.mktemp("dist_ds")
    build_dataset(str(root), partitions=2, clips_per_partition=3, duration_s=4.0, seed=3, progress=None)
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from avalign.distributed import DistributedConfig, Stack, drop_databases

    pytest.importorskip("celery")
    config = DistributedConfig(home=tmp_path_factory.mktemp("dist_home"), name=f"avtest_{uuid.uuid4().hex[:8]}")
    try:
        with Stack(config, progress=print) as running:
            yield running
    finally:
        drop_databases(config)


def _conf(dataset: Path, out: Path, triton_url: str) -> dict:
    return {"dataset_uri": str(dataset), "output_uri": str(out), "triton_url": triton_url, **LENIENT_GATE}


def _single_process(conf: dict, run_id: str) -> None:
    """The reference: every task body of the DAG, in order, in this process."""
    spec = tasks.resolve_spec(conf, run_id)
    items = tasks.list_partition_manifests(tasks.ingest_if_raw(spec, progress=lambda m: None)["dataset_uri"])
    for item in items:
        run = tasks.align_partition(item, spec, progress=lambda m: None)
        tasks.publish(tasks.gate_partition(run, spec), spec)


def _fingerprint(out: Path) -> dict[str, dict]:
    """Per published partition: per clip (outcome, output checksum); plus the content checksum."""
    found = {}
    for pointer in sorted((out / "published").glob("*.json")):
        doc = json.loads(pointer.read_text())
        table = pd.read_parquet(doc["results_uri"])
        found[doc["partition"]] = {"clips": {r.clip_id: (r.outcome, r.output_sha256) for r in table.itertuples()},
                                   "content": doc["content_sha256"], "counts": doc["counts"]}
    return found


@pytest.fixture(scope="module")
def reference(dataset, triton_server, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("single") / "out"
    _single_process(_conf(dataset, out, triton_server.grpc_url), "manual__single_process")
    return _fingerprint(out)


def test_distributed_run_equals_the_single_process_run(stack, dataset, triton_server, reference, tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    run_id = stack.trigger(_conf(dataset, out, triton_server.grpc_url))
    assert stack.wait(run_id, timeout_s=900) == "success", stack.log_tail("scheduler")
    print(f"\ndistributed run (2 workers, 2 partitions x 3 clips): {time.perf_counter() - t0:.1f}s")

    assert len(reference) == 2 and _fingerprint(out) == reference
    assert verify_dataset(str(out), progress=lambda m: None).ok
    tis = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == "align_partition"]
    assert sorted(ti["map_index"] for ti in tis) == [0, 1] and {ti["pool"] for ti in tis} == {"triton"}
    # both Celery workers took work: the run was really distributed
    for index in (1, 2):
        assert "execute_workload" in (stack.logs / f"worker{index}.log").read_text(errors="replace"), index
    # MLflow on PostgreSQL recorded the rebuild
    from mlflow.tracking import MlflowClient

    spec = stack.xcom(run_id, "prepare")
    assert spec["tracking_uri"].startswith("postgresql")
    client = MlflowClient(spec["tracking_uri"])
    experiment = client.get_experiment_by_name("av_align")
    runs = client.search_runs([experiment.experiment_id], f"params.run_id = '{spec['run_id']}'")
    assert runs and all(r.info.status == "FINISHED" for r in runs)


def test_a_worker_killed_mid_partition_is_retried_elsewhere(stack, dataset, triton_server, reference, tmp_path):
    out = tmp_path / "out"
    run_id = stack.trigger(_conf(dataset, out, triton_server.grpc_url))
    stage_root = out / "runs" / tasks.rebuild_id(run_id)
    victim, deadline = None, time.monotonic() + 600
    while victim is None:  # mid-partition: its first clip's trace is written, the partition is not done
        assert time.monotonic() < deadline, stack.task_states(run_id)
        for ti in stack.task_instances(run_id):
            if ti["task_id"] != "align_partition" or ti["state"] != "running":
                continue
            stage = stage_root / f"part-{ti['map_index']:05d}"
            if list((stage / "traces").glob("*.json")) and not (stage / "_SUCCESS").exists():
                victim = (ti, stack.worker_running(ti["id"]))
                break
        time.sleep(0.5)
    ti, worker = victim
    assert worker is not None
    killed = stack.kill_worker(worker)
    print(f"\nkilled worker{worker} ({len(killed)} processes) during align_partition[{ti['map_index']}]")
    t0 = time.perf_counter()
    assert stack.wait(run_id, timeout_s=900) == "success", stack.log_tail("scheduler")
    print(f"run finished {time.perf_counter() - t0:.0f}s after the kill")
    stack.start_worker(worker)

    retried = next(t for t in stack.task_instances(run_id)
                   if t["task_id"] == "align_partition" and t["map_index"] == ti["map_index"])
    assert retried["try_number"] >= 2 and retried["state"] == "success"
    assert _fingerprint(out) == reference  # same outcomes and checksums: nothing lost or duplicated
    assert verify_dataset(str(out), progress=lambda m: None).ok
    for partition in reference:
        staged = sorted(p.name for p in (stage_root / partition / "clips").iterdir())
        assert staged == sorted(f"{c}.mp4" for c, (o, _) in reference[partition]["clips"].items() if o == "improved")
        assert not list((stage_root / partition).rglob(".*.tmp"))  # no torn temp files left behind
    assert storage.list_files(str(out / "published")) == sorted(str(p) for p in (out / "published").glob("*.json"))
