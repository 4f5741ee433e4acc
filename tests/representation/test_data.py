"""Reading an av_align-published dataset into the three variants: aligned = the published FLAC for
improved clips and the source audio otherwise; held-out clips carry only clean audio."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avalign.representation import features as F
from avalign.representation.data import build_published, held_out

EVAL_FRACTION = 0.4


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    from avalign.agent.partition import results_table, stage_uri
    from avalign.agent.publish import publish_partition
    from avalign.data.dataset import build_dataset
    from avalign.data.manifest import read_manifest
    from avalign.data.storage import join, write_bytes
    from avalign.media.decode import decode_audio
    from avalign.media.remux import write_audio

    tmp = tmp_path_factory.mktemp("published")
    dataset, out, run_id = str(tmp / "dataset"), str(tmp / "aligned"), "run_a"
    build_dataset(dataset, partitions=1, clips_per_partition=8, duration_s=2.4, width=64, height=48,
                  progress=None)
    manifest = read_manifest(join(dataset, "manifests", "part-00000.parquet"))
    stage = stage_uri(out, run_id, "part-00000")
    rows, improved = [], []
    for i, r in enumerate(manifest.to_dict("records")):
        row = {"clip_id": r["clip_id"], "partition": "part-00000", "run_id": run_id, "source_uri": r["source_uri"],
               "outcome": "kept_original", "reference_audio_uri": r["reference_audio_uri"],
               "category": r["category"], "corruption_types": r["corruption_types"], "output_uri": r["source_uri"]}
        if i % 2 == 0:  # "improved": the published audio is the clean reference (an ideal repair)
            clean = decode_audio(r["reference_audio_uri"], sample_rate=16000, mono=True).samples
            flac = Path(stage) / "audio" / f"{r['clip_id']}.flac"
            flac.parent.mkdir(parents=True, exist_ok=True)
            write_audio(flac, clean, 16000)
            row.update(outcome="improved", audio_uri=str(flac), actions="time_shift")
            improved.append(r["clip_id"])
        rows.append(row)
    import io

    buf = io.BytesIO()
    results_table(rows).to_parquet(buf, index=False)
    write_bytes(join(stage, "results.parquet"), buf.getvalue())
    write_bytes(join(stage, "_SUCCESS"), json.dumps({"n_clips": len(rows)}).encode())  # what run_partition marks
    publish_partition(out, run_id, "part-00000", SimpleNamespace(success=True, result_uri=None))
    ids = list(manifest["clip_id"])
    assert any(held_out(c, EVAL_FRACTION) for c in ids) and not all(held_out(c, EVAL_FRACTION) for c in ids)
    fs = build_published(out, duration_s=2.4, eval_fraction=EVAL_FRACTION, progress=lambda _m: None)
    return {"fs": fs, "ids": ids, "improved": improved, "out": out}


def test_split_by_clip_id_and_dataset_version(published):
    fs, ids = published["fs"], published["ids"]
    assert sorted(fs.train_ids + fs.eval_ids) == sorted(ids)
    assert all(held_out(c, EVAL_FRACTION) for c in fs.eval_ids)
    assert fs.meta["dataset_version"] == {"source": "published", "output_uri": published["out"],
                                          "run_ids": ["run_a"], "partitions": ["part-00000"]}
    assert fs.train_mel["raw"].shape == (len(fs.train_ids), 120, F.N_MELS)
    assert fs.eval_motion.shape == (len(fs.eval_ids), 60, F.MOTION_DIM)


def test_aligned_is_the_published_flac_for_improved_clips_and_the_source_otherwise(published):
    fs = published["fs"]
    for i, clip_id in enumerate(fs.train_ids):
        raw, aligned, clean = (fs.train_mel[v][i] for v in ("raw", "aligned", "clean"))
        if clip_id in published["improved"]:
            assert np.abs(aligned - clean).max() < 0.05  # the FLAC holds the clean reference
            assert fs.meta["clips"][clip_id]["outcome"] == "improved"
        else:
            assert np.array_equal(aligned, raw)
