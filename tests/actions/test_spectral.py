"""The shared STFT: torch's layout and the time-major frames are the same numbers."""

from __future__ import annotations

import pytest
import torch

from avalign.actions.spectral import (
    _envelope,
    istft,
    istft_frames,
    overlap_add,
    stft,
    stft_config,
    stft_frames,
)

from .conftest import SR


def test_stft_is_torch_stft_and_frames_are_its_transpose() -> None:
    cfg = stft_config(SR)
    x = torch.randn(2, 3, 5000)
    window = cfg.window(x.device, x.dtype)
    reference = torch.stft(
        x.reshape(-1, 5000), cfg.n_fft, cfg.hop, window=window, center=True,
        pad_mode="reflect", return_complex=True,
    ).reshape(2, 3, cfg.n_freq, -1)
    assert torch.equal(stft(x, cfg), reference)
    assert torch.equal(stft_frames(x, cfg), reference.transpose(-1, -2))


@pytest.mark.parametrize("t", [1, 100, 257, 300, 16001])
def test_compiled_framing_is_torch_stft_bit_for_bit(
    t: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avalign.actions import spectral

    if spectral._compiled_analysis() is None:
        pytest.skip("numba is not installed")
    cfg = stft_config(SR)
    x = torch.randn(2, 1, t, generator=torch.Generator().manual_seed(t))
    compiled = stft_frames(x, cfg)
    monkeypatch.setattr(spectral, "_compiled_analysis", lambda: None)
    assert torch.equal(compiled, stft_frames(x, cfg))
    if t > cfg.n_fft // 2:  # torch.stft's reflect pad needs more samples than half a frame
        window = cfg.window(x.device, x.dtype)
        reference = torch.stft(
            x.reshape(-1, t), cfg.n_fft, cfg.hop, window=window, center=True,
            pad_mode="reflect", return_complex=True,
        )
        assert torch.equal(compiled.reshape(2, -1, cfg.n_freq), reference.transpose(-1, -2))


@pytest.mark.parametrize("t", [1, 100, 257, 4000, 16001])
def test_inverse_matches_torch_istft_and_round_trips(t: int) -> None:
    cfg = stft_config(SR)
    x = torch.randn(2, 1, t)
    frames = stft_frames(x, cfg)
    assert torch.allclose(istft_frames(frames, cfg, t), x, atol=1e-5)
    modified = stft(x, cfg) * torch.rand(frames.transpose(-1, -2).shape)  # not a valid STFT
    n = modified.shape[-1]
    reference = torch.istft(
        modified.reshape(2, cfg.n_freq, n), cfg.n_fft, cfg.hop,
        window=cfg.window(x.device, x.dtype), center=True, length=t,
    ).reshape(2, 1, t)
    assert torch.allclose(istft(modified, cfg, t), reference, atol=1e-5)
    longer = istft_frames(frames, cfg, t + 2 * cfg.n_fft)  # past the last frame: silence
    assert torch.count_nonzero(longer[..., t + cfg.n_fft :]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_into_out_equals_a_fresh_result(dtype: torch.dtype) -> None:
    cfg = stft_config(SR)
    frames = stft_frames(torch.randn(2, 1, 4000), cfg)
    given = torch.full((2, 1, 4000 + cfg.n_fft), 7.0, dtype=dtype)  # a silent tail past the frames
    assert istft_frames(frames, cfg, 4000 + cfg.n_fft, out=given) is given
    assert torch.equal(given, istft_frames(frames, cfg, 4000 + cfg.n_fft).to(dtype))


def test_overlap_add_sums_shifted_frames() -> None:
    frames = torch.arange(24, dtype=torch.float32).reshape(1, 3, 8)
    out = overlap_add(frames, 4)
    expected = torch.zeros(1, 16)
    for i in range(3):
        expected[0, 4 * i : 4 * i + 8] += frames[0, i]
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="multiple"):
        overlap_add(frames, 3)


@pytest.mark.parametrize("frames", [1, 3, 7, 8, 9, 1251])
def test_envelope_from_cached_pieces_is_the_overlap_added_window(frames: int) -> None:
    for n_fft, hop in ((512, 128), (64, 16)):
        square = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).square()
        reference = overlap_add(square.expand(1, frames, n_fft), hop)[0]
        assert torch.allclose(_envelope(n_fft, hop, frames), reference, atol=1e-12)


@pytest.mark.parametrize("t", [1, 300, 16001])
def test_compiled_synthesis_matches_torch_overlap_add(
    t: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avalign.actions import spectral

    if spectral._compiled_synthesis() is None:
        pytest.skip("numba not installed")
    cfg = stft_config(16000)
    spec = stft_frames(torch.randn(2, 1, t, generator=torch.Generator().manual_seed(2)), cfg)
    compiled = istft_frames(spec, cfg, t + 40)
    monkeypatch.setattr(spectral, "_compiled_synthesis", lambda: None)
    assert torch.allclose(compiled, istft_frames(spec, cfg, t + 40), atol=1e-6, rtol=0)
