"""Triton killed mid-partition (SIGKILL of the server's process group, as a crash).

Back within the client's retry deadline: the partition completes with the same results as a clean
run. Down for good: the task fails cleanly within its deadline (ServingError), nothing is marked
complete or published, and a later retry completes with the clean run's results.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.partition import run_partition
from avalign.agent.publish import IntegrityError, pointer_uri, publish_partition
from avalign.agent.verify import verify_dataset
from avalign.data.manifest import write_manifest
from avalign.errors import ServingError
from avalign.serving.client import TritonClient
from avalign.serving.launcher import TritonServer
from tests.agent.test_partition import _row

pytestmark = [pytest.mark.triton, pytest.mark.slow]
CONFIG = AlignConfig(max_cycles=2)
PASSED = SimpleNamespace(success=True, result_uri=None)


@pytest.fixture(scope="module")
def own_triton(tmp_path_factory):
    """A server of this module's own: the tests kill it."""
    server = TritonServer(workspace=tmp_path_factory.mktemp("triton_faults")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, agent_clips) -> str:
    uri = str(tmp_path_factory.mktemp("ds") / "manifests" / "part-00000.parquet")
    write_manifest(pd.DataFrame([_row(k, str(agent_clips[k])) for k in ("late", "clean", "noisy")]), uri)
    return uri


@pytest.fixture(scope="module")
def clean_run(manifest, own_triton, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean_out"))
    client = TritonClient(own_triton.grpc_url)
    run = run_partition(manifest, out, run_id="clean", config=CONFIG, client=client, progress=lambda m: None)
    client.close()
    return _fingerprint(run.results_uri)


def _fingerprint(results_uri: str) -> dict[str, tuple]:
    """Per clip: the outcome, the kept plan and the output checksum."""
    table = pd.read_parquet(results_uri)
    return {r.clip_id: (r.outcome, r.plan_json, r.output_sha256) for r in table.itertuples()}


def _kill_after_first_clip(server: TritonServer, killed: threading.Event):
    def progress(message: str) -> None:
        if " 1/3 " in message and not killed.is_set():
            server.kill()
            killed.set()
    return progress


def test_triton_back_within_the_deadline_completes_the_partition(manifest, own_triton, clean_run, tmp_path):
    out = str(tmp_path / "out")
    killed, result, errors = threading.Event(), {}, []
    client = TritonClient(own_triton.grpc_url, retry_deadline_s=180.0)

    def work() -> None:
        try:
            result["run"] = run_partition(manifest, out, run_id="r1", config=CONFIG, client=client,
                                          progress=_kill_after_first_clip(own_triton, killed))
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert killed.wait(timeout=300)
    t0 = time.monotonic()
    own_triton.start()  # same ports: the client's URL is still right
    print(f"\ntriton restarted on {own_triton.grpc_url} in {time.monotonic() - t0:.1f}s")
    thread.join(timeout=600)
    client.close()
    assert not errors, errors
    assert _fingerprint(result["run"].results_uri) == clean_run


def test_triton_that_stays_down_fails_cleanly_and_a_retry_completes(manifest, own_triton, clean_run, tmp_path):
    out = str(tmp_path / "out")
    if own_triton.process is None:
        own_triton.start()
    killed = threading.Event()
    client = TritonClient(own_triton.grpc_url, retry_deadline_s=5.0, max_backoff_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(ServingError, match="unavailable after"):
        run_partition(manifest, out, run_id="r2", config=CONFIG, client=client,
                      progress=_kill_after_first_clip(own_triton, killed))
    failed_after = time.monotonic() - t0
    client.close()
    print(f"\npartition failed {failed_after:.1f}s after it started (retry deadline 5 s)")
    stage = Path(out) / "runs" / "r2" / "part-00000"
    assert killed.is_set() and not (stage / "_SUCCESS").exists()
    with pytest.raises(IntegrityError, match="not complete"):
        publish_partition(out, "r2", "part-00000", PASSED)
    assert not Path(pointer_uri(out, "part-00000")).exists()

    own_triton.start()  # the service comes back; Airflow retries the task
    client = TritonClient(own_triton.grpc_url)
    retry = run_partition(manifest, out, run_id="r2", config=CONFIG, client=client, progress=lambda m: None)
    client.close()
    assert not retry.reused and retry.n_clips == 3
    assert _fingerprint(retry.results_uri) == clean_run
    assert publish_partition(out, "r2", "part-00000", PASSED).pointer_uri
    assert verify_dataset(out, progress=lambda m: None).ok
