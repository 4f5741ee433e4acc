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


EVENT = {"start_s": 1.2, "end_s": 2.1, "share": 0.6, "bins": 40, "low_hz": 600.0, "high_hz": 2400.0, "attack_s": 0.01}
STILL = {"motion_energy": {"rate_hz": 10.0, "values": [1.0] * 40}}


def test_an_isolated_sound_the_picture_does_not_explain_is_suppressed_first():
    d = RulePlanner().plan(ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0}, visual=STILL,
                               before={"offset_ms": 180.0, "offset_confidence": 0.6}))
    assert actions(d) == ["suppress_event", "time_shift"]  # in the original audio's time, before the shift
    assert d.plan[0]["params"] == {"start_s": 1.15, "end_s": 2.15}
    assert "picture shows no change" in d.rationale[0] and validate_plan(d.plan)


def test_an_isolated_sound_is_kept_when_the_picture_moves_then_or_the_clip_has_speech():
    moving = {"motion_energy": {"rate_hz": 10.0, "values": [1.0] * 12 + [4.0] * 9 + [1.0] * 19}}
    assert RulePlanner().plan(ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0}, visual=moving)).plan == []
    assert RulePlanner().plan(ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0, "speech_s": 2.0}, visual=STILL)).plan == []


def test_plans_stay_within_the_step_limit_with_two_events():
    second = {**EVENT, "start_s": 3.0, "end_s": 3.5}
    d = RulePlanner().plan(ctx(audio={"isolated_events": [EVENT, second], "duration_s": 4.0, "gaps": [[0.5, 0.1]], "snr_db": 4.0,
                                      "noise_tags": NOISE, "rms_dbfs": -60.0, "peak_dbfs": -40.0},
                               visual=STILL, before={"offset_ms": 180.0, "offset_confidence": 0.6,
                                                     "drift_speed": 1.02, "drift_offset_ms": 150.0,
                                                     "drift_confidence": 0.6}))
    assert len(d.plan) <= 6 and actions(d).count("suppress_event") == 1
    assert any("left alone" in why for why in d.rationale) and validate_plan(d.plan)


def test_the_llm_prompt_names_offscreen_sounds():
    text = ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0}, visual=STILL).as_prompt("catalogue")
    assert '"offscreen_sounds_s": [[1.2, 2.1]]' in text


def test_the_picture_is_read_at_the_events_picture_time_when_the_offset_is_known():
    # motion at 0.4-1.3 s: the event heard at 1.2-2.1 s in audio that runs 800 ms late
    moving = {"motion_energy": {"rate_hz": 10.0, "values": [1.0] * 4 + [4.0] * 9 + [1.0] * 27}}
    late = ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0}, visual=moving,
               before={"offset_ms": 800.0, "offset_confidence": 0.6})
    assert actions(RulePlanner().plan(late)) == ["time_shift"]  # explained once the offset is undone
    unsure = ctx(audio={"isolated_events": [EVENT], "duration_s": 4.0}, visual=moving,
                 before={"offset_ms": 800.0, "offset_confidence": 0.1})
    assert actions(RulePlanner().plan(unsure)) == ["suppress_event"]
