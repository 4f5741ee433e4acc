"""``make ui``: ``airflow standalone`` on this repository's DAGs with the review plugin, on loopback.

Why a module: the environment is the one ``avalign.orchestration.airflow_env`` builds for
``make demo`` (same ``var/airflow`` metadata DB, so the demo's runs show up), plus what a
long-running deployment needs: every component bound to 127.0.0.1, one base URL that the task
runners' execution API, the extra links and the login redirects agree on, and free ports for the
log servers (8793/8794 may be taken on a shared machine).

Login: Airflow 3's default simple auth manager. The user is ``admin``; its password is generated
on first start into ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from avalign.orchestration import REPO_ROOT, airflow_env, ensure_airflow_db

DEFAULT_PORT = 8080
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` when it can be bound on ``host``, else a port the OS picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port on {host}")


def ui_env(port: int, *, host: str = "127.0.0.1", repo_root: str | Path = REPO_ROOT,
           home: str | Path | None = None, log_ports: tuple[int, int] | None = None) -> dict[str, str]:
    """Environment for ``airflow standalone`` / ``airflow api-server`` serving the review plugin."""
    env = airflow_env(repo_root, home=home)
    base = f"http://{host}:{port}"
    worker_log, trigger_log = log_ports or (free_port(host), free_port(host))
    env.update({
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AVALIGN_REVIEW_ROOTS": os.environ.get("AVALIGN_REVIEW_ROOTS", env["AVALIGN_VAR"]),
    })
    return env


def banner(env: Mapping[str, str]) -> str:
    base = env["AIRFLOW__API__BASE_URL"]
    passwords = Path(env["AIRFLOW_HOME"]) / PASSWORDS_FILE
    return "\n".join([
        f"Airflow UI:       {base}/",
        f"AV Alignment:     {base}/av-review/   (also: Browse > AV Alignment in the UI,",
        "                  and the 'AV Alignment review' link on av_align task instances)",
        "Login:            user 'admin' (simple auth manager, Airflow 3's default); its password is in",
        f"                  {passwords}",
        "                  (written on the first start; `cat` it, the JSON maps user -> password)",
        f"Review roots:     {env['AVALIGN_REVIEW_ROOTS']}   (AVALIGN_REVIEW_ROOTS)",
        "Data:             `make demo` first, so there are runs to review. Ctrl-C stops everything.",
    ])


def run_ui(*, port: int | None = None, host: str = "127.0.0.1", home: str | Path | None = None) -> int:
    """Migrate the DB, print where to log in, then run ``airflow standalone`` until Ctrl-C.

    ``home``: the Airflow home (default ``var/airflow``, the one ``make demo`` records its runs in).
    """
    port = free_port(host, port or DEFAULT_PORT)
    env = ui_env(port, host=host, home=home)
    ensure_airflow_db(env)
    print(banner(env), flush=True)
    # standalone starts each component as ``airflow ...``: this interpreter's bin/ goes first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"],
                            env={**os.environ, **env, "PATH": path}, start_new_session=True)
    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while proc.poll() is None and not stop:
            time.sleep(0.5)
        stop_process_group(proc)
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_process_group(proc: subprocess.Popen) -> None:
    """Ctrl-C for standalone (it shuts its components down on SIGINT), then SIGTERM, then SIGKILL."""
    for sig, grace_s in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
