"""The Airflow environment comes up from nothing, and a backfill over past dates plans one run per day.

A real backfill is executed by the scheduler (Airflow 3); here the metadata DB, the pool and the
serialized DAG are real and the backfill is a dry run, which lists the runs it would create.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from avalign.orchestration import airflow_cli, airflow_env, backfill_command, ensure_airflow_db

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    env = airflow_env(REPO_ROOT, home=tmp_path_factory.mktemp("airflow"))
    timings = ensure_airflow_db(env)
    assert ensure_airflow_db(env)  # idempotent: a second call on a ready DB succeeds
    print("\nairflow setup timings:", json.dumps(timings))
    return env


def test_db_and_triton_pool_exist(env):
    assert (Path(env["AIRFLOW_HOME"]) / "airflow.db").is_file()
    pools = json.loads(airflow_cli(["pools", "get", "triton", "-o", "json"], env, check=True).stdout)
    assert [(p["pool"], int(p["slots"])) for p in pools] == [("triton", 2)]


def test_backfill_plans_one_run_per_past_day(env):
    airflow_cli(["dags", "reserialize"], env, check=True)
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        assert db.execute("select count(*) from dag where dag_id = 'av_align'").fetchone() == (1,)
        assert db.execute("select count(*) from import_error").fetchone() == (0,)
    proc = airflow_cli(backfill_command("2026-01-01", "2026-01-03", {"output_uri": "/tmp/x"}, dry_run=True),
                       env, check=True)
    planned = [line for line in proc.stdout.splitlines() if line.startswith("| 2026-")]
    assert [line.split()[1] for line in planned] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        assert db.execute("select count(*) from dag_run").fetchone() == (0,)  # a dry run creates nothing
