"""Shared fixtures: the real clips (outside the repo, never copied in, read-only), a real
tritonserver, and S3 as a real moto server over HTTP on 127.0.0.1 (boto3 runs its whole network
path; ``s3_bucket`` gives each test a fresh bucket so tests never see each other's objects).

The real clips are checksummed when the session starts and again when it ends: a run that
changed a source fails, whatever its tests said.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_AV_DIR = Path(os.environ.get("AVALIGN_REAL_AV", REPO_ROOT.parent / "shared" / "data" / "real_av"))


@pytest.fixture(scope="session")
def real_av_dir() -> Path:
    """Folder of real AV clips (../shared/data/real_av); skips when absent."""
    if not REAL_AV_DIR.is_dir():
        pytest.skip(f"real clips not found at {REAL_AV_DIR}")
    return REAL_AV_DIR


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory):
    """One real tritonserver (the nvidia-pytriton binary) for the whole test session."""
    from avalign.serving.launcher import TritonServer

    server = TritonServer(workspace=tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def triton_client(triton_server):
    from avalign.serving.client import TritonClient

    client = TritonClient(triton_server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    """Start one moto server for the session (about a second) and stop it at the end."""
    moto_server = pytest.importorskip("moto.server")
    from avalign.serving.launcher import free_port

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Endpoint URL of the moto server, with the environment pointing boto3 at it."""
    from avalign.data import storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", _moto_endpoint)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    storage.s3_client.cache_clear()
    yield _moto_endpoint
    storage.s3_client.cache_clear()


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A new, empty bucket on the moto server; returns its name."""
    from avalign.data import storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.s3_client().create_bucket(Bucket=name)
    return name


# --------------------------------------------------------------------- sources stay read-only

def _tree_checksums(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        found[str(path.relative_to(root))] = digest.hexdigest()
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    if REAL_AV_DIR.is_dir():
        session.config._real_av_checksums = _tree_checksums(REAL_AV_DIR)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_real_av_checksums", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    after = _tree_checksums(REAL_AV_DIR)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if changed:
        if reporter:
            reporter.write_line(f"\nSOURCES CHANGED during the test run ({REAL_AV_DIR}): {changed}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line(f"\nsources read-only: {len(after)} files under {REAL_AV_DIR} unchanged (sha256)")
