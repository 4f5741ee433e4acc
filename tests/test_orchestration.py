"""The Airflow environment avalign builds for this repository (no Airflow import, no subprocess)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from avalign.orchestration import REPO_ROOT, airflow_cli, airflow_env, backfill_command


def test_env_points_airflow_at_the_repository():
    env = airflow_env(REPO_ROOT)
    assert env["AIRFLOW_HOME"] == str(REPO_ROOT / "var" / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    # writers wait up to 60 s for SQLite's lock instead of failing after sqlite3's default 5 s
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{REPO_ROOT / 'var' / 'airflow' / 'airflow.db'}?timeout=60")
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[:2] == [str(REPO_ROOT / "include"), str(REPO_ROOT)]  # avalign, then operators/
    assert all(isinstance(v, str) for v in env.values())


def test_home_can_be_moved_and_keeps_inherited_pythonpath(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"/opt/extra{os.pathsep}{REPO_ROOT / 'include'}")
    env = airflow_env(REPO_ROOT, home=tmp_path / "af")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "af")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'af' / 'airflow.db'}?timeout=60"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO_ROOT / "include"), str(REPO_ROOT), "/opt/extra"]
    assert not Path(tmp_path / "af").exists()  # building the env creates nothing


def test_backfill_command_rebuilds_completed_dates():
    args = backfill_command("2026-01-01", "2026-01-03", {"dataset_uri": "s3://b/ds"}, dry_run=True)
    assert args[:2] == ["backfill", "create"]
    assert args[args.index("--dag-id") + 1] == "av_align"
    assert args[args.index("--reprocess-behavior") + 1] == "completed"
    assert args[args.index("--dag-run-conf") + 1] == '{"dataset_uri": "s3://b/ds"}'
    assert args[args.index("--max-active-runs") + 1] == "1"  # one date at a time: the latest publishes last
    assert args[-1] == "--dry-run"
    with pytest.raises(ValueError, match="max_active_runs"):
        backfill_command("2026-01-01", "2026-01-03", max_active_runs=0)


def _completed(rc: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["airflow"], rc, stdout="", stderr=stderr)


def test_a_command_sqlite_locked_runs_again_and_other_failures_do_not(tmp_path, monkeypatch):
    from avalign import orchestration
    from avalign.errors import AvalignError

    env = airflow_env(REPO_ROOT, home=tmp_path / "af")
    locked = _completed(1, "sqlite3.OperationalError: database is locked")
    answers: list[subprocess.CompletedProcess[str]] = []
    calls: list[list[str]] = []
    waits: list[float] = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return answers.pop(0)

    monkeypatch.setattr(orchestration.subprocess, "run", run)
    monkeypatch.setattr(orchestration.time, "sleep", waits.append)
    answers[:] = [locked, locked, _completed(0)]
    assert airflow_cli(["backfill", "create"], env, check=True, lock_retries=3).returncode == 0
    assert len(calls) == 3 and waits == [2.0, 4.0]
    answers[:] = [locked] * 3
    with pytest.raises(AvalignError, match="database is locked"):
        airflow_cli(["backfill", "create"], env, check=True, lock_retries=2)
    calls.clear()
    answers[:] = [_completed(1, "DAG av_align not found")]
    with pytest.raises(AvalignError, match="not found"):
        airflow_cli(["backfill", "create"], env, check=True, lock_retries=3)
    assert len(calls) == 1  # only the lock is worth another try
    calls.clear()
    answers[:] = [locked]
    assert airflow_cli(["dags", "list"], env).returncode == 1 and len(calls) == 1  # no retries asked
