"""One clip through describe → plan → edit → reflect, repeated up to ``max_cycles``.

Rules the loop keeps (docs/architecture.md):
- every plan applies to the ORIGINAL audio, never to the previous cycle's output;
- the output keeps the clip's exact duration (the actions guarantee it; we check it);
- the best cycle is kept only if it beats the untouched clip by ``min_improvement``;
  otherwise the clip is ``kept_original``;
- a clip that cannot be decoded or scored is ``quarantined`` with its reason. Triton being
  down is not the clip's fault: ``ServingError`` propagates so the task fails and retries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avalign.agent.config import AlignConfig
from avalign.agent.planner import CycleFeedback, PlanningContext, Planner
from avalign.errors import ClipError

OUTCOMES = ("improved", "kept_original", "quarantined")


@dataclass
class DecodedClip:
    """What the loop works on. ``audio_native`` is what gets edited and published."""

    path: Path
    audio_model: np.ndarray  # (T,) mono at the model rate (16 kHz)
    audio_native: np.ndarray  # (C, T) float32 at the source rate
    native_rate: int
    frames: np.ndarray  # (N, H, W, 3) uint8
    frame_times: np.ndarray
    fps: float


@dataclass
class CycleRecord:
    cycle: int
    plan: list[dict[str, Any]]
    rationale: list[str]
    planner: str
    alignment: float | None = None
    sync: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    audio_description: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    fallback_reason: str | None = None
    rejected_reason: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ClipRun:
    """The loop's verdict on one clip plus everything needed to write its outputs and trace."""

    outcome: str
    reason: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    best_plan: list[dict[str, Any]]
    cycles: list[CycleRecord]
    audio_description: str
    visual_description: str
    audio_evidence: dict[str, Any]
    visual_evidence: dict[str, Any]
    timings: dict[str, float]
    models: dict[str, Any]


def decode_clip(path: Path, config: AlignConfig) -> DecodedClip:
    """Decode the audio once (native rate, all channels; the model's 16 kHz mono is derived from
    it exactly as decode_audio would make it) and the sampled frames.

    Memory is bounded by ``config.max_duration_s`` even when the header lies about the duration:
    both decoders stream and stop with ``too_long`` once they pass it. Raises MediaError.
    """
    from avalign.errors import MediaError
    from avalign.media import _av
    from avalign.media.decode import decode_audio, decode_frames, downmix_resample
    from avalign.media.probe import probe

    probe(path, max_duration_s=config.max_duration_s)
    native = decode_audio(path, sample_rate=None, mono=False, max_duration_s=config.max_duration_s)
    _av.check_channels(path, native.channels)  # frames may carry more channels than the header
    model_audio = downmix_resample(native.samples, native.sample_rate, config.model_sample_rate)
    video = decode_frames(path, sample_fps=config.frame_rate, max_side=config.frame_side,
                          max_duration_s=config.max_duration_s)
    if video.frames.shape[0] < 2:
        raise MediaError(f"{path.name}: only {video.frames.shape[0]} video frame(s); need 2 to measure motion",
                         reason="too_few_frames")
    fps = float(min(video.fps or config.frame_rate, config.frame_rate))
    return DecodedClip(
        path=path, audio_model=model_audio[0],
        audio_native=native.samples.astype(np.float32), native_rate=native.sample_rate,
        frames=video.frames, frame_times=video.times_s, fps=fps,
    )


def energy_change_db(original: np.ndarray, edited: np.ndarray) -> float:
    """Energy of the edit relative to the original, in dB (0 = same, negative = quieter)."""
    e0 = float(np.sum(np.asarray(original, dtype=np.float64) ** 2))
    e1 = float(np.sum(np.asarray(edited, dtype=np.float64) ** 2))
    return float(10 * np.log10((e1 + 1e-12) / (e0 + 1e-12)))


def scorer_evidence(audio_ev: dict[str, Any], visual_ev: dict[str, Any], frame_times: np.ndarray) -> dict[str, Any]:
    """What av_scorer needs besides the tensors: the heard/seen phrases, frame times and the
    seconds of off-screen sound (``describe.offscreen``)."""
    from avalign.describe.audio import heard_phrase
    from avalign.describe.offscreen import offscreen_seconds
    from avalign.describe.visual import seen_phrase

    return {
        "heard": heard_phrase(audio_ev),
        "seen": seen_phrase(visual_ev),
        "speech_s": float(audio_ev.get("speech_s", 0.0)),
        "offscreen_s": offscreen_seconds(audio_ev, visual_ev),
        "frame_times_s": [round(float(t), 5) for t in frame_times],
    }


def _score_dict(scores) -> dict[str, Any]:
    return {"alignment": round(scores.alignment, 5), "sync": round(scores.sync, 5), **scores.detail}


