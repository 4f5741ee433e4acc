"""avalign.actions: the audio edits an agent can plan (pure signal processing).

Twelve actions, named as in the plan JSON: spectral_subtraction, wiener_filter, wavelet_denoise,
spectral_gating, speed_change, pitch_change, volume_adjust, fill_blanks, time_shift,
suppress_event (an isolated, off-screen sound: ``isolated.py``), and the two neural denoisers deepfilternet and rnnoise (``neural.py``: 48 kHz C runtimes from their wheels,
looped over items rather than batched).

Layers (torchaudio/lhotse style):
- ``functional``: pure batched functions on (B, C, T) tensors;
- ``edits``: small serialisable dataclasses (``to_dict``/``from_dict``/``apply``/``map_time``);
- ``schema``: typed parameter specs, the catalogue text for a planner, plan validation;
- ``registry``: ``build_edit`` and ``apply_plan`` (validate, apply to the original, guard peaks).

This package imports nothing from avalign.agent, avalign.serving or avalign.data. Importing it
tunes glibc's allocator to keep freed buffers (``_allocator``: the actions ran ~2x faster).
"""

from ._allocator import keep_freed_memory
from .edits import (
    EDIT_TYPES,
    DeepFilterNet,
    Edit,
    FillBlanks,
    PitchChange,
    RNNoise,
    SpectralGating,
    SpectralSubtraction,
    SpeedChange,
    SuppressEvent,
    TimeShift,
    VolumeAdjust,
    WaveletDenoise,
    WienerFilter,
)
from .registry import PlanResult, apply_plan, build_edit
from .schema import (
    ACTION_DESCRIPTIONS,
    ACTION_SCHEMAS,
    MAX_STEPS,
    ParamSpec,
    PlanError,
    describe_actions,
    plan_warnings,
    validate_plan,
)

ACTIONS: tuple[str, ...] = tuple(ACTION_SCHEMAS)

__all__ = [
    "ACTIONS",
    "ACTION_DESCRIPTIONS",
    "ACTION_SCHEMAS",
    "EDIT_TYPES",
    "MAX_STEPS",
    "DeepFilterNet",
    "Edit",
    "FillBlanks",
    "ParamSpec",
    "PitchChange",
    "PlanError",
    "PlanResult",
    "RNNoise",
    "SpectralGating",
    "SpectralSubtraction",
    "SpeedChange",
    "SuppressEvent",
    "TimeShift",
    "VolumeAdjust",
    "WaveletDenoise",
    "WienerFilter",
    "apply_plan",
    "build_edit",
    "describe_actions",
    "plan_warnings",
    "validate_plan",
]

keep_freed_memory()
