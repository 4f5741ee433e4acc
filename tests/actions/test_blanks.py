"""Fill blanks: dropouts are concealed at the context level; clean or paused audio is untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avalign.actions.blanks import fill_blanks

from .conftest import SR, speech_like, tone


def _db(x: torch.Tensor) -> float:
    return float(20 * np.log10(x.double().pow(2).mean().sqrt().item() + 1e-20))


def test_fills_100ms_dropout_in_tone_at_context_level() -> None:
    x = tone(440.0, 2.0)
    gapped = x.clone()
    gapped[:, 16000:17600] = 0.0
    y, report = fill_blanks(gapped[None], SR)
    assert len(report[0]) == 1
    start, dur = report[0][0]
    assert abs(start - 1.0) < 0.002 and abs(dur - 0.1) < 0.002
    fill = y[0, :, 16000:17600]
    context = _db(x[:, 14400:16000])
    assert context - 3.0 < _db(fill) <= context + 3.0
    # outside the blank nothing changed
    assert torch.equal(y[0, :, :16000], gapped[:, :16000]) and torch.equal(
        y[0, :, 17601:], gapped[:, 17601:]
    )


def test_noise_dropout_filled_with_similar_noise_not_louder() -> None:
    noise = 0.1 * torch.randn(1, 2 * SR, generator=torch.Generator().manual_seed(2))
    gapped = noise.clone()
    gapped[:, 10000:11000] = 0.0
    y, report = fill_blanks(gapped[None], SR)
    assert len(report[0]) == 1
    assert abs(_db(y[0, :, 10000:11000]) - _db(noise)) < 3.0


def test_gapless_and_paused_signals_are_bit_identical() -> None:
    for clean in (tone(440.0, 2.0), speech_like(3.0)):  # speech-like has digital-zero pauses
        y, report = fill_blanks(clean[None], SR)
        assert report == [[]] and torch.equal(y[0], clean)


def test_leading_silence_is_content_not_a_blank() -> None:
    x = tone(440.0, 2.0)
    x[:, :8000] = 0.0
    y, report = fill_blanks(x[None], SR)
    assert report == [[]] and torch.equal(y[0], x)


@pytest.mark.real_av
def test_real_speech_untouched(real_speech: torch.Tensor) -> None:
    y, report = fill_blanks(real_speech[None], SR)
    assert report == [[]] and torch.equal(y[0], real_speech)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_gap_ms"):
        fill_blanks(torch.zeros(1, 1, 100), SR, min_gap_ms=-1.0)
    with pytest.raises(ValueError, match="max_gap_ms"):
        fill_blanks(torch.zeros(1, 1, 100), SR, min_gap_ms=100.0, max_gap_ms=50.0)
