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


def test_compiled_blank_search_equals_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from avalign.actions import blanks

    if blanks._compiled_find_blanks() is None:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(5)
    stereo = torch.cat([speech_like(3.0), 0.5 * speech_like(3.0, seed=9)])
    for start, end in ((8000, 9600), (20000, 20500), (30000, 33000), (40000, 40100)):
        stereo[:, start:end] = 0.0  # dropouts, one too short to count
    noisy = 0.1 * torch.randn(1, 2 * SR, generator=g)
    noisy[:, 100:2000] = 0.0  # near the start
    noisy[:, -1500:] = 0.0  # trailing silence: content, not a blank
    noisy[:, 12000:13000] = 1e-7  # quiet, not digital silence
    for x in (stereo, noisy, tone(440.0, 0.01)):
        for dtype in (torch.float32, torch.float64):
            samples = x.to(dtype).numpy()
            compiled = blanks.find_blanks(samples, SR)
            monkeypatch.setattr(blanks, "_compiled_find_blanks", lambda: None)
            reference = blanks.find_blanks(samples, SR)
            monkeypatch.undo()
            assert compiled == reference
    # the 100-sample one is too short; the one at 20000 lies in a pause (its edges are not loud)
    assert blanks.find_blanks(stereo.numpy(), SR) == [(8000, 9600), (30000, 33000)]


def test_compiled_concealment_equals_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from avalign.actions import blanks

    if blanks._compiled_fill() is None or blanks._compiled_best_lag() is None:
        pytest.skip("numba is not installed")
    stereo = torch.cat([speech_like(2.0), 0.5 * speech_like(2.0, seed=9)]).double().numpy()
    mono = tone(440.0, 2.0).double().numpy()
    # both sides, a short left context (one side only / repeated copies), a long gap
    for x, start, end in ((stereo, 8000, 9600), (mono, 400, 2000), (mono, 30000, 31800), (stereo, 16000, 28000)):
        for dtype in (np.float64, np.float32):
            signal = x.astype(dtype)
            compiled = blanks.conceal(signal, start, end, SR)
            monkeypatch.setattr(blanks, "_compiled_fill", lambda: None)
            monkeypatch.setattr(blanks, "_compiled_best_lag", lambda: None)
            reference = blanks.conceal(signal.astype(np.float64), start, end, SR)
            monkeypatch.undo()
            assert (compiled is None) == (reference is None)
            if reference is not None:
                assert compiled.dtype == np.float64 and compiled.shape == reference.shape
                np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-7)
