"""Flaky S3: connection resets, 5xx, torn and altered bodies between boto3 and a moto server on
loopback (tests/faults/flaky_proxy.py). Retries ride it out, writes stay atomic, reads are verified
by checksum, and a partition rebuilt through it equals one rebuilt over a clean connection."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.partition import run_partition
from avalign.agent.publish import publish_partition
from avalign.agent.verify import verify_dataset
from avalign.data import storage
from avalign.data.manifest import write_manifest
from tests.agent.fakes import MeasuringClient
from tests.agent.test_partition import _row
from tests.faults.flaky_proxy import FAULTS, FlakyProxy

PASSED = type("Passed", (), {"success": True, "result_uri": None})()


@pytest.fixture
def flaky(s3_server, monkeypatch):
    """The environment pointed at a fault-injecting proxy in front of the moto server."""
    with FlakyProxy(s3_server, rate=0.35, seed=7) as proxy:
        monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", proxy.url)
        storage.s3_client.cache_clear()
        yield proxy
    storage.s3_client.cache_clear()


def test_every_operation_survives_injected_faults(s3_bucket, flaky, tmp_path):
    base = f"s3://{s3_bucket}/flaky"
    payloads = {f"obj-{i:02d}.bin": bytes((i * 37 + j) % 251 for j in range(5000 + 997 * i)) for i in range(24)}
    for name, data in payloads.items():
        storage.write_bytes(storage.join(base, name), data)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40000)  # 10 MB: a multipart upload
    storage.upload_file(big, storage.join(base, "big.bin"))

    assert storage.list_files(base) == sorted(storage.join(base, n) for n in [*payloads, "big.bin"])
    for name, data in payloads.items():
        assert storage.read_bytes(storage.join(base, name)) == data
    storage.download_file(storage.join(base, "big.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert storage.checksum(storage.join(base, "big.bin"))[0] == storage.checksum(str(big))[0]
    assert all(storage.exists(storage.join(base, n)) for n in payloads)
    print(f"\nflaky proxy: {dict(flaky.stats)}")
    assert set(FAULTS) <= set(flaky.stats), flaky.stats  # every kind of fault was actually injected


def test_a_read_that_never_verifies_fails_with_checksum_mismatch(s3_bucket, s3_server, monkeypatch):
    uri = f"s3://{s3_bucket}/always-corrupt.bin"
    storage.write_bytes(uri, b"x" * 4096)
    with FlakyProxy(s3_server, rate=1.0, faults=("corrupt",), max_faults_per_key=10**6) as proxy:
        monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", proxy.url)
        storage.s3_client.cache_clear()
        with pytest.raises(storage.StorageError) as info:
            storage.read_bytes(uri)
    storage.s3_client.cache_clear()
    assert info.value.reason == "checksum_mismatch"
    assert proxy.stats["corrupt"] == storage.READ_ATTEMPTS


def _partition_on_s3(bucket: str, name: str, clips: dict[str, str], tmp_path) -> tuple[str, dict]:
    """Upload the clips and a manifest, align, publish; returns (out_uri, pointer)."""
    rows = []
    for clip_id, path in clips.items():
        uri = f"s3://{bucket}/{name}/src/{clip_id}.mp4"
        storage.upload_file(path, uri)
        rows.append(_row(clip_id, uri))
    local_manifest = tmp_path / f"{name}.parquet"
    write_manifest(pd.DataFrame(rows), str(local_manifest))
    manifest = f"s3://{bucket}/{name}/ds/manifests/part-00000.parquet"
    storage.upload_file(local_manifest, manifest)
    out = f"s3://{bucket}/{name}/out"
    run_partition(manifest, out, run_id="r1", config=AlignConfig(), client=MeasuringClient(), progress=lambda m: None)
    pub = publish_partition(out, "r1", "part-00000", PASSED)
    return out, json.loads(storage.read_bytes(pub.pointer_uri))


def _relative_objects(out: str) -> list[str]:
    return [uri.removeprefix(out) for uri in storage.list_files(out)]


def test_a_partition_rebuilt_through_flaky_s3_equals_a_clean_one(s3_bucket, s3_server, agent_clips, tmp_path,
                                                                monkeypatch):
    clips = {"late": str(agent_clips["late"]), "clean": str(agent_clips["clean"])}
    clean_out, clean = _partition_on_s3(s3_bucket, "clean", clips, tmp_path)
    with FlakyProxy(s3_server, rate=0.3, seed=11) as proxy:
        monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", proxy.url)
        storage.s3_client.cache_clear()
        flaky_out, flaky = _partition_on_s3(s3_bucket, "flaky", clips, tmp_path)
        report = verify_dataset(flaky_out, progress=lambda m: None)
    monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", s3_server)
    storage.s3_client.cache_clear()
    print(f"\nflaky proxy during the partition: {dict(proxy.stats)}")
    assert sum(proxy.stats[f] for f in FAULTS) >= 10
    assert report.ok, report.findings
    assert flaky["content_sha256"] == clean["content_sha256"]  # same outcomes, same output checksums
    assert flaky["counts"] == clean["counts"]
    assert _relative_objects(flaky_out) == _relative_objects(clean_out)  # nothing missing, nothing duplicated
