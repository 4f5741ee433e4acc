"""Manifests: typed Parquet round trips (local and S3) and clear schema errors."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avalign.data import manifest as M
from avalign.data import storage


def _rows() -> pd.DataFrame:
    base = dict(
        duration_s=2.0,
        fps=25.0,
        sample_rate=16000,
        channels=1,
        width=96,
        height=72,
        partition="part-00000",
    )
    return pd.DataFrame(
        [
            {
                **base,
                "clip_id": "gen-0001_drum",
                "source_uri": "/d/media/gen-0001_drum.mp4",
                "reference_audio_uri": "/d/reference/gen-0001_drum.wav",
                "category": "drum",
                "corruption": '[{"type": "offset", "params": {"offset_ms": 120.0}}]',
                "corruption_types": "offset",
                "offset_ms": 120.0,
                "snr_db": None,
                "origin": "procedural",
                "seed": 7,
                "event_times_s": "[0.4, 1.2]",
            },
            {
                **base,
                "clip_id": "talk.v2",
                "source_uri": "/in/talk v2.mkv",
                "reference_audio_uri": None,
                "category": None,
                "corruption": "[]",
                "corruption_types": "",
                "offset_ms": 0.0,
                "snr_db": None,
                "origin": "ingested",
                "seed": None,
                "event_times_s": None,
            },
            {
                **base,
                "clip_id": "real-x",
                "source_uri": "/d/media/real-x.mkv",
                "reference_audio_uri": "/d/r.wav",
                "category": None,
                "corruption": '[{"type": "noise", "params": {"snr_db": 3.5}}]',
                "corruption_types": "noise",
                "offset_ms": 0.0,
                "snr_db": 3.5,
                "origin": "real",
                "seed": 123456789012,
            },
        ]
    )


def test_round_trip_local(tmp_path):
    uri = M.manifest_uri(str(tmp_path), "part-00000")
    assert uri == str(tmp_path / "manifests" / "part-00000.parquet")
    M.write_manifest(_rows(), uri)
    df = M.read_manifest(uri)
    assert list(df.columns[: len(M.COLUMNS)]) == list(M.COLUMNS)
    assert df["clip_id"].tolist() == ["gen-0001_drum", "talk.v2", "real-x"]
    assert df["reference_audio_uri"].isna().tolist() == [False, True, False]
    assert df["snr_db"].isna().tolist() == [True, True, False] and df.loc[2, "snr_db"] == 3.5
    assert (
        df["seed"].tolist()[0] == 7
        and pd.isna(df["seed"].tolist()[1])
        and df["seed"][2] == 123456789012
    )
    assert df["offset_ms"].tolist() == [120.0, 0.0, 0.0]
    assert df["event_times_s"].tolist()[0] == "[0.4, 1.2]"  # extra columns are kept
    schema = pq.read_schema(uri)
    assert schema.field("clip_id").type == pa.string() and schema.field("seed").type == pa.int64()
    assert not schema.field("clip_id").nullable and schema.field("snr_db").nullable


def test_round_trip_s3_and_listing(s3_bucket):
    ds = f"s3://{s3_bucket}/datasets/demo"
    for part in ("part-00001", "part-00000"):
        M.write_manifest(_rows().assign(partition=part), M.manifest_uri(ds, part))
    storage.write_bytes(f"{ds}/manifests/notes.txt", b"not a manifest")
    assert M.list_partitions(ds) == ["part-00000", "part-00001"]
    df = M.read_manifest(M.manifest_uri(ds, "part-00001"))
    assert set(df["partition"]) == {"part-00001"} and len(df) == 3


def test_list_partitions_local(tmp_path):
    assert M.list_partitions(str(tmp_path)) == []
    (tmp_path / "manifests").mkdir()
    for name in ("part-00002.parquet", "part-00000.parquet", "part-7.parquet", "other.parquet"):
        (tmp_path / "manifests" / name).write_bytes(b"")
    assert M.list_partitions(str(tmp_path)) == ["part-00000", "part-00002"]


def test_read_reports_schema_problems(tmp_path):
    table = pa.Table.from_pandas(
        _rows().drop(columns=["fps", "origin"]).assign(width="wide"), preserve_index=False
    )
    uri = str(tmp_path / "bad.parquet")
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue())
    with pytest.raises(M.ManifestError) as err:
        M.read_manifest(uri)
    msg = str(err.value)
    assert (
        uri in msg
        and "'fps'" in msg
        and "'origin'" in msg
        and "width: string (expected int64)" in msg
    )
    assert err.value.reason == "bad_manifest"

    storage.write_bytes(uri, b"PAR1 but not really")
    with pytest.raises(M.ManifestError, match="not a readable Parquet file"):
        M.read_manifest(uri)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"clip_id": "../escape"}, "clip_id not made of"),
        ({"clip_id": "gen-0001_drum"}, "duplicate clip_id"),
        ({"origin": "scraped"}, "origin must be one of"),
        ({"partition": "p0"}, "partition must look like part-NNNNN"),
        ({"corruption": "{not json"}, "corruption is not a JSON list"),
        ({"duration_s": None}, "'duration_s' has nulls"),
    ],
)
def test_write_rejects_bad_values(tmp_path, change, message):
    df = _rows().astype(object)
    for col, value in change.items():
        df.loc[1, col] = value
    with pytest.raises(M.ManifestError, match=message):
        M.write_manifest(df, str(tmp_path / "m.parquet"))
    assert not (tmp_path / "m.parquet").exists()


def test_safe_clip_id():
    assert M.safe_clip_id("../../etc/passwd") == "etc_passwd"
    assert M.safe_clip_id("Café con leche (1)") == "Cafe_con_leche_1"
    assert M.safe_clip_id(".hidden") == "hidden"
    assert M.safe_clip_id("视频") == "clip"
    assert (
        M.CLIP_ID_RE.match(M.safe_clip_id("a" * 500))
        and len(M.safe_clip_id("a" * 500)) <= M.MAX_CLIP_ID_LEN
    )


def test_names():
    assert M.partition_name(3) == "part-00003"
    with pytest.raises(ValueError):
        M.manifest_uri("/d", "../part-00000")
    assert M.manifest_uri("s3://bkt/ds", "part-00001") == "s3://bkt/ds/manifests/part-00001.parquet"
    assert list(M.empty_manifest().columns) == list(M.COLUMNS)
