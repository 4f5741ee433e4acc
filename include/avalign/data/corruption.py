"""Inject known audio faults into clean audio, recording exact ground truth.

Why: recovery is only a number (offset error in ms, SNR/SI-SDR gain in dB) when the fault that
was put in is known exactly. Every function here takes audio (C, T) float32 plus its sample
rate and returns ``(corrupted, params)``; ``params`` holds everything needed to redo the step
bit for bit (random steps carry their own ``seed``), and the output always has the input's
shape.

Conventions:

* ``offset_ms`` > 0 means the audio is LATE against the picture (delayed): a sound that belongs
  to the frame at time t is heard at t + offset. The shift is a whole number of samples
  (``offset_samples``); the start is padded with digital silence and the tail trimmed (or the
  reverse for a negative offset), so the length never changes.
* ``speed`` > 1 plays the audio faster, so it runs progressively EARLY: content at input time t
  is at output time t / speed (anchored at t = 0). Tail padded with silence or trimmed.
* SNR (``snr_db``) and distractor level (``distractor_db``) are measured over the *active*
  samples of the signal (20 ms frames within 40 dB of the loudest frame), so silence in a clip
  does not inflate the noise; :func:`measure_snr` recomputes it the same way.
* A list of steps applies in list order. :func:`sample_corruption` emits the canonical order
  speed_drift, offset, distractor, noise, gain, gaps: timing faults first (so the padded
  silence is then covered by noise like a real recording), dropouts last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from avalign.data.generator import _bandpass, synth_speech

CORRUPTION_TYPES: tuple[str, ...] = (
    "none",
    "offset",
    "noise",
    "speed_drift",
    "gaps",
    "gain",
    "distractor",
)
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "babble", "hum", "clip")
DISTRACTOR_KINDS: tuple[str, ...] = ("siren", "bark", "clip")
CANONICAL_ORDER: tuple[str, ...] = ("speed_drift", "offset", "distractor", "noise", "gain", "gaps")

ACTIVE_FRAME_S = 0.02
ACTIVE_RANGE_DB = 40.0


# --------------------------------------------------------------------------------------------
# measurement


def _as_2d(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"audio must be (channels, samples) with samples > 0, got shape {x.shape}")
    return x


def active_mask(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Boolean (T,): samples in 20 ms frames whose power is within 40 dB of the loudest frame."""
    x = _as_2d(audio).astype(np.float64)
    power = np.mean(x**2, axis=0)
    hop = max(1, int(round(ACTIVE_FRAME_S * sample_rate)))
    n_frames = -(-power.shape[0] // hop)
    padded = np.zeros(n_frames * hop)
    padded[: power.shape[0]] = power
    frame_power = padded.reshape(n_frames, hop).mean(axis=1)
    peak = frame_power.max()
    if peak <= 0:
        return np.zeros(power.shape[0], bool)
    active = frame_power > peak * 10 ** (-ACTIVE_RANGE_DB / 10)
    return np.repeat(active, hop)[: power.shape[0]]


def active_power(audio: np.ndarray, sample_rate: int, mask: np.ndarray | None = None) -> float:
    """Mean power over the active samples (all channels); 0.0 for silence."""
    x = _as_2d(audio).astype(np.float64)
    m = active_mask(x, sample_rate) if mask is None else mask
    if not m.any():
        return 0.0
    return float(np.mean(x[:, m] ** 2))


def measure_snr(clean: np.ndarray, noisy: np.ndarray, sample_rate: int) -> float:
    """SNR in dB of ``noisy`` against ``clean``, over the clean signal's active samples."""
    c, n = _as_2d(clean).astype(np.float64), _as_2d(noisy).astype(np.float64)
    m = active_mask(c, sample_rate)
    ps = np.mean(c[:, m] ** 2)
    pn = np.mean((n - c)[:, m] ** 2)
    return float(10 * np.log10(ps / pn)) if pn > 0 else float("inf")


# --------------------------------------------------------------------------------------------
# single steps


def apply_offset(audio: np.ndarray, sample_rate: int, offset_ms: float) -> tuple[np.ndarray, dict]:
    """Shift by a whole number of samples; positive = audio late (delayed). Length kept."""
    x = _as_2d(audio)
    d = int(round(float(offset_ms) * sample_rate / 1000.0))
    out = np.zeros_like(x)
    T = x.shape[1]
    if d >= 0:
        if d < T:
            out[:, d:] = x[:, : T - d]
    else:
        if -d < T:
            out[:, : T + d] = x[:, -d:]
    params: dict[str, Any] = {"offset_ms": d * 1000.0 / sample_rate, "offset_samples": d}
    if params["offset_ms"] != float(offset_ms):  # the shift actually made is the ground truth
        params["offset_ms_requested"] = float(offset_ms)
    return out, params


def apply_speed_drift(audio: np.ndarray, sample_rate: int, speed: float) -> tuple[np.ndarray, dict]:
    """Resample so the audio plays ``speed`` times faster (drifting against the picture)."""
    if not 0.5 <= float(speed) <= 2.0:
        raise ValueError(f"speed must be within [0.5, 2.0], got {speed}")
    x = _as_2d(audio)
    ratio = Fraction(1.0 / float(speed)).limit_denominator(1000)  # output/input length
    if ratio == 1:
        return x.copy(), {"speed": float(speed), "speed_exact": 1.0, "up": 1, "down": 1}
    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator, axis=1)
    out = np.zeros_like(x)
    n = min(x.shape[1], y.shape[1])
    out[:, :n] = y[:, :n]
    return out, {
        "speed": float(speed),
        "speed_exact": ratio.denominator / ratio.numerator,
        "up": ratio.numerator,
        "down": ratio.denominator,
    }


