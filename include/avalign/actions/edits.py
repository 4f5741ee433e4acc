"""Serialisable edit objects: one small dataclass per action (the lhotse-transform pattern).

An ``Edit`` holds only its parameters, so ``to_dict()`` is the exact JSON a planner wrote (after
validation) and ``Edit.from_dict(d)`` replays it. ``apply`` takes (C, T) or (B, C, T) and
returns the same rank; it calls the pure functions of this package. ``map_time`` maps a time in
the edited audio back to the original (identity except for speed and shift), so timestamps
measured on edited audio (onsets, words) can be compared with the untouched video.

Constructing an edit checks its parameters strictly against ``schema.ACTION_SCHEMAS``
(ValueError naming the field; no clamping); ``from_dict`` goes through ``validate_plan``
(clamping, PlanError), because that is the path for planner output.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from . import blanks, denoise, isolated, level, neural, timing
from ._checks import check_sample_rate
from .schema import ACTION_SCHEMAS, validate_step

EDIT_TYPES: dict[str, type[Edit]] = {}


@dataclass
class Edit:
    """Base of all edits. Subclasses set ``action`` and declare the schema's params as fields."""

    action: ClassVar[str] = ""
    last_report: Any = field(default=None, init=False, repr=False, compare=False)
    """What the last ``apply`` did (a dict; per item lists for batches), e.g. filled gaps."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.action:
            EDIT_TYPES[cls.action] = cls

    def __post_init__(self) -> None:
        schema = ACTION_SCHEMAS[self.action]
        for name, spec in schema.items():
            value = getattr(self, name)
            if spec.type is int:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or value != int(value)
                ):
                    raise ValueError(f"{self.action}: {name} must be an integer, got {value!r}")
                value = int(value)
            elif spec.type is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{self.action}: {name} must be a number, got {value!r}")
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{self.action}: {name} must be finite, got {value!r}")
            if (
                spec.minimum is not None
                and value < spec.minimum
                or spec.maximum is not None
                and value > spec.maximum
            ):
                raise ValueError(
                    f"{self.action}: {name}={value!r} is outside "
                    f"[{spec.minimum}, {spec.maximum}] {spec.unit}"
                )
            setattr(self, name, value)
        self._sample_rate: int | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The action's parameters (the schema's names, in schema order)."""
        return {name: getattr(self, name) for name in ACTION_SCHEMAS[self.action]}

    def to_dict(self) -> dict[str, Any]:
        """{"action": ..., "params": {...}}: the plan step that rebuilds this edit."""
        return {"action": self.action, "params": self.params}

    @staticmethod
    def from_dict(step: dict[str, Any]) -> Edit:
        """Rebuild an edit from a plan step (validated: unknown names raise, bounds clamp)."""
        normalised = validate_step(step)
        return EDIT_TYPES[normalised["action"]](**normalised["params"])

    def apply(self, audio: Tensor, sample_rate: int) -> Tensor:
        """Edited copy of ``audio`` (C, T) or (B, C, T), same shape, dtype and device."""
        sample_rate = check_sample_rate(sample_rate)
        if not isinstance(audio, Tensor) or audio.dim() not in (2, 3):
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"audio must be a tensor of shape (C, T) or (B, C, T), got {shape}")
        single = audio.dim() == 2
        batch = audio.unsqueeze(0) if single else audio
        out, report = self._apply(batch, sample_rate)
        self._sample_rate = sample_rate
        self.last_report = _unbatch(report) if single else report
        return out[0] if single else out

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        raise NotImplementedError

    def map_time(self, t_out_s: float) -> float:
        """Time in the original audio of the sample at ``t_out_s`` in the edited audio."""
        return float(t_out_s)


def _finite_or_none(values: list[float]) -> list[float | None]:
    """Report values that JSON can carry: rounded, with None for -inf (a silent clip)."""
    return [round(v, 4) if math.isfinite(v) else None for v in values]


def _unbatch(report: dict[str, list[Any]]) -> dict[str, Any]:
    return {key: value[0] for key, value in report.items()}


@dataclass
class SpectralSubtraction(Edit):
    action: ClassVar[str] = "spectral_subtraction"
    over_subtraction: float = 2.0
    floor: float = 0.02

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        return denoise.spectral_subtraction(x, sample_rate, self.over_subtraction, self.floor), {}


@dataclass
class WienerFilter(Edit):
    action: ClassVar[str] = "wiener_filter"
    alpha: float = 0.9
    min_prior_snr_db: float = -25.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        return denoise.wiener_filter(x, sample_rate, self.alpha, self.min_prior_snr_db), {}


@dataclass
class WaveletDenoise(Edit):
    action: ClassVar[str] = "wavelet_denoise"
    threshold_scale: float = 1.0
    levels: int = 8

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        return denoise.wavelet_denoise(x, sample_rate, self.threshold_scale, self.levels), {}


