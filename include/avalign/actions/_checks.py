"""Argument checks shared by the pure functions: clear ``ValueError``s that name the parameter.

The functions work on batches ``(B, C, T)`` with one parameter value per item. A parameter may
be given as a python number (same for every item), a sequence of B numbers or a tensor of
shape ``(B,)``; :func:`per_item` turns any of these into a list of B python floats, which is what
the data-dependent loops (grouping items that share a value) need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

ParamLike = float | int | Sequence[float] | Tensor


def check_batch(x: Tensor, name: str = "x") -> Tensor:
    """Require a floating tensor of shape (B, C, T) with finite samples and T >= 1."""
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape (B, C, T), got {type(x).__name__}"
        )
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, C, T), got rank {x.dim()} {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float32), got {x.dtype}")
    if x.shape[-1] < 1 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_sample_rate(sample_rate: int | float) -> int:
    """Require a positive integer sample rate (Hz)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not math.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def per_item(
    value: ParamLike,
    batch: int,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> list[float]:
    """One finite python float per batch item, range-checked (ValueError naming ``name``)."""
    if isinstance(value, Tensor):
        if value.dim() == 0:
            values = [float(value)] * batch
        elif value.dim() == 1 and value.shape[0] == batch:
            values = [float(v) for v in value.detach().cpu().tolist()]
        else:
            raise ValueError(
                f"{name} must be a number or have shape ({batch},), got {tuple(value.shape)}"
            )
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got a bool")
    elif isinstance(value, (int, float)):
        values = [float(value)] * batch
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != batch:
            raise ValueError(f"{name} has {len(value)} values for a batch of {batch}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise ValueError(f"{name} must contain numbers only")
        values = [float(v) for v in value]
    else:
        raise ValueError(
            f"{name} must be a number, a sequence or a tensor, got {type(value).__name__}"
        )
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        if minimum is not None and (v <= minimum if exclusive_minimum else v < minimum):
            op = ">" if exclusive_minimum else ">="
            raise ValueError(f"{name} must be {op} {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return values


def as_column(values: list[float], like: Tensor) -> Tensor:
    """Per-item values as a (B, 1, 1) tensor on ``like``'s device and dtype, for broadcasting."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def groups(values: list[float]) -> dict[float, list[int]]:
    """Batch indices grouped by equal parameter value (items sharing a value run together)."""
    out: dict[float, list[int]] = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return out