def apply_gaps(
    audio: np.ndarray, sample_rate: int, gaps: Sequence[Sequence[float]]
) -> tuple[np.ndarray, dict]:
    """Drop out ``[start_s, dur_s]`` segments to digital silence (exact zeros)."""
    x = _as_2d(audio).copy()
    spans = []
    for gap in gaps:
        start_s, dur_s = float(gap[0]), float(gap[1])
        if start_s < 0 or dur_s <= 0:
            raise ValueError(f"gap {gap!r}: start must be >= 0 and duration > 0")
        a = min(x.shape[1], int(round(start_s * sample_rate)))
        b = min(x.shape[1], int(round((start_s + dur_s) * sample_rate)))
        x[:, a:b] = 0.0
        spans.append([a, b])
    return x, {"gaps": [[float(g[0]), float(g[1])] for g in gaps], "gap_samples": spans}


def apply_gain(
    audio: np.ndarray, sample_rate: int, gain_db: float = 0.0, clip_level: float | None = None
) -> tuple[np.ndarray, dict]:
    """Scale by ``gain_db``; with ``clip_level``, then hard-clip at +-clip_level (overdriven)."""
    x = _as_2d(audio).astype(np.float64) * 10 ** (float(gain_db) / 20)
    params: dict[str, Any] = {"gain_db": float(gain_db), "clip_level": None}
    if clip_level is not None:
        if not 0 < float(clip_level) <= 1:
            raise ValueError(f"clip_level must be in (0, 1], got {clip_level}")
        n_clipped = int(np.count_nonzero(np.abs(x) > clip_level))
        x = np.clip(x, -float(clip_level), float(clip_level))
        params.update(clip_level=float(clip_level), clipped_fraction=n_clipped / x.size)
    return x.astype(np.float32), params


def _mono(other: np.ndarray) -> np.ndarray:
    o = np.asarray(other, np.float64)
    return o.mean(axis=0) if o.ndim == 2 else o


