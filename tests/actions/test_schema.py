"""Plan validation: the catalogue, clamping, defaults, and precise errors."""

from __future__ import annotations

import json

import pytest

from avalign.actions import (
    ACTION_SCHEMAS,
    ACTIONS,
    MAX_STEPS,
    PlanError,
    describe_actions,
    validate_plan,
)
from avalign.errors import AvalignError


def test_catalogue_has_the_twelve_actions_and_describes_them() -> None:
    assert ACTIONS == (
        "spectral_subtraction",
        "wiener_filter",
        "wavelet_denoise",
        "spectral_gating",
        "speed_change",
        "pitch_change",
        "volume_adjust",
        "fill_blanks",
        "time_shift",
        "suppress_event",
        "deepfilternet",
        "rnnoise",
    )
    text = describe_actions()
    for name, params in ACTION_SCHEMAS.items():
        assert name in text
        for pname, spec in params.items():
            assert pname in text
            assert spec.required or spec.minimum <= spec.default <= spec.maximum


def test_defaults_filled_and_json_text_accepted() -> None:
    steps = validate_plan(
        json.dumps(
            [{"action": "volume_adjust"}, {"action": "time_shift", "params": {"shift_ms": 40}}]
        )
    )
    assert steps[0] == {
        "action": "volume_adjust",
        "params": {"target_lufs": -23.0, "peak_ceiling_db": -1.0},
    }
    assert steps[1]["params"] == {"shift_ms": 40.0} and isinstance(
        steps[1]["params"]["shift_ms"], float
    )


def test_out_of_range_is_clamped_and_recorded() -> None:
    steps = validate_plan(
        [
            {"action": "speed_change", "params": {"factor": 5}},
            {"action": "wavelet_denoise", "params": {"levels": 3.0}},
        ]
    )
    assert steps[0]["params"]["factor"] == 2.0
    assert steps[0]["clamped"] == {"factor": {"given": 5.0, "used": 2.0}}
    assert steps[1]["params"]["levels"] == 3 and "clamped" not in steps[1]
    # validating a validated plan is a no-op
    assert validate_plan(steps)[0]["params"] == steps[0]["params"]


@pytest.mark.parametrize(
    ("plan", "step", "field", "words"),
    [
        ([{"action": "make_it_better"}], 0, "action", "unknown action"),
        (
            [{"action": "volume_adjust"}, {"action": "speed_change", "params": {"factor": "1.1"}}],
            1,
            "factor",
            "number",
        ),
        ([{"action": "speed_change", "params": {"factor": True}}], 0, "factor", "number"),
        ([{"action": "speed_change"}], 0, "factor", "required"),
        ([{"action": "time_shift", "params": {"shift_ms": float("nan")}}], 0, "shift_ms", "finite"),
        ([{"action": "time_shift", "params": {"shift_ms": float("inf")}}], 0, "shift_ms", "finite"),
        ([{"action": "volume_adjust", "params": {"gain_db": 3}}], 0, "gain_db", "unknown param"),
        ([{"action": "wavelet_denoise", "params": {"levels": 2.5}}], 0, "levels", "integer"),
        ([{"action": "volume_adjust", "params": [1, 2]}], 0, "params", "object"),
        (["volume_adjust"], 0, None, "object"),
    ],
)
def test_bad_steps_name_step_and_field(
    plan: list, step: int, field: str | None, words: str
) -> None:
    with pytest.raises(PlanError, match=words) as info:
        validate_plan(plan)
    assert info.value.step == step and info.value.field == field
    assert f"step {step}" in str(info.value)
    assert isinstance(info.value, AvalignError)


def test_plan_level_errors() -> None:
    with pytest.raises(PlanError, match="at most"):
        validate_plan([{"action": "volume_adjust"}] * (MAX_STEPS + 1))
    with pytest.raises(PlanError, match="JSON"):
        validate_plan("__import__('os').system('echo pwned')")
    with pytest.raises(PlanError, match="list"):
        validate_plan(42)
    assert validate_plan([]) == []
    assert validate_plan({"action": "fill_blanks"})[0]["action"] == "fill_blanks"


def test_fill_blanks_max_gap_not_below_min_gap() -> None:
    step = validate_plan(
        [{"action": "fill_blanks", "params": {"min_gap_ms": 300, "max_gap_ms": 100}}]
    )[0]
    assert step["params"]["max_gap_ms"] == 300.0 and "max_gap_ms" in step["clamped"]


def test_suppress_event_span_is_put_the_right_way_round_and_never_empty() -> None:
    [swapped] = validate_plan([{"action": "suppress_event", "params": {"start_s": 2.0, "end_s": 1.0}}])
    assert swapped["params"] == {"start_s": 1.0, "end_s": 2.0, "strength": 1.0}
    assert swapped["clamped"] == {"start_s": {"given": 2.0, "used": 1.0}, "end_s": {"given": 1.0, "used": 2.0}}
    [empty] = validate_plan([{"action": "suppress_event", "params": {"start_s": 3.0, "end_s": 3.0}}])
    assert empty["params"]["end_s"] - empty["params"]["start_s"] == pytest.approx(0.1)
    [late] = validate_plan([{"action": "suppress_event", "params": {"start_s": 700.0, "end_s": 650.0}}])
    assert late["clamped"]["start_s"]["given"] == 700.0  # the bound clamp's record is kept
    assert late["params"]["end_s"] > late["params"]["start_s"]