@dataclass
class SpectralGating(Edit):
    action: ClassVar[str] = "spectral_gating"
    threshold_db: float = 6.0
    prop_decrease: float = 1.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        return denoise.spectral_gating(x, sample_rate, self.threshold_db, self.prop_decrease), {}


@dataclass
class SpeedChange(Edit):
    """t_in = t_out * factor (output second t holds what was at t * factor)."""

    action: ClassVar[str] = "speed_change"
    factor: float = 1.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y = timing.speed_change(x, sample_rate, self.factor)
        content = timing.content_length(x.shape[-1], self.factor) / sample_rate
        return y, {"content_s": [content] * x.shape[0]}

    def map_time(self, t_out_s: float) -> float:
        return float(t_out_s) * self.factor


@dataclass
class PitchChange(Edit):
    action: ClassVar[str] = "pitch_change"
    semitones: float = 0.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        return timing.pitch_change(x, sample_rate, self.semitones), {}


@dataclass
class VolumeAdjust(Edit):
    action: ClassVar[str] = "volume_adjust"
    target_lufs: float = -23.0
    peak_ceiling_db: float = -1.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y = level.volume_adjust(x, sample_rate, self.target_lufs, self.peak_ceiling_db)
        before = _finite_or_none(level.integrated_loudness(x, sample_rate).tolist())
        after = _finite_or_none(level.integrated_loudness(y, sample_rate).tolist())
        peak = _finite_or_none(level.true_peak(y).clamp_min(1e-12).log10().mul(20).tolist())
        return y, {"input_lufs": before, "output_lufs": after, "true_peak_db": peak}


@dataclass
class FillBlanks(Edit):
    action: ClassVar[str] = "fill_blanks"
    min_gap_ms: float = 40.0
    max_gap_ms: float = 1000.0
    depth_db: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_gap_ms < self.min_gap_ms:
            raise ValueError(
                f"fill_blanks: max_gap_ms ({self.max_gap_ms}) < min_gap_ms ({self.min_gap_ms})"
            )

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y, filled = blanks.fill_blanks(
            x, sample_rate, self.min_gap_ms, self.max_gap_ms, self.depth_db
        )
        return y, {"filled": filled}


@dataclass
class TimeShift(Edit):
    """t_in = t_out - shift (positive shift_ms = audio later)."""

    action: ClassVar[str] = "time_shift"
    shift_ms: float = 0.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        k = timing.shift_samples(self.shift_ms, sample_rate)
        return timing.time_shift(x, sample_rate, self.shift_ms), {"shift_samples": [k] * x.shape[0]}

    def map_time(self, t_out_s: float) -> float:
        if self._sample_rate is None:  # not applied yet: the exact requested shift
            return float(t_out_s) - self.shift_ms / 1000.0
        return (
            float(t_out_s)
            - timing.shift_samples(self.shift_ms, self._sample_rate) / self._sample_rate
        )


@dataclass
class SuppressEvent(Edit):
    """Brings down what sounds only within [start_s, end_s) (``isolated.suppress_event``)."""

    action: ClassVar[str] = "suppress_event"
    start_s: float = 0.0
    end_s: float = 0.0
    strength: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.end_s <= self.start_s:
            raise ValueError(f"suppress_event: end_s ({self.end_s}) must be after start_s ({self.start_s})")

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y, reports = isolated.suppress_event(x, sample_rate, self.start_s, self.end_s, self.strength)
        return y, {key: [r[key] for r in reports] for key in ("bins", "removed_db", "skipped")}


@dataclass
class DeepFilterNet(Edit):
    """DeepFilterNet3 (neural, 48 kHz inside); not batched: one fresh model state per channel."""

    action: ClassVar[str] = "deepfilternet"
    atten_lim_db: float = 100.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y, snr = neural.deepfilternet(x, sample_rate, self.atten_lim_db)
        return y, {"mean_local_snr_db": snr}


@dataclass
class RNNoise(Edit):
    """RNNoise (neural, 48 kHz inside); not batched: one fresh state per channel."""

    action: ClassVar[str] = "rnnoise"
    mix: float = 1.0

    def _apply(self, x: Tensor, sample_rate: int) -> tuple[Tensor, dict[str, list[Any]]]:
        y, speech = neural.rnnoise(x, sample_rate, self.mix)
        return y, {"speech_probability": speech}


def edit_fields(edit: Edit) -> list[str]:
    """Dataclass fields of an edit that are parameters (for introspection and tests)."""
    return [f.name for f in dataclasses.fields(edit) if f.init]


__all__ = [
    "EDIT_TYPES",
    "DeepFilterNet",
    "Edit",
    "FillBlanks",
    "PitchChange",
    "RNNoise",
    "SpectralGating",
    "SpectralSubtraction",
    "SpeedChange",
    "TimeShift",
    "VolumeAdjust",
    "WaveletDenoise",
    "WienerFilter",
    "edit_fields",
]
