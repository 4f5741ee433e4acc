"""Neural denoisers (DeepFilterNet3 through ctypes, RNNoise): quality, timing, contract, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from avalign.actions import DeepFilterNet, PlanError, RNNoise, apply_plan, validate_plan
from avalign.actions import neural
from avalign.media.decode import decode_audio

from .conftest import SR, add_white_noise, si_sdr, speech_like

DENOISERS = {"deepfilternet": neural.deepfilternet, "rnnoise": neural.rnnoise}
MIN_GAIN_DB = {"deepfilternet": 6.0, "rnnoise": 4.0}
"""Required SI-SDR gain at 5 dB input on the real clip (measured: about 10 and 7.6 dB)."""


@pytest.fixture(scope="module")
def talking_head(real_av_dir: Path) -> torch.Tensor:
    """The whole talking_head_2 clip (5 s), 16 kHz mono, (1, T)."""
    path = real_av_dir / "talking_head_2_retalking.mp4"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    return torch.from_numpy(decode_audio(path, sample_rate=SR).samples)


def _lag(a: np.ndarray, b: np.ndarray) -> int:
    """Samples by which ``a`` lags ``b`` (full cross-correlation peak)."""
    n = a.size + b.size
    c = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    k = int(np.argmax(c))
    return k if k < a.size else k - n


@pytest.mark.real_av
@pytest.mark.parametrize("name", DENOISERS)
def test_improves_real_speech_in_white_noise_at_5db(name: str, talking_head: torch.Tensor) -> None:
    noisy = add_white_noise(talking_head, 5.0)
    out, report = DENOISERS[name](noisy[None], SR)
    assert out.shape == (1, 1, talking_head.shape[-1]) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    gain = si_sdr(out[0, 0], talking_head[0]) - si_sdr(noisy[0], talking_head[0])
    assert gain > MIN_GAIN_DB[name], f"{name}: SI-SDR gain {gain:.2f} dB"
    assert isinstance(report[0], float)
    # the model's delay is undone to the sample: the output lines up with the clean speech
    assert _lag(out[0, 0].numpy(), talking_head[0].numpy()) == 0


@pytest.mark.parametrize("name", DENOISERS)
@pytest.mark.parametrize("sample_rate,length", [(SR, 16001), (44100, 22050), (48000, 4801)])
def test_length_kept_at_any_rate(name: str, sample_rate: int, length: int) -> None:
    x = add_white_noise(speech_like(1.1, sr=sample_rate), 10.0)[:, :length]
    out, _ = DENOISERS[name](x[None], sample_rate)
    assert out.shape == (1, 1, length) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", DENOISERS)
def test_batch_equals_single_with_per_item_params(name: str) -> None:
    items = [add_white_noise(speech_like(1.0, seed=s), 5.0, seed=s) for s in (3, 4)]
    x = torch.stack([torch.cat([v, 0.5 * v]) for v in items])  # (2, 2, T)
    params = [60.0, 100.0] if name == "deepfilternet" else [0.5, 1.0]
    fn = DENOISERS[name]
    batch, report = fn(x, SR, params)
    singles = [fn(x[i : i + 1], SR, [params[i]]) for i in range(2)]
    assert torch.allclose(batch, torch.cat([s[0] for s in singles]), atol=1e-5)
    assert report == [s[1][0] for s in singles]
    # and a repeated call gives the same result (fresh state per clip: no memory of the last one)
    again, _ = fn(x, SR, params)
    assert torch.equal(again, batch)


@pytest.mark.parametrize("name", DENOISERS)
def test_strength_zero_is_an_exact_copy_and_silence_stays_finite(name: str) -> None:
    x = add_white_noise(speech_like(0.5), 5.0)[None]
    out, report = DENOISERS[name](x, SR, 0.0)
    assert torch.equal(out, x) and report == [None]
    for t in (1, 100):
        out, _ = DENOISERS[name](torch.zeros(1, 1, t), SR)
        assert out.shape == (1, 1, t) and torch.isfinite(out).all()


def test_bad_parameters_get_clear_errors() -> None:
    x = torch.zeros(1, 1, 1000)
    with pytest.raises(ValueError, match="atten_lim_db"):
        neural.deepfilternet(x, SR, 150.0)
    with pytest.raises(ValueError, match="mix"):
        neural.rnnoise(x, SR, -0.1)
    with pytest.raises(ValueError, match="mix"):
        neural.rnnoise(torch.zeros(2, 1, 1000), SR, [1.0])
    with pytest.raises(ValueError, match="shape"):
        neural.rnnoise(torch.zeros(1000), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        neural.deepfilternet(x, 0)
    with pytest.raises(ValueError, match="NaN"):
        neural.rnnoise(torch.full((1, 1, 10), float("nan")), SR)
    with pytest.raises(ValueError, match="atten_lim_db"):
        DeepFilterNet(atten_lim_db=101.0)
    with pytest.raises(ValueError, match="mix"):
        RNNoise(mix="all")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="mix"):
        validate_plan([{"action": "rnnoise", "params": {"mix": "wet"}}])
    steps = validate_plan([{"action": "deepfilternet", "params": {"atten_lim_db": 500}}])
    assert steps[0]["params"] == {"atten_lim_db": 100.0} and "clamped" in steps[0]


def test_edits_through_apply_plan_report_and_keep_the_contract() -> None:
    x = torch.cat([add_white_noise(speech_like(1.0), 5.0)] * 2).numpy()  # stereo (2, T)
    result = apply_plan(
        x, SR, [{"action": "rnnoise", "params": {"mix": 0.8}}, {"action": "deepfilternet"}]
    )
    assert result.audio.shape == x.shape and np.isfinite(result.audio).all()
    assert 0.0 <= result.reports[0]["speech_probability"] <= 1.0
    assert isinstance(result.reports[1]["mean_local_snr_db"], float)
    assert result.plan()[1] == {"action": "deepfilternet", "params": {"atten_lim_db": 100.0}}


def test_runtime_is_loaded_once_and_threads_do_not_interfere() -> None:
    assert neural._deepfilter_runtime() is neural._deepfilter_runtime()
    assert neural._rnnoise_runtime() is neural._rnnoise_runtime()
    x = add_white_noise(speech_like(0.5, seed=5), 5.0)[None]
    expected = neural.deepfilternet(x, SR)[0]
    results: list[torch.Tensor] = []

    def work() -> None:
        results.append(neural.deepfilternet(x, SR)[0])

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(torch.equal(r, expected) for r in results)
