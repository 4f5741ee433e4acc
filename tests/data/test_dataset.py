"""Dataset builder: layout, manifests, and ground truth that replays exactly from the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avalign.data import storage
from avalign.data.corruption import corrupt
from avalign.data.dataset import build_dataset
from avalign.data.manifest import list_partitions, manifest_uri, read_manifest
from avalign.media.decode import decode_audio
from avalign.media.probe import probe

SMALL = dict(duration_s=2.0, width=96, height=72)
REAL_PICK = ("fireplace_dog_moviepy.mp4", "talking_head_2_retalking.mp4")  # the two shortest


@pytest.fixture(scope="module")
def two_real(real_av_dir: Path, tmp_path_factory) -> Path:
    """A folder of links to two short real clips (links only: the clips are never copied)."""
    folder = tmp_path_factory.mktemp("real")
    for name in REAL_PICK:
        (folder / name).symlink_to(real_av_dir / name)
    return folder


@pytest.fixture(scope="module")
def built(two_real: Path, tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    out = tmp_path_factory.mktemp("ds") / "dataset"
    lines: list[str] = []
    parts = build_dataset(
        str(out),
        partitions=1,
        clips_per_partition=3,
        real_av_dir=two_real,
        seed=5,
        progress=lines.append,
        **SMALL,
    )
    return out, parts, lines


def _replay(row, df) -> np.ndarray:
    """Apply the recorded corruption to the reference audio again."""
    ref, sr = sf.read(row.reference_audio_uri, dtype="float32", always_2d=True)
    steps = json.loads(row.corruption)
    other_ids = {s["params"].get("other_clip_id") for s in steps} - {None}
    other = None
    if other_ids:
        other_row = df[df.clip_id == other_ids.pop()].iloc[0]
        other = sf.read(other_row.reference_audio_uri, dtype="float32", always_2d=True)[0].T
    audio, _ = corrupt(ref.T, sr, steps, other_audio=other)
    return audio


@pytest.mark.real_av
def test_layout_and_manifests(built):
    out, parts, lines = built
    assert parts == ["part-00000", "part-00001"] == list_partitions(str(out))
    gen = read_manifest(manifest_uri(str(out), "part-00000"))
    real = read_manifest(manifest_uri(str(out), "part-00001"))
    assert len(gen) == 3 and len(real) == 2
    assert set(gen.origin) == {"procedural"} and set(real.origin) == {"real"}
    assert gen.category.nunique() == 3 and real.category.isna().all()
    for row in list(gen.itertuples()) + list(real.itertuples()):
        assert Path(row.source_uri).is_file() and Path(row.reference_audio_uri).is_file()
        assert (
            Path(row.source_uri).parent == out / "media"
            and Path(row.reference_audio_uri).parent == out / "reference"
        )
        assert Path(row.source_uri).stem == row.clip_id
    for row in gen.itertuples():
        assert (
            Path(row.source_uri).suffix == ".mp4" and row.duration_s == 2.0 and row.seed is not None
        )
        info = probe(row.source_uri)
        assert info.video_codec == "h264" and (info.width, info.height) == (96, 72)
        assert len(json.loads(row.event_times_s)) >= 2
    assert set(real.corruption_types) <= {"offset", "noise", "offset,noise", "none"}
    assert (out / "build_rejects.json").is_file() and json.loads(
        (out / "build_rejects.json").read_text()
    ) == []
    assert sum(line.startswith("[part-") for line in lines) == 5  # a progress line per clip


@pytest.mark.real_av
def test_ground_truth_replays_from_the_files(built):
    """Decoded media audio == the recorded corruption applied to the reference (16-bit rounding)."""
    out, parts, _ = built
    for part in parts:
        df = read_manifest(manifest_uri(str(out), part))
        for row in df.itertuples():
            decoded = decode_audio(row.source_uri, sample_rate=row.sample_rate).samples
            expected = _replay(row, df)
            n = expected.shape[1]
            assert decoded.shape[1] >= n - 1, row.clip_id
            np.testing.assert_allclose(
                decoded[:, : n - 1], expected[:, : n - 1], atol=2e-4, err_msg=row.clip_id
            )


@pytest.mark.real_av
def test_real_clip_keeps_its_video_bit_for_bit(built, two_real):
    out, _, _ = built
    real = read_manifest(manifest_uri(str(out), "part-00001"))
    row = real[real.clip_id.str.contains("talking_head_2")].iloc[0]
    import av

    def video_packets(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]

    assert video_packets(row.source_uri) == video_packets(two_real / "talking_head_2_retalking.mp4")


def test_deterministic(tmp_path):
    a = build_dataset(
        str(tmp_path / "a"), partitions=1, clips_per_partition=2, seed=3, progress=None, **SMALL
    )
    b = build_dataset(
        str(tmp_path / "b"), partitions=1, clips_per_partition=2, seed=3, progress=None, **SMALL
    )
    assert a == b == ["part-00000"]
    ma = read_manifest(manifest_uri(str(tmp_path / "a"), "part-00000"))
    mb = read_manifest(manifest_uri(str(tmp_path / "b"), "part-00000"))
    cols = ["clip_id", "category", "seed", "corruption", "offset_ms", "event_times_s"]
    assert ma[cols].equals(mb[cols])
    for name in ma.clip_id:
        assert (tmp_path / "a/media" / f"{name}.mp4").read_bytes() == (
            tmp_path / "b/media" / f"{name}.mp4"
        ).read_bytes()


def test_build_to_s3(s3_bucket):
    ds = f"s3://{s3_bucket}/sample"
    parts = build_dataset(ds, partitions=1, clips_per_partition=2, seed=1, progress=None, **SMALL)
    assert parts == ["part-00000"] == list_partitions(ds)
    df = read_manifest(manifest_uri(ds, "part-00000"))
    files = storage.list_files(ds)
    for row in df.itertuples():
        assert row.source_uri == f"{ds}/media/{row.clip_id}.mp4" and row.source_uri in files
        assert (
            row.reference_audio_uri == f"{ds}/reference/{row.clip_id}.wav"
            and row.reference_audio_uri in files
        )
    assert storage.read_json(f"{ds}/build_rejects.json") == []


def test_bad_real_clip_is_listed_not_fatal(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "broken.mp4").write_bytes(b"not a video")
    parts = build_dataset(
        str(tmp_path / "ds"),
        partitions=1,
        clips_per_partition=1,
        real_av_dir=real,
        progress=None,
        **SMALL,
    )
    assert parts == ["part-00000"]  # no usable real clip: no real partition
    rejects = json.loads((tmp_path / "ds" / "build_rejects.json").read_text())
    assert [r["reason"] for r in rejects] == ["undecodable"] and "broken.mp4" in rejects[0][
        "message"
    ]
