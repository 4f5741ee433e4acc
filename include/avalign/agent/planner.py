"""Planners: read the describers' evidence (and the last cycle's feedback), return an edit plan.

A plan is JSON, ``[{"action": name, "params": {...}}, ...]``, always validated against the
action schemas before anything runs. ``Planner`` is the interface; ``RulePlanner`` is the
embedded default. An LLM planner implements the same interface and sees the same context as
text (``PlanningContext.as_prompt``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from avalign.actions.schema import MAX_STEPS
from avalign.describe.offscreen import offscreen_events

# Denoisers tried in order on later cycles when the first did not pass.
# Measured on the 8 procedural categories x white/pink/hum x 0/5/10 dB (median SI-SDR gain):
# Wiener +6.9 dB, spectral gating +5.6, spectral subtraction +5.1, wavelet +0.7.
# Wiener (decision-directed) is also the speech-preserving choice: it attenuates smoothly instead
# of gating, so it leaves the fewest musical-noise artefacts on voices.
DENOISERS = ("wiener_filter", "spectral_gating", "spectral_subtraction", "wavelet_denoise")


@dataclass
class CycleFeedback:
    """What the reflection said about one cycle's plan."""

    cycle: int
    plan: list[dict[str, Any]]
    alignment: float
    sync: float
    detail: dict[str, Any]


@dataclass
class PlanningContext:
    """Everything a planner may look at for one clip and cycle."""

    audio_description: str
    visual_description: str
    audio_evidence: dict[str, Any]
    visual_evidence: dict[str, Any]
    before: dict[str, Any]  # the untouched clip's scores and scorer detail
    cycle: int = 1
    feedback: list[CycleFeedback] = field(default_factory=list)

    def as_prompt(self, catalogue: str) -> str:
        """The context as text, for a planner that reads language (an LLM)."""
        keep = ("speech_s", "snr_db", "rms_dbfs", "peak_dbfs", "silence_fraction", "clipped_fraction", "gaps")
        compact = {k: self.audio_evidence.get(k) for k in keep}
        compact["face_fraction"] = self.visual_evidence.get("face_fraction")
        offscreen = offscreen_events(self.audio_evidence, self.visual_evidence)
        if offscreen:  # sounds heard only then, with no change in the picture
            compact["offscreen_sounds_s"] = [[e["start_s"], e["end_s"]] for e in offscreen]
        compact["estimated_offset_ms"] = self.before.get("offset_ms")
        compact["offset_confidence"] = self.before.get("offset_confidence")
        if self.before.get("drift_speed"):  # the audio plays this many times the picture's speed
            compact["estimated_audio_speed"] = self.before.get("drift_speed")
            compact["offset_ms_once_speed_fixed"] = self.before.get("drift_offset_ms")
        lines = [
            "You repair the AUDIO of a video clip so it matches the picture. Edits apply to the original audio.",
            f"Available actions (JSON schema per action):\n{catalogue}",
            f"Audio description: {self.audio_description}",
            f"Visual description: {self.visual_description}",
            f"Measurements: {json.dumps(compact)}",
            f"Scores of the untouched clip: alignment={self.before.get('alignment'):.3f} sync={self.before.get('sync'):.3f}",
        ]
        for fb in self.feedback:
            lines.append(f"Cycle {fb.cycle} plan {json.dumps(fb.plan)} scored alignment={fb.alignment:.3f} sync={fb.sync:.3f}")
        lines.append('Answer with only a JSON list: [{"action": "...", "params": {...}}]. [] means no edit.')
        return "\n".join(lines)


@dataclass
class PlanDecision:
    plan: list[dict[str, Any]]
    rationale: list[str]
    planner: str
    fallback_reason: str | None = None


class Planner(Protocol):
    name: str

    def plan(self, context: PlanningContext) -> PlanDecision: ...


