"""Align several manifests in one process (the ``align`` command; the DAG splits the same steps
into tasks). Starts a local Triton when no URL is given, and always stops it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
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
def triton_client(url: str | None, progress: Callable[[str], None] = print, *,
                  planner: str = "rules") -> Iterator[Any]:
    """A TritonClient for ``url``, or for a local tritonserver started (and stopped) here.

    With ``planner="llm"`` a local server also serves the ``planner`` model, from the Hugging Face
    model folder in ``$AVALIGN_PLANNER_MODEL`` (avalign.serving.llm).
    """
    from avalign.serving.client import TritonClient
    from avalign.serving.launcher import ALL_MODELS, DEFAULT_WORKSPACE, TritonServer

    server = None
    scratch = None
    if not url:
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if planner == "llm":
            from avalign.serving.llm import local_planner_dirs

            DEFAULT_WORKSPACE.mkdir(parents=True, exist_ok=True)
            scratch = tempfile.mkdtemp(prefix="planner-", dir=DEFAULT_WORKSPACE)
            kwargs = {"models": ALL_MODELS + ("planner",), "extra_model_dirs": local_planner_dirs(scratch)}
        progress("starting local tritonserver ...")
        try:
            server = TritonServer(**kwargs).start()
        except BaseException:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        url = server.grpc_url
        progress(f"tritonserver ready at {url} in {time.perf_counter() - t0:.1f}s")
    client = TritonClient(url)
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.stop()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def align_manifests(uri: str, out_uri: str, *, run_id: str, config: AlignConfig, triton_url: str | None = None,
                    partitions: list[str] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    manifests = resolve_manifests(uri, partitions)
    t0 = time.perf_counter()
    runs = []
    with triton_client(triton_url, progress, planner=config.planner) as client:
        for m in manifests:
            runs.append(run_partition(m, out_uri, run_id=run_id, config=config, client=client, progress=progress))
    return {"run_id": run_id, "out": out_uri, "elapsed_s": round(time.perf_counter() - t0, 2),
            "partitions": [r.to_dict() for r in runs]}
