"""A real backfill of av_align over two past days, run by a real scheduler (Airflow 3.3).

Airflow 3 executes backfills in the scheduler, and every task talks to the api-server's execution
API, so this starts both (LocalExecutor, SQLite) in a throw-away AIRFLOW_HOME, on free ports. The
DAG is unpaused with ``[scheduler] use_job_schedule = False`` so only the backfill's runs exist.
Each task runs in its own process here (unlike `airflow dags test`), which is what production does.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from avalign.orchestration import airflow_cli, airflow_env, backfill_command, ensure_airflow_db
from avalign.serving.launcher import free_port

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITION = "part-00000"
DATES = ("2026-01-01", "2026-01-02")


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler_env(tmp_path_factory):
    """A metadata DB, an api-server and a scheduler sharing one environment; stopped afterwards."""
    pytest.importorskip("avalign.agent.partition")
    home = tmp_path_factory.mktemp("backfill") / "airflow"
    api_port = free_port()
    env = {**os.environ, **airflow_env(REPO_ROOT, home=home),
           "AVALIGN_VAR": str(home.parent / "var"),
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
           "AIRFLOW__CORE__PARALLELISM": "2"}
    ensure_airflow_db(env)
    airflow_cli(["dags", "reserialize"], env, check=True)
    airflow_cli(["dags", "unpause", "av_align"], env, check=True)
    procs = [_start(["api-server", "--host", "127.0.0.1", "--port", str(api_port)], env, home / "api.log"),
             _start(["scheduler"], env, home / "scheduler.log")]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (home / "api.log").read_text()[-3000:]
                assert all(p.poll() is None for p in procs), "api-server or scheduler exited"
                time.sleep(1)
        yield env, home
    finally:
        for proc in procs:
            _stop(proc)


def test_backfill_rebuilds_each_past_day(scheduler_env, triton_server, tmp_path):
    env, home = scheduler_env
    from avalign.data.dataset import build_dataset

    build_dataset(str(tmp_path / "ds"), partitions=1, clips_per_partition=3, duration_s=2.0, seed=0, progress=None)
    out = tmp_path / "out"
    conf = {"dataset_uri": str(tmp_path / "ds"), "output_uri": str(out), "triton_url": triton_server.grpc_url,
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "max_quarantined_share": 1.0, "min_improved_or_passed_share": 0.0}
    t0 = time.perf_counter()
    # the scheduler writes as the runs are created: SQLite may fail the CLI's write at once
    airflow_cli(backfill_command(DATES[0], DATES[-1], conf), env, check=True, lock_retries=3)

    db_path = home / "airflow.db"
    deadline = time.monotonic() + 1200
    while True:
        with sqlite3.connect(db_path) as db:
            runs = db.execute("select run_id, state from dag_run where run_type = 'backfill' order by logical_date"
                              ).fetchall()
        if len(runs) == len(DATES) and all(state in ("success", "failed") for _, state in runs):
            break
        assert time.monotonic() < deadline, f"backfill still running: {runs}"
        time.sleep(5)
    print(f"\nbackfill of {len(DATES)} days: {time.perf_counter() - t0:.0f}s")

    assert [state for _, state in runs] == ["success"] * len(DATES), (home / "scheduler.log").read_text()[-4000:]
    assert [run_id for run_id, _ in runs] == [f"backfill__{d}T00:00:00+00:00" for d in DATES]
    for day in DATES:
        assert (out / "runs" / f"backfill__{day}T00_00_00_00_00" / PARTITION / "results.parquet").is_file()
    with sqlite3.connect(db_path) as db:
        pools = {pool for (pool,) in db.execute("select distinct pool from task_instance"
                                                " where task_id = 'align_partition'")}
        spans = db.execute("select start_date, end_date from dag_run where run_type = 'backfill'"
                           " order by logical_date").fetchall()
    assert pools == {"triton"}
    # one date at a time, oldest first (backfill_command's --max-active-runs 1): the latest publishes last
    assert spans[1][0] >= spans[0][1], spans
    pointer = json.loads((out / "published" / f"{PARTITION}.json").read_text())
    first, last = (f"backfill__{d}T00_00_00_00_00" for d in (DATES[0], DATES[-1]))
    fingerprints = [_fingerprint(out / "runs" / run / PARTITION / "results.parquet") for run in (first, last)]
    # Publishing is content-idempotent: a later day that rebuilt the same content publishes nothing
    # new (the earlier pointer stays); one that changed anything publishes last.
    assert pointer["run_id"] == (first if fingerprints[0] == fingerprints[1] else last)


def _fingerprint(results: Path) -> dict:
    import pandas as pd

    table = pd.read_parquet(results)
    return {r.clip_id: (r.outcome, r.output_sha256) for r in table.itertuples()}
