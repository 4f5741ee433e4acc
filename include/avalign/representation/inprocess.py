"""The alignment loop in this process: the same describers, scorer, planner and actions as the
Triton-served pipeline, without the server, the encode/decode round trip or the file writes.

Why: the benchmark needs thousands of aligned clips, and the real pipeline costs about 1 s per clip
on the shared 2-core machine (0.5 s median, long tail from multi-cycle clips, measured in
docs/representation.md). The compute per clip is the same here; what is saved is the video
encoding, decoding, gRPC transport, FLAC/remux writes and per-clip bookkeeping. Decisions come
from ``avalign.agent.loop.align_decoded`` itself, so the plan, the keep/reject rule and the edit
are the pipeline's own; ``LocalModels`` only answers the four Triton roles in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avalign.serving.client import Description, Scores


class LocalModels:
    """The four Triton roles (``TritonClient``'s methods) answered by in-process describers.

    Whisper is off: the transcript only decorates the description text; the planner and the scorer
    read tags, speech time and levels, which are computed the same way.
    """

    def __init__(self, *, num_threads: int = 1) -> None:
        from avalign.describe.audio import AudioDescriber
        from avalign.describe.scorer import AVScorer
        from avalign.describe.text import TextEmbedder
        from avalign.describe.visual import VisualDescriber

        self.audio = AudioDescriber(transcribe=False, num_threads=num_threads)
        self.visual = VisualDescriber(num_threads=num_threads)
        self.text = TextEmbedder(num_threads=num_threads)
        self.scorer = AVScorer(self.text.embed)

    def model_version(self, role: str) -> str:
        return "in-process"

    def describe_audio(self, audio_16k: np.ndarray) -> Description:
        text, evidence = self.audio.describe(np.asarray(audio_16k, dtype=np.float32).reshape(-1))
        return Description(text, evidence)

    def describe_frames(self, frames: np.ndarray, fps: float, times_s: np.ndarray | None = None) -> Description:
        text, evidence = self.visual.describe(frames, fps, times_s)
        return Description(text, evidence)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.text.embed(texts)

    def score(self, audio_16k: np.ndarray, frames: np.ndarray, fps: float, evidence: dict[str, Any]) -> Scores:
        alignment, sync, detail = self.scorer.score(audio_16k, frames, fps, evidence)
        return Scores(alignment, sync, detail)


@dataclass
class AlignedAudio:
    """What the pipeline would publish for one clip: the audio and how it got there."""

    audio: np.ndarray  # (T,) float32 at 16 kHz: edited when improved, else the input
    outcome: str  # improved | kept_original | quarantined
    actions: str
    reason: str | None
    offset_est_before_ms: float | None
    alignment_before: float | None
    alignment_after: float | None


def align_audio(audio: np.ndarray, frames: np.ndarray, fps: float, *, models: LocalModels,
                config=None, planner=None, sample_rate: int = 16000) -> AlignedAudio:
    """Run the loop on one clip's 16 kHz mono audio and frames; apply the kept plan like
    ``avalign.agent.partition`` does. A clip the loop cannot handle is ``quarantined`` and keeps
    its input audio (the pipeline would not publish it; callers decide)."""
    from avalign.actions.registry import apply_plan
    from avalign.agent.config import AlignConfig
    from avalign.agent.loop import DecodedClip, align_decoded
    from avalign.agent.planner import RulePlanner

    config = config or AlignConfig()
    planner = planner or RulePlanner()
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    times = np.arange(frames.shape[0]) / float(fps)
    clip = DecodedClip(path=None, audio_model=x, audio_native=x[None, :], native_rate=sample_rate,
                       frames=frames, frame_times=times, fps=float(fps))
    try:
        run = align_decoded(clip, client=models, planner=planner, config=config)
    except Exception as exc:  # mirrors process_clip: one clip never stops the batch
        return AlignedAudio(x, "quarantined", "", f"{type(exc).__name__}: {exc}", None, None, None)
    out = x
    if run.outcome == "improved":
        out = np.asarray(apply_plan(x[None, :], sample_rate, run.best_plan).audio, dtype=np.float32)[0]
    return AlignedAudio(
        audio=out, outcome=run.outcome, actions=",".join(s["action"] for s in run.best_plan),
        reason=run.reason, offset_est_before_ms=run.before.get("offset_ms"),
        alignment_before=run.before.get("alignment"), alignment_after=run.after.get("alignment"),
    )


def replay(results_uri: str, models: LocalModels, config=None, progress=None):
    """Re-run the loop in-process on the clips of a pipeline results table (decoded from their
    source media exactly as ``run_partition`` decodes them) and compare the decisions.

    Returns a DataFrame: clip_id, the pipeline's and the in-process outcome and kept actions,
    ``same`` (both equal) and the in-process seconds. This is the fidelity check behind the
    benchmark's "aligned" variant (docs/representation.md).
    """
    import time
    from pathlib import Path

    import pandas as pd

    from avalign.agent.config import AlignConfig
    from avalign.agent.loop import decode_clip
    from avalign.agent.publish import results_frame
    from avalign.data import storage

    config = config or AlignConfig()
    table = results_frame(results_uri)
    rows = []
    for r in table[table["outcome"] != "quarantined"].to_dict("records"):
        with storage.local_copy(r["source_uri"]) as local:
            clip = decode_clip(Path(local), config)
        t0 = time.perf_counter()
        here = align_audio(clip.audio_model, clip.frames, clip.fps, models=models, config=config)
        rows.append({"clip_id": r["clip_id"], "pipeline": f"{r['outcome']}:{r['actions']}",
                     "in_process": f"{here.outcome}:{here.actions}", "seconds": time.perf_counter() - t0})
        if progress:
            progress(f"{r['clip_id']}: {rows[-1]['pipeline']} | {rows[-1]['in_process']}")
    df = pd.DataFrame(rows)
    df["same"] = df["pipeline"] == df["in_process"]
    return df
