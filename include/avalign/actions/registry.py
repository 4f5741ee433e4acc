"""Run a plan: validate it, build the edits, apply them in order to the original audio.

The agent calls :func:`apply_plan` once per reflection cycle with the clip's ORIGINAL audio and
the cycle's whole plan, never with the previous cycle's output, so errors do not accumulate.
Within one plan the steps compose in order (step 2 edits step 1's output).

Guarantees of the result: same (C, T) shape as the input, float32, finite, and every sample
within [-1, 1]. If a step leaves peaks above full scale (a pitch or speed change of a clip that
was already at 0 dBFS), a true-peak limiter at 0 dBTP brings them back and ``warnings`` says so;
``volume_adjust`` already limits to its own ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avalign.errors import MediaError

from ._checks import check_sample_rate
from .edits import EDIT_TYPES, Edit
from .level import limit_true_peak
from .schema import plan_warnings, validate_plan, validate_step


def build_edit(step: dict[str, Any]) -> Edit:
    """The edit object of one plan step (validated; raises PlanError)."""
    normalised = validate_step(step)
    return EDIT_TYPES[normalised["action"]](**normalised["params"])


@dataclass
class PlanResult:
    """Edited audio plus what was done: edits, per-step reports, warnings."""

    audio: np.ndarray | Tensor
    edits: list[Edit]
    reports: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def map_time(self, t_out_s: float) -> float:
        """Time in the original audio of ``t_out_s`` in the edited audio (all steps composed)."""
        t = float(t_out_s)
        for edit in reversed(self.edits):
            t = edit.map_time(t)
        return t

    def plan(self) -> list[dict[str, Any]]:
        """The plan that reproduces this result (``to_dict`` of every edit)."""
        return [edit.to_dict() for edit in self.edits]


def _as_tensor(audio: np.ndarray | Tensor) -> Tensor:
    if isinstance(audio, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(audio))
    elif isinstance(audio, Tensor):
        tensor = audio.detach()
    else:
        raise ValueError(
            f"audio must be a numpy array or a torch tensor, got {type(audio).__name__}"
        )
    if tensor.dim() != 2 or tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise ValueError(f"audio must have shape (C, T) with C, T >= 1, got {tuple(tensor.shape)}")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int16, torch.int32)):
        raise ValueError(f"audio must be float (or int16/int32 PCM), got {tensor.dtype}")
    if tensor.dtype == torch.int16:
        return tensor.float() / 32768.0
    if tensor.dtype == torch.int32:
        return tensor.float() / 2147483648.0
    return tensor.float()


def apply_plan(audio: np.ndarray | Tensor, sample_rate: int, plan: Any) -> PlanResult:
    """Validate ``plan`` and apply it to ``audio`` (C, T); see the module doc for guarantees.

    Args:
        audio: the clip's original audio, (C, T) numpy array or tensor (any device).
        sample_rate: Hz.
        plan: a list of {"action", "params"} steps or its JSON text (``validate_plan``).

    Returns:
        PlanResult whose ``audio`` has the input's type (numpy in, numpy out), shape (C, T) and
        dtype float32.

    Raises:
        PlanError: the plan cannot be run (nothing is applied).
        ValueError: bad audio shape/type or sample rate.
        MediaError: the audio holds NaN/inf (reason ``non_finite_audio``), or an edit produced them
            (reason ``edit_non_finite``).
    """
    sample_rate = check_sample_rate(sample_rate)
    x = _as_tensor(audio)
    if not bool(torch.isfinite(x).all()):
        raise MediaError("audio contains NaN or inf samples", reason="non_finite_audio")
    steps = validate_plan(plan)
    warnings = plan_warnings(steps)
    edits = [EDIT_TYPES[step["action"]](**step["params"]) for step in steps]
    reports: list[dict[str, Any]] = []
    y = x
    for i, edit in enumerate(edits):
        y = edit.apply(y, sample_rate)
        if not bool(torch.isfinite(y).all()):
            raise MediaError(
                f"step {i} ({edit.action}) produced NaN or inf", reason="edit_non_finite"
            )
        reports.append({"action": edit.action, "params": edit.params, **(edit.last_report or {})})
    peak = float(y.abs().max()) if y.numel() else 0.0
    if peak > 1.0:
        y = limit_true_peak(y.unsqueeze(0), sample_rate, 0.0)[0].clamp(-1.0, 1.0)
        warnings.append(
            f"peak guard: output peak {20 * np.log10(peak):+.2f} dBFS limited to 0 dBTP"
        )
    out: np.ndarray | Tensor = y.to(torch.float32)
    if isinstance(audio, np.ndarray):
        out = out.cpu().numpy()
    return PlanResult(audio=out, edits=edits, reports=reports, steps=steps, warnings=warnings)
