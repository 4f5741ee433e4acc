"""Isolated events: found where a sound lives in one stretch only, removed there, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avalign.actions import functional as AF
from avalign.actions import SuppressEvent
from avalign.actions.isolated import find_isolated_events, isolated_bins
from avalign.data.corruption import add_distractor
from avalign.data.generator import synthesize

from .conftest import SR, si_sdr


def _clicks(seconds: float = 4.0, every_s: float = 0.5, seed: int = 0) -> np.ndarray:
    """A metronome-like clip: short decaying noise bursts at a steady rate (the clip's own sound)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = (rng.standard_normal(800) * np.exp(-np.arange(800) / 60)).astype(np.float32)
    for start in np.arange(0.05, seconds - 0.1, every_s):
        i = int(start * SR)
        x[i:i + 800] += 0.5 * burst
    return x


def _with_siren(x: np.ndarray, start_s: float = 1.5, db: float = -3.0) -> np.ndarray:
    y, _ = add_distractor(x, SR, db, start_s, 1.0, "siren", seed=4)
    return y.reshape(-1)


def test_a_siren_over_clicks_is_found_where_it_is():
    clean = _clicks()
    assert find_isolated_events(clean, SR) == []  # recurring sound is the clip's own
    events = find_isolated_events(_with_siren(clean), SR)  # the siren sounds over 1.5-2.5 s
    assert events and all(1.4 <= e["start_s"] < e["end_s"] <= 2.6 for e in events), events
    assert sum(e["end_s"] - e["start_s"] for e in events) >= 0.5
    for event in events:
        assert event["bins"] >= 10 and event["share"] >= 0.35
        assert 300 <= event["low_hz"] and event["high_hz"] <= 4000  # the siren's band, not the clicks'


def test_suppression_removes_the_siren_and_leaves_the_rest_bit_identical():
    clean = _clicks()
    noisy = _with_siren(clean)
    x = torch.from_numpy(noisy).reshape(1, 1, -1)
    y, [report] = AF.suppress_event(x, SR, 1.45, 2.55)
    gain = si_sdr(y.reshape(-1), clean) - si_sdr(noisy, clean)
    assert gain > 6.0, gain
    assert report["bins"] >= 10 and report["removed_db"] > 3.0 and report["skipped"] is None
    far = int(1.2 * SR), int(2.8 * SR)  # beyond the span's frames the samples are untouched
    assert torch.equal(y[..., :far[0]], x[..., :far[0]]) and torch.equal(y[..., far[1]:], x[..., far[1]:])
    # strength 0 changes nothing; a span over most of the clip is refused with a reason
    same, [r0] = AF.suppress_event(x, SR, 1.45, 2.55, strength=0.0)
    assert torch.equal(same, x) and r0["skipped"] == "strength is 0"
    whole, [r1] = AF.suppress_event(x, SR, 0.0, 3.9)
    assert torch.equal(whole, x) and "more of the clip" in r1["skipped"]


def test_does_no_harm_on_procedural_clips_without_a_distractor():
    for category in ("bouncing_ball", "metronome", "drum", "flashing_beacon", "fan_hum", "passing_car"):
        audio = synthesize(category, 0, duration_s=4.0, width=64, height=48).audio.reshape(-1)
        assert find_isolated_events(audio, SR) == [], category


def test_found_and_removed_on_procedural_clips_with_a_distractor():
    gains = []
    for category in ("bouncing_ball", "metronome", "flashing_beacon"):
        clean = synthesize(category, 1, duration_s=4.0, width=64, height=48).audio.reshape(-1)
        for kind in ("siren", "bark"):
            noisy, _ = add_distractor(clean, SR, -3.0, 1.9, 1.0, kind, seed=6)
            noisy = noisy.reshape(-1)
            events = find_isolated_events(noisy, SR)
            out = torch.from_numpy(noisy).reshape(1, 1, -1)
            for event in events:
                out, _ = AF.suppress_event(out, SR, event["start_s"] - 0.05, event["end_s"] + 0.05)
            gains.append(si_sdr(out.reshape(-1), clean) - si_sdr(noisy, clean))
    assert min(gains) >= 0.0 and np.median(gains) > 2.0, gains


def test_batch_equals_single_with_per_item_spans():
    clean = _clicks()
    items = [_with_siren(clean, 0.5), _with_siren(clean, 2.0), clean]
    x = torch.from_numpy(np.stack(items)).unsqueeze(1)
    starts, ends = [0.45, 1.95, 1.0], [1.55, 3.05, 2.0]
    batch, reports = AF.suppress_event(x, SR, starts, ends)
    for i in range(3):
        single, [rep] = AF.suppress_event(x[i:i + 1], SR, starts[i], ends[i])
        assert torch.allclose(batch[i:i + 1], single, atol=1e-6) and rep == reports[i]
    assert reports[2]["bins"] == 0 and torch.equal(batch[2], x[2])  # nothing isolated in clean clicks


def test_isolated_bins_reads_the_excess_over_the_rest():
    power = torch.ones(100, 4, dtype=torch.float64)
    power[40:60, 1] = 100.0  # 20 dB louder in frames 40-59 only
    power[40:60, 2] = 5.0  # 7 dB: not enough
    assert isolated_bins(power, 40, 60).tolist() == [False, True, False, False]


def test_bad_spans_are_clear_errors():
    x = torch.zeros(1, 1, SR)
    with pytest.raises(ValueError, match="end_s .* must be after start_s"):
        AF.suppress_event(x, SR, 0.5, 0.5)
    with pytest.raises(ValueError, match="strength must be <= 1"):
        AF.suppress_event(x, SR, 0.1, 0.5, strength=2.0)
    with pytest.raises(ValueError, match="start_s must be >= 0"):
        AF.suppress_event(x, SR, -1.0, 0.5)


def test_silent_short_and_reversed_inputs():
    assert find_isolated_events(np.zeros(4 * SR, dtype=np.float32), SR) == []
    assert find_isolated_events(_with_siren(_clicks())[: SR // 2], SR) == []  # no window fits a third of it
    with pytest.raises(ValueError, match="end_s .* must be after start_s"):
        SuppressEvent(start_s=2.0, end_s=1.0)
    y, [report] = AF.suppress_event(torch.zeros(1, 1, 4 * SR), SR, 1.0, 2.0)
    assert torch.equal(y, torch.zeros(1, 1, 4 * SR)) and report["skipped"] == "no sound isolated to the span"
