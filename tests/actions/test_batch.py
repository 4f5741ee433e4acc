"""Every action gives the same result for a batch of 4 as for 4 single clips (per-item params)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from avalign.actions import functional as AF

from .conftest import SR, add_white_noise, speech_like, tone


def _batch() -> torch.Tensor:
    items = [
        add_white_noise(speech_like(2.0, seed=1), 5.0, seed=1),
        add_white_noise(speech_like(2.0, seed=2), 15.0, seed=2),
        tone(440.0, 2.0),
        0.2 * torch.randn(1, 2 * SR, generator=torch.Generator().manual_seed(9)),
    ]
    gapped = items[2].clone()
    gapped[:, 10000:11200] = 0.0
    items[2] = gapped
    return torch.stack([torch.cat([v, 0.5 * v]) for v in items])  # (4, 2, T)


CASES: dict[str, tuple[Callable[..., torch.Tensor], dict]] = {
    "spectral_subtraction": (
        AF.spectral_subtraction,
        {"over_subtraction": [1.0, 2.0, 3.0, 4.0], "floor": 0.05},
    ),
    "wiener_filter": (AF.wiener_filter, {"alpha": torch.tensor([0.9, 0.95, 0.98, 0.9])}),
    "wavelet_denoise": (AF.wavelet_denoise, {"threshold_scale": [0.5, 1.0, 2.0, 1.0]}),
    "spectral_gating": (
        AF.spectral_gating,
        {"threshold_db": [3.0, 6.0, 9.0, 6.0], "prop_decrease": 0.8},
    ),
    "speed_change": (AF.speed_change, {"factor": [1.1, 0.9, 1.0, 1.1]}),
    "pitch_change": (AF.pitch_change, {"semitones": [2.0, -3.0, 0.0, 2.0]}),
    "volume_adjust": (AF.volume_adjust, {"target_lufs": [-23.0, -16.0, -30.0, -23.0]}),
    "fill_blanks": (AF.fill_blanks, {}),
    "time_shift": (AF.time_shift, {"shift_ms": [10.0, -25.5, 0.0, 300.0]}),
}


def _single_kwargs(kwargs: dict, i: int) -> dict:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[i : i + 1]
        elif isinstance(value, list):
            out[key] = [value[i]]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("name", CASES)
def test_batch_equals_single(name: str) -> None:
    fn, kwargs = CASES[name]
    x = _batch()
    batch = fn(x, SR, **kwargs)
    singles = [fn(x[i : i + 1], SR, **_single_kwargs(kwargs, i)) for i in range(x.shape[0])]
    if name == "fill_blanks":
        batch_audio, batch_report = batch
        assert batch_report == [s[1][0] for s in singles]
        assert len(batch_report[2]) == 1  # the gapped tone was filled
        batch, singles = batch_audio, [s[0] for s in singles]
    assert batch.shape == x.shape and batch.dtype == x.dtype
    assert torch.allclose(batch, torch.cat(singles), atol=1e-6), name
    assert torch.isfinite(batch).all()
