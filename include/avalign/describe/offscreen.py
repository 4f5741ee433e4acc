"""Off-screen sound: an isolated audio event the picture does not account for.

The audio describer reports *isolated events* (``avalign.actions.isolated``): stretches where
some frequencies sound far louder than anywhere else in the clip. Such an event is taken as
off-screen, and worth removing, only when

- the clip has no speech (less than ``MAX_SPEECH_S`` of it): a word or a shout is isolated in
  exactly this sense, and speech is content;
- the clip lasts at least ``MIN_CLIP_S``: what belongs to a clip needs context to tell;
- the event starts at once (``attack_s`` ≤ ``MAX_ATTACK_S``): a sound laid over the scene starts
  abruptly, while a car or plane passing in the scene swells over hundreds of ms (measured: the
  benchmark's sirens and barks 0-24 ms; the real airplane fly-over 0.5-0.9 s, Big Buck Bunny's
  event 0.14 s, the applause 0.06 s);
- the picture shows no change at that moment: the mean motion energy during the event is below
  ``EXPLAINED_MOTION_RATIO`` times its mean elsewhere (something that moves on screen with the
  sound explains it). With a known offset (the planner's confident estimate) the event is looked
  up at its picture time.

Both the planner (which plans ``suppress_event``) and the reflection scorer (which lowers the
quality of audio that carries one) read this, so an edit that removes the event is seen to help.
The scorer judges the audio as it stands (its own time, no offset): on a clip whose audio is
late, an on-screen sound may count as off-screen in the score until a shift fixes the offset
(the score then rises for both reasons); the planner, which decides what to remove, looks it up
at its picture time when it knows the offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SPEECH_S = 0.5
MIN_CLIP_S = 3.0
MAX_ATTACK_S = 0.05
EXPLAINED_MOTION_RATIO = 1.5


def motion_ratio(visual_evidence: dict[str, Any], start_s: float, end_s: float) -> float | None:
    """Mean motion energy within [start_s, end_s) over its mean elsewhere (inf: the picture moves
    only then; None: not measurable, e.g. no motion series or a still picture throughout)."""
    motion = visual_evidence.get("motion_energy") or {}
    values = np.asarray(motion.get("values") or [], dtype=np.float64)
    rate = float(motion.get("rate_hz") or 0.0)
    if values.size < 4 or rate <= 0:
        return None
    t = np.arange(values.size) / rate
    inside = (t >= start_s) & (t < end_s)
    if not inside.any() or inside.all():
        return None
    outside, during = float(values[~inside].mean()), float(values[inside].mean())
    if outside > 0:
        return during / outside
    return float("inf") if during > 0 else None  # a still picture that moves only with the sound


def offscreen_events(audio_evidence: dict[str, Any], visual_evidence: dict[str, Any],
                     offset_ms: float = 0.0) -> list[dict[str, Any]]:
    """The isolated events of the audio evidence that the picture does not explain, each with
    its ``motion_ratio``; empty when the clip has speech or is short. ``offset_ms``: how late the
    audio runs against the picture (positive = late), if known."""
    events = audio_evidence.get("isolated_events") or []
    if (not events or float(audio_evidence.get("speech_s") or 0.0) >= MAX_SPEECH_S
            or float(audio_evidence.get("duration_s") or 0.0) < MIN_CLIP_S):
        return []
    late = float(offset_ms) / 1000.0
    out = []
    for event in events:
        if float(event.get("attack_s", 0.0)) > MAX_ATTACK_S:
            continue  # it swells in: part of the scene
        ratio = motion_ratio(visual_evidence, float(event["start_s"]) - late, float(event["end_s"]) - late)
        if ratio is None or ratio < EXPLAINED_MOTION_RATIO:
            out.append({**event, "motion_ratio": None if ratio is None else round(ratio, 3)})
    return out


def offscreen_seconds(audio_evidence: dict[str, Any], visual_evidence: dict[str, Any]) -> float:
    """Total duration of the off-screen events (what the scorer's quality term reads)."""
    return round(sum(float(e["end_s"]) - float(e["start_s"]) for e in offscreen_events(audio_evidence, visual_evidence)), 3)
