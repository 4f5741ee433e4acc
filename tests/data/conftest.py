"""S3 fixtures: a real moto server over HTTP on 127.0.0.1, so boto3 runs its whole network path.

``s3_server`` gives the endpoint URL and points the environment (credentials, endpoint, region)
at it for one test; ``s3_bucket`` adds a fresh bucket so tests never see each other's objects.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    """Start one moto server for the session (about a second) and stop it at the end."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
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
