"""The action catalogue as data: typed parameter specs, descriptions, and plan validation.

A planner (rule-based or an LLM) emits JSON ``[{"action": name, "params": {...}}, ...]``.
:func:`validate_plan` turns whatever it emitted into a normalised plan or a :class:`PlanError`
that names the step and the field, so the planner can be told precisely what to fix. It never
evaluates anything: JSON text is parsed with ``json.loads`` and every value is type-checked.

Rules: at most ``MAX_STEPS`` steps; unknown actions, unknown parameter names, wrong types
(a string for a number, a bool for a number, a fraction for an integer), NaN and inf are
rejected; numbers out of bounds are clamped to the bounds (recorded under the step's
``"clamped"`` key as ``{param: {"given": v, "used": c}}``); missing optional parameters get
their default; required parameters (no default) must be given.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from avalign.errors import AvalignError

MAX_STEPS = 6
STEP_KEYS = {"action", "params", "clamped", "reason"}
"""Keys a step may carry: ``reason`` (a planner's free-text why) and ``clamped`` are ignored."""


class PlanError(AvalignError, ValueError):
    """A plan that cannot be run; ``step`` (0-based index) and ``field`` say where."""

    def __init__(self, message: str, *, step: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.field = field


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of one action. ``default=None`` means the planner must give it."""

    type: type
    minimum: float | None
    maximum: float | None
    default: float | int | bool | None
    unit: str
    doc: str

    @property
    def required(self) -> bool:
        return self.default is None


def _f(minimum: float, maximum: float, default: float | None, unit: str, doc: str) -> ParamSpec:
    return ParamSpec(float, minimum, maximum, default, unit, doc)


ACTION_SCHEMAS: dict[str, dict[str, ParamSpec]] = {
    "spectral_subtraction": {
        "over_subtraction": _f(0.5, 6.0, 2.0, "x", "times the noise power estimate removed"),
        "floor": _f(0.0, 0.5, 0.02, "ratio", "smallest fraction of the noisy power kept"),
    },
    "wiener_filter": {
        "alpha": _f(0.5, 0.995, 0.9, "ratio", "decision-directed smoothing of the a-priori SNR"),
        "min_prior_snr_db": _f(
            -40.0, -5.0, -25.0, "dB", "floor of the a-priori SNR (max attenuation)"
        ),
    },
    "wavelet_denoise": {
        "threshold_scale": _f(0.25, 4.0, 1.0, "x", "noise-variance multiplier of the shrinkage"),
        "levels": ParamSpec(int, 1, 8, 8, "levels", "DWT depth (sym8)"),
    },
    "spectral_gating": {
        "threshold_db": _f(
            0.0, 20.0, 6.0, "dB", "margin above the noise estimate that opens the gate"
        ),
        "prop_decrease": _f(0.0, 1.0, 1.0, "ratio", "fraction of the gated energy removed"),
    },
    "speed_change": {
        "factor": _f(0.5, 2.0, None, "x", "playback speed; 1.1 = 10% faster, audio ends earlier"),
    },
    "pitch_change": {
        "semitones": _f(
            -12.0, 12.0, None, "semitones", "pitch shift, tempo kept; +12 = one octave up"
        ),
    },
    "volume_adjust": {
        "target_lufs": _f(
            -40.0, -10.0, -23.0, "LUFS", "integrated loudness target (EBU R128: -23)"
        ),
        "peak_ceiling_db": _f(-6.0, 0.0, -1.0, "dBTP", "true-peak ceiling of the limiter"),
    },
    "fill_blanks": {
        "min_gap_ms": _f(10.0, 500.0, 40.0, "ms", "shortest dropout that is filled"),
        "max_gap_ms": _f(
            50.0, 3000.0, 1000.0, "ms", "longest dropout that is filled (longer = meant)"
        ),
        "depth_db": _f(
            20.0, 90.0, 50.0, "dB", "how far below the clip's active level a dropout is"
        ),
    },
    "time_shift": {
        "shift_ms": _f(
            -1000.0, 1000.0, None, "ms", "positive = audio later (delay), negative = earlier"
        ),
    },
    "suppress_event": {
        "start_s": _f(0.0, 600.0, None, "s", "start of the stretch that holds the unwanted sound"),
        "end_s": _f(0.0, 600.0, None, "s", "end of that stretch"),
        "strength": _f(0.0, 1.0, 1.0, "ratio", "share of the attenuation applied (in dB); 0 = no change"),
    },
    "deepfilternet": {
        "atten_lim_db": _f(
            0.0, 100.0, 100.0, "dB", "most the model may attenuate; 100 = no limit, 0 = no change"
        ),
    },
    "rnnoise": {
        "mix": _f(0.0, 1.0, 1.0, "ratio", "share of the denoised signal in the output (wet/dry)"),
    },
}

ACTION_DESCRIPTIONS: dict[str, str] = {
    "spectral_subtraction": "Remove steady background noise by subtracting its power spectrum.",
    "wiener_filter": "Remove background noise with a Wiener filter (smooth, few artefacts).",
    "wavelet_denoise": "Remove broadband hiss by shrinking small wavelet coefficients.",
    "spectral_gating": "Silence time-frequency regions not above the noise floor (strong cleanup).",
    "speed_change": "Play the audio faster or slower (pitch follows); fixes gradual A/V drift.",
    "pitch_change": "Raise or lower the pitch without changing timing.",
    "volume_adjust": "Normalise loudness to a LUFS target with a true-peak limiter.",
    "fill_blanks": "Fill sudden dropouts (silent holes inside sound) from the audio around them.",
    "time_shift": (
        "Move the audio later (positive) or earlier (negative) against the video; "
        "fixes a constant offset."
    ),
    "suppress_event": (
        "Remove a sound heard only within [start_s, end_s) (an off-screen siren, a bark): the "
        "frequencies it alone occupies there are brought down to their level in the rest of the clip."
    ),
    "deepfilternet": (
        "Neural speech enhancement (DeepFilterNet3): strongest cleanup of noisy speech at low "
        "SNR, slowest (about 0.3 s model load plus 0.05 s per second of audio); speech only."
    ),
    "rnnoise": (
        "Neural noise suppression for speech (RNNoise): fast, milder than DeepFilterNet; "
        "speech only (it removes non-speech sound)."
    ),
}


def describe_actions() -> str:
    """The catalogue as prompt text for a planner: one line per action, one per parameter."""
    lines = [
        (
            f"Edit plan: a JSON list of at most {MAX_STEPS} steps "
            '[{"action": <name>, "params": {<name>: <number>}}], applied in order to the '
            "original audio."
        )
    ]
    for name, params in ACTION_SCHEMAS.items():
        lines.append(f"- {name}: {ACTION_DESCRIPTIONS[name]}")
        for pname, spec in params.items():
            default = "required" if spec.required else f"default {spec.default}"
            lines.append(
                f"    {pname} ({spec.type.__name__}, {spec.minimum}..{spec.maximum} {spec.unit}, "
                f"{default}): {spec.doc}"
            )
    return "\n".join(lines)


def _where(index: int, action: str | None) -> str:
    return f"step {index}" + (f" ({action})" if action else "")


def _coerce(value: Any, spec: ParamSpec, where: str, name: str, index: int) -> Any:
    """Type-check one value; return it as the spec's type (not yet clamped)."""
    kind = spec.type.__name__
    if spec.type is bool:
        if not isinstance(value, bool):
            raise PlanError(
                f"{where}: param '{name}' must be a bool, got {type(value).__name__} {value!r}",
                step=index,
                field=name,
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(
            f"{where}: param '{name}' must be a number ({kind}), "
            f"got {type(value).__name__} {value!r}",
            step=index,
            field=name,
        )
    if not math.isfinite(value):
        raise PlanError(
            f"{where}: param '{name}' must be finite, got {value!r}", step=index, field=name
        )
    if spec.type is int:
        if float(value) != math.floor(value):
            raise PlanError(
                f"{where}: param '{name}' must be an integer, got {value!r}", step=index, field=name
            )
        return int(value)
    return float(value)


def _clamp(value: Any, spec: ParamSpec) -> Any:
    if spec.type is bool:
        return value
    lo = spec.minimum if spec.minimum is not None else value
    hi = spec.maximum if spec.maximum is not None else value
    clamped = min(max(value, lo), hi)
    return spec.type(clamped)


def validate_step(step: Any, index: int = 0) -> dict[str, Any]:
    """Normalise one step (see module doc); raises PlanError naming ``index`` and the field."""
    if not isinstance(step, dict):
        raise PlanError(
            f"step {index}: must be an object with 'action' and 'params', "
            f"got {type(step).__name__}",
            step=index,
        )
    action = step.get("action")
    if not isinstance(action, str):
        raise PlanError(
            f"step {index}: 'action' must be a string, got {action!r}", step=index, field="action"
        )
    if action not in ACTION_SCHEMAS:
        known = ", ".join(ACTION_SCHEMAS)
        raise PlanError(
            f"step {index}: unknown action {action!r}; known actions: {known}",
            step=index,
            field="action",
        )
    where = _where(index, action)
    extra = set(step) - STEP_KEYS
    if extra:
        raise PlanError(
            f"{where}: unknown key(s) {sorted(extra)}; a step has 'action' and 'params'",
            step=index,
            field=min(extra),
        )
    params = step.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise PlanError(
            f"{where}: 'params' must be an object, got {type(params).__name__}",
            step=index,
            field="params",
        )
    schema = ACTION_SCHEMAS[action]
    unknown = [k for k in params if k not in schema]
    if unknown:
        raise PlanError(
            f"{where}: unknown param {unknown[0]!r}; {action} takes {sorted(schema)}",
            step=index,
            field=str(unknown[0]),
        )
    out: dict[str, Any] = {}
    clamped: dict[str, dict[str, Any]] = {}
    for name, spec in schema.items():
        if name not in params:
            if spec.required:
                raise PlanError(
                    f"{where}: param '{name}' is required ({spec.doc})", step=index, field=name
                )
            out[name] = spec.default
            continue
        value = _coerce(params[name], spec, where, name, index)
        used = _clamp(value, spec)
        if used != value:
            clamped[name] = {"given": value, "used": used}
        out[name] = used
    if action == "fill_blanks" and out["max_gap_ms"] < out["min_gap_ms"]:
        clamped["max_gap_ms"] = {"given": out["max_gap_ms"], "used": out["min_gap_ms"]}
        out["max_gap_ms"] = out["min_gap_ms"]
    if action == "suppress_event" and out["end_s"] <= out["start_s"]:
        start, end = out["start_s"], out["end_s"]
        if end < start:  # given the wrong way round
            out["start_s"], out["end_s"] = end, start
        else:  # an empty stretch: the shortest that means anything
            out["end_s"] = min(600.0, start + 0.1)
            out["start_s"] = out["end_s"] - 0.1
        for name, before in (("start_s", start), ("end_s", end)):
            if out[name] != before:  # keep what the planner first gave when bounds clamped it too
                given = clamped.get(name, {}).get("given", before)
                clamped[name] = {"given": given, "used": out[name]}
    normalised: dict[str, Any] = {"action": action, "params": out}
    if clamped:
        normalised["clamped"] = clamped
    return normalised


def validate_plan(plan: Any) -> list[dict[str, Any]]:
    """Normalised copy of ``plan`` (a list of steps, one step, or their JSON text).

    Raises:
        PlanError: with ``step``/``field`` set, for anything that cannot be run as given.
    """
    if isinstance(plan, (str, bytes)):
        try:
            plan = json.loads(plan)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from None
    if isinstance(plan, dict) and "action" in plan:
        plan = [plan]
    if not isinstance(plan, (list, tuple)):
        raise PlanError(f"plan must be a list of steps, got {type(plan).__name__}")
    if len(plan) > MAX_STEPS:
        raise PlanError(f"plan has {len(plan)} steps; at most {MAX_STEPS} are allowed")
    return [validate_step(step, i) for i, step in enumerate(plan)]


def plan_warnings(steps: list[dict[str, Any]]) -> list[str]:
    """Human-readable lines for every clamped value of a validated plan."""
    lines = []
    for i, step in enumerate(steps):
        for name, change in step.get("clamped", {}).items():
            lines.append(
                f"step {i} ({step['action']}): {name} {change['given']} clamped to {change['used']}"
            )
    return lines
