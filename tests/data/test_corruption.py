"""Corruption injector: every fault is exactly what its parameters say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avalign.data import corruption as C
from avalign.data.generator import synthesize

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize("talking_mouth", 2, duration_s=2.0, width=32, height=32).audio


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    return synthesize("rain", 4, duration_s=1.5, width=32, height=32).audio


def _xcorr_lag(ref: np.ndarray, sig: np.ndarray) -> int:
    """Lag (samples) by which ``sig`` is late against ``ref``, from the FFT cross-correlation."""
    n = ref.size + sig.size
    xc = np.fft.irfft(np.fft.rfft(sig, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(xc))
    return lag if lag < n // 2 else lag - n


@pytest.mark.parametrize("offset_ms", [123.0, -250.0, 480.0, -80.0])
def test_offset_is_exact_to_the_sample(speech, offset_ms):
    y, p = C.apply_offset(speech, SR, offset_ms)
    d = int(offset_ms * SR / 1000)
    assert p == {"offset_ms": offset_ms, "offset_samples": d}
    assert y.shape == speech.shape
    assert _xcorr_lag(speech[0], y[0]) == d  # positive = audio late
    if d > 0:
        assert np.array_equal(y[:, d:], speech[:, :-d]) and not y[:, :d].any()
    else:
        assert np.array_equal(y[:, :d], speech[:, -d:]) and not y[:, d:].any()


def test_offset_records_the_shift_actually_made(speech):
    _, p = C.apply_offset(speech, SR, 10.03)  # 160.48 samples -> 160
    assert (
        p["offset_samples"] == 160 and p["offset_ms"] == 10.0 and p["offset_ms_requested"] == 10.03
    )


@pytest.mark.parametrize("kind", C.NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_snr_is_exact(speech, other, kind, snr_db):
    y, p = C.add_noise(speech, SR, snr_db, kind, seed=3, other_audio=other)
    assert y.shape == speech.shape and y.dtype == np.float32
    assert p["snr_db"] == snr_db and p["noise_kind"] == kind and p["seed"] == 3
    assert abs(C.measure_snr(speech, y, SR) - snr_db) < 0.1


def test_snr_counts_only_active_signal(speech):
    """Adding silence to a clip does not change the noise level the SNR implies."""
    padded = np.concatenate([speech, np.zeros_like(speech)], axis=1)
    y1, _ = C.add_noise(speech, SR, 5.0, "white", seed=1)
    y2, _ = C.add_noise(padded, SR, 5.0, "white", seed=1)
    n1 = np.mean((y1 - speech) ** 2)
    n2 = np.mean((y2 - padded) ** 2)
    assert n2 == pytest.approx(n1, rel=0.1)


def test_gaps_are_digital_silence(speech):
    y, p = C.apply_gaps(speech, SR, [[0.2, 0.1], [1.5, 0.25]])
    assert p["gap_samples"] == [[3200, 4800], [24000, 28000]]
    assert not y[:, 3200:4800].any() and not y[:, 24000:28000].any()
    keep = np.ones(speech.shape[1], bool)
    keep[3200:4800] = keep[24000:28000] = False
    assert np.array_equal(y[:, keep], speech[:, keep])


@pytest.mark.parametrize("speed", [1.03, 0.97])
def test_speed_drift_keeps_length_and_moves_time(speed):
    x = np.zeros((1, 2 * SR), np.float32)
    x[0, 24000] = 1.0  # a click at 1.5 s
    y, p = C.apply_speed_drift(x, SR, speed)
    assert y.shape == x.shape
    assert p["speed_exact"] == pytest.approx(speed, abs=1e-3)
    assert abs(int(np.argmax(np.abs(y[0]))) - 24000 / p["speed_exact"]) <= 2  # t_out = t_in / speed


def test_gain_and_clipping(speech):
    y, p = C.apply_gain(speech, SR, gain_db=-30)
    np.testing.assert_allclose(y, speech * 10 ** (-30 / 20), rtol=1e-5, atol=1e-9)
    y, p = C.apply_gain(speech, SR, gain_db=12, clip_level=0.1)
    assert np.abs(y).max() == pytest.approx(0.1) and p["clipped_fraction"] > 0.01


@pytest.mark.parametrize("kind", C.DISTRACTOR_KINDS)
def test_distractor_level_and_span(speech, other, kind):
    y, p = C.add_distractor(speech, SR, -3.0, 0.5, 1.0, kind, seed=2, other_audio=other)
    d = (y - speech).astype(np.float64)
    assert not d[:, :8000].any() and not d[:, 24000:].any()
    ratio = C.active_power(d[:, 8000:24000], SR) / C.active_power(speech, SR)
    assert 10 * np.log10(ratio) == pytest.approx(-3.0, abs=0.1)
    assert p["span_samples"] == [8000, 24000]


def test_none_is_identity(speech):
    y, applied = C.corrupt(speech, SR, [{"type": "none", "params": {}}])
    assert np.array_equal(y, speech) and applied == [{"type": "none", "params": {}}]


def test_combined_is_deterministic_and_replays(speech, other):
    steps = [
        {"type": "speed_drift", "params": {"speed": 1.02}},
        {"type": "offset", "params": {"offset_ms": -200}},
        {
            "type": "distractor",
            "params": {"distractor_db": 0, "start_s": 0.3, "dur_s": 0.8, "kind": "bark"},
        },
        {"type": "noise", "params": {"snr_db": 4, "noise_kind": "pink"}},
        {"type": "gaps", "params": {"gaps": [[1.0, 0.2]]}},
    ]
    y1, a1 = C.corrupt(speech, SR, steps, seed=9, other_audio=other)
    y2, a2 = C.corrupt(speech, SR, steps, seed=9, other_audio=other)
    y3, _ = C.corrupt(speech, SR, steps, seed=10, other_audio=other)
    y4, _ = C.corrupt(
        speech, SR, json.loads(json.dumps(a1)), other_audio=other
    )  # replay the record
    assert np.array_equal(y1, y2) and a1 == a2 and np.array_equal(y1, y4)
    assert not np.array_equal(y1, y3)
    assert [s["type"] for s in a1] == ["speed_drift", "offset", "distractor", "noise", "gaps"]
    fields = C.manifest_fields(a1)
    assert fields["offset_ms"] == -200.0 and fields["snr_db"] == 4.0
    assert fields["corruption_types"] == "speed_drift,offset,distractor,noise,gaps"


def test_headroom_is_recorded_not_silent(speech):
    y, applied = C.corrupt(
        speech, SR, [{"type": "noise", "params": {"snr_db": -6, "seed": 1}}], limit_peak=0.5
    )
    assert np.abs(y).max() == pytest.approx(0.5, abs=1e-6)
    assert applied[-1]["type"] == "gain" and applied[-1]["params"]["headroom"] is True
    assert C.manifest_fields(applied)["corruption_types"] == "noise"
    replayed, again = C.corrupt(speech, SR, applied)  # notes such as headroom survive a replay
    assert np.array_equal(replayed, y) and again == applied


def test_sample_corruption_is_realistic_and_deterministic():
    draws = [
        C.sample_corruption(np.random.default_rng(i), other_available=True) for i in range(600)
    ]
    again = [
        C.sample_corruption(np.random.default_rng(i), other_available=True) for i in range(600)
    ]
    assert draws == again
    clean = sum(d == [{"type": "none", "params": {}}] for d in draws) / len(draws)
    assert 0.11 < clean < 0.23
    steps = [s for d in draws for s in d]
    offsets = [s["params"]["offset_ms"] for s in steps if s["type"] == "offset"]
    snrs = [s["params"]["snr_db"] for s in steps if s["type"] == "noise"]
    assert all(80 <= abs(o) <= 500 for o in offsets) and min(offsets) < 0 < max(offsets)
    assert all(0 <= s <= 10 for s in snrs)
    assert {s["type"] for s in steps} == set(C.CORRUPTION_TYPES)
    order = {k: i for i, k in enumerate(C.CANONICAL_ORDER)}
    assert all(
        [order[s["type"]] for s in d] == sorted(order[s["type"]] for s in d)
        for d in draws
        if d[0]["type"] != "none"
    )
    only = [
        C.sample_corruption(np.random.default_rng(i), kinds=("offset", "noise")) for i in range(100)
    ]
    assert {s["type"] for d in only for s in d} <= {"offset", "noise", "none"}


def test_every_drawn_mix_applies(speech, other):
    for i in range(40):
        spec = C.sample_corruption(np.random.default_rng(i), duration_s=2.0, other_available=True)
        y, applied = C.corrupt(speech, SR, spec, seed=i, other_audio=other)
        assert y.shape == speech.shape and np.isfinite(y).all() and len(applied) >= len(spec)


def test_clear_errors(speech):
    with pytest.raises(ValueError, match="unknown corruption type"):
        C.corrupt(speech, SR, [{"type": "reverb"}])
    with pytest.raises(ValueError, match="missing parameter 'offset_ms'"):
        C.corrupt(speech, SR, [{"type": "offset", "params": {}}])
    with pytest.raises(ValueError, match="other_audio"):
        C.add_noise(speech, SR, 5, "clip")
