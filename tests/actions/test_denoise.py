"""Each denoiser improves SI-SDR on noisy speech and leaves clean speech alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avalign.actions import denoise

from .conftest import SR, add_white_noise, si_sdr, speech_like

DENOISERS = {
    "spectral_subtraction": denoise.spectral_subtraction,
    "wiener_filter": denoise.wiener_filter,
    "wavelet_denoise": denoise.wavelet_denoise,
    "spectral_gating": denoise.spectral_gating,
}


@pytest.fixture(scope="module")
def synthetic() -> torch.Tensor:
    return speech_like(3.0)


@pytest.mark.parametrize("name", DENOISERS)
def test_improves_speech_like_at_5db(name: str, synthetic: torch.Tensor) -> None:
    noisy = add_white_noise(synthetic, 5.0)
    out = DENOISERS[name](noisy[None], SR)
    assert out.shape == noisy[None].shape and out.dtype == torch.float32
    gain = si_sdr(out[0, 0], synthetic[0]) - si_sdr(noisy[0], synthetic[0])
    assert gain > 4.0, f"{name}: SI-SDR gain {gain:.2f} dB"


@pytest.mark.real_av
@pytest.mark.parametrize("name", DENOISERS)
def test_improves_real_speech_at_5db(name: str, real_speech: torch.Tensor) -> None:
    noisy = add_white_noise(real_speech, 5.0)
    out = DENOISERS[name](noisy[None], SR)
    gain = si_sdr(out[0, 0], real_speech[0]) - si_sdr(noisy[0], real_speech[0])
    assert gain > 4.0, f"{name}: SI-SDR gain {gain:.2f} dB"


@pytest.mark.parametrize("name", DENOISERS)
def test_does_not_harm_clean_speech(name: str, synthetic: torch.Tensor) -> None:
    # "clean" = 40 dB SNR (every real recording has some floor): at most 0.5 dB worse
    near_clean = add_white_noise(synthetic, 40.0)
    out = DENOISERS[name](near_clean[None], SR)
    before = si_sdr(near_clean[0], synthetic[0])
    assert si_sdr(out[0, 0], synthetic[0]) >= before - 0.5
    # perfectly clean: the output stays the input (distortion 40 dB down)
    out = DENOISERS[name](synthetic[None], SR)
    assert si_sdr(out[0, 0], synthetic[0]) > 40.0


@pytest.mark.parametrize("name", DENOISERS)
def test_bad_arguments_raise_value_error(name: str) -> None:
    fn = DENOISERS[name]
    with pytest.raises(ValueError, match="shape"):
        fn(torch.zeros(1, 100), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        fn(torch.zeros(1, 1, 100), -16000)


def test_parameter_bounds_name_the_parameter() -> None:
    x = torch.zeros(1, 1, 1000)
    with pytest.raises(ValueError, match="floor"):
        denoise.spectral_subtraction(x, SR, floor=2.0)
    with pytest.raises(ValueError, match="prop_decrease"):
        denoise.spectral_gating(x, SR, prop_decrease=[0.5, 0.5])
    with pytest.raises(ValueError, match="levels"):
        denoise.wavelet_denoise(x, SR, levels=0)


def test_silence_and_tiny_inputs_stay_finite() -> None:
    for t in (1, 64, 600):
        for fn in DENOISERS.values():
            out = fn(torch.zeros(2, 1, t), SR)
            assert out.shape == (2, 1, t) and torch.isfinite(out).all()


def test_wiener_recursion_follows_the_decision_directed_step() -> None:
    # xi_n = max(w_n * G_{n-1}^2 + ml_n, xi_min), G_n = xi_n / (1 + xi_n), G_{-1} = 0
    gen = np.random.default_rng(0)
    pw = (3 * gen.random((40, 5))).astype(np.float32)
    ml = (2 * gen.random((40, 5))).astype(np.float32)
    ml[5:9] = 0.0  # frames where only the floor and the prior term count
    lower = np.full(5, 10 ** -2.5, dtype=np.float32)
    gains = np.empty_like(ml)
    denoise._recursion_numpy(pw, ml, lower, gains)
    square = np.zeros(5)
    for n in range(40):
        xi = np.maximum(pw[n] * square + ml[n], lower)
        expected = xi / (1 + xi)
        assert np.allclose(gains[n], expected, rtol=1e-6)
        square = expected**2


def test_gating_box_sums_are_the_triangular_smoothing() -> None:
    mask = (torch.rand(2, 1, 60, 40, generator=torch.Generator().manual_seed(5)) > 0.6)
    n_f, n_t = 8, 3
    counts = denoise._replicate(
        denoise._replicate(mask.to(torch.int16), n_f, n_f, -1), n_t, n_t, -2
    )
    counts = denoise._box_sum(denoise._box_sum(counts, n_f + 1, -1), n_f + 1, -1)
    counts = denoise._box_sum(denoise._box_sum(counts, n_t + 1, -2), n_t + 1, -2)

    def triangle(n: int) -> torch.Tensor:
        return torch.cat([torch.arange(1, n + 2), torch.arange(n, 0, -1)]).double()

    kernel = triangle(n_t)[:, None] * triangle(n_f)[None, :]
    padded = F.pad(mask.double().reshape(2, 1, 60, 40), (n_f, n_f, n_t, n_t), mode="replicate")
    reference = F.conv2d(padded, kernel[None, None])
    assert torch.equal(counts.double(), reference)


@pytest.mark.parametrize(
    ("name", "params"),
    [("wiener_filter", {"alpha": [0.9, 0.8], "min_prior_snr_db": [-25.0, -15.0]}),
     ("spectral_subtraction", {"over_subtraction": [2.0, 1.0], "floor": [0.02, 0.1]})],
)
@pytest.mark.parametrize(("seconds", "channels"), [(2.0, 1), (0.4, 1), (1.0, 2)])
def test_fused_gain_kernel_matches_vectorised_path(
    name: str, params: dict, seconds: float, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 s: a running minimum over part of the clip; 0.4 s: the window holds the whole clip
    # (its minimum and the clip's bias); 2 channels: every row gets its item's parameters
    if denoise._compiled_track_gain() is None:
        pytest.skip("numba not installed: only the vectorised path runs")
    x = add_white_noise(speech_like(seconds).repeat(2, channels, 1), 5.0)
    fused = getattr(denoise, name)(x, SR, **params)
    monkeypatch.setattr(denoise, "_compiled_track_gain", lambda: None)
    plain = getattr(denoise, name)(x, SR, **params)
    assert torch.allclose(fused, plain, atol=1e-5, rtol=0)
    assert not torch.equal(fused, x)


def test_gating_fused_kernel_equals_the_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    if denoise._compiled_track_gain() is None:
        pytest.skip("numba not installed: only the torch ops run")
    x = add_white_noise(speech_like(2.0).repeat(2, 1, 1), 5.0)
    settings = {"threshold_db": [6.0, 3.0], "prop_decrease": [1.0, 0.6]}
    no_smoothing = {"freq_smooth_hz": 0.0, "time_smooth_ms": 0.0}
    for smoothing in ({}, no_smoothing, {"time_smooth_ms": 200.0}):
        fused = denoise.spectral_gating(x, SR, **settings, **smoothing)
        with monkeypatch.context() as patch:
            patch.setattr(denoise, "_compiled_track_gain", lambda: None)
            plain = denoise.spectral_gating(x, SR, **settings, **smoothing)
        assert torch.allclose(fused, plain, atol=1e-6, rtol=0), smoothing


@pytest.mark.parametrize("n", [16 * 32, 3 * 2**9])
def test_periodic_dwt_round_trips_and_numpy_matches_compiled(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.random.default_rng(1).standard_normal((3, n)).astype(np.float32)
    approx, details = denoise.periodic_wavedec(rows, 5)
    assert [d.shape[1] for d in details] == [n // 2**j for j in range(1, 6)]
    energy = (approx**2).sum() + sum((d**2).sum() for d in details)
    assert np.isclose(energy, (rows**2).sum(), rtol=1e-5)  # orthogonal
    assert np.allclose(denoise.periodic_waverec(approx, details), rows, atol=1e-5)
    monkeypatch.setattr(denoise, "_compiled_dwt", lambda: None)
    approx_np, details_np = denoise.periodic_wavedec(rows, 5)
    assert np.allclose(approx_np, approx, atol=1e-5)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(details_np, details, strict=True))
    assert np.allclose(denoise.periodic_waverec(approx, details), rows, atol=1e-5)


@pytest.mark.parametrize("win", [1, 5, 41])
def test_lawml_compiled_gain_matches_vectorised_path(win: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if denoise._compiled_lawml() is None:
        pytest.skip("numba not installed: only the vectorised path runs")
    rng = np.random.default_rng(3)
    detail = (rng.standard_normal((3, 500)) * np.linspace(0.1, 2.0, 500)).astype(np.float32)
    sigma2 = np.array([0.5, 0.2, 1.0], dtype=np.float32)
    scale = np.array([1.0, 2.0, 0.0], dtype=np.float32)  # the last row: scale 0 keeps all
    compiled = denoise._lawml_shrink(detail, win, sigma2, scale)
    monkeypatch.setattr(denoise, "_compiled_lawml", lambda: None)
    plain = denoise._lawml_shrink(detail, win, sigma2, scale)
    assert np.allclose(compiled, plain, atol=1e-5, rtol=1e-5)
    assert np.array_equal(compiled[2], detail[2])


def test_wavelet_denoise_compiled_matches_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    x = add_white_noise(speech_like(2.0).repeat(2, 1, 1), 5.0)
    fast = denoise.wavelet_denoise(x, SR, threshold_scale=[1.0, 2.0])
    monkeypatch.setattr(denoise, "_compiled_lawml", lambda: None)
    plain = denoise.wavelet_denoise(x, SR, threshold_scale=[1.0, 2.0])
    assert torch.allclose(fast, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("seconds", "channels"), [(4.0, 1), (0.3, 1), (1.0, 2)])
def test_band_psd_kernel_equals_the_torch_ops(
    seconds: float, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 s: block minima, their running minimum and the lower median of an even count of
    # blocks; 0.3 s: too few frames for blocks, the minimum over all frames; 2 channels
    if denoise._compiled_band_psd() is None:
        pytest.skip("numba not installed: only the torch ops run")
    x = add_white_noise(speech_like(seconds).repeat(2, channels, 1), 5.0)
    x[1] *= 0.25
    _, fused = denoise._stationary_band_psd(x, SR)
    monkeypatch.setattr(denoise, "_compiled_band_psd", lambda: None)
    _, plain = denoise._stationary_band_psd(x, SR)
    assert fused.shape == plain.shape == (2, channels, 257)
    assert torch.equal(fused, plain)
    assert not torch.equal(fused[0], fused[1])


def test_wavelet_scale_zero_is_identity() -> None:
    x = add_white_noise(speech_like(1.0), 10.0)[None]
    assert torch.allclose(denoise.wavelet_denoise(x, SR, threshold_scale=0.0), x, atol=1e-5)


def test_wavelet_noise_psd_matches_the_full_track_median() -> None:
    x = add_white_noise(speech_like(4.0), 5.0)[None]
    cfg, spec, power, noise = denoise._analyse(x, SR)
    window_energy = float(cfg.window(torch.device("cpu"), torch.float32).square().sum())
    full = noise.median(dim=-2).values / window_energy
    _, fast = denoise._stationary_band_psd(x, SR)
    ratio_db = 10 * torch.log10(fast.mean(-1) / full.mean(-1))
    assert float(ratio_db.abs().max()) < 0.5
