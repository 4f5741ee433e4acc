"""Running minimum and running mean in O(n) per row, whatever the window length.

``F.max_pool1d`` and ``F.avg_pool1d`` cost O(n * width): with the windows used here (a 1.5 s
noise-search window, a 20 ms limiter window at 48 kHz, a 64 ms wavelet energy window) that was
the slowest part of several actions. The running minimum uses van Herk / Gil-Werman (prefix
and suffix minima inside blocks of the window length), the running mean a cumulative sum.
Both are centred on odd windows and work on the last dimension of any tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sliding_min(x: Tensor, width: int) -> Tensor:
    """Minimum over the centred window of odd ``width`` along the last dim (edges: what exists)."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"width must be odd and >= 1, got {width}")
    if width == 1:
        return x.clone()
    half, n = width // 2, x.shape[-1]
    total = math.ceil((n + 2 * half) / width) * width
    padded = F.pad(x, (half, total - n - half), value=math.inf)
    blocks = padded.reshape(*x.shape[:-1], total // width, width)
    prefix = blocks.cummin(dim=-1).values.reshape(*x.shape[:-1], total)
    suffix = blocks.flip(-1).cummin(dim=-1).values.flip(-1).reshape(*x.shape[:-1], total)
    return torch.minimum(suffix[..., :n], prefix[..., width - 1 : width - 1 + n])


def moving_mean(x: Tensor, width: int) -> Tensor:
    """Mean over the centred window of odd ``width`` along the last dim, edges replicated."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"width must be odd and >= 1, got {width}")
    if width == 1:
        return x.clone()
    half = width // 2
    lead, n = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, 1, n).to(torch.float64)
    padded = (
        F.pad(flat, (half, half), mode="replicate") if n > 1 else flat.expand(-1, -1, n + 2 * half)
    )
    csum = F.pad(padded.cumsum(dim=-1), (1, 0))
    out = (csum[..., width:] - csum[..., :-width]) / width
    return out.reshape(*lead, n).to(x.dtype)
