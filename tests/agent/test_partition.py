"""A partition run: bad clips are quarantined with specific reasons, nothing else is lost, and a
re-run is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.partition import run_partition
from avalign.agent.publish import publish_partition, read_published
from avalign.data.manifest import write_manifest
from tests.agent.fakes import MeasuringClient
from tests.media.clipgen import write_clip


def _row(clip_id: str, uri: str) -> dict:
    return {"clip_id": clip_id, "source_uri": uri, "reference_audio_uri": None, "duration_s": 4.0, "fps": 25.0,
            "sample_rate": 16000, "channels": 1, "width": 96, "height": 72, "category": None,
            "corruption": "[]", "corruption_types": "", "offset_ms": 0.0, "snr_db": None,
            "partition": "part-00000", "origin": "ingested", "seed": None}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, agent_clips) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video")
    good = agent_clips["late"].read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 3])
    write_clip(root / "video_only.mp4", audio_codec=None)
    write_clip(root / "audio_only.m4a", video_codec=None, fmt="mp4")
    nan = np.zeros((1, 96000), dtype=np.float32)
    nan[0, 1000:1010] = np.nan
    write_clip(root / "nan.mkv", video_codec="mpeg4", audio_codec="pcm_f32le", fmt="matroska", audio=nan)
    return {
        "good": str(agent_clips["late"]),
        "empty": str(root / "empty.mp4"),
        "text": str(root / "text.mp4"),
        "truncated": str(root / "truncated.mp4"),
        "video_only": str(root / "video_only.mp4"),
        "audio_only": str(root / "audio_only.m4a"),
        "nan": str(root / "nan.mkv"),
        "missing": str(root / "no_such_file.mp4"),
        "bad_scheme": "ftp://example.org/clip.mp4",
        "too_long": str(agent_clips["clean"]),  # with max_duration_s below its 4 s
    }


EXPECTED_REASON = {
    "empty": "empty_file", "text": "undecodable", "truncated": "undecodable", "video_only": "no_audio_stream",
    "audio_only": "no_video_stream", "nan": "nan_samples", "missing": "not_found", "bad_scheme": "bad_uri",
    "too_long": "too_long",
}


def test_each_bad_clip_is_quarantined_with_its_reason(tmp_path, hostile):
    manifest = str(tmp_path / "ds" / "manifests" / "part-00000.parquet")
    write_manifest(pd.DataFrame([_row(k, v) for k, v in hostile.items()]), manifest)
    out = str(tmp_path / "out")
    config = AlignConfig(max_duration_s=3.5)  # makes the 4 s "too_long" clip too long; "good" is 4 s too
    run = run_partition(manifest, out, run_id="r1", config=AlignConfig(max_duration_s=3600.0),
                        client=MeasuringClient(), progress=lambda m: None)
    table = pd.read_parquet(run.results_uri).set_index("clip_id")
    assert len(table) == len(hostile)  # nothing lost
    for clip_id, reason in EXPECTED_REASON.items():
        if clip_id == "too_long":
            continue
        row = table.loc[clip_id]
        assert row.outcome == "quarantined", clip_id
        assert row.reason.startswith(reason + ":"), (clip_id, row.reason)
    assert table.loc["good"].outcome == "improved"
    assert table.loc["good"].duration_error_s < 1e-3
    # quarantined clips are also written out, not lost
    q = pd.read_parquet(Path(out) / "quarantine" / "r1" / "part-00000.parquet")
    assert set(q.clip_id) == set(EXPECTED_REASON) - {"too_long"}

    long_run = run_partition(manifest, out, run_id="r2", config=config, client=MeasuringClient(),
                             progress=lambda m: None)
    long_table = pd.read_parquet(long_run.results_uri).set_index("clip_id")
    assert long_table.loc["too_long"].reason.startswith("too_long:")
    assert "3.5" in long_table.loc["too_long"].reason  # the message names the limit


def test_rerun_is_idempotent_and_publishes_once(tmp_path, agent_clips):
    manifest = str(tmp_path / "ds" / "manifests" / "part-00000.parquet")
    write_manifest(pd.DataFrame([_row("late", str(agent_clips["late"])), _row("clean", str(agent_clips["clean"]))]),
                   manifest)
    out = str(tmp_path / "out")
    first = run_partition(manifest, out, run_id="r", config=AlignConfig(), client=MeasuringClient(),
                          progress=lambda m: None)
    before = {p.name: p.read_bytes() for p in (Path(first.stage_uri) / "clips").iterdir()}
    again = run_partition(manifest, out, run_id="r", config=AlignConfig(), client=MeasuringClient(),
                          progress=lambda m: None)
    assert again.reused and again.counts == first.counts
    forced = run_partition(manifest, out, run_id="r", config=AlignConfig(), client=MeasuringClient(),
                           progress=lambda m: None, force=True)
    after = {p.name: p.read_bytes() for p in (Path(forced.stage_uri) / "clips").iterdir()}
    assert before == after and before  # byte-identical outputs

    class Passed:
        success, result_uri = True, "gx.json"

    pub1 = publish_partition(out, "r", "part-00000", Passed())
    pub2 = publish_partition(out, "r", "part-00000", Passed())
    assert not pub1.already and pub2.already
    pointer = json.loads(Path(pub1.pointer_uri).read_text())
    assert {o["clip_id"] for o in pointer["outputs"]} == {"late", "clean"}
    assert all(o["sha256"] for o in pointer["outputs"])
    assert list(read_published(out)) == ["part-00000"]

    class Failed:
        success, result_uri = False, "gx.json"

    assert publish_partition(out, "r", "part-00001", Failed()).pointer_uri is None


def test_a_retry_removes_the_temp_files_a_stopped_attempt_left(tmp_path, agent_clips):
    # what a worker killed mid-write leaves: its temp file beside the clip it was writing, and no
    # _SUCCESS; the retry must not leave it among the finished files
    manifest = str(tmp_path / "ds" / "manifests" / "part-00000.parquet")
    write_manifest(pd.DataFrame([_row("late", str(agent_clips["late"]))]), manifest)
    out = str(tmp_path / "out")
    first = run_partition(manifest, out, run_id="r", config=AlignConfig(), client=MeasuringClient(),
                          progress=lambda m: None)
    stage = Path(first.stage_uri)
    (stage / "_SUCCESS").unlink()
    torn = stage / "clips" / ".late.mp4.k3x9q1.tmp"
    torn.write_bytes(b"half a video")
    messages: list[str] = []
    retry = run_partition(manifest, out, run_id="r", config=AlignConfig(), client=MeasuringClient(),
                          progress=messages.append)
    assert not retry.reused and not torn.exists()
    assert sorted(p.name for p in (stage / "clips").iterdir()) == ["late.mp4"]
    assert any("removed 1 temp file(s)" in m and torn.name in m for m in messages)
