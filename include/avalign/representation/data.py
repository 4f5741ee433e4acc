"""The three variants of one dataset, as cached learner inputs, plus a clean held-out split.

A ``FeatureSet`` holds, for the SAME training clips, the audio features of each variant:

- ``raw``: the corrupted audio the dataset was built with;
- ``aligned``: what the av_align pipeline publishes for the clip: its edited audio when the clip
  came out ``improved``, else the original (``kept_original``);
- ``clean``: the generator's clean audio (the upper bound).

The visual features are the same for every variant (alignment edits audio only). The evaluation
split holds other clips, always with their clean audio: ground-truth pairs.

Two sources build one:

- ``build_published``: a dataset published by the ``av_align`` DAG (``<out>/published/*.json``),
  i.e. the real Triton-backed pipeline's output. Held-out clips are chosen by a hash of the clip
  id and use the dataset's clean reference audio.
- ``build_procedural``: the benchmark. Clips are synthesised in memory (``avalign.data.generator``),
  corrupted with the dataset builder's realistic mix, and aligned by the pipeline's own loop run
  in-process (``avalign.representation.inprocess``): same describers, scorer, rule planner, actions
  and keep/reject rule, without Triton transport or video encoding.

Both are cached under ``cache_dir/<key>/`` (one ``features.npz`` + ``meta.json``); the key hashes
everything that determines the content, so a second comparison on the same data starts at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avalign.representation import features as F

VARIANTS = ("raw", "aligned", "clean")
CACHE_VERSION = "repr-features-1"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The code a procedural "aligned" variant depends on: a change here means other aligned audio.
PIPELINE_CODE = ("agent", "actions", "describe", "data/corruption.py", "data/generator.py",
                 "representation/features.py", "representation/inprocess.py")


def code_fingerprint() -> str:
    """Short hash of the pipeline code behind the procedural variants (part of the cache key)."""
    digest = hashlib.sha256()
    for name in PIPELINE_CODE:
        path = PACKAGE_DIR / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(f.relative_to(PACKAGE_DIR)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class FeatureSet:
    """Cached learner inputs. Arrays are float16 on disk, float32 once loaded for training."""

    categories: list[str]
    duration_s: float
    train_ids: list[str]
    train_category: np.ndarray  # (N,) int, -1 = unknown
    train_mel: dict[str, np.ndarray]  # variant → (N, Ta, N_MELS)
    train_motion: np.ndarray  # (N, Tv, MOTION_DIM)
    train_semantic: np.ndarray  # (N, SEMANTIC_DIM)
    eval_ids: list[str]
    eval_category: np.ndarray
    eval_mel: np.ndarray  # clean audio
    eval_motion: np.ndarray
    eval_semantic: np.ndarray
    eval_thumbs: np.ndarray  # (M, 36, 48, 3) uint8
    meta: dict[str, Any] = field(default_factory=dict)  # source, dataset version, outcomes, timings

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(v for v in VARIANTS if v in self.train_mel)

    def summary(self) -> dict[str, Any]:
        return {"n_train": len(self.train_ids), "n_eval": len(self.eval_ids), "variants": list(self.variants),
                "categories": self.categories, "duration_s": self.duration_s,
                **{k: v for k, v in self.meta.items() if k not in {"clips"}}}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"train_category": self.train_category, "train_motion": self.train_motion.astype(np.float16),
                  "train_semantic": self.train_semantic.astype(np.float16),
                  "eval_category": self.eval_category, "eval_mel": self.eval_mel.astype(np.float16),
                  "eval_motion": self.eval_motion.astype(np.float16),
                  "eval_semantic": self.eval_semantic.astype(np.float16), "eval_thumbs": self.eval_thumbs}
        arrays.update({f"train_mel_{v}": m.astype(np.float16) for v, m in self.train_mel.items()})
        tmp = folder / "features.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(folder / "features.npz")
        doc = {"categories": self.categories, "duration_s": self.duration_s, "train_ids": self.train_ids,
               "eval_ids": self.eval_ids, "meta": self.meta, "version": CACHE_VERSION}
        (folder / "meta.json").write_text(json.dumps(doc, indent=1, default=str))

    @classmethod
    def load(cls, folder: Path) -> "FeatureSet":
        doc = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "features.npz") as z:
            a = {k: z[k] for k in z.files}
        f32 = lambda k: a[k].astype(np.float32)
        return cls(
            categories=list(doc["categories"]), duration_s=float(doc["duration_s"]),
            train_ids=list(doc["train_ids"]), train_category=a["train_category"].astype(np.int64),
            train_mel={v: f32(f"train_mel_{v}") for v in VARIANTS if f"train_mel_{v}" in a},
            train_motion=f32("train_motion"), train_semantic=f32("train_semantic"),
            eval_ids=list(doc["eval_ids"]), eval_category=a["eval_category"].astype(np.int64),
            eval_mel=f32("eval_mel"), eval_motion=f32("eval_motion"), eval_semantic=f32("eval_semantic"),
            eval_thumbs=a["eval_thumbs"], meta=dict(doc.get("meta") or {}),
        )


def spec_key(spec: dict[str, Any]) -> str:
    """Cache key: a short hash of everything that decides the content."""
    text = json.dumps({**spec, "version": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(spec: dict[str, Any], cache_dir: str | Path, build: Callable[[], FeatureSet],
           progress: Callable[[str], None] = print) -> tuple[FeatureSet, Path]:
    """Load ``cache_dir/<key>`` when present, else ``build()`` and save it there."""
    folder = Path(cache_dir) / spec_key(spec)
    if (folder / "features.npz").exists() and (folder / "meta.json").exists():
        progress(f"features cached at {folder}")
        return FeatureSet.load(folder), folder
    t0 = time.perf_counter()
    fs = build()
    fs.meta.setdefault("timings", {})["build_s"] = round(time.perf_counter() - t0, 1)
    fs.meta["spec"] = spec
    fs.save(folder)
    progress(f"features built in {time.perf_counter() - t0:.0f}s and cached at {folder}")
    return FeatureSet.load(folder), folder


# --------------------------------------------------------------------------------------------
# one clip → features


@dataclass
class ClipFeatures:
    clip_id: str
    category: int
    mel: dict[str, np.ndarray]  # variant → (Ta, N_MELS)
    motion: np.ndarray
    semantic: np.ndarray
    thumb: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)  # outcome, actions, corruption_types, seconds


def clip_features(clip_id: str, category: int, frames: np.ndarray, fps: float, audio: dict[str, np.ndarray],
                  duration_s: float, semantic: F.SemanticEncoder, times_s: np.ndarray | None = None,
                  info: dict[str, Any] | None = None) -> ClipFeatures:
    """Features of the first ``duration_s`` seconds of one clip (all variants' audio)."""
    ta, tv = int(round(duration_s * F.AUDIO_RATE)), int(round(duration_s * F.VIDEO_RATE))
    return ClipFeatures(
        clip_id=clip_id, category=category,
        mel={v: F.log_mel(a[: int(round(duration_s * F.SAMPLE_RATE))], ta) for v, a in audio.items()},
        motion=F.motion_descriptors(frames, times_s, fps=fps, n_steps=tv),
        semantic=semantic(frames), thumb=F.thumbnail(frames), info=dict(info or {}),
    )


def assemble(categories: list[str], duration_s: float, train: list[ClipFeatures], held_out: list[ClipFeatures],
             meta: dict[str, Any]) -> FeatureSet:
    if not train or not held_out:
        raise ValueError(f"need training and held-out clips, got {len(train)} and {len(held_out)}")
    variants = [v for v in VARIANTS if all(v in c.mel for c in train)]
    return FeatureSet(
        categories=list(categories), duration_s=float(duration_s),
        train_ids=[c.clip_id for c in train], train_category=np.array([c.category for c in train], np.int64),
        train_mel={v: np.stack([c.mel[v] for c in train]) for v in variants},
        train_motion=np.stack([c.motion for c in train]), train_semantic=np.stack([c.semantic for c in train]),
        eval_ids=[c.clip_id for c in held_out], eval_category=np.array([c.category for c in held_out], np.int64),
        eval_mel=np.stack([c.mel["clean"] for c in held_out]), eval_motion=np.stack([c.motion for c in held_out]),
        eval_semantic=np.stack([c.semantic for c in held_out]), eval_thumbs=np.stack([c.thumb for c in held_out]),
        meta={**meta, "clips": {c.clip_id: c.info for c in train}},
    )


# --------------------------------------------------------------------------------------------
# procedural benchmark


@dataclass(frozen=True)
class ProceduralSpec:
    """The benchmark's size. Defaults: 2,000 training and 480 held-out clips of 3 s, 96x72."""

    n_train: int = 2000
    n_eval: int = 480
    duration_s: float = 3.0
    width: int = 96
    height: int = 72
    fps: float = 25.0
    seed: int = 0
    mix: str = "realistic"
    align: bool = True  # False: no aligned variant (tests of the learner alone)

    def to_dict(self) -> dict[str, Any]:
        return {"source": "procedural", **asdict(self)}


def _procedural_clip(spec: ProceduralSpec, split: str, k: int) -> tuple[str, str, int, np.random.Generator]:
    from avalign.data.generator import CATEGORIES

    code = {"train": 0, "eval": 1}[split]
    rng = np.random.default_rng([int(spec.seed), 7_001 + code, int(k)])
    category = CATEGORIES[k % len(CATEGORIES)]
    clip_seed = int(rng.integers(0, 2**31 - 1))
    return f"{split}{spec.seed}-{k:05d}-{category}", category, clip_seed, rng


def _synth(spec: ProceduralSpec, category: str, clip_seed: int):
    from avalign.data.generator import synthesize

    return synthesize(category, clip_seed, duration_s=spec.duration_s, fps=spec.fps, width=spec.width,
                      height=spec.height, sample_rate=F.SAMPLE_RATE)


class _Worker:
    """Per-process state of a benchmark build: the frozen encoder and the in-process pipeline."""

    def __init__(self, align: bool) -> None:
        import torch

        torch.set_num_threads(1)
        self.semantic = F.SemanticEncoder(num_threads=1)
        self.models = None
        if align:
            from avalign.representation.inprocess import LocalModels

            self.models = LocalModels(num_threads=1)


_STATE: dict[str, Any] = {}


def _init_worker(align: bool) -> None:
    """Pool initializer: a spawned worker's models, with the describers' warnings silenced."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    _STATE["worker"] = _Worker(align)


def _build_chunk(args: tuple[dict, str, int, int]) -> list[ClipFeatures]:
    """Clips [start, stop) of one split. Deterministic per clip, whatever the chunking."""
    from avalign.data.corruption import corrupt, manifest_fields, sample_corruption
    from avalign.data.dataset import HEADROOM_PEAK, MIXES, _with_other
    from avalign.data.generator import CATEGORIES

    spec_d, split, start, stop = args
    spec = ProceduralSpec(**{k: v for k, v in spec_d.items() if k != "source"})
    worker: _Worker = _STATE["worker"]
    out: list[ClipFeatures] = []
    prev = None
    if split == "train" and start > 0:  # the clip whose audio a "clip" noise or distractor borrows
        pid, pcat, pseed, _ = _procedural_clip(spec, split, start - 1)
        prev = (pid, _synth(spec, pcat, pseed).audio)
    for k in range(start, stop):
        t0 = time.perf_counter()
        clip_id, category, clip_seed, rng = _procedural_clip(spec, split, k)
        syn = _synth(spec, category, clip_seed)
        clean = syn.audio[0]
        audio = {"clean": clean}
        info: dict[str, Any] = {}
        if split == "train":
            steps = _with_other(sample_corruption(rng, duration_s=spec.duration_s, other_available=prev is not None,
                                                  **MIXES[spec.mix]), prev[0] if prev else None)
            corrupted, applied = corrupt(syn.audio, F.SAMPLE_RATE, steps, seed=clip_seed,
                                         other_audio=prev[1] if prev else None, limit_peak=HEADROOM_PEAK)
            audio["raw"] = corrupted[0]
            info["corruption_types"] = manifest_fields(applied)["corruption_types"]
            info["offset_ms"] = manifest_fields(applied)["offset_ms"]
            if worker.models is not None:
                from avalign.representation.inprocess import align_audio

                t1 = time.perf_counter()
                aligned = align_audio(corrupted[0], syn.frames, syn.fps, models=worker.models)
                audio["aligned"] = aligned.audio
                info.update(outcome=aligned.outcome, actions=aligned.actions,
                            align_s=round(time.perf_counter() - t1, 3),
                            offset_est_before_ms=aligned.offset_est_before_ms)
            prev = (clip_id, syn.audio)
        feats = clip_features(clip_id, CATEGORIES.index(category), syn.frames, syn.fps, audio, spec.duration_s,
                              worker.semantic, info=info)
        feats.info["seconds"] = round(time.perf_counter() - t0, 3)
        out.append(feats)
    return out


def build_procedural(spec: ProceduralSpec, *, workers: int = 1, chunk: int = 40,
                     progress: Callable[[str], None] = print) -> FeatureSet:
    """Synthesise, corrupt, align (in-process pipeline) and featurise the benchmark clips.

    ``workers`` > 1 uses that many processes (spawned, one torch thread each). Results do not
    depend on ``workers`` or ``chunk``.
    """
    from tqdm import tqdm

    from avalign.data.generator import CATEGORIES

    jobs = [(spec.to_dict(), split, s, min(s + chunk, n))
            for split, n in (("train", spec.n_train), ("eval", spec.n_eval)) for s in range(0, n, chunk)]
    t0 = time.perf_counter()
    results: list[list[ClipFeatures]] = []
    bar = tqdm(total=spec.n_train + spec.n_eval, desc="benchmark clips", unit="clip", mininterval=2.0)
    if workers <= 1:
        _STATE["worker"] = _Worker(spec.align)
        for job in jobs:
            results.append(_build_chunk(job))
            bar.update(len(results[-1]))
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(spec.align,)) as pool:
            for part in pool.imap(_build_chunk, jobs):
                results.append(part)
                bar.update(len(part))
    bar.close()
    clips = [c for part in results for c in part]
    train = [c for c in clips if c.clip_id.startswith("train")]
    held_out = [c for c in clips if c.clip_id.startswith("eval")]
    outcomes: dict[str, int] = {}
    for c in train:
        if "outcome" in c.info:
            outcomes[c.info["outcome"]] = outcomes.get(c.info["outcome"], 0) + 1
    align_s = [c.info["align_s"] for c in train if "align_s" in c.info]
    meta = {
        "source": "procedural",
        "aligned_means": ("av_align's loop run in-process (avalign.agent.loop.align_decoded with the rule planner, "
                          "the describers, av_scorer and the edit actions): the edited audio for clips it "
                          "improved, the original otherwise"),
        "dataset_version": {**spec.to_dict(), "code": code_fingerprint()},
        "outcomes": outcomes,
        "timings": {"featurise_s": round(time.perf_counter() - t0, 1), "workers": workers,
                    "align_s_per_clip_mean": round(float(np.mean(align_s)), 4) if align_s else None},
    }
    progress(f"benchmark: {len(train)} training + {len(held_out)} held-out clips in "
             f"{time.perf_counter() - t0:.0f}s; aligned outcomes {outcomes}")
    return assemble(list(CATEGORIES), spec.duration_s, train, held_out, meta)


# --------------------------------------------------------------------------------------------
# a dataset published by av_align


def held_out(clip_id: str, fraction: float) -> bool:
    """Stable split by clip id: the same clip is held out in every comparison."""
    h = int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def build_published(output_uri: str, *, partitions: list[str] | None = None, duration_s: float = 3.0,
                    eval_fraction: float = 0.2, progress: Callable[[str], None] = print) -> FeatureSet:
    """Featurise the clips an ``av_align`` run published under ``output_uri``.

    Per clip: frames and raw audio from ``source_uri`` (the corrupted input), aligned audio from
    ``audio_uri`` when the clip was ``improved`` (else the raw audio), clean audio from
    ``reference_audio_uri``. Clips without a reference, shorter than ``duration_s`` or failing to
    decode are skipped and counted; quarantined clips were never published.
    """
    import pandas as pd

    from avalign.agent.publish import read_published, results_frame
    from avalign.data import storage
    from avalign.data.generator import CATEGORIES
    from avalign.errors import ClipError
    from avalign.media.decode import decode_audio, decode_frames

    pointers = read_published(output_uri)
    if partitions:
        pointers = {p: d for p, d in pointers.items() if p in set(partitions)}
    if not pointers:
        raise ValueError(f"{output_uri}: no published partitions{' among ' + str(partitions) if partitions else ''}")
    semantic = F.SemanticEncoder()
    categories = list(CATEGORIES)
    train: list[ClipFeatures] = []
    test: list[ClipFeatures] = []
    skipped: dict[str, int] = {}
    runs = sorted({d["run_id"] for d in pointers.values()})
    rows = []
    for _, doc in sorted(pointers.items()):
        table = results_frame(doc["results_uri"])
        published = {o["clip_id"] for o in doc["outputs"]}
        rows.append(table[table["clip_id"].isin(published)])
    table = pd.concat(rows, ignore_index=True)
    from tqdm import tqdm

    for r in tqdm(table.to_dict("records"), desc="published clips", unit="clip", mininterval=2.0):
        clip_id = str(r["clip_id"])
        ref = r.get("reference_audio_uri")
        if not ref or (isinstance(ref, float) and np.isnan(ref)):
            skipped["no_reference"] = skipped.get("no_reference", 0) + 1
            continue
        try:
            with storage.local_copy(r["source_uri"]) as src:
                video = decode_frames(src, sample_fps=F.VIDEO_RATE, max_side=160)
                raw = decode_audio(src, sample_rate=F.SAMPLE_RATE, mono=True).samples[0]
            with storage.local_copy(ref) as local:
                clean = decode_audio(local, sample_rate=F.SAMPLE_RATE, mono=True).samples[0]
            aligned = raw
            if r["outcome"] == "improved" and r.get("audio_uri"):
                with storage.local_copy(r["audio_uri"]) as local:
                    aligned = decode_audio(local, sample_rate=F.SAMPLE_RATE, mono=True).samples[0]
        except ClipError as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        if min(raw.size, clean.size, aligned.size) < duration_s * F.SAMPLE_RATE or \
                video.frames.shape[0] < duration_s * F.VIDEO_RATE * 0.9:
            skipped["too_short"] = skipped.get("too_short", 0) + 1
            continue
        category = categories.index(r["category"]) if r.get("category") in categories else -1
        info = {"outcome": r["outcome"], "actions": r.get("actions") or "",
                "corruption_types": r.get("corruption_types") or "", "partition": r.get("partition")}
        is_eval = held_out(clip_id, eval_fraction)
        audio = {"clean": clean} if is_eval else {"raw": raw, "aligned": aligned, "clean": clean}
        feats = clip_features(clip_id, category, video.frames, video.fps or F.VIDEO_RATE, audio, duration_s,
                              semantic, times_s=video.times_s, info=info)
        (test if is_eval else train).append(feats)
    outcomes: dict[str, int] = {}
    for c in train:
        outcomes[c.info["outcome"]] = outcomes.get(c.info["outcome"], 0) + 1
    meta = {
        "source": "published",
        "aligned_means": ("the audio av_align published: audio_uri (edited FLAC) for improved clips, "
                          "the source clip's audio for kept_original clips"),
        "dataset_version": {"source": "published", "output_uri": output_uri, "run_ids": runs,
                            "partitions": sorted(pointers)},
        "outcomes": outcomes, "skipped": skipped,
    }
    progress(f"published: {len(train)} training + {len(test)} held-out clips from {sorted(pointers)}; "
             f"skipped {skipped}")
    return assemble(categories, duration_s, train, test, meta)


def published_spec(output_uri: str, partitions: list[str] | None, duration_s: float,
                   eval_fraction: float) -> dict[str, Any]:
    """Cache spec of a published dataset: the pointers' content decides it (a rebuild changes it)."""
    from avalign.agent.publish import read_published

    pointers = read_published(output_uri)
    if partitions:
        pointers = {p: d for p, d in pointers.items() if p in set(partitions)}
    digest = hashlib.sha256(json.dumps(pointers, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": "published", "output_uri": output_uri, "partitions": sorted(pointers),
            "pointers_sha": digest, "duration_s": duration_s, "eval_fraction": eval_fraction}
