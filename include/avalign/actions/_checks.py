"""Argument checks shared by the pure functions: clear ``ValueError``s that name the parameter.

The functions work on batches ``(B, C, T)`` with one parameter value per item. A parameter may
be given as a python number (same for every item), a sequence of B numbers or a tensor of
shape ``(B,)``; :func:`per_item` turns any of these into a list of B python floats, which is what
the data-dependent loops (grouping items that share a value) need.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

ParamLike = float | int | Sequence[float] | Tensor
F = TypeVar("F", bound=Callable[..., Any])


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


CPU_CHUNK_SAMPLES = 320_000
"""Most samples (B * C * T) one CPU call works on at once: two 10 s clips at 16 kHz.

Measured on one thread: spectral subtraction took 7.3 ms per 10 s clip alone or in pairs, but
25 ms per clip in a batch of 16, because the batch's STFT temporaries (tens of MB) leave the
cache and every call faults fresh pages in. Short clips still share a chunk (per-op overhead is
paid once for many), so a CPU batch is never slower per clip than single clips."""


def cpu_chunked(*per_item_params: str) -> Callable[[F], F]:
    """Run a ``fn(x, sample_rate, ...)`` on a CPU batch in chunks of whole items.

    ``per_item_params`` name the arguments that may hold one value per item (a sequence or a
    (B,) tensor); they are sliced with the batch, anything else is passed as is. Items never
    interact in the actions, so the result equals one call on the whole batch (batch == single
    still holds exactly). Outputs: a tensor (concatenated) or a (tensor, list) pair. CUDA
    batches and arguments that do not fit the batch (left to ``fn`` to reject) go through whole.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            x = bound.arguments.get("x")
            if not isinstance(x, Tensor) or x.dim() != 3 or x.device.type != "cpu":
                return fn(*args, **kwargs)
            b = x.shape[0]
            per_call = max(1, CPU_CHUNK_SAMPLES // max(1, x.shape[1] * x.shape[2]))
            if b <= per_call:
                return fn(*args, **kwargs)
            for name in per_item_params:
                value = bound.arguments.get(name)
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] != b:
                    return fn(*args, **kwargs)
                if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                    if len(value) != b:
                        return fn(*args, **kwargs)
            parts = []
            for start in range(0, b, per_call):
                stop = min(b, start + per_call)
                chunk = dict(bound.arguments)
                chunk["x"] = x[start:stop]
                for name in per_item_params:
                    value = chunk.get(name)
                    if isinstance(value, Tensor) and value.dim() > 0:
                        chunk[name] = value[start:stop]
                    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                        chunk[name] = list(value)[start:stop]
                parts.append(fn(**chunk))
            if isinstance(parts[0], tuple):
                reports: list[Any] = []
                for part in parts:
                    reports.extend(part[1])
                return torch.cat([p[0] for p in parts]), reports
            return torch.cat(parts)

        return wrapper  # type: ignore[return-value]

    return decorate
