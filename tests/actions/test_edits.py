"""Edit objects: round trip, shapes, time maps, reports; apply_plan guarantees."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from avalign.actions import (
    ACTIONS,
    EDIT_TYPES,
    Edit,
    PlanError,
    SpeedChange,
    TimeShift,
    apply_plan,
    build_edit,
    validate_plan,
)
from avalign.errors import MediaError

from .conftest import SR, add_white_noise, speech_like, tone

EXAMPLE_PARAMS = {
    "spectral_subtraction": {"over_subtraction": 3.0},
    "wiener_filter": {"alpha": 0.95},
    "wavelet_denoise": {"threshold_scale": 1.5, "levels": 5},
    "spectral_gating": {"threshold_db": 8.0, "prop_decrease": 0.9},
    "speed_change": {"factor": 1.07},
    "pitch_change": {"semitones": -1.5},
    "volume_adjust": {"target_lufs": -18.0},
    "fill_blanks": {"min_gap_ms": 30.0},
    "time_shift": {"shift_ms": -42.0},
    "suppress_event": {"start_s": 0.5, "end_s": 1.0, "strength": 0.8},
    "deepfilternet": {"atten_lim_db": 30.0},
    "rnnoise": {"mix": 0.7},
}


@pytest.fixture(scope="module")
def stereo() -> torch.Tensor:
    x = add_white_noise(speech_like(2.0), 15.0)
    return torch.cat([x, 0.7 * x])


@pytest.mark.parametrize("action", ACTIONS)
def test_round_trip_reproduces_identical_output(action: str, stereo: torch.Tensor) -> None:
    edit = build_edit({"action": action, "params": EXAMPLE_PARAMS[action]})
    assert type(edit) is EDIT_TYPES[action] and edit.action == action
    replay = Edit.from_dict(edit.to_dict())
    assert replay == edit and replay.to_dict() == edit.to_dict()
    out = edit.apply(stereo, SR)
    assert out.shape == stereo.shape and out.dtype == torch.float32
    assert torch.equal(replay.apply(stereo, SR), out)
    batched = edit.apply(stereo[None], SR)  # (B, C, T) gives the same as (C, T)
    assert torch.allclose(batched[0], out, atol=1e-6)


def test_constructor_checks_bounds_strictly() -> None:
    with pytest.raises(ValueError, match="factor"):
        SpeedChange(factor=3.0)
    with pytest.raises(ValueError, match="shift_ms"):
        TimeShift(shift_ms=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        TimeShift(shift_ms=1.0).apply(torch.zeros(10), SR)
    with pytest.raises(PlanError):
        Edit.from_dict({"action": "speed_change", "params": {"factor": "fast"}})


def test_map_time_for_shift_and_speed() -> None:
    assert SpeedChange(factor=1.25).map_time(2.0) == pytest.approx(2.5)
    shift = TimeShift(shift_ms=100.0)
    assert shift.map_time(1.0) == pytest.approx(0.9)
    shift.apply(torch.zeros(1, 1000), 44100)  # 4410 samples exactly
    assert shift.map_time(1.0) == pytest.approx(1.0 - 4410 / 44100)
    assert build_edit({"action": "wiener_filter"}).map_time(1.234) == 1.234


def test_plan_map_time_composes_and_tracks_a_click() -> None:
    x = torch.zeros(1, 2 * SR)
    x[0, 8000] = 1.0  # click at 0.5 s
    plan = [
        {"action": "time_shift", "params": {"shift_ms": 200}},
        {"action": "speed_change", "params": {"factor": 1.25}},
    ]
    result = apply_plan(x, SR, plan)
    t_out = int(result.audio.abs().argmax()) / SR
    assert result.map_time(t_out) == pytest.approx(0.5, abs=2 / SR)


def test_apply_plan_contract(stereo: torch.Tensor) -> None:
    audio = stereo.numpy().astype(np.float64)
    plan = [
        {"action": "fill_blanks"},
        {"action": "wiener_filter"},
        {"action": "volume_adjust", "params": {"target_lufs": -5}},
    ]
    result = apply_plan(audio, SR, plan)
    assert isinstance(result.audio, np.ndarray) and result.audio.dtype == np.float32
    assert result.audio.shape == audio.shape and np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() <= 10 ** (-1 / 20) + 1e-6
    assert [r["action"] for r in result.reports] == [
        "fill_blanks",
        "wiener_filter",
        "volume_adjust",
    ]
    assert result.reports[0]["filled"] == []
    assert result.steps[2]["clamped"]["target_lufs"]["used"] == -10.0 and result.warnings
    assert result.plan() == [
        {k: v for k, v in s.items() if k != "clamped"} for s in validate_plan(plan)
    ]
    # the input is not modified and an empty plan returns it unchanged
    assert np.array_equal(apply_plan(audio, SR, []).audio, audio.astype(np.float32))


def test_apply_plan_guards_full_scale_and_reports_fill() -> None:
    loud = tone(1000.0, 1.0, amplitude=1.0)
    loud[:, 6000:7000] = 0.0
    result = apply_plan(
        loud,
        SR,
        [{"action": "fill_blanks"}, {"action": "pitch_change", "params": {"semitones": 0.5}}],
    )
    assert isinstance(result.audio, torch.Tensor) and result.audio.abs().max() <= 1.0
    [(start, dur)] = result.reports[0]["filled"]  # the tone's zero crossing at 7000 may join
    assert start == 6000 / SR and dur == pytest.approx(1000 / SR, abs=2 / SR)


def test_apply_plan_rejects_bad_input() -> None:
    with pytest.raises(MediaError) as info:
        apply_plan(np.full((1, 100), np.nan, dtype=np.float32), SR, [])
    assert info.value.reason == "non_finite_audio"
    with pytest.raises(ValueError, match="shape"):
        apply_plan(np.zeros(100, dtype=np.float32), SR, [])
    with pytest.raises(ValueError, match="sample_rate"):
        apply_plan(np.zeros((1, 100), dtype=np.float32), 0, [])
    with pytest.raises(PlanError):
        apply_plan(np.zeros((1, 100), dtype=np.float32), SR, [{"action": "reverse"}])


def test_package_imports_no_agent_serving_or_data() -> None:
    code = (
        "import sys, avalign.actions; "
        "banned = ('avalign.agent', 'avalign.serving', 'avalign.data'); "
        "bad = [m for m in sys.modules if m.startswith(banned)]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="include"
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("sample_rate", [8000, 44100, 48000])
def test_every_action_at_other_rates_keeps_contract(sample_rate: int) -> None:
    x = add_white_noise(speech_like(1.5, sr=sample_rate), 10.0).repeat(2, 1)
    x[:, sample_rate // 2 : sample_rate // 2 + sample_rate // 10] = 0.0
    for action in ACTIONS:
        result = apply_plan(
            x.numpy(), sample_rate, [{"action": action, "params": EXAMPLE_PARAMS[action]}]
        )
        assert result.audio.shape == x.shape, action
        assert np.isfinite(result.audio).all() and np.abs(result.audio).max() <= 1.0, action
        json.dumps(result.reports, allow_nan=False)  # reports go into JSON traces as they are


def test_volume_report_of_silence_is_json_safe() -> None:
    result = apply_plan(np.zeros((1, SR), dtype=np.float32), SR, [{"action": "volume_adjust"}])
    assert result.reports[0]["input_lufs"] is None and not result.audio.any()
    json.dumps(result.reports, allow_nan=False)
