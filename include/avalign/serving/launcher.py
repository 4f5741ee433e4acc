"""Start and stop a real local tritonserver: the binary shipped inside the nvidia-pytriton wheel.

The same model repository runs unchanged on a GPU Triton in production; only the URL changes.
Facts this module encodes (each cost hours to find):

- the python backend stub links ``libpython3.11.so``: this interpreter's LIBDIR must come first
  on ``LD_LIBRARY_PATH``, or Debian's libpython is loaded against pyenv's stdlib and crashes;
- the stub picks up the venv's packages when the venv's ``bin/`` is first on ``PATH``;
- other processes may hold 8000-8002, so we bind 127.0.0.1 on free ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from avalign.errors import ServingError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
INCLUDE_DIR = PACKAGE_DIR.parent
DEFAULT_MODEL_REPOSITORY = PACKAGE_DIR / "model_repository"
DEFAULT_WORKSPACE = Path(os.environ.get("AVALIGN_VAR", INCLUDE_DIR.parent / "var")) / "triton"
ALL_MODELS = ("audio_describer", "visual_describer", "text_embedder", "av_scorer")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _instanced_model(source: Path, target: Path, count: int) -> None:
    """``target``: the model folder ``source`` (entries symlinked) with ``count`` CPU instances."""
    import re

    target.mkdir()
    for entry in source.iterdir():
        if entry.name != "config.pbtxt":
            (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    config = (source / "config.pbtxt").read_text()
    config, n = re.subn(r"count:\s*\d+", f"count: {int(count)}", config)
    if n == 0:
        config += f"\ninstance_group [ {{ kind: KIND_CPU count: {int(count)} }} ]\n"
    (target / "config.pbtxt").write_text(config)


def _pytriton_dist() -> tuple[Path, Path, Path]:
    """(tritonserver dist dir, bundled shared libs dir, python stub for this interpreter)."""
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - the venv always has it
        raise ServingError("nvidia-pytriton is not installed; run `make venv`") from exc
    root = Path(pytriton.__file__).resolve().parent
    dist = root / "tritonserver"
    libs = root.parent / "nvidia_pytriton.libs"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    for path in (dist / "bin" / "tritonserver", libs, stub):
        if not path.exists():
            raise ServingError(f"tritonserver distribution incomplete: {path} is missing")
    return dist, libs, stub


class TritonServer:
    """A local tritonserver process serving a model repository on loopback.

    Usage::

        with TritonServer() as server:
            client = AvalignClient(server.grpc_url)
    """

    def __init__(
        self,
        model_repository: str | Path = DEFAULT_MODEL_REPOSITORY,
        *,
        models: tuple[str, ...] | list[str] | None = None,
        workspace: str | Path = DEFAULT_WORKSPACE,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 600.0,
        verbose: bool = False,
        extra_model_dirs: dict[str, Path] | None = None,
        ports: tuple[int, int, int] | None = None,
        instances: int | None = None,
    ) -> None:
        self.model_repository = Path(model_repository)
        self.models = tuple(models) if models else None
        self.workspace = Path(workspace)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        self.extra_model_dirs = dict(extra_model_dirs or {})
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.fixed_ports = tuple(ports) if ports else None  # (http, grpc, metrics): a restart keeps its URL
        # Instances per model (instance_group count) when the server is shared by several callers:
        # a python-backend instance is one process working one request at a time.
        self.instances = instances
        self.process: subprocess.Popen | None = None
        self.log_path = self.workspace / "tritonserver.log"

    # -- urls -------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    # -- lifecycle --------------------------------------------------------------------------
    def _prepare(self) -> tuple[Path, Path, dict[str, str]]:
        """Copy the server dist with this interpreter's stub, assemble the repository, build env."""
        dist, libs, stub = _pytriton_dist()
        server_dir = self.workspace / "tritonserver"
        if not (server_dir / "bin" / "tritonserver").exists():
            tmp = self.workspace / f"tritonserver.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(dist, tmp, ignore=shutil.ignore_patterns("python_backend_stubs"))
            shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
            os.replace(tmp, server_dir)

        # Repository of symlinks, so a subset of models (or an exported one) can be served.
        repo = self.workspace / f"repository-{os.getpid()}-{id(self)}"
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        sources = {p.name: p for p in self.model_repository.iterdir() if (p / "config.pbtxt").exists()}
        sources.update(self.extra_model_dirs)
        wanted = self.models or tuple(sorted(sources))
        missing = [m for m in wanted if m not in sources]
        if missing:
            raise ServingError(f"models not in repository {self.model_repository}: {missing}")
        for name in wanted:
            if self.instances:
                _instanced_model(sources[name].resolve(), repo / name, self.instances)
            else:
                (repo / name).symlink_to(sources[name].resolve(), target_is_directory=True)
        self.models = tuple(wanted)

        env = os.environ.copy()
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["PYTHONPATH"] = ":".join(p for p in (str(INCLUDE_DIR), env.get("PYTHONPATH", "")) if p)
        # Models must never reach for a hub: every weight ships inside a wheel.
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        return server_dir, repo, env

    def start(self) -> "TritonServer":
        if self.process is not None:
            return self
        self.workspace.mkdir(parents=True, exist_ok=True)
        server_dir, repo, env = self._prepare()
        self._repo = repo
        if self.fixed_ports:
            self.http_port, self.grpc_port, self.metrics_port = self.fixed_ports
        else:
            self.http_port, self.grpc_port, self.metrics_port = (free_port(self.host) for _ in range(3))
        cmd = [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--allow-gpu-metrics=false",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
        ]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServingError(
                    f"tritonserver exited with code {self.process.returncode} during startup;"
                    f" log tail:\n{self._log_tail()}"
                )
            try:
                if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        raise ServingError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f}s; log tail:\n{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout_s)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_repo", None):
            shutil.rmtree(self._repo, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server's process group, as a crash would (fault tests); ``start`` again
        brings it back on the same ports."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        self.stop()
        self.fixed_ports = (self.http_port, self.grpc_port, self.metrics_port)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
