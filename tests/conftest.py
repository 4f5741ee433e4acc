"""Shared fixtures: paths to the real clips, which live outside the repo and are never copied in."""

from __future__ import annotations

import os
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
