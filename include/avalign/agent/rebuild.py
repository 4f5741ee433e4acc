"""Align several manifests in one process (the ``align`` command; the DAG splits the same steps
into tasks). Starts a local Triton when no URL is given, and always stops it."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from avalign.agent.config import AlignConfig
from avalign.agent.partition import run_partition
from avalign.data import storage
from avalign.errors import AvalignError


def resolve_manifests(uri: str, partitions: list[str] | None = None) -> list[str]:
    """A manifest parquet URI as is, or every (selected) partition manifest of a dataset URI."""
    from avalign.data.manifest import list_partitions, manifest_uri

    if uri.endswith(".parquet"):
        if not storage.exists(uri):
            raise AvalignError(f"manifest {uri} does not exist")
        return [uri]
    names = list_partitions(uri)
    if not names:
        raise AvalignError(f"{uri}: no manifests under {storage.join(uri, 'manifests')}")
    if partitions:
        unknown = sorted(set(partitions) - set(names))
        if unknown:
            raise AvalignError(f"partitions {unknown} not in {uri} (have {names})")
        names = [n for n in names if n in set(partitions)]
    return [manifest_uri(uri, n) for n in names]


@contextlib.contextmanager
def triton_client(url: str | None, progress: Callable[[str], None] = print) -> Iterator[Any]:
    """A TritonClient for ``url``, or for a local tritonserver started (and stopped) here."""
    from avalign.serving.client import TritonClient
    from avalign.serving.launcher import TritonServer

    server = None
    if not url:
        t0 = time.perf_counter()
        progress("starting local tritonserver ...")
        server = TritonServer().start()
        url = server.grpc_url
        progress(f"tritonserver ready at {url} in {time.perf_counter() - t0:.1f}s")
    client = TritonClient(url)
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.stop()


def align_manifests(uri: str, out_uri: str, *, run_id: str, config: AlignConfig, triton_url: str | None = None,
                    partitions: list[str] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    manifests = resolve_manifests(uri, partitions)
    t0 = time.perf_counter()
    runs = []
    with triton_client(triton_url, progress) as client:
        for m in manifests:
            runs.append(run_partition(m, out_uri, run_id=run_id, config=config, client=client, progress=progress))
    return {"run_id": run_id, "out": out_uri, "elapsed_s": round(time.perf_counter() - t0, 2),
            "partitions": [r.to_dict() for r in runs]}
