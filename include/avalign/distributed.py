"""The distributed profile: the same ``av_align`` DAG on CeleryExecutor, as a team runs it.

* Airflow's metadata DB on PostgreSQL (``<name>_airflow``), MLflow tracking on PostgreSQL
  (``<name>_mlflow``), both created when missing;
* CeleryExecutor with Redis as the broker (result backend on PostgreSQL) and ``workers`` Celery
  workers, each its own process (and process group) with concurrency 1;
* one shared Triton (``triton_url`` in every run's conf) whose concurrent callers the ``triton``
  pool caps (``triton_pool_slots``);
* an api-server (the workers' execution API and the UI), a scheduler and a dag-processor.

Services are addressed by environment (never credentials in code): ``AVALIGN_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432``, trust auth on loopback) and ``AVALIGN_REDIS_URL``
(default ``redis://127.0.0.1:6379/0``). A production deployment puts passwords in those URLs
through its secrets backend; Airflow masks connection passwords in task logs. The api-server's
JWT secret is drawn per stack.

Everything runs through the ``airflow`` CLI in subprocesses: this module imports no Airflow. Use::

    with Stack(DistributedConfig(home=Path("var/distributed"))) as stack:
        run_id = stack.trigger(conf)
        state = stack.wait(run_id)

or ``python -m avalign distributed`` (``make distributed``), documented in docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from avalign.credentials import redact_url
from avalign.errors import AvalignError
from avalign.orchestration import DAG_ID, TRITON_POOL, TRITON_POOL_DESCRIPTION, REPO_ROOT, airflow_cli, airflow_env

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FINISHED = ("success", "failed")


@dataclass
class DistributedConfig:
    """Where the stack keeps its state and how big it is."""

    home: Path
    name: str = "avalign"  # database names <name>_airflow / <name>_mlflow
    workers: int = 2
    triton_pool_slots: int = 2
    pg_url: str = field(default_factory=lambda: os.environ.get("AVALIGN_PG_URL", DEFAULT_PG_URL))
    redis_url: str = field(default_factory=lambda: os.environ.get("AVALIGN_REDIS_URL", DEFAULT_REDIS_URL))
    heartbeat_timeout_s: int = 30  # a task whose worker died is failed (then retried) after this
    repo_root: Path = REPO_ROOT

    @property
    def airflow_db(self) -> str:
        return f"{self.name}_airflow"

    @property
    def mlflow_db(self) -> str:
        return f"{self.name}_mlflow"

    def database_url(self, database: str, driver: str = "postgresql") -> str:
        parts = urlsplit(self.pg_url)
        return urlunsplit((driver, parts.netloc, f"/{database}", "", ""))

    @property
    def queue(self) -> str:
        return f"{self.name}_tasks"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.database_url(self.mlflow_db, "postgresql+psycopg2")


def ensure_databases(config: DistributedConfig) -> list[str]:
    """Create the Airflow and MLflow databases when missing; returns the ones created."""
    import psycopg2

    try:
        conn = psycopg2.connect(config.database_url("postgres"), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise AvalignError(f"PostgreSQL at {redact_url(config.pg_url)} is not reachable: {exc}".strip()) from exc
    created = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in (config.airflow_db, config.mlflow_db):
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{name}"')
                    created.append(name)
    finally:
        conn.close()
    return created


def drop_databases(config: DistributedConfig) -> None:
    """Remove the profile's databases (tests use their own names and clean up)."""
    import psycopg2

    conn = psycopg2.connect(config.database_url("postgres"), connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in (config.airflow_db, config.mlflow_db):
                cur.execute(f'drop database if exists "{name}" with (force)')
    finally:
        conn.close()


def check_redis(url: str) -> None:
    """Fail early, with the URL, when the broker does not answer."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise AvalignError(f"Redis broker at {redact_url(url)} is not reachable: {exc}") from exc


def profile_env(config: DistributedConfig, api_port: int, jwt_secret: str) -> dict[str, str]:
    """The environment every process of the stack shares (only Airflow/avalign variables)."""
    home = Path(config.home).resolve()
    env = airflow_env(config.repo_root, home=home / "airflow")
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(max(4, config.workers * 2)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": config.database_url(config.airflow_db, "postgresql+psycopg2"),
        "AIRFLOW__CELERY__BROKER_URL": config.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + config.database_url(config.airflow_db, "postgresql+psycopg2"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        # One Celery queue per profile: stacks sharing a Redis never take each other's tasks.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": config.queue,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # loopback only; see docs/security.md
        # Runs come from triggers (UI, CLI, backfill), not from the @daily timetable.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(config.heartbeat_timeout_s),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "0",
        "AVALIGN_VAR": str(home / "var"),
        "MLFLOW_TRACKING_URI": config.mlflow_tracking_uri,
        "OMP_NUM_THREADS": "1",  # one core per worker: the workers are the parallelism
    })
    return env


class Stack:
    """api-server + scheduler + dag-processor + N Celery workers on one environment."""

    def __init__(self, config: DistributedConfig, *, progress: Callable[[str], None] = print) -> None:
        from avalign.serving.launcher import free_port

        self.config = config
        self.progress = progress
        self.api_port = free_port()
        self.env = {**os.environ, **profile_env(config, self.api_port, secrets.token_hex(32))}
        self.logs = Path(config.home).resolve() / "logs"
        self.services: dict[str, subprocess.Popen] = {}
        self.workers: dict[int, subprocess.Popen] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Stack":
        t0 = time.perf_counter()
        self.logs.mkdir(parents=True, exist_ok=True)
        check_redis(self.config.redis_url)
        created = ensure_databases(self.config)
        if created:
            self.progress(f"created databases {created}")
        self.cli(["db", "migrate"], timeout_s=600)
        self.cli(["pools", "set", TRITON_POOL, str(self.config.triton_pool_slots), TRITON_POOL_DESCRIPTION])
        self.cli(["dags", "reserialize"], timeout_s=300)
        self.cli(["dags", "unpause", DAG_ID])
        self.services["api-server"] = self._spawn("api-server", ["api-server", "--host", "127.0.0.1",
                                                                 "--port", str(self.api_port)])
        self.services["scheduler"] = self._spawn("scheduler", ["scheduler"])
        self.services["dag-processor"] = self._spawn("dag-processor", ["dag-processor"])
        for i in range(1, self.config.workers + 1):
            self.start_worker(i)
        self._wait_api()
        self.progress(f"distributed stack up in {time.perf_counter() - t0:.0f}s: api-server "
                      f"http://127.0.0.1:{self.api_port}, {self.config.workers} Celery workers, "
                      f"pool {TRITON_POOL}={self.config.triton_pool_slots}")
        return self

    def stop(self) -> None:
        for i in list(self.workers):
            self.stop_worker(i)
        for name in ("scheduler", "dag-processor", "api-server"):
            proc = self.services.pop(name, None)
            if proc is not None:
                _terminate(proc)

    def __enter__(self) -> "Stack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_worker(self, index: int) -> subprocess.Popen:
        proc = self._spawn(f"worker{index}", ["celery", "worker", "--concurrency", "1", "--skip-serve-logs",
                                              "--celery-hostname", f"{self.config.name}-worker{index}@%h",
                                              "--queues", self.config.queue,
                                              "--pid", str(self.logs / f"worker{index}.pid")])
        self.workers[index] = proc
        return proc

    def stop_worker(self, index: int) -> None:
        proc = self.workers.pop(index, None)
        if proc is not None:
            _terminate(proc)

    def kill_worker(self, index: int) -> list[int]:
        """SIGKILL a worker with every process under it, as a lost host would: the Celery worker,
        its pool, the task supervisors and the task runners (which live in their own process
        groups). Returns the pids killed."""
        import psutil

        proc = self.workers.pop(index)
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)
        return [p.pid for p in tree]

    def worker_running(self, ti_id: str) -> int | None:
        """Which worker's process tree runs task instance ``ti_id`` (Airflow titles its task
        processes ``airflow supervisor: <ti id>`` / ``airflow worker -- <ti id>``)."""
        import psutil

        for index, proc in self.workers.items():
            try:
                tree = psutil.Process(proc.pid).children(recursive=True)
                if any(ti_id in " ".join(p.cmdline()) for p in tree):
                    return index
            except psutil.Error:
                continue
        return None

    # -- runs (through the api-server's REST API, as the UI and any client would) ---------------
    def trigger(self, conf: Mapping[str, Any], *, run_id: str | None = None) -> str:
        run_id = run_id or f"manual__distributed_{int(time.time() * 1000)}"
        self.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                 {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)})
        return run_id

    def wait(self, run_id: str, *, timeout_s: float = 1800.0, poll_s: float = 2.0) -> str:
        """Block until the DAG run finishes; returns its state. Logs task-state changes."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, str] = {}
        while True:
            self._check_services()
            states = self.task_states(run_id)
            changed = {k: v for k, v in states.items() if last.get(k) != v}
            if changed:
                self.progress("  " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
                last = states
            state = self.run_state(run_id)
            if state in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AvalignError(f"DAG run {run_id} still {state} after {timeout_s:.0f}s; logs in {self.logs}")
            time.sleep(poll_s)

    def run_state(self, run_id: str) -> str:
        return str(self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").get("state"))

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000")
                    .get("task_instances", []))

    def task_states(self, run_id: str) -> dict[str, str]:
        """``task_id[map_index]`` → state for every task instance of the run (latest try)."""
        states = {}
        for ti in self.task_instances(run_id):
            index = ti.get("map_index")
            key = ti["task_id"] + (f"[{index}]" if index not in (None, -1) else "")
            states[key] = str(ti.get("state"))
        return states

    def xcom(self, run_id: str, task_id: str, map_index: int = -1) -> Any:
        doc = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                              f"return_value?map_index={map_index}&deserialize=true")
        return doc.get("value")

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One REST call to the api-server (a token from the simple auth manager, loopback only)."""
        if not getattr(self, "_token", None):
            with urllib.request.urlopen(f"{self.api_url}/auth/token", timeout=30) as r:
                self._token = json.load(r)["access_token"]
        request = urllib.request.Request(
            f"{self.api_url}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise AvalignError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def cli(self, args: list[str], *, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
        return airflow_cli(args, self.env, timeout_s=timeout_s, check=True)

    # -- internals ---------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "airflow", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_api(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        while True:
            self._check_services()
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AvalignError(f"api-server not healthy after {timeout_s:.0f}s: {self.log_tail('api-server')}")
                time.sleep(1)

    def _check_services(self) -> None:
        for name, proc in self.services.items():
            if proc.poll() is not None:
                raise AvalignError(f"{name} exited with code {proc.returncode}: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _terminate(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------ command line

def run_profile(*, dataset_uri: str | None, output_uri: str | None, workers: int, name: str,
                keep: bool = False, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """``python -m avalign distributed``: a shared Triton, the stack, one av_align run, a check.

    Without ``dataset_uri`` the demo's sample dataset is used (generated when missing).
    """
    from avalign.agent.verify import format_report, verify_dataset
    from avalign.serving.launcher import TritonServer

    var = Path(REPO_ROOT) / "var"
    dataset = dataset_uri or _sample_dataset(var / "datasets" / "distributed", progress)
    out = output_uri or str(var / "aligned" / "distributed")
    config = DistributedConfig(home=var / "distributed", name=name, workers=workers)
    t0 = time.perf_counter()
    with TritonServer(workspace=var / "triton", instances=workers) as triton, \
            Stack(config, progress=progress) as stack:
        progress(f"shared tritonserver at {triton.grpc_url} ({workers} instances per model)")
        run_id = stack.trigger({"dataset_uri": dataset, "output_uri": out, "triton_url": triton.grpc_url})
        progress(f"triggered av_align run {run_id}: UI at {stack.api_url}/dags/{DAG_ID}")
        state = stack.wait(run_id)
        report = verify_dataset(out, progress=lambda m: None)
        progress(f"run {run_id}: {state} in {time.perf_counter() - t0:.0f}s")
        progress(format_report(report))
        if keep:
            progress(f"stack kept running: UI {stack.api_url} (Ctrl-C stops it)")
            try:
                while True:
                    time.sleep(5)
                    stack._check_services()
            except KeyboardInterrupt:
                pass
    return {"run_id": run_id, "state": state, "output_uri": out, "verified": report.ok,
            "seconds": round(time.perf_counter() - t0, 1)}


def compare_workers(*, partitions: int = 4, clips: int = 24, duration_s: float = 4.0, name: str = "avalign_scale",
                    out_json: Path | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Throughput of the same rebuild with 1 worker and with 2 workers, on one stack and one Triton.

    An unmeasured warm-up run (one partition, both workers) comes first. Each run gets its own
    output URI; seconds are the DAG run's wall time from trigger to success (fixed tasks
    included); the align_partition durations are listed too. Triton runs 2 instances per model.
    """
    from avalign.data.dataset import build_dataset
    from avalign.serving.launcher import TritonServer

    var = Path(REPO_ROOT) / "var"
    root = var / "distributed_bench"
    dataset = root / f"dataset_{partitions}x{clips}"
    if not (dataset / "manifests").is_dir():
        progress(f"generating {partitions} partitions x {clips} clips of {duration_s:g} s into {dataset}")
        build_dataset(str(dataset), partitions=partitions, clips_per_partition=clips, duration_s=duration_s,
                      seed=5, progress=None)
    config = DistributedConfig(home=root / "home", name=name, workers=2, triton_pool_slots=2)
    results: dict[str, Any] = {"partitions": partitions, "clips_per_partition": clips, "duration_s": duration_s,
                               "loadavg_before": os.getloadavg(), "runs": {}}
    # One Triton instance per model and worker: a python-backend instance serves one request at a time.
    with TritonServer(workspace=var / "triton", instances=2) as triton, Stack(config, progress=progress) as stack:
        # Warm-up, not measured: first calls warm Triton's BLS path and each worker's caches.
        warm = stack.trigger({"dataset_uri": str(dataset), "output_uri": str(root / f"warmup_{int(time.time())}"),
                              "triton_url": triton.grpc_url, "partitions": ["part-00000"],
                              "max_quarantined_share": 1.0, "min_improved_or_passed_share": 0.0})
        progress(f"warm-up run: {stack.wait(warm, timeout_s=1800)}")
        for n_workers in (1, 2):
            if n_workers == 1:
                stack.stop_worker(2)
            else:
                stack.start_worker(2)
                time.sleep(10)  # let it join the broker before the run
            out = root / f"out_{n_workers}w_{int(time.time())}"
            t0 = time.perf_counter()
            run_id = stack.trigger({"dataset_uri": str(dataset), "output_uri": str(out),
                                    "triton_url": triton.grpc_url, "max_quarantined_share": 1.0,
                                    "min_improved_or_passed_share": 0.0})
            state = stack.wait(run_id, timeout_s=3600)
            wall = time.perf_counter() - t0
            aligns = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == "align_partition"]
            n = partitions * clips
            results["runs"][f"{n_workers}_worker"] = {
                "state": state, "wall_s": round(wall, 1), "clips_per_min": round(60 * n / wall, 2),
                "align_partition_s": sorted(round(float(ti.get("duration") or 0), 1) for ti in aligns)}
            progress(f"{n_workers} worker(s): {state} in {wall:.0f}s ({60 * n / wall:.1f} clips/min)")
    one, two = results["runs"]["1_worker"], results["runs"]["2_worker"]
    results["speedup"] = round(one["wall_s"] / two["wall_s"], 2)
    results["target"] = 1.6
    results["loadavg_after"] = os.getloadavg()
    progress(f"2 workers vs 1: {results['speedup']}x throughput (target >= 1.6x; 2 cores shared by "
             f"Triton, the scheduler, the api-server and the workers)")
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2))
    return results


def _sample_dataset(path: Path, progress: Callable[[str], None]) -> str:
    from avalign.data.dataset import build_dataset
    from avalign.data.manifest import list_partitions

    if not list_partitions(str(path)):
        progress(f"generating a sample dataset at {path} (2 partitions x 8 procedural clips)")
        build_dataset(str(path), partitions=2, clips_per_partition=8, duration_s=4.0, seed=0, progress=None)
    return str(path)
