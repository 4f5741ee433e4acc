"""Benchmark clips with known corruption: a grid over procedural and real clips.

Every clip carries one corruption (or none), so each metric isolates one repair. The grid is
the issue's: offsets 0, ±40, ±80, ±200, ±500, ±1000 ms; noise at -5, 0, 5, 10, 20 dB SNR
(white, pink, hum); speed drift; gaps; gain; an off-screen distractor; clean controls.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from avalign.data import storage

OFFSETS_MS = (-1000, -500, -200, -80, -40, 0, 40, 80, 200, 500, 1000)
SNRS_DB = (-5, 0, 5, 10, 20)
NOISE_KINDS = ("white", "pink", "hum")


@dataclass(frozen=True)
class Suite:
    name: str
    categories: tuple[str, ...]
    seeds_per_category: int
    offsets_ms: tuple[int, ...]
    snrs_db: tuple[int, ...]
    others: tuple[str, ...]  # speed_drift, gaps, gain, distractor, none
    real_offsets_ms: tuple[int, ...]
    real_snrs_db: tuple[int, ...]
    duration_s: float = 4.0
    width: int = 128
    height: int = 96


SUITES = {
    "default": Suite("default", ("bouncing_ball", "metronome", "drum", "talking_mouth", "passing_car",
                                 "flashing_beacon", "rain", "fan_hum"), 1, OFFSETS_MS, SNRS_DB,
                     ("speed_drift", "gaps", "gain", "distractor", "none", "none"),
                     (-500, -200, 80, 200), (5,)),
    "tiny": Suite("tiny", ("drum",), 1, (240, 0), (5,), ("none",), (), (), duration_s=3.0, width=96, height=72),
    "smoke": Suite("smoke", ("drum", "flashing_beacon"), 1, (-200, 0, 200), (0,), ("gaps", "none"),
                   (200,), (), duration_s=3.0, width=96, height=72),
}


def _step(kind: str, value: float, rng: np.random.Generator, duration_s: float) -> list[dict]:
    if kind == "offset":
        return [{"type": "offset", "params": {"offset_ms": float(value)}}] if value else [{"type": "none", "params": {}}]
    if kind == "noise":
        return [{"type": "noise", "params": {"snr_db": float(value),
                                             "noise_kind": NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))],
                                             "seed": int(rng.integers(1 << 30))}}]
    if kind == "speed_drift":
        return [{"type": "speed_drift", "params": {"speed": float(rng.choice([0.97, 0.98, 1.02, 1.03]))}}]
    if kind == "gaps":
        start = float(rng.uniform(0.5, duration_s - 1.0))
        return [{"type": "gaps", "params": {"gaps": [[round(start, 3), round(float(rng.uniform(0.1, 0.4)), 3)]]}}]
    if kind == "gain":
        return [{"type": "gain", "params": {"gain_db": float(rng.uniform(-30, -22)), "clip_level": None}}]
    if kind == "distractor":
        return [{"type": "distractor", "params": {"distractor_db": float(rng.uniform(-6, 0)),
                                                  "start_s": float(rng.uniform(0.2, duration_s / 2)),
                                                  "dur_s": 1.0, "kind": str(rng.choice(["siren", "bark"])),
                                                  "seed": int(rng.integers(1 << 30))}}]
    return [{"type": "none", "params": {}}]


def severity(corruption_json: str) -> tuple[str, float]:
    """(corruption type, severity ≥ 0) of a single-corruption clip, for the calibration."""
    steps = [s for s in json.loads(corruption_json or "[]") if not s.get("params", {}).get("headroom")]
    if not steps or steps[0]["type"] == "none":
        return "none", 0.0
    s = steps[0]
    p = s["params"]
    value = {
        "offset": abs(p.get("offset_ms", 0.0)),
        "noise": 30.0 - p.get("snr_db", 30.0),
        "speed_drift": abs(p.get("speed", 1.0) - 1.0),
        "gaps": sum(d for _, d in p.get("gaps", [])),
        "gain": abs(p.get("gain_db", 0.0)),
        "distractor": p.get("distractor_db", 0.0) + 20.0,
    }.get(s["type"], 0.0)
    return s["type"], float(value)


def build_benchmark(suite: Suite, out_uri: str, *, real_av_dir: Path | None, progress: Callable[[str], None] = print,
                    seed: int = 0) -> list[str]:
    """Write the suite's clips and one manifest per group (procedural, real). Returns partitions."""
    from avalign.data.corruption import corrupt, manifest_fields
    from avalign.data.generator import encode_video, synthesize
    from avalign.data.manifest import manifest_uri, partition_name, safe_clip_id, write_manifest
    from avalign.media.decode import decode_audio, decode_frames
    from avalign.media.probe import probe
    from avalign.media.remux import remux_with_audio, write_audio

    specs: list[tuple[str, str, int, list[dict]]] = []  # (origin, source, seed, steps)
    rng = np.random.default_rng(seed)
    for category in suite.categories:
        for k in range(suite.seeds_per_category):
            s = int(rng.integers(1 << 30))
            for off in suite.offsets_ms:
                specs.append(("procedural", category, s, _step("offset", off, rng, suite.duration_s)))
            for snr in suite.snrs_db:
                specs.append(("procedural", category, s, _step("noise", snr, rng, suite.duration_s)))
            for other in suite.others:
                specs.append(("procedural", category, s, _step(other, 0, rng, suite.duration_s)))
    if real_av_dir is not None and real_av_dir.is_dir():
        for path in sorted(real_av_dir.iterdir()):
            if path.suffix.lower() not in {".mp4", ".avi", ".mkv", ".mov", ".webm"}:
                continue
            for off in suite.real_offsets_ms:
                specs.append(("real", str(path), 0, _step("offset", off, rng, 5.0)))
            for snr in suite.real_snrs_db:
                specs.append(("real", str(path), 0, _step("noise", snr, rng, 5.0)))

    rows: dict[str, list[dict]] = {"procedural": [], "real": []}
    with tempfile.TemporaryDirectory(prefix="avalign-bench-") as tmp:
        tmpd = Path(tmp)
        cache: dict[tuple[str, int], tuple[Path, np.ndarray, int, dict]] = {}
        for i, (origin, source, s, steps) in enumerate(specs):
            key = (source, s)
            if key not in cache:
                if origin == "procedural":
                    syn = synthesize(source, s, duration_s=suite.duration_s, width=suite.width,
                                     height=suite.height, sample_rate=16000)
                    video = encode_video(syn.frames, syn.fps, tmpd / f"v{len(cache)}.mp4")
                    meta = {"fps": syn.fps, "width": suite.width, "height": suite.height, "category": source}
                    cache[key] = (video, syn.audio, 16000, meta)
                else:
                    info = probe(source)
                    track = decode_audio(source, sample_rate=16000, mono=True)
                    frames = decode_frames(source, sample_fps=25.0, max_side=64, max_frames=2)
                    meta = {"fps": float(info.fps or 25.0), "width": frames.width, "height": frames.height,
                            "category": None}
                    cache[key] = (Path(source), track.samples, 16000, meta)
            video, clean, sr, meta = cache[key]
            audio, applied = corrupt(clean, sr, [dict(st, params=dict(st["params"])) for st in steps], seed=i,
                                     limit_peak=0.99)
            stem = source if origin == "procedural" else Path(source).stem
            clip_id = safe_clip_id(f"{origin[:4]}-{i:04d}-{stem}-{applied[0]['type']}")
            media = remux_with_audio(video, audio.astype(np.float32), sr, tmpd / f"{clip_id}.mp4")
            media_uri = storage.join(out_uri, "media", Path(media).name)
            storage.upload_file(media, media_uri)
            ref = write_audio(tmpd / f"{clip_id}.wav", clean.astype(np.float32), sr)
            ref_uri = storage.join(out_uri, "reference", ref.name)
            storage.upload_file(ref, ref_uri)
            Path(media).unlink(missing_ok=True)
            ref.unlink(missing_ok=True)
            rows[origin].append({
                "clip_id": clip_id, "source_uri": media_uri, "reference_audio_uri": ref_uri,
                "duration_s": clean.shape[-1] / sr, "fps": meta["fps"], "sample_rate": sr, "channels": 1,
                "width": int(meta["width"]), "height": int(meta["height"]), "category": meta["category"],
                **manifest_fields(applied), "origin": origin, "seed": int(s),
            })
            if (i + 1) % 25 == 0:
                progress(f"benchmark {suite.name}: {i + 1}/{len(specs)} clips written")
    parts = []
    for k, origin in enumerate(("procedural", "real")):
        if rows[origin]:
            name = partition_name(k)
            df = pd.DataFrame(rows[origin])
            df["partition"] = name
            write_manifest(df, manifest_uri(out_uri, name))
            parts.append(name)
    progress(f"benchmark {suite.name}: {len(specs)} clips in partitions {parts}")
    return parts