class RulePlanner:
    """A rule policy over the evidence. Each rule names the measurement that fired it.

    - a confident offset estimate of 40 ms or more → time_shift by minus that offset;
    - the audio drifting against the picture (the scorer's ``drift_speed``) → speed_change by its
      inverse, first; the offset then counts only as measured with the drift undone;
    - low estimated SNR, and the noise is heard as noise (an AudioSet noise class) or lies over
      speech → a denoiser; steady sound with neither is taken as the content (rain, an engine).
      The first is the speech-preserving Wiener filter (it also measured best on non-speech
      content); later cycles try spectral gating, spectral subtraction, wavelet shrinkage;
    - dropouts (short digital-silence holes inside sound) → fill_blanks;
    - a sound heard only in one stretch, starting abruptly, on a clip without speech, while the
      picture shows no change then (``describe.offscreen``; at its picture time when the offset
      is confidently known) → suppress_event over that stretch (± 50 ms);
    - very quiet, or clipped at full scale → volume_adjust toward -23 LUFS with a -1 dBTP ceiling;
      a quiet clip is raised only as far as its peaks allow, so the limiter does not reshape it.
    Nothing fires → an empty plan: the clip is left untouched.
    """

    name = "rules"

    def __init__(self, *, snr_threshold_db: float = 8.0, min_offset_ms: float = 40.0,
                 min_offset_confidence: float = 0.25, quiet_dbfs: float = -45.0) -> None:
        self.snr_threshold_db = snr_threshold_db
        self.min_offset_ms = min_offset_ms
        self.min_offset_confidence = min_offset_confidence
        self.quiet_dbfs = quiet_dbfs

    def plan(self, context: PlanningContext) -> PlanDecision:
        ev, vis, before = context.audio_evidence, context.visual_evidence, context.before
        attempt = context.cycle - 1  # 0 on the first cycle
        plan: list[dict[str, Any]] = []
        why: list[str] = []

        if ev.get("gaps"):
            total = sum(d for _, d in ev["gaps"])
            plan.append({"action": "fill_blanks", "params": {}})
            why.append(f"{len(ev['gaps'])} dropout(s), {total:.2f} s of digital silence inside sound")

        offset, confidence, source = best_offset_estimate(context)
        known = offset if offset is not None and confidence >= self.min_offset_confidence else 0.0
        for event in offscreen_events(ev, vis, offset_ms=known):  # looked up at its picture time
            start, end = float(event["start_s"]), float(event["end_s"])
            plan.append({"action": "suppress_event",
                         "params": {"start_s": round(max(0.0, start - 0.05), 3), "end_s": round(end + 0.05, 3)}})
            ratio = event.get("motion_ratio")
            why.append(f"a sound heard only at {start:.2f}-{end:.2f} s ({event['low_hz']:.0f}-{event['high_hz']:.0f} Hz,"
                       f" {event['share']:.0%} of that stretch's energy) while the picture shows no change"
                       f" (motion x{ratio if ratio is not None else 'n/a'}) → suppress_event")

        drift = before.get("drift_speed")
        if drift:
            # undo the drift first (timing faults first); the offset that matters is the one left
            # once the warp is undone, not the drifting track's average
            plan.append({"action": "speed_change", "params": {"factor": round(1.0 / float(drift), 5)}})
            why.append(f"audio drifts: plays {float(drift):.4f}x the picture's speed "
                       f"(warp gain {float(before.get('drift_gain') or 0):.2f}) → speed_change")
            offset, confidence, source = _offset_after_drift(context)
        shift_step = None
        if offset is not None and abs(offset) >= self.min_offset_ms and confidence >= self.min_offset_confidence:
            shift_step = {"action": "time_shift", "params": {"shift_ms": round(-float(offset), 1)}}

        snr = float(ev.get("snr_db", 60.0))
        noise_named = [t["label"] for t in ev.get("noise_tags", [])]
        has_speech = ev.get("speech_s", 0.0) >= 1.0
        if snr < self.snr_threshold_db and not (noise_named or has_speech):
            why.append(f"estimated SNR {snr:.1f} dB but nothing is heard as noise and there is no speech:"
                       " the steady sound is taken as the content, not denoised")
        if snr < self.snr_threshold_db and (noise_named or has_speech):
            speechy = has_speech and vis.get("face_fraction", 0.0) >= 0.5
            order = DENOISERS
            previous = context.feedback[-1].plan if context.feedback else []
            prev_denoise = next((st for st in previous if st["action"] in order), None)
            new_shift = shift_step is not None and abs(plan_shift_ms(previous) - plan_shift_ms([shift_step])) > 20
            if prev_denoise is not None and new_shift:
                # the last denoise let the offset be measured: keep it, add the shift
                plan.append(prev_denoise)
                why.append(f"estimated SNR {snr:.1f} dB: keep {prev_denoise['action']} from the last cycle")
            else:
                tried = sum(1 for fb in context.feedback if any(st["action"] in order for st in fb.plan))
                action = order[tried % len(order)]
                strength = min(1.0, 0.5 + 0.25 * (tried // len(order)) + (0.25 if snr < 3 else 0.0))
                plan.append({"action": action, "params": _denoise_params(action, strength)})
                kind = "speech with a visible face" if speechy else "non-speech content"
                heard = f", heard as {', '.join(noise_named).lower()}" if noise_named else ", over speech"
                why.append(f"estimated SNR {snr:.1f} dB < {self.snr_threshold_db:.0f} dB{heard}, on {kind} → {action}")

        if shift_step is not None:
            plan.append(shift_step)
            why.append(f"audio estimated {offset:+.0f} ms against the picture ({source}, confidence {confidence:.2f})")

        clipped = float(ev.get("clipped_fraction", 0.0)) > 0.001
        quiet = float(ev.get("rms_dbfs", 0.0)) < self.quiet_dbfs and float(ev.get("peak_dbfs", 0.0)) > -90
        if clipped or quiet:
            plan.append({"action": "volume_adjust", "params": {"target_lufs": _loudness_target(ev, clipped),
                                                               "peak_ceiling_db": -1.0}})
            why.append("clipped at full scale" if clipped else f"very quiet ({ev.get('rms_dbfs'):.0f} dBFS)")

        while len(plan) > MAX_STEPS and any(st["action"] == "suppress_event" for st in plan):
            last = max(i for i, st in enumerate(plan) if st["action"] == "suppress_event")
            plan.pop(last)
            why.append(f"plans hold at most {MAX_STEPS} steps: the second off-screen sound is left alone")
        if not plan and not why:
            why.append("no rule fired: the evidence shows no problem this policy can repair")
        return PlanDecision(plan=plan, rationale=why, planner=self.name)


def _loudness_target(ev: dict[str, Any], clipped: bool) -> float:
    """-23 LUFS, or for a quiet clip the loudness a pure gain reaches before its peaks pass
    -1.5 dBFS, so the limiter does not reshape it (RMS stands in when no LUFS was measured)."""
    if clipped:
        return -23.0
    level = ev.get("loudness_lufs")
    level = float(level) if level is not None else float(ev.get("rms_dbfs", -23.0))
    peak = float(ev.get("peak_dbfs", -1.0))
    gain = min(-23.0 - level, -1.5 - peak)
    return round(float(min(max(level + gain, -40.0), -10.0)), 1)


def plan_shift_ms(plan: list[dict[str, Any]]) -> float:
    """Total time shift a plan applies (ms, positive = later)."""
    return float(sum(step.get("params", {}).get("shift_ms", 0.0) for step in plan if step.get("action") == "time_shift"))


def _offset_after_drift(context: PlanningContext) -> tuple[float | None, float, str]:
    """Like :func:`best_offset_estimate` for a drifting clip: only estimates of the track with its
    drift undone count (the warped estimate of the untouched clip, cycles that changed speed)."""
    before = context.before
    candidates = []
    if before.get("drift_offset_ms") is not None:
        candidates.append((float(before.get("drift_confidence") or 0.0), float(before["drift_offset_ms"]),
                           "untouched clip, drift undone"))
    for fb in context.feedback:
        if fb.detail.get("offset_ms") is not None and any(st["action"] == "speed_change" for st in fb.plan):
            original = float(fb.detail["offset_ms"]) - plan_shift_ms(fb.plan)
            candidates.append((float(fb.detail.get("offset_confidence") or 0.0), original, f"cycle {fb.cycle}"))
    if not candidates:
        return None, 0.0, "none"
    confidence, offset, source = max(candidates)
    return offset, confidence, source


def best_offset_estimate(context: PlanningContext) -> tuple[float | None, float, str]:
    """The most confident offset estimate of the ORIGINAL audio, from the untouched clip or any
    scored cycle. A cycle's estimate is of its edited audio, so its own shift is taken back out
    (edited offset = original offset + shift). Denoised cycles often measure better than the
    noisy original, which is why the loop denoises first and shifts on a later cycle."""
    candidates = []
    if context.before.get("offset_ms") is not None:
        candidates.append((float(context.before.get("offset_confidence") or 0.0),
                           float(context.before["offset_ms"]), "untouched clip"))
    for fb in context.feedback:
        if fb.detail.get("offset_ms") is not None:
            original = float(fb.detail["offset_ms"]) - plan_shift_ms(fb.plan)
            candidates.append((float(fb.detail.get("offset_confidence") or 0.0), original, f"cycle {fb.cycle}"))
    if not candidates:
        return None, 0.0, "none"
    confidence, offset, source = max(candidates)
    return offset, confidence, source


def _denoise_params(action: str, strength: float) -> dict[str, float]:
    """Map one strength in [0, 1] onto each denoiser's own parameters (bounds: actions.schema).
    Strength 0.5 gives the schema defaults, which were tuned for SI-SDR on speech in noise."""
    if action == "spectral_subtraction":
        return {"over_subtraction": round(1.0 + 2.0 * strength, 2), "floor": 0.02}
    if action == "wiener_filter":
        return {"alpha": 0.9, "min_prior_snr_db": round(-15.0 - 20.0 * strength, 1)}
    if action == "wavelet_denoise":
        return {"threshold_scale": round(0.5 + strength, 2)}
    if action == "spectral_gating":
        return {"threshold_db": 6.0, "prop_decrease": round(min(1.0, 0.5 + strength), 2)}
    return {}
