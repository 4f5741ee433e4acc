"""The rule planner decides from the evidence, and its plans validate against the schemas."""

from __future__ import annotations

import pytest

from avalign.actions.schema import validate_plan
from avalign.agent.planner import CycleFeedback, PlanningContext, RulePlanner

CLEAN_AUDIO = {"snr_db": 35.0, "speech_s": 0.0, "rms_dbfs": -22.0, "peak_dbfs": -3.0, "gaps": [],
               "clipped_fraction": 0.0}


def ctx(audio=None, visual=None, before=None, cycle=1, feedback=()):
    c = PlanningContext("heard", "seen", {**CLEAN_AUDIO, **(audio or {})}, {"face_fraction": 0.0, **(visual or {})},
                        {"alignment": 0.8, "sync": 0.5, "offset_ms": None, "offset_confidence": 0.0, **(before or {})},
                        cycle=cycle, feedback=list(feedback))
    return c


def actions(decision):
    return [s["action"] for s in decision.plan]


def test_clean_evidence_plans_nothing():
    d = RulePlanner().plan(ctx())
    assert d.plan == [] and "no rule fired" in d.rationale[0]


def test_speech_with_face_and_low_snr_gets_speech_preserving_denoise():
    d = RulePlanner().plan(ctx(audio={"snr_db": 4.0, "speech_s": 3.0}, visual={"face_fraction": 0.9}))
    assert actions(d) == ["wiener_filter"]
    assert "speech with a visible face" in d.rationale[0]


NOISE = [{"label": "White noise", "score": 0.2}]


def test_low_snr_heard_as_noise_gets_a_denoiser():
    d = RulePlanner().plan(ctx(audio={"snr_db": 4.0, "noise_tags": NOISE}))
    assert actions(d) == ["wiener_filter"] and "heard as white noise" in d.rationale[0]


def test_steady_sound_not_heard_as_noise_is_content_not_denoised():
    d = RulePlanner().plan(ctx(audio={"snr_db": 4.0, "noise_tags": []}))
    assert d.plan == [] and "taken as the content" in d.rationale[0]


def test_confident_offset_gets_opposite_time_shift():
    d = RulePlanner().plan(ctx(before={"offset_ms": 180.0, "offset_confidence": 0.6}))
    assert d.plan == [{"action": "time_shift", "params": {"shift_ms": -180.0}}]


@pytest.mark.parametrize("offset,confidence", [(180.0, 0.1), (20.0, 0.9)])
def test_unsure_or_small_offset_is_left_alone(offset, confidence):
    d = RulePlanner().plan(ctx(before={"offset_ms": offset, "offset_confidence": confidence}))
    assert d.plan == []


def test_dropouts_get_fill_blanks_and_quiet_gets_volume():
    d = RulePlanner().plan(ctx(audio={"gaps": [[1.0, 0.2]], "rms_dbfs": -52.0}))
    assert actions(d) == ["fill_blanks", "volume_adjust"]


def test_later_cycle_uses_offset_measured_after_denoising():
    first = [{"action": "wiener_filter", "params": {"alpha": 0.98, "min_prior_snr_db": -20.0}}]
    fb = CycleFeedback(1, first, 0.6, 0.2, {"offset_ms": 240.0, "offset_confidence": 0.7})
    d = RulePlanner().plan(ctx(audio={"snr_db": 4.0, "speech_s": 3.0}, visual={"face_fraction": 0.9},
                               cycle=2, feedback=[fb]))
    assert d.plan[0] == first[0]  # the denoise that made sync measurable is kept
    assert d.plan[1] == {"action": "time_shift", "params": {"shift_ms": -240.0}}


def test_cycle_estimate_is_mapped_back_through_its_own_shift():
    plan = [{"action": "time_shift", "params": {"shift_ms": -200.0}}]
    fb = CycleFeedback(1, plan, 0.6, 0.6, {"offset_ms": 50.0, "offset_confidence": 0.9})
    d = RulePlanner().plan(ctx(before={"offset_ms": 200.0, "offset_confidence": 0.3}, cycle=2, feedback=[fb]))
    # edited audio is still 50 ms late after a -200 ms shift: the original was 250 ms late
    assert d.plan == [{"action": "time_shift", "params": {"shift_ms": -250.0}}]


def test_next_denoiser_when_the_first_did_not_pass():
    fb = CycleFeedback(1, [{"action": "wiener_filter", "params": {}}], 0.5, 0.5, {})
    d = RulePlanner().plan(ctx(audio={"snr_db": 4.0, "noise_tags": NOISE}, cycle=2, feedback=[fb]))
    assert actions(d) == ["spectral_gating"]


@pytest.mark.parametrize("audio,visual,before", [
    ({"snr_db": 1.0, "speech_s": 3.0, "gaps": [[0.5, 0.1]], "rms_dbfs": -60.0}, {"face_fraction": 1.0},
     {"offset_ms": -400.0, "offset_confidence": 0.8}),
    ({"snr_db": 2.0, "clipped_fraction": 0.01, "noise_tags": [{"label": "Hum", "score": 0.1}]}, {}, {}),
])
def test_every_rule_plan_validates(audio, visual, before):
    for cycle in (1, 2, 3, 4):
        d = RulePlanner().plan(ctx(audio=audio, visual=visual, before=before, cycle=cycle))
        assert validate_plan(d.plan) is not None


def test_drift_gets_the_inverse_speed_change_first_and_only_the_warped_offset_counts():
    before = {"offset_ms": 70.0, "offset_confidence": 0.6,  # the drifting track's average: ignored
              "drift_speed": 1.03, "drift_offset_ms": 10.0, "drift_confidence": 0.5, "drift_gain": 1.8}
    d = RulePlanner().plan(ctx(before=before))
    assert d.plan == [{"action": "speed_change", "params": {"factor": round(1 / 1.03, 5)}}]
    assert "drifts" in d.rationale[0]
    validate_plan(d.plan)


def test_drift_with_an_offset_left_after_the_warp_also_shifts():
    before = {"drift_speed": 0.98, "drift_offset_ms": 200.0, "drift_confidence": 0.5, "drift_gain": 1.5}
    d = RulePlanner().plan(ctx(before=before))
    assert actions(d) == ["speed_change", "time_shift"]
    assert d.plan[1]["params"]["shift_ms"] == -200.0