def align_decoded(clip: DecodedClip, *, client, planner: Planner, config: AlignConfig,
                  apply_plan: Callable | None = None) -> ClipRun:
    """Run the loop on a decoded clip. ``client`` is a TritonClient (or anything with its methods)."""
    from avalign.actions.schema import PlanError, validate_plan

    if apply_plan is None:
        from avalign.actions.registry import apply_plan
    timings: dict[str, float] = {}
    t = time.perf_counter()
    audio_desc = client.describe_audio(clip.audio_model)
    timings["describe_audio_s"] = time.perf_counter() - t
    t = time.perf_counter()
    visual_desc = client.describe_frames(clip.frames, clip.fps, clip.frame_times)
    timings["describe_visual_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ev_before = scorer_evidence(audio_desc.evidence, visual_desc.evidence, clip.frame_times)
    before = _score_dict(client.score(clip.audio_model, clip.frames, clip.fps, ev_before))
    timings["score_before_s"] = time.perf_counter() - t

    records: list[CycleRecord] = []
    context = PlanningContext(audio_desc.text, visual_desc.text, audio_desc.evidence,
                              visual_desc.evidence, before)
    for cycle in range(1, config.max_cycles + 1):
        t0 = time.perf_counter()
        context.cycle = cycle
        decision = planner.plan(context)
        try:
            decision.plan = validate_plan(decision.plan)  # clamps to bounds, rejects unknown actions
        except PlanError as exc:
            decision.rationale.append(f"plan rejected by validation: {exc}")
            decision.fallback_reason = f"invalid plan: {exc}"
            decision.plan = []
        record = CycleRecord(cycle, decision.plan, decision.rationale, decision.planner,
                             fallback_reason=decision.fallback_reason)
        records.append(record)
        if not decision.plan:
            record.seconds = time.perf_counter() - t0
            break
        if any(r.plan == decision.plan for r in records[:-1]):
            record.rationale.append("same plan as an earlier cycle: stop")
            record.seconds = time.perf_counter() - t0
            break
        result = apply_plan(clip.audio_model[None, :], config.model_sample_rate, decision.plan)
        edited = np.asarray(result.audio, dtype=np.float32)[0]
        record.reports = list(result.reports)
        drop = energy_change_db(clip.audio_model, edited)
        if drop < -config.max_energy_drop_db and not any(st["action"] == "volume_adjust" for st in decision.plan):
            # Denoising that takes away most of the sound removed the content, not the noise
            # (steady sources such as rain, engines or fans look like noise to every estimator).
            record.rejected_reason = f"edit removed {-drop:.1f} dB of the sound (limit {config.max_energy_drop_db:.0f} dB)"
            record.rationale.append(record.rejected_reason)
            record.seconds = time.perf_counter() - t0
            context.feedback.append(CycleFeedback(cycle, decision.plan, before["alignment"], before["sync"],
                                                  {"rejected": record.rejected_reason}))
            continue
        edited_desc = client.describe_audio(edited)
        ev = scorer_evidence(edited_desc.evidence, visual_desc.evidence, clip.frame_times)
        scores = client.score(edited, clip.frames, clip.fps, ev)
        record.alignment, record.sync, record.detail = scores.alignment, scores.sync, scores.detail
        record.audio_description = edited_desc.text
        record.seconds = time.perf_counter() - t0
        context.feedback.append(CycleFeedback(cycle, decision.plan, scores.alignment, scores.sync, scores.detail))
        if config.passes(scores.alignment, scores.sync, scores.detail.get("offset_ms") is not None,
                         scores.detail.get("content")):
            break

    scored = [r for r in records if r.alignment is not None]
    base = config.combined(before["alignment"], before["sync"])
    best = max(scored, key=lambda r: config.combined(r.alignment, r.sync), default=None)
    if best is not None and config.combined(best.alignment, best.sync) >= base + config.min_improvement:
        outcome, reason, best_plan = "improved", None, best.plan
        after = {"alignment": round(best.alignment, 5), "sync": round(best.sync, 5), **best.detail}
    else:
        outcome, best_plan, after = "kept_original", [], dict(before)
        if best is None:
            reason = "no_edit_planned: " + "; ".join(records[-1].rationale if records else [])
        else:
            reason = (f"no_improvement: best cycle {best.cycle} scored "
                      f"{config.combined(best.alignment, best.sync):.3f} vs untouched {base:.3f}")
    return ClipRun(
        outcome=outcome, reason=reason, before=before, after=after, best_plan=best_plan, cycles=records,
        audio_description=audio_desc.text, visual_description=visual_desc.text,
        audio_evidence=_slim(audio_desc.evidence), visual_evidence=_slim(visual_desc.evidence),
        timings={k: round(v, 4) for k, v in timings.items()},
        models={"audio": audio_desc.evidence.get("models"), "visual": visual_desc.evidence.get("models")},
    )


def _slim(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence without the long time series (they are recomputable), for traces."""
    return {k: v for k, v in evidence.items()
            if k not in {"onset_envelope", "speech_onset_envelope", "motion_energy"}}


def trace_document(clip_id: str, run: ClipRun, *, model_versions: dict[str, str], config: AlignConfig,
                   source_uri: str, seconds: float) -> dict[str, Any]:
    """The per-clip trace stored beside the output."""
    return {
        "clip_id": clip_id,
        "source_uri": source_uri,
        "outcome": run.outcome,
        "reason": run.reason,
        "descriptions": {"audio": run.audio_description, "visual": run.visual_description},
        "evidence": {"audio": run.audio_evidence, "visual": run.visual_evidence},
        "scores": {"before": run.before, "after": run.after},
        "kept_plan": run.best_plan,
        "cycles": [c.to_dict() for c in run.cycles],
        "models": {"served_versions": model_versions, **run.models},
        "config": config.to_dict(),
        "timings": {**run.timings, "total_s": round(seconds, 4)},
    }


def dumps(obj: Any) -> bytes:
    """Stable JSON bytes (sorted keys) so re-runs write identical traces."""
    return json.dumps(obj, sort_keys=True, indent=1, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