def _segment_of(other: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """n samples of another clip's audio from a random start, looped if it is too short."""
    o = _mono(other)
    if o.size == 0 or not np.any(o):
        raise ValueError("other_audio is empty or silent")
    start = int(rng.integers(0, o.size))
    reps = -(-(start + n) // o.size)
    return np.tile(o, reps)[start : start + n], start


def _noise(
    kind: str, n: int, channels: int, sr: int, rng: np.random.Generator, other
) -> tuple[np.ndarray, dict]:
    extra: dict[str, Any] = {}
    if kind == "white":
        z = rng.standard_normal((channels, n))
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
        f = np.fft.rfftfreq(n, 1 / sr)
        f[0] = f[1] if f.size > 1 else 1.0
        z = np.fft.irfft(spec / np.sqrt(f), n=n, axis=1)
    elif kind == "babble":
        voices = int(rng.integers(4, 8))
        dur = n / sr
        z = sum(rng.uniform(0.5, 1.0) * synth_speech(rng, dur, sr)[:n] for _ in range(voices))
        z = np.broadcast_to(z, (channels, n))
        extra["voices"] = voices
    elif kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / sr
        z = sum(
            (1.0 if k % 2 else 0.4)
            / k
            * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 11)
            if mains * k < sr / 2
        )
        z = z + 0.05 * rng.standard_normal(n)
        z = np.broadcast_to(z, (channels, n))
        extra["mains_hz"] = mains
    elif kind == "clip":
        if other is None:
            raise ValueError("noise_kind 'clip' needs other_audio (another clip's audio)")
        seg, start = _segment_of(other, n, rng)
        z = np.broadcast_to(seg, (channels, n))
        extra["other_start_s"] = start / sr
    else:
        raise ValueError(f"unknown noise_kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    return np.array(z, np.float64), extra  # a writable copy (broadcast views are read-only)


def add_noise(
    audio: np.ndarray,
    sample_rate: int,
    snr_db: float,
    noise_kind: str = "white",
    *,
    seed: int = 0,
    other_audio: np.ndarray | None = None,
    **extra: Any,
) -> tuple[np.ndarray, dict]:
    """Add noise at exactly ``snr_db`` over the signal's active samples."""
    x = _as_2d(audio).astype(np.float64)
    mask = active_mask(x, sample_rate)
    ps = active_power(x, sample_rate, mask)
    rng = np.random.default_rng(int(seed))
    z, info = _noise(noise_kind, x.shape[1], x.shape[0], sample_rate, rng, other_audio)
    params = {"snr_db": float(snr_db), "noise_kind": noise_kind, "seed": int(seed), **extra, **info}
    if ps <= 0:  # nothing to be noisy against: keep the silence, say so
        return x.astype(np.float32), {**params, "skipped": "silent_signal"}
    pz = float(np.mean(z[:, mask] ** 2))
    if pz <= 0:
        raise ValueError(f"{noise_kind} noise is silent over the active samples")
    z *= np.sqrt(ps / (pz * 10 ** (float(snr_db) / 10)))
    return (x + z).astype(np.float32), params


def _siren(n: int, sr: int, rng) -> np.ndarray:
    t = np.arange(n) / sr
    fc, fd, rate = rng.uniform(700, 1000), rng.uniform(200, 400), rng.uniform(0.5, 1.5)
    f = fc + fd * np.sin(2 * np.pi * rate * t)
    ph = 2 * np.pi * np.cumsum(f) / sr
    return np.sin(ph) + 0.3 * np.sin(2 * ph) + 0.15 * np.sin(3 * ph)


def _bark(n: int, sr: int, rng) -> np.ndarray:
    out = np.zeros(n)
    t = rng.uniform(0.0, 0.1)
    while t < n / sr - 0.08:
        d = rng.uniform(0.08, 0.15)
        m = int(d * sr)
        tk = np.arange(m) / sr
        f0 = rng.uniform(350, 650) * (1.2 - 0.4 * tk / d)
        ph = 2 * np.pi * np.cumsum(f0) / sr
        env = np.minimum(1, tk / 0.005) * np.exp(-tk / (0.4 * d))
        voice = sum(np.sin(k * ph) / k for k in range(1, 8)) + 0.5 * _bandpass(
            rng.standard_normal(m), sr, 500, 3000
        )
        a = int(t * sr)
        out[a : a + m] += (voice * env)[: n - a]
        t += d + rng.uniform(0.12, 0.4)
    return out


def add_distractor(
    audio: np.ndarray,
    sample_rate: int,
    distractor_db: float,
    start_s: float,
    dur_s: float,
    kind: str = "siren",
    *,
    seed: int = 0,
    other_audio: np.ndarray | None = None,
    **extra: Any,
) -> tuple[np.ndarray, dict]:
    """Mix an off-screen sound in [start_s, start_s + dur_s) at ``distractor_db`` re the signal.

    ``distractor_db`` = 10 log10(distractor power over its active samples / signal active power).
    """
    x = _as_2d(audio).astype(np.float64)
    T = x.shape[1]
    a = min(T, max(0, int(round(float(start_s) * sample_rate))))
    b = min(T, a + int(round(float(dur_s) * sample_rate)))
    rng = np.random.default_rng(int(seed))
    params = {
        "distractor_db": float(distractor_db),
        "start_s": float(start_s),
        "dur_s": float(dur_s),
        "kind": kind,
        "seed": int(seed),
        **extra,
        "span_samples": [a, b],
    }
    ps = active_power(x, sample_rate)
    if b - a <= 0 or ps <= 0:
        return x.astype(np.float32), {
            **params,
            "skipped": "empty_span" if b <= a else "silent_signal",
        }
    n = b - a
    if kind == "siren":
        d = _siren(n, sample_rate, rng)
    elif kind == "bark":
        d = _bark(n, sample_rate, rng)
    elif kind == "clip":
        if other_audio is None:
            raise ValueError("distractor kind 'clip' needs other_audio (another clip's audio)")
        d, start = _segment_of(other_audio, n, rng)
        params["other_start_s"] = start / sample_rate
    else:
        raise ValueError(f"unknown distractor kind {kind!r}; known: {', '.join(DISTRACTOR_KINDS)}")
    ramp = min(n // 2, int(0.02 * sample_rate))
    if ramp > 0:  # 20 ms fades: an off-screen source, not a click
        w = np.ones(n)
        w[:ramp] = np.linspace(0, 1, ramp)
        w[n - ramp :] = np.linspace(1, 0, ramp)
        d = d * w
    pd = active_power(d, sample_rate)
    if pd <= 0:
        return x.astype(np.float32), {**params, "skipped": "silent_distractor"}
    d *= np.sqrt(ps * 10 ** (float(distractor_db) / 10) / pd)
    x[:, a:b] += d
    return x.astype(np.float32), params


# --------------------------------------------------------------------------------------------
# lists of steps


def _normalise_step(step: dict) -> tuple[str, dict]:
    """Accept {"type", "params": {...}} or a flat {"type", ...params}."""
    if not isinstance(step, dict) or "type" not in step:
        raise ValueError(f"corruption step must be a dict with a 'type', got {step!r}")
    kind = step["type"]
    if kind not in CORRUPTION_TYPES:
        raise ValueError(f"unknown corruption type {kind!r}; known: {', '.join(CORRUPTION_TYPES)}")
    params = (
        dict(step["params"]) if "params" in step else {k: v for k, v in step.items() if k != "type"}
    )
    return kind, params


def apply_step(
    audio: np.ndarray,
    sample_rate: int,
    kind: str,
    params: dict,
    *,
    other_audio: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Apply one corruption; returns (audio, resolved params).

    Keys the step does not use (notes such as ``other_clip_id`` or ``headroom``) are carried
    into the resolved params, so a replayed record is the record.
    """
    p = dict(params)
    try:
        if kind == "none":
            y, resolved = _as_2d(audio).copy(), {}
        elif kind == "offset":
            y, resolved = apply_offset(audio, sample_rate, p["offset_ms"])
        elif kind == "speed_drift":
            y, resolved = apply_speed_drift(audio, sample_rate, p["speed"])
        elif kind == "gaps":
            y, resolved = apply_gaps(audio, sample_rate, p["gaps"])
        elif kind == "gain":
            y, resolved = apply_gain(audio, sample_rate, p.get("gain_db", 0.0), p.get("clip_level"))
        elif kind == "noise":
            y, resolved = add_noise(
                audio,
                sample_rate,
                p["snr_db"],
                p.get("noise_kind", "white"),
                seed=p.get("seed", 0),
                other_audio=other_audio,
            )
        elif kind == "distractor":
            y, resolved = add_distractor(
                audio,
                sample_rate,
                p["distractor_db"],
                p["start_s"],
                p["dur_s"],
                p.get("kind", "siren"),
                seed=p.get("seed", 0),
                other_audio=other_audio,
            )
        else:
            raise ValueError(f"unknown corruption type {kind!r}")
    except KeyError as exc:
        raise ValueError(
            f"corruption {kind!r} is missing parameter {exc.args[0]!r} (got {sorted(p)})"
        ) from None
    if kind != "none":
        resolved = {**resolved, **{k: v for k, v in p.items() if k not in resolved}}
    return y, resolved


def corrupt(
    audio: np.ndarray,
    sample_rate: int,
    steps: Iterable[dict] | dict,
    *,
    seed: int = 0,
    other_audio: np.ndarray | None = None,
    limit_peak: float | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Apply a list of steps in order; returns (audio float32 (C, T), [{type, params}] resolved).

    Random steps without their own ``seed`` get one derived from ``seed`` and their position,
    so the same call always gives the same samples, and the returned list replays them exactly.
    ``limit_peak``: when the result peaks above it (noise or a distractor added on top), scale
    it down to that peak and record the scaling as a last gain step with ``headroom: true``,
    instead of letting a 16-bit encoder clip it silently later.
    """
    if isinstance(steps, dict):
        steps = [steps]
    x = _as_2d(audio).copy()
    applied: list[dict] = []
    for i, step in enumerate(steps):
        kind, params = _normalise_step(step)
        if kind in ("noise", "distractor") and "seed" not in params:
            params["seed"] = int(np.random.default_rng([int(seed), i]).integers(0, 2**31 - 1))
        x, resolved = apply_step(x, sample_rate, kind, params, other_audio=other_audio)
        applied.append({"type": kind, "params": resolved})
    if not applied:
        applied.append({"type": "none", "params": {}})
    peak = float(np.max(np.abs(x)))
    if limit_peak is not None and peak > limit_peak:
        gain_db = 20 * np.log10(limit_peak / peak)
        x, params = apply_gain(x, sample_rate, gain_db)
        applied.append({"type": "gain", "params": {**params, "headroom": True}})
    return x.astype(np.float32), applied


def sample_corruption(
    rng: np.random.Generator,
    *,
    kinds: Sequence[str] = CANONICAL_ORDER,
    duration_s: float = 4.0,
    other_available: bool = False,
    p_clean: float = 1 / 6,
    single: bool = False,
    noise_kinds: Sequence[str] = NOISE_KINDS,
) -> list[dict]:
    """Draw a realistic mix of corruptions (about 1 in 6 clean controls), in canonical order.

    ``single=True`` draws exactly one corruption per clip (weighted like the realistic mix), so
    each ground-truth metric isolates one repair. ``noise_kinds`` limits the noise types.

    Offsets 80-500 ms of either sign (whole ms), SNR 0-10 dB, speed 0.97-1.03 (at least 1 %
    off), 1-3 gaps of 0.1-0.5 s, gain -30..-20 dB or +6..+18 dB hard-clipped, distractors
    -6..+3 dB for 0.5-2 s. Random steps carry their own seed drawn from ``rng``.
    """
    unknown = set(kinds) - set(CORRUPTION_TYPES)
    if unknown:
        raise ValueError(f"unknown corruption kinds {sorted(unknown)}")
    if rng.random() < p_clean:
        return [{"type": "none", "params": {}}]
    probs = {
        "offset": 0.6,
        "noise": 0.5,
        "speed_drift": 0.15,
        "gaps": 0.15,
        "gain": 0.15,
        "distractor": 0.2,
    }
    usable = [k for k in CANONICAL_ORDER if k in kinds]
    if not usable:
        return [{"type": "none", "params": {}}]
    if single:
        weights = np.array([probs[k] for k in usable])
        chosen = [usable[int(rng.choice(len(usable), p=weights / weights.sum()))]]
    else:
        chosen = [k for k in usable if rng.random() < probs[k]]
    if not chosen:
        chosen = [usable[int(rng.integers(len(usable)))]]
    out = []
    for kind in chosen:
        if kind == "offset":
            params: dict[str, Any] = {
                "offset_ms": float(rng.choice([-1, 1]) * int(rng.integers(80, 501)))
            }
        elif kind == "noise":
            allowed = [k for k in noise_kinds if k != "clip" or other_available] or ["white"]
            params = {
                "snr_db": round(float(rng.uniform(0, 10)), 1),
                "noise_kind": allowed[int(rng.integers(len(allowed)))],
                "seed": int(rng.integers(0, 2**31 - 1)),
            }
        elif kind == "speed_drift":
            s = float(rng.uniform(0.01, 0.03)) * float(rng.choice([-1, 1]))
            params = {"speed": round(1.0 + s, 3)}
        elif kind == "gaps":
            n = int(rng.integers(1, 4))
            starts = np.sort(rng.uniform(0, max(0.1, duration_s - 0.5), n))
            params = {
                "gaps": [
                    [round(float(s), 3), round(float(rng.uniform(0.1, 0.5)), 3)] for s in starts
                ]
            }
        elif kind == "gain":
            if rng.random() < 0.5:
                params = {"gain_db": round(float(rng.uniform(-30, -20)), 1), "clip_level": None}
            else:
                params = {
                    "gain_db": round(float(rng.uniform(6, 18)), 1),
                    "clip_level": round(float(rng.uniform(0.3, 0.9)), 2),
                }
        else:  # distractor
            dur = float(min(duration_s, rng.uniform(0.5, 2.0)))
            dkinds = [k for k in DISTRACTOR_KINDS if k != "clip" or other_available]
            params = {
                "distractor_db": round(float(rng.uniform(-6, 3)), 1),
                "start_s": round(float(rng.uniform(0, max(0.0, duration_s - dur))), 3),
                "dur_s": round(dur, 3),
                "kind": dkinds[int(rng.integers(len(dkinds)))],
                "seed": int(rng.integers(0, 2**31 - 1)),
            }
        out.append({"type": kind, "params": params})
    return out


def manifest_fields(applied: Sequence[dict]) -> dict[str, Any]:
    """The manifest's summary columns for a list of applied steps.

    offset_ms: sum of the offset steps (0.0 when none); snr_db: the (first) noise step's SNR or
    None; corruption_types: comma list in order ("none" for a clean control), leaving out the
    headroom scaling (a global gain is not a fault: every measure we score is scale-invariant);
    corruption: JSON of every step, headroom included.
    """
    steps = [{"type": s["type"], "params": s.get("params", {})} for s in applied]
    types = [s["type"] for s in steps if not s["params"].get("headroom")] or ["none"]
    snr = next((s["params"]["snr_db"] for s in steps if s["type"] == "noise"), None)
    return {
        "corruption": json.dumps(steps, sort_keys=True),
        "corruption_types": ",".join(types),
        "offset_ms": float(sum(s["params"]["offset_ms"] for s in steps if s["type"] == "offset")),
        "snr_db": None if snr is None else float(snr),
    }
