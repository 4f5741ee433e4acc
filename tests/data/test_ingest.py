"""Ingest: every file is either a manifest row or a listed reject with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from avalign.data import storage
from avalign.data.generator import generate_clip
from avalign.data.ingest import ingest, read_rejects, unique_clip_ids
from avalign.data.manifest import CLIP_ID_RE, list_partitions, manifest_uri, read_manifest
from avalign.media.remux import remux_with_audio


@pytest.fixture(scope="module")
def good_clip(tmp_path_factory) -> Path:
    return generate_clip(
        "drum", 2, tmp_path_factory.mktemp("good") / "good.mp4", duration_s=1.0, width=64, height=48
    ).path


@pytest.fixture
def messy_folder(tmp_path, good_clip) -> Path:
    src = tmp_path / "incoming"
    (src / "sub").mkdir(parents=True)
    shutil.copy(good_clip, src / "good.mp4")
    shutil.copy(good_clip, src / "vidéo ünïcode 视频.mp4")
    shutil.copy(good_clip, src / "sub" / "good.mp4")  # same name in a subfolder
    shutil.copy(good_clip, src / "..weird  name...mov")
    (src / "zero.mp4").write_bytes(b"")
    (src / "notes.mp4").write_text("this is text, not a video\n")
    (src / "README.txt").write_text("hello\n")
    return src


def test_ingest_messy_folder(messy_folder, tmp_path):
    out = str(tmp_path / "out")
    lines: list[str] = []
    report = ingest(str(messy_folder), out, progress=lines.append)
    assert report.n_files == 7 and report.n_accepted == 4 and report.n_rejected == 3
    assert report.partitions == ["part-00000"] == list_partitions(out)

    rejects = read_rejects(out).set_index("file_name")
    assert rejects.loc["zero.mp4", "reason"] == "empty_file"
    assert rejects.loc["notes.mp4", "reason"] == "undecodable"
    assert rejects.loc["README.txt", "reason"] == "unsupported_extension"
    assert all(rejects["message"].str.len() > 10) and all(
        rejects["source_uri"].str.startswith(str(messy_folder))
    )

    df = read_manifest(manifest_uri(out, "part-00000"))
    assert len(df) == 4 and df.clip_id.is_unique
    assert all(CLIP_ID_RE.match(c) and not c.startswith(".") for c in df.clip_id)
    assert (
        set(df.origin) == {"ingested"}
        and set(df.corruption) == {"[]"}
        and df.reference_audio_uri.isna().all()
    )
    assert (df.offset_ms == 0).all() and df.snr_db.isna().all() and df.seed.isna().all()
    by_name = df.set_index("source_name")
    assert by_name.loc["good.mp4", "clip_id"] == "good"
    assert by_name.loc["sub/good.mp4", "clip_id"].startswith("good-")
    assert by_name.loc["vidéo ünïcode 视频.mp4", "clip_id"] == "video_unicode"
    assert by_name.loc["..weird  name...mov", "clip_id"] == "weird_name"
    row = by_name.loc["good.mp4"]
    assert (row.width, row.height, row.fps, row.sample_rate, row.channels) == (
        64,
        48,
        25.0,
        16000,
        1,
    )
    assert row.duration_s == pytest.approx(1.0, abs=0.04)
    assert len(lines) == 8  # one line per file and a summary


def test_partitions_and_stale_cleanup(messy_folder, tmp_path):
    out = str(tmp_path / "out")
    first = ingest(str(messy_folder), out, partition_size=3, progress=None)
    assert first.partitions == ["part-00000", "part-00001"]
    sizes = [len(read_manifest(manifest_uri(out, p))) for p in first.partitions]
    assert sizes == [3, 1]
    again = ingest(str(messy_folder), out, partition_size=64, progress=None)
    assert again.partitions == ["part-00000"] and again.removed_partitions == ["part-00001"]
    assert list_partitions(out) == ["part-00000"]


def test_video_without_audio_is_rejected(tmp_path, good_clip):
    from avalign.data.generator import encode_video, synthesize

    src = tmp_path / "src"
    src.mkdir()
    syn = synthesize("rain", 1, duration_s=1.0, width=64, height=48)
    encode_video(syn.frames, 25.0, src / "silent.mp4")
    remux_with_audio(good_clip, syn.audio, 16000, src / "ok.mp4")
    report = ingest(str(src), str(tmp_path / "out"), progress=None)
    assert report.n_accepted == 1
    assert [(r["file_name"], r["reason"]) for r in report.rejects] == [
        ("silent.mp4", "no_audio_stream")
    ]


def test_empty_folder_writes_an_empty_rejects_table(tmp_path):
    (tmp_path / "src").mkdir()
    report = ingest(str(tmp_path / "src"), str(tmp_path / "out"), progress=None)
    assert report.partitions == [] and report.n_files == 0
    assert len(read_rejects(str(tmp_path / "out"))) == 0


def test_ingest_from_and_to_s3(s3_bucket, good_clip):
    src = f"s3://{s3_bucket}/incoming"
    storage.upload_file(good_clip, f"{src}/cam 1/clip.mp4")
    storage.write_bytes(f"{src}/broken.mkv", b"\x1a\x45\xdf\xa3garbage")
    out = f"s3://{s3_bucket}/ds"
    report = ingest(src, out, progress=None)
    assert report.n_accepted == 1 and [r["reason"] for r in report.rejects] == ["undecodable"]
    df = read_manifest(manifest_uri(out, "part-00000"))
    assert df.source_uri.tolist() == [f"{src}/cam 1/clip.mp4"] and df.clip_id.tolist() == ["clip"]
    assert read_rejects(out).file_name.tolist() == ["broken.mkv"]


def test_unique_clip_ids_are_stable_and_distinct():
    rels = ["a.mp4", "A.mkv", "x/a.mp4", "视频.mp4", "视频2.mp4", "../../up.mp4"]
    ids = unique_clip_ids(rels)
    assert ids == unique_clip_ids(rels)
    assert len({i.lower() for i in ids}) == len(ids)
    assert (
        ids[0] == "a" and ids[1].startswith("A-") and ids[3].startswith("clip-") and ids[5] == "up"
    )
    assert ids[4] == "2"
