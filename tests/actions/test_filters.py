"""O(n) running minimum and mean agree with the pooling definitions, edges included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avalign.actions._filters import moving_mean, running_min, sliding_min


@pytest.mark.parametrize(("n", "width"), [(1, 5), (10, 3), (10, 21), (100, 7), (3000, 187)])
def test_sliding_min_matches_max_pool(n: int, width: int) -> None:
    x = torch.rand(3, n)
    reference = -F.max_pool1d(-x[:, None], width, 1, width // 2)[:, 0]
    assert torch.equal(sliding_min(x, width), reference)


@pytest.mark.parametrize(("n", "width"), [(2, 5), (10, 3), (10, 21), (3000, 187)])
def test_moving_mean_matches_avg_pool_with_replicated_edges(n: int, width: int) -> None:
    x = torch.rand(2, n)
    padded = F.pad(x[:, None], (width // 2, width // 2), mode="replicate")
    assert torch.allclose(moving_mean(x, width), F.avg_pool1d(padded, width, 1)[:, 0], atol=1e-6)


def test_even_width_rejected() -> None:
    with pytest.raises(ValueError, match="width"):
        sliding_min(torch.zeros(1, 5), 4)


@pytest.mark.parametrize(("n", "width"), [(1, 5), (10, 3), (10, 21), (100, 7), (3000, 187)])
def test_running_min_matches_sliding_min_along_any_dim(n: int, width: int) -> None:
    x = torch.rand(3, n)
    assert torch.equal(running_min(x, width), sliding_min(x, width))
    frames = torch.rand(2, n, 5)  # time-major (R, N, F): along the frame axis
    reference = sliding_min(frames.transpose(1, 2).contiguous(), width).transpose(1, 2)
    assert torch.equal(running_min(frames, width, dim=-2), reference)
    with pytest.raises(ValueError, match="width"):
        running_min(x, 4)


@pytest.mark.parametrize("width", [3, 7, 251, 2001])
def test_compiled_running_min_matches_torch(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from avalign.actions import _filters

    if _filters._compiled_running_min() is None:
        pytest.skip("numba not installed")
    x = torch.rand(2, 1, 300, 17, generator=torch.Generator().manual_seed(3))
    compiled = running_min(x, width, dim=-2)
    monkeypatch.setattr(_filters, "_compiled_running_min", lambda: None)
    assert torch.equal(compiled, running_min(x, width, dim=-2))


@pytest.mark.parametrize("width", [1, 7, 251])
def test_scaled_running_min_is_the_minimum_times_the_scale(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The noise track's bias, applied as the minima are written, rounds as a separate multiply."""
    from avalign.actions import _filters

    x = torch.rand(2, 1, 300, 17, generator=torch.Generator().manual_seed(4))
    scaled = running_min(x, width, dim=-2, scale=1.7321)
    assert torch.equal(scaled, running_min(x, width, dim=-2) * 1.7321)
    monkeypatch.setattr(_filters, "_compiled_running_min", lambda: None)
    assert torch.equal(scaled, running_min(x, width, dim=-2, scale=1.7321))
