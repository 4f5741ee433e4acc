"""Build a sample dataset with known faults: procedural clips, and optionally real ones.

Layout (local path or s3://)::

    <dataset>/manifests/part-00000.parquet   one row per clip (see manifest.py)
    <dataset>/media/<clip_id>.mp4             the CORRUPTED clip: original picture + corrupted audio
                                             (.mkv when the video codec cannot go into MP4)
    <dataset>/reference/<clip_id>.wav         the clean audio, to score repairs against
    <dataset>/build_rejects.json             clips that could not be built, with reason + message

Procedural partitions mix every category and a realistic draw of corruptions (about 1 in 6
clean controls). With ``real_av_dir`` one more partition holds the real clips, given injected
offsets and noise; their reference is their own decoded audio (16 kHz mono), assumed in sync.
Everything is staged in a local temp folder and then copied to the target through
:mod:`avalign.data.storage`, so s3:// works the same as a local path. Deterministic per seed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from avalign.data import storage
from avalign.data.corruption import corrupt, manifest_fields, sample_corruption
from avalign.data.generator import CATEGORIES, encode_video, synthesize
from avalign.data.manifest import manifest_uri, partition_name, safe_clip_id, write_manifest
from avalign.errors import ClipError
from avalign.media.decode import decode_audio
from avalign.media.probe import probe
from avalign.media.remux import remux_with_audio, write_audio

VIDEO_EXTS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
HEADROOM_PEAK = 0.99  # corrupted audio is scaled (and the scaling recorded) above this peak
REAL_KINDS: tuple[str, ...] = ("offset", "noise")
MIXES: dict[str, dict] = {
    "realistic": {},
    "single": {"single": True, "noise_kinds": ("white", "pink", "hum")},
}


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _with_other(spec: list[dict], other_id: str | None) -> list[dict]:
    """Name the clip whose audio a 'clip' noise / distractor borrows, in its params."""
    for step in spec:
        p = step["params"]
        if other_id and (
            p.get("noise_kind") == "clip"
            or (step["type"] == "distractor" and p.get("kind") == "clip")
        ):
            p["other_clip_id"] = other_id
    return spec


def _publish(local: Path, dataset_uri: str, folder: str) -> str:
    uri = storage.join(dataset_uri, folder, local.name)
    storage.upload_file(local, uri)
    local.unlink(missing_ok=True)
    return uri


def build_dataset(
    out_uri: str,
    *,
    partitions: int = 2,
    clips_per_partition: int = 16,
    real_av_dir: str | Path | None = None,
    seed: int = 0,
    duration_s: float = 4.0,
    progress: Callable[[str], None] | None = print,
    width: int = 160,
    height: int = 120,
    fps: float = 25.0,
    sample_rate: int = 16000,
    real_limit: int | None = None,
    real_max_duration_s: float = 60.0,
    mix: str = "realistic",
) -> list[str]:
    """Write a dataset of corrupted clips + clean references; returns the partitions written.

    ``real_limit`` caps how many real clips are used (sorted by name); real clips longer than
    ``real_max_duration_s`` are rejected (listed in build_rejects.json), as is any clip that
    fails to decode or remux: one bad file never stops the build.

    ``mix``: "realistic" draws combined corruptions over every noise kind; "single" draws one
    corruption per clip with stationary noise (white, pink, hum), so each ground-truth metric
    measures one repair (what ``make demo`` uses).
    """
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {sorted(MIXES)}, got {mix!r}")
    sampling = MIXES[mix]
    if partitions < 0 or clips_per_partition < 1:
        raise ValueError("partitions must be >= 0 and clips_per_partition >= 1")
    out_uri = str(out_uri)
    say = progress or (lambda _msg: None)
    written: list[str] = []
    rejects: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="avalign-build-") as tmp_dir:
        tmp = Path(tmp_dir)
        for p in range(partitions):
            part = partition_name(p)
            rows = _procedural_partition(
                out_uri,
                part,
                p,
                tmp,
                say,
                rejects,
                seed=seed,
                n=clips_per_partition,
                duration_s=duration_s,
                width=width,
                height=height,
                fps=fps,
                sr=sample_rate,
                sampling=sampling,
            )
            write_manifest(pd.DataFrame(rows), manifest_uri(out_uri, part))
            written.append(part)
        if real_av_dir is not None:
            part = partition_name(partitions)
            rows = _real_partition(
                out_uri,
                part,
                str(real_av_dir),
                tmp,
                say,
                rejects,
                seed=seed,
                limit=real_limit,
                max_duration_s=real_max_duration_s,
                sr=sample_rate,
                sampling=sampling,
            )
            if rows:
                write_manifest(pd.DataFrame(rows), manifest_uri(out_uri, part))
                written.append(part)
            else:
                say(f"[{part}] no usable real clips in {real_av_dir}: partition not written")
    storage.write_json(storage.join(out_uri, "build_rejects.json"), rejects)
    say(f"dataset {out_uri}: {len(written)} partitions, {len(rejects)} rejects")
    return written


def _procedural_partition(
    out_uri, part, p, tmp, say, rejects, *, seed, n, duration_s, width, height, fps, sr, sampling
):
    order_rng = np.random.default_rng([int(seed), p, 1])
    cats = [CATEGORIES[k % len(CATEGORIES)] for k in range(n)]
    cats = [cats[k] for k in order_rng.permutation(n)] if n > 1 else cats
    rows = []
    prev: tuple[str, np.ndarray] | None = None
    for i, category in enumerate(cats):
        started = time.perf_counter()
        rng = np.random.default_rng([int(seed), p, i])
        clip_seed = int(rng.integers(0, 2**31 - 1))
        clip_id = f"gen{seed}-{p:05d}-{i:04d}-{category}"
        try:
            syn = synthesize(
                category,
                clip_seed,
                duration_s=duration_s,
                fps=fps,
                width=width,
                height=height,
                sample_rate=sr,
            )
            spec = _with_other(
                sample_corruption(
                    rng, duration_s=duration_s, other_available=prev is not None, **sampling
                ),
                prev[0] if prev else None,
            )
            audio, applied = corrupt(
                syn.audio,
                sr,
                spec,
                seed=clip_seed,
                other_audio=prev[1] if prev else None,
                limit_peak=HEADROOM_PEAK,
            )
            video = encode_video(syn.frames, fps, tmp / f"{clip_id}.video.mp4")
            media = remux_with_audio(video, audio, sr, tmp / f"{clip_id}.mp4")
            video.unlink(missing_ok=True)
            ref = write_audio(tmp / f"{clip_id}.wav", syn.audio, sr)
            media_uri = _publish(media, out_uri, "media")
            ref_uri = _publish(ref, out_uri, "reference")
        except ClipError as exc:
            rejects.append(
                {
                    "partition": part,
                    "clip_id": clip_id,
                    "source": f"procedural:{category}:{clip_seed}",
                    "reason": exc.reason,
                    "message": str(exc),
                }
            )
            say(f"[{part}] {i + 1}/{n} {clip_id} FAILED {exc.reason}: {exc}")
            continue
        fields = manifest_fields(applied)
        rows.append(
            {
                "clip_id": clip_id,
                "source_uri": media_uri,
                "reference_audio_uri": ref_uri,
                "duration_s": float(duration_s),
                "fps": float(fps),
                "sample_rate": int(sr),
                "channels": 1,
                "width": int(width),
                "height": int(height),
                "category": category,
                **fields,
                "partition": part,
                "origin": "procedural",
                "seed": clip_seed,
                "event_times_s": json.dumps([round(t, 6) for t in syn.event_times_s]),
            }
        )
        prev = (clip_id, syn.audio)
        say(_line(part, i + 1, n, clip_id, fields, time.perf_counter() - started))
    return rows


def _real_partition(
    out_uri, part, real_dir, tmp, say, rejects, *, seed, limit, max_duration_s, sr, sampling
):
    files = [u for u in storage.list_files(real_dir) if _name(u).lower().endswith(VIDEO_EXTS)]
    if limit is not None:
        files = files[: int(limit)]
    rows = []
    used_ids: set[str] = set()
    prev: tuple[str, np.ndarray] | None = None
    for j, uri in enumerate(files):
        started = time.perf_counter()
        stem = _name(uri).rsplit(".", 1)[0]
        clip_id = f"real{seed}-{safe_clip_id(stem)}"
        while clip_id in used_ids:
            clip_id += "_"
        used_ids.add(clip_id)
        rng = np.random.default_rng([int(seed), 99_999, j])
        clip_seed = int(rng.integers(0, 2**31 - 1))
        try:
            with storage.local_copy(uri) as src:
                probe(src, max_duration_s=max_duration_s)
                track = decode_audio(src, sample_rate=sr, mono=True, max_duration_s=max_duration_s)
                spec = _with_other(
                    sample_corruption(
                        rng,
                        kinds=REAL_KINDS,
                        duration_s=track.duration_s,
                        other_available=prev is not None,
                        **sampling,
                    ),
                    prev[0] if prev else None,
                )
                audio, applied = corrupt(
                    track.samples,
                    sr,
                    spec,
                    seed=clip_seed,
                    other_audio=prev[1] if prev else None,
                    limit_peak=HEADROOM_PEAK,
                )
                media = remux_with_audio(src, audio, sr, tmp / f"{clip_id}.mp4")
            info = probe(media)
            ref = write_audio(tmp / f"{clip_id}.wav", track.samples, sr)
            media_uri = _publish(media, out_uri, "media")
            ref_uri = _publish(ref, out_uri, "reference")
        except ClipError as exc:
            rejects.append(
                {
                    "partition": part,
                    "clip_id": clip_id,
                    "source": uri,
                    "reason": exc.reason,
                    "message": str(exc),
                }
            )
            say(f"[{part}] {j + 1}/{len(files)} {clip_id} FAILED {exc.reason}: {exc}")
            continue
        fields = manifest_fields(applied)
        rows.append(
            {
                "clip_id": clip_id,
                "source_uri": media_uri,
                "reference_audio_uri": ref_uri,
                "duration_s": float(info.duration_s),
                "fps": float(info.fps or 0.0),
                "sample_rate": int(sr),
                "channels": 1,
                "width": int(info.width or 0),
                "height": int(info.height or 0),
                "category": None,
                **fields,
                "partition": part,
                "origin": "real",
                "seed": clip_seed,
                "event_times_s": None,
            }
        )
        prev = (clip_id, track.samples)
        say(_line(part, j + 1, len(files), clip_id, fields, time.perf_counter() - started))
    return rows


def _line(part: str, k: int, n: int, clip_id: str, fields: dict, seconds: float) -> str:
    snr = "-" if fields["snr_db"] is None else f"{fields['snr_db']:.1f}dB"
    return (
        f"[{part}] {k}/{n} {clip_id}: {fields['corruption_types']} "
        f"offset={fields['offset_ms']:+.0f}ms snr={snr} ({seconds:.2f}s)"
    )
