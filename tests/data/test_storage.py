"""Storage: one URI layer over local paths and S3 (moto server over real HTTP)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from avalign.data import storage
from avalign.errors import StorageError

# ------------------------------------------------------------------------------- URIs


def test_is_s3() -> None:
    assert storage.is_s3("s3://bucket/key")
    assert storage.is_s3("S3://bucket/key")
    assert not storage.is_s3("/tmp/x")
    assert not storage.is_s3("file:///tmp/x")


def test_join_local_and_s3() -> None:
    assert storage.join("s3://b-1/runs", "r1", "x.json") == "s3://b-1/runs/r1/x.json"
    assert storage.join("s3://b-1/runs/", "/r1/", "x.json") == "s3://b-1/runs/r1/x.json"
    assert storage.join("s3://b-1", "x") == "s3://b-1/x"
    assert (
        storage.join("/data/set", "manifests", "part-0.parquet")
        == "/data/set/manifests/part-0.parquet"
    )
    assert storage.join("/data/set", "/abs") == "/data/set/abs"  # a part never resets to root
    assert storage.join("file:///data/set", "a") == "file:///data/set/a"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("", "empty"),
        ("ftp://host/file", "unsupported scheme 'ftp'"),
        ("s3://", "without a bucket"),
        ("s3:///key", "without a bucket"),
        ("s3://bucket-only", "no object key"),
        ("s3://Bad_Bucket/key", "not a valid S3 bucket name"),
        ("s3:/bucket/key", "expected s3://"),
        ("file://otherhost/x", "must not name a host"),
        ("/tmp/a\x00b", "NUL byte"),
    ],
)
def test_bad_uris_are_bad_uri(uri: str, fragment: str) -> None:
    with pytest.raises(StorageError) as info:
        storage.read_bytes(uri)
    assert info.value.reason == "bad_uri"
    assert fragment in str(info.value)


def test_bad_uri_in_every_entry_point() -> None:
    calls = [
        lambda: storage.exists("ftp://x/y"),
        lambda: storage.write_bytes("ftp://x/y", b"1"),
        lambda: storage.list_files("gs://bucket/prefix"),
        lambda: storage.delete("s3://"),
        lambda: storage.sha256(""),
        lambda: storage.join("ftp://x", "y"),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.reason == "bad_uri"


# ------------------------------------------------------------------------------ local


def test_local_round_trip(tmp_path: Path) -> None:
    uri = str(tmp_path / "a" / "b" / "data.bin")
    storage.write_bytes(uri, b"hello")
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"hello"
    assert storage.sha256(uri) == hashlib.sha256(b"hello").hexdigest()

    storage.write_json(str(tmp_path / "x.json"), {"b": 1, "a": [1, 2]})
    assert storage.read_json(str(tmp_path / "x.json")) == {"a": [1, 2], "b": 1}
    storage.write_text("file://" + str(tmp_path / "t.txt"), "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert storage.read_text("file://" + str(tmp_path / "t.txt")) == "héllo"

    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # idempotent


def test_local_written_file_has_normal_permissions(tmp_path: Path) -> None:
    uri = str(tmp_path / "perm.txt")
    storage.write_text(uri, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "perm.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_local_write_leaves_no_temp_and_replaces(tmp_path: Path) -> None:
    uri = str(tmp_path / "f.txt")
    storage.write_text(uri, "old")
    storage.write_text(uri, "new")
    assert storage.read_text(uri) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_local_failed_write_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "f.txt")
    storage.write_text(uri, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(StorageError) as info:
        storage.write_text(uri, "new")
    assert info.value.reason == "io_error"
    assert "No space left" in str(info.value)
    monkeypatch.undo()
    assert storage.read_text(uri) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_local_missing_is_not_found(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.bin")
    assert not storage.exists(missing)
    for call in (storage.read_bytes, storage.sha256):
        with pytest.raises(StorageError) as info:
            call(missing)
        assert info.value.reason == "not_found"
        assert "nope.bin" in str(info.value)
    with pytest.raises(StorageError) as info, storage.local_copy(missing):
        pass
    assert info.value.reason == "not_found"


def test_local_read_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        storage.read_bytes(str(tmp_path))
    assert info.value.reason == "not_a_file"


def test_read_json_malformed(tmp_path: Path) -> None:
    uri = str(tmp_path / "bad.json")
    storage.write_text(uri, "{not json")
    with pytest.raises(StorageError) as info:
        storage.read_json(uri)
    assert info.value.reason == "bad_json"


def test_local_list_files(tmp_path: Path) -> None:
    for rel in ["b/2.json", "a/1.json", "a/x.parquet", "c.json"]:
        storage.write_text(str(tmp_path / "root" / rel), rel)
    (tmp_path / "root" / "a" / ".1.json.abc123.tmp").write_text("in flight")  # a writer's temp file
    root = str(tmp_path / "root")
    assert storage.list_files(root) == [
        f"{root}/a/1.json",
        f"{root}/a/x.parquet",
        f"{root}/b/2.json",
        f"{root}/c.json",
    ]
    assert storage.list_files(root, suffix=".json") == [
        f"{root}/a/1.json",
        f"{root}/b/2.json",
        f"{root}/c.json",
    ]
    assert storage.list_files("file://" + root + "/a") == [
        (tmp_path / "root" / "a" / "1.json").as_uri(),
        (tmp_path / "root" / "a" / "x.parquet").as_uri(),
    ]
    assert storage.list_files(str(tmp_path / "missing")) == []


def test_local_copy_upload_download(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    with storage.local_copy(str(src)) as path:
        assert path == src
    storage.upload_file(src, str(tmp_path / "dst" / "up.bin"))
    storage.download_file(str(tmp_path / "dst" / "up.bin"), tmp_path / "down.bin")
    assert (tmp_path / "down.bin").read_bytes() == b"payload"
    with pytest.raises(StorageError) as info:
        storage.upload_file(tmp_path / "missing.bin", str(tmp_path / "x"))
    assert info.value.reason == "not_found"


# --------------------------------------------------------------------------------- S3


def test_s3_client_uses_endpoint_and_retries(s3_server: str) -> None:
    client = storage.s3_client()
    assert client.meta.endpoint_url == s3_server
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 8}
    assert storage.s3_client() is client  # cached


def test_s3_round_trip(s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/data/clip 1.bin"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"\x00\x01payload")
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"\x00\x01payload"
    assert storage.sha256(uri) == hashlib.sha256(b"\x00\x01payload").hexdigest()

    storage.write_bytes(uri, b"replaced")  # overwrite
    assert storage.read_bytes(uri) == b"replaced"

    storage.write_json(f"s3://{s3_bucket}/published/part-00000.json", {"run": "r1", "n": 3})
    assert storage.read_json(f"s3://{s3_bucket}/published/part-00000.json") == {"n": 3, "run": "r1"}

    with storage.local_copy(uri) as path:
        assert path.name == "clip 1.bin"
        assert path.read_bytes() == b"replaced"
        kept = path
    assert not kept.exists()  # temp copy cleaned up

    storage.download_file(uri, tmp_path / "dl" / "x.bin")
    assert (tmp_path / "dl" / "x.bin").read_bytes() == b"replaced"
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["x.bin"]

    up = tmp_path / "up.bin"
    up.write_bytes(b"uploaded" * 1000)
    storage.upload_file(up, f"s3://{s3_bucket}/data/up.bin")
    assert (
        storage.sha256(f"s3://{s3_bucket}/data/up.bin")
        == hashlib.sha256(up.read_bytes()).hexdigest()
    )

    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # idempotent


def test_s3_list_files(s3_bucket: str) -> None:
    base = f"s3://{s3_bucket}"
    for key in ["run1/b.json", "run1/a/x.json", "run1/a/y.parquet", "run10/z.json", "top.json"]:
        storage.write_bytes(f"{base}/{key}", b"{}")
    assert storage.list_files(f"{base}/run1") == [
        f"{base}/run1/a/x.json",
        f"{base}/run1/a/y.parquet",
        f"{base}/run1/b.json",
    ]  # a folder: run10/ is not part of run1
    assert storage.list_files(f"{base}/run1/", suffix=".json") == [
        f"{base}/run1/a/x.json",
        f"{base}/run1/b.json",
    ]
    assert len(storage.list_files(base)) == 5
    assert storage.list_files(f"{base}/nothing-here") == []


def test_s3_list_paginates(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "LIST_PAGE_SIZE", 3)  # 11 keys -> 4 pages, without 1000 puts
    client = storage.s3_client()
    keys = [f"many/{i:02d}.txt" for i in range(11)]
    for key in reversed(keys):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"")
    calls: list[str] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append("list"))
    assert storage.list_files(f"s3://{s3_bucket}/many") == [f"s3://{s3_bucket}/{k}" for k in keys]
    assert len(calls) == 4


def test_s3_missing_object_and_bucket(s3_bucket: str, tmp_path: Path) -> None:
    missing = f"s3://{s3_bucket}/no/such.bin"
    for call in (storage.read_bytes, storage.sha256):
        with pytest.raises(StorageError) as info:
            call(missing)
        assert info.value.reason == "not_found"
        assert "no/such.bin" in str(info.value)
    with pytest.raises(StorageError) as info:
        storage.download_file(missing, tmp_path / "x.bin")
    assert info.value.reason == "not_found"
    assert not (tmp_path / "x.bin").exists()
    assert list(tmp_path.iterdir()) == []  # no partial download left behind

    with pytest.raises(StorageError) as info:
        storage.read_bytes("s3://no-such-bucket-avalign/key")
    assert info.value.reason == "not_found"
    assert "no-such-bucket-avalign" in str(info.value)
    with pytest.raises(StorageError) as info:
        storage.list_files("s3://no-such-bucket-avalign/prefix")
    assert info.value.reason == "not_found"


def test_s3_unreachable_endpoint(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens there once the socket closes
    monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("AVALIGN_S3_MAX_ATTEMPTS", "1")  # fail fast instead of 8 backed-off tries
    with pytest.raises(StorageError) as info:
        storage.read_bytes("s3://bucket/key")
    assert info.value.reason == "unreachable"
    assert f"127.0.0.1:{dead_port}" in str(info.value)


def test_remove_temp_files_deletes_only_in_flight_temps(tmp_path: Path, s3_bucket: str) -> None:
    root = tmp_path / "stage"
    storage.write_text(str(root / "clips" / "a.mp4"), "done")
    (root / "clips" / ".b.mp4.x1y2z3.tmp").write_text("torn")
    (root / "traces").mkdir()
    (root / "traces" / ".b.json.q9w8e7.tmp").write_text("torn")
    (root / "notes.tmp").write_text("not ours: no leading dot")
    removed = storage.remove_temp_files(str(root))
    assert removed == [str(root / "clips" / ".b.mp4.x1y2z3.tmp"), str(root / "traces" / ".b.json.q9w8e7.tmp")]
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["a.mp4", "notes.tmp"]
    assert storage.remove_temp_files(str(root)) == [] and storage.remove_temp_files(str(tmp_path / "none")) == []

    base = f"s3://{s3_bucket}/stage"
    storage.write_bytes(f"{base}/clips/a.mp4", b"done")
    storage.write_bytes(f"{base}/clips/.b.mp4.x1y2z3.tmp", b"torn")
    assert storage.remove_temp_files(base) == [f"{base}/clips/.b.mp4.x1y2z3.tmp"]
    assert storage.list_files(base) == [f"{base}/clips/a.mp4"]
    assert not storage.exists(f"{base}/clips/.b.mp4.x1y2z3.tmp")
