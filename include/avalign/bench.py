"""``make bench``: speed and quality of every edit action against reference libraries.

Why: the agent runs these actions on every clip of every rebuild, so their cost is the
platform's cost, and "fast" only counts at equal or better quality than what a library would
give. Everything is measured in one run on the same inputs, on one torch thread
(``torch.set_num_threads(1)``), and written to ``var/bench/actions.json``; the printed table and
every target's pass/fail line are computed from those numbers.

Inputs: 10 s mono 16 kHz clips, procedural (``avalign.data.generator.synthesize``) and real
(``../shared/data/real_av`` decoded to 16 kHz mono; clips shorter than 10 s are looped, longer
ones cut). Denoisers get white noise (``avalign.data.corruption.add_noise``, SNR over the active
samples) at -5, 0, 5, 10 and 20 dB and are scored by SI-SDR against the clean clip; pitch and
speed are scored on a 440 Hz tone (pitch error, duration kept, where the content ends); the
time shift by the residual offset after undoing a known one; volume by the output loudness a
second meter (pyloudnorm) reads, and by how far our meter is from pyloudnorm's; fill blanks by
the injected dropouts it finds and how close the fill's level is to what was lost.

Timing: "single" is the median wall time of one call on one (1, 1, T) clip over every input
(and ``repeats`` passes); "batched" is one call on B = 16 clips divided by 16, median over
``THREAD_PASSES`` passes. A pass runs single calls on the same 16 clips (as many rounds as the
batched sample has calls), then the batched call on 1 and on 2 threads; each timed batched
sample repeats the call for at least ``THREAD_SAMPLE_S`` and follows one untimed call at the
same thread count. The thread speed-up is the median over the passes of each pass's 1-thread
time over its 2-thread time (:func:`_paired_ratios`), and the batch is compared with single
calls the same way (each pass's batched time per clip over that pass's mean single-clip time).
Beside each 1- and 2-thread batched sample (after ``SPIN_REST_S``), a compute-only kernel
(``_machine_reference``) and FFT vector work (``_vector_reference``) run through the same
thread pool: their speed-ups (paired the same way) are what this machine's two threads gave at
those moments. The near-linear target counts
the passes in which the compute-only reference reached ``SCALED_PASS`` (the machine had two
threads to give); passes go on, up to twice ``THREAD_PASSES``, until that many such passes
exist, and the median over all passes is reported beside it. In every pass the same 16 clips
also run split between two worker processes at once (``_ProcessPair``: one torch thread each,
nothing shared but the machine); the 1-thread batch over that time, paired per pass, is what
two cores give this very work without threads ("2proc x" beside "2thr x"): a thread figure
well below it is the code's shortfall, one alike is the host's. The neural denoisers are a
loop over items (their C runtimes are single-stream), so they have no batched figure. A warm-up
call precedes every timing (lazy tables, numba caches).

``run_bench(quick=True)`` does the same with one short procedural clip, one pass, B = 2 and
without ``torchaudio.functional.pitch_shift`` (about 10 s per call): a structure check for tests.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SR = 16000
BANDS_DB: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 20.0)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "var" / "bench" / "actions.json"
DEFAULT_REAL_AV = REPO_ROOT.parent / "shared" / "data" / "real_av"
PROCEDURAL = (("talking_mouth", 0), ("drum", 1), ("passing_car", 2), ("metronome", 3))
REAL = (
    "talking_head_2_retalking.mp4",
    "eye_makeup_mmaction2.avi",
    "talking_head_3_retalking.mp4",
    "stage_applause_videollama.mp4",
)
TONE_HZ = 440.0
PITCH_SEMITONES = 2.0
SPEED_FACTOR = 1.1
SHIFTS_MS = (40.0, -120.0, 250.0, -333.0)
VOLUME_TARGETS = (-23.0, -14.0)
PEAK_CEILING_DB = -1.0

TIME_LIMITS_MS = {
    "spectral_subtraction": 15.0,
    "wiener_filter": 15.0,
    "spectral_gating": 15.0,
    "wavelet_denoise": 10.0,
    "speed_change": 25.0,
    "pitch_change": 25.0,
    "volume_adjust": 5.0,
    "fill_blanks": 15.0,
    "time_shift": 1.0,
}
"""Issue 4's per-10-s-clip budgets on one thread (single-clip call)."""

BATCH_TOLERANCE = 1.05
"""Batched per-clip time may exceed single-clip time by 5 % (timer noise) and still pass."""
NEAR_LINEAR = 1.6
"""1 -> 2 thread speed-up counted as near-linear (the machine is shared, see meta.loadavg)."""


# --------------------------------------------------------------------------------------------
# settings, inputs, helpers


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    clip_s: float
    clips: int
    repeats: int
    batch: int
    thread_passes: int
    torchaudio_pitch_shift: bool
    real_av_dir: Path | None


@dataclass
class Clip:
    name: str
    source: str  # "procedural" | "real"
    audio: np.ndarray  # float32 (T,)
    speech: bool = False  # a voice (real or synthetic): the neural denoisers' domain


SPEECH = {"talking_mouth", "talking_head_1_retalking.mp4", "talking_head_2_retalking.mp4",
          "talking_head_3_retalking.mp4", "eye_makeup_mmaction2.avi"}


def _settings(quick: bool, real_av_dir: Path | None, clip_s: float | None) -> BenchSettings:
    if quick:
        return BenchSettings(True, clip_s or 3.0, 1, 1, 2, 1, False, None)
    real = real_av_dir if real_av_dir is not None and real_av_dir.is_dir() else None
    return BenchSettings(False, clip_s or 10.0, 4, 3, 16, THREAD_PASSES, True, real)


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Loop a short clip (or cut a long one) to exactly n samples."""
    reps = -(-n // audio.shape[0])
    return np.ascontiguousarray(np.tile(audio, reps)[:n], dtype=np.float32)


def load_clips(settings: BenchSettings) -> list[Clip]:
    """Half procedural, half real (procedural only when the real clips are absent)."""
    from avalign.data.generator import synthesize

    n = int(round(settings.clip_s * SR))
    want_real = settings.clips // 2 if settings.real_av_dir is not None else 0
    clips: list[Clip] = []
    if want_real:
        from avalign.media.decode import decode_audio

        for name in REAL:
            path = settings.real_av_dir / name  # type: ignore[operator]
            if len(clips) == want_real or not path.is_file():
                continue
            track = decode_audio(path, sample_rate=SR)
            clips.append(Clip(name, "real", _fit(track.samples.mean(axis=0), n), name in SPEECH))
    for category, seed in PROCEDURAL:
        if len(clips) == settings.clips:
            break
        synth = synthesize(category, seed, duration_s=settings.clip_s, width=16, height=16)
        clips.insert(
            0, Clip(f"{category}#{seed}", "procedural", _fit(synth.audio[0], n), category in SPEECH)
        )
    return clips


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR (dB) of 1-D arrays."""
    est = np.asarray(estimate, np.float64).reshape(-1)
    ref = np.asarray(reference, np.float64).reshape(-1)
    est = est - est.mean()
    ref = ref - ref.mean()
    target = (est @ ref) / max(ref @ ref, 1e-20) * ref
    residual = est - target
    return float(10 * np.log10(max(target @ target, 1e-20) / max(residual @ residual, 1e-20)))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(1, 1, -1)


def _np(y: Any) -> np.ndarray:
    if isinstance(y, tuple):
        y = y[0]
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.asarray(y, np.float64).reshape(-1)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _run(
    fn: Callable[[np.ndarray], Any], inputs: Sequence[np.ndarray], repeats: int
) -> tuple[list[np.ndarray], float]:
    """Outputs of the first pass and the median ms per call over all passes (after a warm-up)."""
    fn(inputs[0])
    outputs: list[np.ndarray] = []
    times: list[float] = []
    for r in range(repeats):
        for x in inputs:
            y, dt = _timed(lambda x=x: fn(x))
            times.append(dt)
            if r == 0:
                outputs.append(_np(y))
    return outputs, statistics.median(times) * 1000.0


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _speed_entry(ms: float, clip_s: float) -> dict[str, Any]:
    return {"single_ms": _r(ms), "rtf": _r(ms / 1000.0 / clip_s, 5)}


def _band_key(band: float) -> str:
    return f"{band:g}"


# --------------------------------------------------------------------------------------------
# the methods


def _ours() -> dict[str, Callable[[torch.Tensor], Any]]:
    from avalign.actions import functional as AF

    return {
        "spectral_subtraction": lambda x: AF.spectral_subtraction(x, SR),
        "wiener_filter": lambda x: AF.wiener_filter(x, SR),
        "wavelet_denoise": lambda x: AF.wavelet_denoise(x, SR),
        "spectral_gating": lambda x: AF.spectral_gating(x, SR),
        "deepfilternet": lambda x: AF.deepfilternet(x, SR)[0],
        "rnnoise": lambda x: AF.rnnoise(x, SR)[0],
        "speed_change": lambda x: AF.speed_change(x, SR, SPEED_FACTOR),
        "pitch_change": lambda x: AF.pitch_change(x, SR, PITCH_SEMITONES),
        "volume_adjust": lambda x: AF.volume_adjust(x, SR, VOLUME_TARGETS[0], PEAK_CEILING_DB),
        "fill_blanks": lambda x: AF.fill_blanks(x, SR)[0],
        "time_shift": lambda x: AF.time_shift(x, SR, SHIFTS_MS[0]),
    }


DENOISERS = ("spectral_subtraction", "wiener_filter", "wavelet_denoise", "spectral_gating")
NEURAL = ("deepfilternet", "rnnoise")


def _pywt_visushrink(x: np.ndarray) -> np.ndarray:
    """Classic wavelet denoising: sym8 DWT, universal threshold from the finest level's MAD."""
    import pywt

    coeffs = pywt.wavedec(x, "sym8", mode="periodization", level=6)
    sigma = np.median(np.abs(coeffs[-1])) / 0.6745
    thr = sigma * np.sqrt(2.0 * np.log(x.shape[0]))
    shrunk = [coeffs[0]] + [pywt.threshold(c, thr, mode="soft") for c in coeffs[1:]]
    return pywt.waverec(shrunk, "sym8", mode="periodization")[: x.shape[0]]


def _references() -> dict[str, dict[str, Callable[[np.ndarray], Any]]]:
    """Reference implementations per action (numpy in, numpy out), default settings."""
    import noisereduce as nr
    import scipy.signal
    from skimage.restoration import denoise_wavelet

    return {
        "spectral_gating": {
            "noisereduce": lambda x: nr.reduce_noise(y=x, sr=SR, n_jobs=1),
            "noisereduce(stationary)": lambda x: nr.reduce_noise(
                y=x, sr=SR, stationary=True, n_jobs=1
            ),
        },
        "wiener_filter": {"scipy.signal.wiener": lambda x: scipy.signal.wiener(x)},
        "wavelet_denoise": {
            "pywt(VisuShrink)": _pywt_visushrink,
            "skimage.denoise_wavelet": lambda x: denoise_wavelet(
                x, wavelet="sym8", mode="soft", method="BayesShrink", rescale_sigma=True
            ),
        },
    }


# --------------------------------------------------------------------------------------------
# sections


def _noisy_inputs(clips: list[Clip]) -> list[dict[str, Any]]:
    from avalign.data.corruption import add_noise

    items = []
    for ci, clip in enumerate(clips):
        for bi, band in enumerate(BANDS_DB):
            noisy, _ = add_noise(clip.audio[None], SR, band, "white", seed=1000 * ci + bi)
            items.append(
                {"clip": clip.name, "speech": clip.speech, "band": band, "clean": clip.audio,
                 "noisy": noisy[0]}
            )
    return items


def _by_band(items: list[dict[str, Any]], values: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for band in BANDS_DB:
        vals = [v for it, v in zip(items, values, strict=True) if it["band"] == band]
        out[_band_key(band)] = _r(float(np.mean(vals)), 2) if vals else None
    return out


def _denoise_quality(items: list[dict[str, Any]], outputs: list[np.ndarray]) -> dict[str, Any]:
    scores = [si_sdr(y, it["clean"]) for it, y in zip(items, outputs, strict=True)]
    gains = [s - it["input_si_sdr"] for it, s in zip(items, scores, strict=True)]
    finite = all(np.isfinite(y).all() for y in outputs)
    kept = all(y.shape[0] == it["clean"].shape[0] for it, y in zip(items, outputs, strict=True))
    speech = [it for it in items if it["speech"]]
    speech_gains = [g for it, g in zip(items, gains, strict=True) if it["speech"]]
    return {
        "si_sdr_db": _by_band(items, scores),
        "si_sdr_gain_db": _by_band(items, gains),
        "si_sdr_gain_db_speech_clips": _by_band(speech, speech_gains) if speech else None,
        "per_clip_si_sdr_db": [_r(s, 2) for s in scores],
        "finite": bool(finite),
        "length_kept": bool(kept),
    }


def _bench_denoisers(
    settings: BenchSettings, items: list[dict[str, Any]], progress: Callable[[str], None]
) -> dict[str, Any]:
    ours, refs = _ours(), _references()
    inputs = [it["noisy"] for it in items]
    out: dict[str, Any] = {}
    for name in DENOISERS + NEURAL:
        progress(f"  {name}")
        fn = ours[name]
        repeats = 1 if name in NEURAL else settings.repeats
        outputs, ms = _run(lambda x, fn=fn: fn(_t(x)), inputs, repeats)
        entry: dict[str, Any] = {
            "kind": "neural_denoiser" if name in NEURAL else "denoiser",
            "ours": {**_speed_entry(ms, settings.clip_s), **_denoise_quality(items, outputs)},
            "references": {},
        }
        for ref_name, ref_fn in refs.get(name, {}).items():
            progress(f"  {name} <- {ref_name}")
            ref_out, ref_ms = _run(ref_fn, inputs, settings.repeats)
            entry["references"][ref_name] = {
                **_speed_entry(ref_ms, settings.clip_s),
                **_denoise_quality(items, ref_out),
                "time_ratio_ours_over_ref": _r(ms / ref_ms, 4),
            }
        out[name] = entry
    if "deepfilternet" in out:
        out["deepfilternet"]["ours"]["model_create_ms"] = _r(_deepfilter_create_ms())
    return out


def _deepfilter_create_ms() -> float:
    """What one ``df_create`` costs (paid once per clip and channel, see actions/neural.py)."""
    import ctypes

    from avalign.actions.neural import _deepfilter_runtime

    rt = _deepfilter_runtime()
    state, dt = _timed(lambda: rt.lib.df_create(rt.model, ctypes.c_float(100.0), None))
    rt.lib.df_free(state)
    return dt * 1000.0


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR)), dtype=np.float64) / SR
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _content_end(y: np.ndarray) -> int:
    """Samples up to the last one above 5 % of the peak (where the content stops)."""
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak <= 0:
        return 0
    return int(np.flatnonzero(np.abs(y) > 0.05 * peak)[-1]) + 1


def tone_frequency(y: np.ndarray, start: int, end: int) -> float:
    """Frequency (Hz) of the strongest spectral peak of y[start:end] (Hann, x8 zero padding,
    parabolic interpolation of the log magnitude)."""
    seg = np.asarray(y[start:end], np.float64)
    if seg.size < 64:
        return math.nan
    n = 8 * seg.size
    mag = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n))
    k = int(np.argmax(mag[1:-1])) + 1
    a, b, c = np.log(mag[k - 1 : k + 2] + 1e-30)
    p = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return (k + p) * SR / n


def tone_purity_db(y: np.ndarray, start: int, end: int, width_hz: float = 5.0) -> float:
    """Energy within +-width_hz of the strongest peak over all other energy (dB): how clean a
    processed sine stays (phasiness, modulation and aliasing all land outside the peak)."""
    seg = np.asarray(y[start:end], np.float64)
    power = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    freqs = np.fft.rfftfreq(seg.size, 1.0 / SR)
    near = np.abs(freqs - freqs[int(np.argmax(power))]) <= width_hz
    return float(10 * np.log10(power[near].sum() / max(power[~near].sum(), 1e-30)))


def _tone_snr_db(y: np.ndarray, hz: float, start: int, end: int) -> float:
    """SNR (dB) of y against the exact sine a tape-style speed change must give (phase 0 at 0)."""
    n = np.arange(start, end, dtype=np.float64)
    ideal = 0.5 * np.sin(2 * np.pi * hz * n / SR)
    err = np.asarray(y[start:end], np.float64) - ideal
    return float(10 * np.log10(np.sum(ideal**2) / max(np.sum(err**2), 1e-30)))


def _pitch_quality(
    y: np.ndarray, expected_hz: float, t_in: int, expected_end: int, tape: bool = False
) -> dict:
    end = _content_end(y)
    margin = int(0.5 * SR)
    stop = max(margin + 64, end - margin)
    measured = tone_frequency(y, margin, stop)
    out = {
        "tone_hz": _r(measured, 3),
        "expected_hz": _r(expected_hz, 3),
        "pitch_error_pct": _r(abs(measured / expected_hz - 1.0) * 100.0, 4),
        "tone_purity_db": _r(tone_purity_db(y, margin, stop), 2),
        "length_error_ms": _r(abs(y.shape[0] - t_in) / SR * 1000.0, 3),
        "duration_kept": bool(y.shape[0] == t_in),
        "content_end_error_ms": _r(abs(end - expected_end) / SR * 1000.0, 3),
    }
    if tape:  # the output's phase is fixed by the time map: compare sample by sample
        out["tone_snr_db"] = _r(_tone_snr_db(y, expected_hz, margin, stop), 2)
    return out


def _bench_pitch(
    settings: BenchSettings, clips: list[Clip], progress: Callable[[str], None]
) -> dict[str, Any]:
    import librosa
    import torchaudio.functional as TAF

    ours = _ours()["pitch_change"]
    tone = _tone(settings.clip_s)
    inputs = [tone] + [c.audio for c in clips]
    t = tone.shape[0]
    expected = TONE_HZ * 2.0 ** (PITCH_SEMITONES / 12.0)
    progress("  pitch_change")
    outs, ms = _run(lambda x: ours(_t(x)), inputs, settings.repeats)
    entry: dict[str, Any] = {
        "kind": "timing",
        "params": {"semitones": PITCH_SEMITONES},
        "ours": {**_speed_entry(ms, settings.clip_s), **_pitch_quality(outs[0], expected, t, t)},
        "references": {},
    }
    progress("  pitch_change <- librosa")
    ref = lambda x: librosa.effects.pitch_shift(x, sr=SR, n_steps=PITCH_SEMITONES)  # noqa: E731
    outs, ref_ms = _run(ref, inputs, settings.repeats)
    entry["references"]["librosa.effects.pitch_shift"] = {
        **_speed_entry(ref_ms, settings.clip_s),
        **_pitch_quality(outs[0], expected, t, t),
        "time_ratio_ours_over_ref": _r(ms / ref_ms, 4),
    }
    if settings.torchaudio_pitch_shift:
        progress("  pitch_change <- torchaudio.functional.pitch_shift (one call, ~10 s)")
        y, dt = _timed(lambda: TAF.pitch_shift(_t(tone)[0], SR, PITCH_SEMITONES))
        entry["references"]["torchaudio.functional.pitch_shift"] = {
            **_speed_entry(dt * 1000.0, settings.clip_s),
            **_pitch_quality(_np(y), expected, t, t),
            "time_ratio_ours_over_ref": _r(ms / (dt * 1000.0), 5),
            "calls": 1,
        }
    return entry


def _bench_speed(
    settings: BenchSettings, clips: list[Clip], progress: Callable[[str], None]
) -> dict[str, Any]:
    import librosa
    import torchaudio.functional as TAF

    ours = _ours()["speed_change"]
    tone = _tone(settings.clip_s)
    inputs = [tone] + [c.audio for c in clips]
    t = tone.shape[0]
    end = min(t, int(round(t / SPEED_FACTOR)))
    tape_hz = TONE_HZ * SPEED_FACTOR
    progress("  speed_change")
    outs, ms = _run(lambda x: ours(_t(x)), inputs, settings.repeats)
    entry: dict[str, Any] = {
        "kind": "timing",
        "params": {"factor": SPEED_FACTOR},
        "ours": {
            **_speed_entry(ms, settings.clip_s),
            **_pitch_quality(outs[0], tape_hz, t, end, tape=True),
        },
        "references": {},
    }
    refs = {
        "torchaudio.functional.speed": (
            lambda x: TAF.speed(_t(x)[0], SR, SPEED_FACTOR)[0],
            tape_hz,
            True,
            "tape-style like ours, but the clip gets shorter",
        ),
        "librosa.effects.time_stretch": (
            lambda x: librosa.effects.time_stretch(x, rate=SPEED_FACTOR),
            TONE_HZ,
            False,
            "tempo only (pitch kept): a different edit, compared for time",
        ),
    }
    for name, (fn, hz, tape, note) in refs.items():
        progress(f"  speed_change <- {name}")
        outs, ref_ms = _run(fn, inputs, settings.repeats)
        entry["references"][name] = {
            **_speed_entry(ref_ms, settings.clip_s),
            **_pitch_quality(outs[0], hz, t, end, tape=tape),
            "time_ratio_ours_over_ref": _r(ms / ref_ms, 4),
            "note": note,
        }
    return entry


def _residual_offset_ms(y: np.ndarray, clean: np.ndarray, max_lag: int) -> float:
    """Lag (ms) of y against clean at the cross-correlation peak within +-max_lag samples."""
    n = y.shape[0] + clean.shape[0]
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(clean, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([c[: max_lag + 1], c[n - max_lag :]])
    return float(lags[int(np.argmax(vals))]) / SR * 1000.0


def _bench_time_shift(
    settings: BenchSettings, clips: list[Clip], progress: Callable[[str], None]
) -> dict[str, Any]:
    from avalign.actions import functional as AF
    from avalign.data.corruption import apply_offset

    progress("  time_shift")
    cases = []
    for i, clip in enumerate(clips):
        offset = SHIFTS_MS[i % len(SHIFTS_MS)]
        shifted, _ = apply_offset(clip.audio[None], SR, offset)
        cases.append((shifted[0], -offset, clip.audio))
    by_input = {id(x): shift for x, shift, _ in cases}
    outs, ms = _run(
        lambda x: AF.time_shift(_t(x), SR, by_input[id(x)]), [c[0] for c in cases], settings.repeats
    )
    errors = [
        abs(_residual_offset_ms(y, clean, int(0.5 * SR)))
        for y, (_, _, clean) in zip(outs, cases, strict=True)
    ]
    return {
        "kind": "timing",
        "params": {"offsets_ms": [c[1] * -1 for c in cases]},
        "ours": {
            **_speed_entry(ms, settings.clip_s),
            "abs_offset_error_ms": _r(max(errors), 4),
            "length_kept": all(
                y.shape[0] == c[0].shape[0] for y, c in zip(outs, cases, strict=True)
            ),
        },
        "references": {},
    }


def _bench_volume(
    settings: BenchSettings, clips: list[Clip], progress: Callable[[str], None]
) -> dict[str, Any]:
    """Loudness normalisation at -23 LUFS (EBU R128: the common case, timed as "single") and at
    -14 LUFS (where the true-peak limiter has to work, timed separately).

    Loudness is read by pyloudnorm with its "DeMan" filter, which is BS.1770-4's K-weighting
    exactly (as ours); pyloudnorm's default "K-weighting" filter is an RBJ-cookbook
    approximation that reads 0.12 LU lower at 16 kHz, so agreement with it is reported too.
    """
    import warnings

    import pyloudnorm as pyln

    from avalign.actions import functional as AF

    exact, default = pyln.Meter(SR, filter_class="DeMan"), pyln.Meter(SR)
    by_target: dict[float, list[np.ndarray]] = {tgt: [] for tgt in VOLUME_TARGETS}
    targets: dict[int, float] = {}
    for i, clip in enumerate(clips):
        gain = 10.0 ** (-6.0 * i / 20.0)  # inputs at different levels
        for tgt in VOLUME_TARGETS:
            x = (clip.audio * gain).astype(np.float32)
            by_target[tgt].append(x)
            targets[id(x)] = tgt

    def ours(x: np.ndarray) -> torch.Tensor:
        return AF.volume_adjust(_t(x), SR, targets[id(x)], PEAK_CEILING_DB)

    def pyln_normalise(x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible clipped samples in output"
            return pyln.normalize.loudness(x, default.integrated_loudness(x), targets[id(x)])

    def quality(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, Any]:
        errs = [abs(exact.integrated_loudness(y) - targets[id(x)]) for x, y in zip(inputs, outputs)]
        errs_default = [
            abs(default.integrated_loudness(y) - targets[id(x)]) for x, y in zip(inputs, outputs)
        ]
        peaks = [
            20 * math.log10(max(float(AF.true_peak(_t(y.astype(np.float32)))[0]), 1e-12))
            for y in outputs
        ]
        return {
            "loudness_error_lu_mean": _r(float(np.mean(errs)), 4),
            "loudness_error_lu_max": _r(float(np.max(errs)), 4),
            "loudness_error_lu_max_default_meter": _r(float(np.max(errs_default)), 4),
            "max_true_peak_dbtp": _r(max(peaks), 3),
            "over_full_scale": bool(max(peaks) > 0.0),
        }

    typical, limited = by_target[VOLUME_TARGETS[0]], by_target[VOLUME_TARGETS[1]]
    every = typical + limited
    progress("  volume_adjust")
    outs, ms = _run(ours, typical, settings.repeats)
    outs_lim, ms_lim = _run(ours, limited, settings.repeats)
    _, meter_ms = _run(lambda x: AF.integrated_loudness(_t(x), SR), typical, settings.repeats)
    ours_meter = [float(AF.integrated_loudness(_t(x), SR)[0]) for x in every]
    agree = [abs(a - exact.integrated_loudness(x)) for a, x in zip(ours_meter, every)]
    agree_default = [abs(a - default.integrated_loudness(x)) for a, x in zip(ours_meter, every)]
    entry: dict[str, Any] = {
        "kind": "level",
        "params": {"targets_lufs": list(VOLUME_TARGETS), "peak_ceiling_dbtp": PEAK_CEILING_DB},
        "ours": {
            **_speed_entry(ms, settings.clip_s),
            "limited_single_ms": _r(ms_lim),
            **quality(every, outs + outs_lim),
            "meter_ms": _r(meter_ms),
            "meter_vs_pyloudnorm_lu_max": _r(max(agree), 5),
            "meter_vs_pyloudnorm_default_filter_lu_max": _r(max(agree_default), 4),
        },
        "references": {},
    }
    progress("  volume_adjust <- pyloudnorm")
    ref_outs, ref_ms = _run(pyln_normalise, typical, settings.repeats)
    ref_outs_lim, ref_ms_lim = _run(pyln_normalise, limited, settings.repeats)
    _, ref_meter_ms = _run(default.integrated_loudness, typical, settings.repeats)
    entry["references"]["pyloudnorm"] = {
        **_speed_entry(ref_ms, settings.clip_s),
        "limited_single_ms": _r(ref_ms_lim),
        **quality(every, ref_outs + ref_outs_lim),
        "meter_ms": _r(ref_meter_ms),
        "time_ratio_ours_over_ref": _r(ms / ref_ms, 4),
        "note": "meter + gain (its default filter), no limiter",
    }
    return entry


def _gap_positions(clean: np.ndarray, durations: Sequence[float]) -> list[tuple[float, float]]:
    """Dropouts placed inside sound: both 100 ms sides active (within 30 dB of the loudest)."""
    frame = int(0.02 * SR)
    rms = np.sqrt(np.mean(clean[: clean.size // frame * frame].reshape(-1, frame) ** 2, axis=1))
    active = rms > rms.max() * 10 ** (-30 / 20)
    gaps: list[tuple[float, float]] = []
    f = int(1.0 / 0.02)
    for dur in durations:
        need = int(math.ceil(dur / 0.02)) + 10
        while f + need < active.size:
            if active[f : f + need].all():
                gaps.append((f * 0.02 + 0.1, dur))
                f += need + int(1.5 / 0.02)
                break
            f += 1
    return gaps


def _bench_fill(
    settings: BenchSettings, clips: list[Clip], progress: Callable[[str], None]
) -> dict[str, Any]:
    from avalign.actions import functional as AF
    from avalign.data.corruption import apply_gaps

    progress("  fill_blanks")
    cases = []
    for clip in clips:
        gaps = _gap_positions(clip.audio, (0.06, 0.15))
        gapped, info = apply_gaps(clip.audio[None], SR, gaps)
        cases.append((gapped[0], info["gap_samples"], clip.audio))
    inputs = [c[0] for c in cases]
    reports: dict[int, Any] = {}

    def ours(x: np.ndarray) -> torch.Tensor:
        y, rep = AF.fill_blanks(_t(x), SR)
        reports[id(x)] = rep[0]
        return y

    outs, ms = _run(ours, inputs, settings.repeats)
    found = injected = false_fills = 0
    levels, snrs = [], []
    for (x, spans, clean), y in zip(cases, outs, strict=True):
        filled = [(int(round(s * SR)), int(round((s + d) * SR))) for s, d in reports[id(x)]]
        for a, b in spans:
            injected += 1
            overlap = sum(max(0, min(b, fb) - max(a, fa)) for fa, fb in filled)
            found += overlap >= 0.5 * (b - a)
            ref, est = clean[a:b].astype(np.float64), y[a:b]
            rms_est, rms_ref = np.sqrt(np.mean(est**2)), np.sqrt(np.mean(ref**2))
            levels.append(20 * math.log10(max(rms_est, 1e-9) / max(rms_ref, 1e-9)))
            err = max(np.sum((est - ref) ** 2), 1e-20)
            snrs.append(10 * math.log10(max(np.sum(ref**2), 1e-20) / err))
        false_fills += sum(
            1 for fa, fb in filled if not any(min(b, fb) > max(a, fa) for a, b in spans)
        )
    return {
        "kind": "repair",
        "ours": {
            **_speed_entry(ms, settings.clip_s),
            "gaps_injected": injected,
            "gaps_found": found,
            "false_fills": false_fills,
            "fill_level_error_db_mean": _r(float(np.mean(np.abs(levels))) if levels else None, 2),
            "gap_snr_db_mean": _r(float(np.mean(snrs)) if snrs else None, 2),
            "gap_snr_db_before": 0.0,
        },
        "references": {},
    }


def _bench_batching(
    settings: BenchSettings, items: list[dict[str, Any]], progress: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Per-clip ms of one call on B clips, at 1 and 2 threads, for every batched action."""
    ours = _ours()
    machine = _machine_reference()
    vector = _vector_reference()
    pool = [it["noisy"] for it in items]
    rows = [pool[i % len(pool)] for i in range(settings.batch)]
    x = torch.from_numpy(np.stack(rows)).unsqueeze(1).contiguous()
    x[..., int(3.0 * SR) : int(3.1 * SR)] = 0.0  # one dropout for fill_blanks
    pair = _ProcessPair(x)
    try:
        return _batching_passes(settings, x, ours, machine, vector, pair, progress)
    finally:
        pair.close()


def _batching_passes(
    settings: BenchSettings,
    x: torch.Tensor,
    ours: dict[str, Callable[[torch.Tensor], Any]],
    machine: Callable[[int], float],
    vector: Callable[[int], float],
    pair: _ProcessPair,
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """The passes of :func:`_bench_batching` for every batched action."""
    out: dict[str, dict[str, Any]] = {}
    for name, fn in ours.items():
        if name in NEURAL:
            continue
        progress(f"  batched {name}")
        result: dict[str, Any] = {}
        fn(x[:1])
        for threads in (2, 1):  # warm-up, the thread pool included
            torch.set_num_threads(threads)
            fn(x)
            machine(threads)
            vector(threads)
        # a timed sample repeats the call for ~THREAD_SAMPLE_S on one thread (the same count on
        # two): one 20-40 ms call is at the mercy of a single hiccup
        calls = 1 if settings.quick else max(
            1, math.ceil(THREAD_SAMPLE_S / max(_timed(lambda: fn(x))[1], 1e-6))
        )

        def sample() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                fn(x)
            return (time.perf_counter() - start) / calls

        # singles and batches alternate, so both see the same load on a shared machine; the
        # machine references run at the same moments. Each timed batch follows an untimed one
        # at the same thread count: the first call after a switch found the second vCPU idle
        # and took up to 40 % longer (spectral subtraction, 1.8 ms per clip steady at 2 threads,
        # 2.1-2.5 ms right after 1-thread work), and a rebuild runs its batches back to back.
        singles: list[float] = []
        times: dict[int, list[float]] = {1: [], 2: []}
        reference: dict[int, list[float]] = {1: [], 2: []}
        vector_reference: dict[int, list[float]] = {1: [], 2: []}
        processes: list[float] = []  # the batch's halves in two processes at once, per call
        wanted = max(settings.repeats, settings.thread_passes)
        # passes go on (up to twice as many) until ``wanted`` of them found this machine able
        # to run two threads at once: see SCALED_PASS
        while len(times[1]) < wanted or (
            _scaled_count(reference) < wanted and len(times[1]) < 2 * wanted
        ):
            # per clip over passes of the batch's clips: comparable with the batch's per-clip
            # time when clips differ in cost (a loud clip goes through the limiter); as many
            # passes as the batched sample has calls, so both last as long
            singles.append(
                sum(
                    _timed(lambda i=i: fn(x[i : i + 1]))[1]
                    for _ in range(calls)
                    for i in range(x.shape[0])
                )
                / (calls * x.shape[0])
            )
            for threads in (1, 2):
                torch.set_num_threads(threads)
                fn(x)
                times[threads].append(sample())
                time.sleep(SPIN_REST_S)  # the action's OpenMP threads stop spinning first
                reference[threads].append(machine(threads))
                vector_reference[threads].append(vector(threads))
            torch.set_num_threads(1)
            processes.append(pair.seconds(name, calls))
        for threads, measured in times.items():
            per_clip = statistics.median(measured) * 1000 / x.shape[0]
            result[f"ms_per_clip_{threads}_thread"] = per_clip
        one, two = result["ms_per_clip_1_thread"], result["ms_per_clip_2_thread"]
        passes = _paired_ratios(times[1], times[2])
        machine_passes = _paired_ratios(reference[1], reference[2])
        scaled = [p for p, m in zip(passes, machine_passes, strict=True) if m >= SCALED_PASS]
        # the batch against the single calls of its own pass (paired like the threads)
        per_clip_one = [t / x.shape[0] for t in times[1]]
        batched_over_single_passes = _paired_ratios(per_clip_one, singles)
        batched_over_single = statistics.median(batched_over_single_passes)
        # this pass's 1-thread batch over the same clips split between two processes
        process_passes = _paired_ratios(times[1], processes)
        out[name] = {
            "batch": int(x.shape[0]),
            "single_ms_same_inputs": _r(statistics.median(singles) * 1000),
            "batched_ms_per_clip": _r(one),
            "batched_ms_per_clip_2_threads": _r(two),
            "batched_over_single": _r(batched_over_single, 3),
            "batched_over_single_passes": [_r(v, 3) for v in batched_over_single_passes],
            "thread_passes": len(passes),
            "thread_passes_wanted": wanted,
            "calls_per_sample": calls,
            "thread_speedup_1_to_2": _r(statistics.median(passes), 3),
            "thread_speedup_passes": [_r(v, 3) for v in passes],
            "thread_speedup_scaled_passes": len(scaled),
            "thread_speedup_1_to_2_machine_scaled": (
                _r(statistics.median(scaled), 3) if scaled else None
            ),
            "machine_speedup_1_to_2": _r(statistics.median(machine_passes), 3),
            "machine_speedup_passes": [_r(v, 3) for v in machine_passes],
            "machine_vector_speedup_1_to_2": _r(
                statistics.median(_paired_ratios(vector_reference[1], vector_reference[2])), 3
            ),
            "process_speedup_1_to_2": _r(statistics.median(process_passes), 3),
            "process_speedup_passes": [_r(v, 3) for v in process_passes],
        }
    return out


THREAD_SAMPLE_S = 0.2
"""Least 1-thread time of one timed batched sample. Fast actions repeat the call: speed_change
(~28 ms per batch of 16 on the ninth session's VM) 7-8 times, the time shift 46-52 times. So
one interruption cannot set a pass's speed-up alone. The single-clip calls a pass compares the
batch with run as many times over the batch's clips: with one call per clip (~55 ms in all for
spectral subtraction against the batch's 0.2 s), subtraction's batch read 0.97-1.01x its
single calls in four runs of the twelfth session and 1.06x in a fifth."""
SPIN_REST_S = 0.02
"""Pause between an action's timed sample and the machine references measured beside it.
After an OpenMP region libgomp's worker threads spin for a few ms before they sleep: an
action whose ops split over torch's threads (the time shift) left a spinner that took a core
from the reference. Measured on the twelfth session's VM, the compute-only reference at 2
threads right after 100 two-thread time shifts, median of 12: 1.55x with no pause, 1.77x after
5 ms, 1.95x after 20 ms (1.79x after 50 ms). In the bench run before this pause the time
shift's references read 1.30-1.63x in all 18 passes (median 1.59x) while the other actions'
read 1.64-1.94x, so its passes almost never counted (5 of 18)."""
THREAD_PASSES = 9
"""Passes per action of single calls, then the batched call on 1 and on 2 threads. On this
project's 2-vCPU VM one pass's speed-up ranged from 0.99x to 1.95x for the same call minutes
apart, and the compute-only reference's from 0.98x to 2.90x (a 1-thread time caught by another
tenant); with three passes the median still moved by 0.4 between runs."""


SCALED_PASS = NEAR_LINEAR
"""A pass counts towards the near-linear target when this machine's compute-only reference,
measured beside it, went at least this much faster on two threads than on one: only then did the
machine have two threads to give. On the eleventh session's VM the reference (pure arithmetic,
no memory traffic, no GIL) read 1.56-1.67x for four seconds and then 1.00-1.11x for the next six,
pass after pass; 30 passes a minute later read 1.37-2.40x (median 1.85x). A pass in such a
stretch measures the host, not the code."""


def _scaled_count(reference: dict[int, list[float]]) -> int:
    """Passes so far whose compute-only reference reached :data:`SCALED_PASS`."""
    return sum(m >= SCALED_PASS for m in _paired_ratios(reference[1], reference[2]))


def _paired_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per pass, a time over the other time measured right after it (1 over 2 threads, say).

    Why paired: on a shared machine the load drifts within seconds, and a pair sees the same
    load; the median of the pairs then drops the passes that a neighbour disturbed.
    """
    pairs = zip(numerators, denominators, strict=True)
    return [a / b if b > 0 else math.nan for a, b in pairs]


class _ProcessPair:
    """Two worker processes that each run an action on half of the batch, one torch thread each.

    What two cores give this very work with nothing shared but the machine: no GIL, no
    allocator, no thread pool, no Python objects. Beside the thread speed-up it tells whether a
    shortfall is the code's (threads far below processes) or the host's (both alike). The
    workers are spawned (fresh interpreters, so no forked OpenMP or thread-pool state) once per
    bench and wait on a pipe between samples, using no CPU. A worker's failure comes back as
    its traceback text and is raised here.
    """

    def __init__(self, x: torch.Tensor) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        half = -(-x.shape[0] // 2)
        self._pipes: list[Any] = []
        self._workers: list[Any] = []
        self.rows = (half, x.shape[0] - half)
        try:
            for part in (x[:half], x[half:]):
                parent, child = context.Pipe()
                self._pipes.append(parent)
                worker = context.Process(
                    target=_process_worker, args=(child, part.numpy().copy()), daemon=True
                )
                worker.start()
                self._workers.append(worker)
                child.close()
            for pipe in self._pipes:  # both up (torch imported) before any timing starts
                self._reply(pipe)
        except BaseException:
            self.close()
            raise

    def seconds(self, name: str, calls: int) -> float:
        """Wall seconds per call while both halves run ``calls`` calls of ``name`` at once (after
        one untimed call each, so both start warm and together)."""
        for pipe in self._pipes:
            pipe.send((name, calls))
        for pipe in self._pipes:
            self._reply(pipe)
        start = time.perf_counter()
        for pipe in self._pipes:
            pipe.send("go")
        done = [self._reply(pipe) for pipe in self._pipes]
        elapsed = time.perf_counter() - start
        if [rows for rows, _ in done] != list(self.rows):
            raise RuntimeError(f"bench workers ran {done}, expected rows {self.rows}")
        return elapsed / calls

    @staticmethod
    def _reply(pipe: Any) -> Any:
        try:
            reply = pipe.recv()
        except EOFError:
            raise RuntimeError("a bench worker process exited without a reply") from None
        if isinstance(reply, tuple) and reply[:1] == ("error",):
            raise RuntimeError(f"a bench worker process failed:\n{reply[1]}")
        return reply

    def close(self) -> None:
        """Stop the workers (a stopped or failed one is only reaped) and close the pipes."""
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for pipe in self._pipes:
            pipe.close()


def _process_worker(pipe: Any, rows: np.ndarray) -> None:
    """A :class:`_ProcessPair` worker: on ``(name, calls)`` one untimed call of the action on
    its clips, "ready", then on "go" ``calls`` timed calls and (clips, seconds); None at any
    point ends it. A failure is sent as ``("error", traceback text)``."""
    import traceback

    try:
        torch.set_num_threads(1)
        x = torch.from_numpy(rows)
        ours = _ours()
        pipe.send("up")
        while True:
            message = pipe.recv()
            if message is None:
                return
            name, calls = message
            ours[name](x)
            pipe.send("ready")
            if pipe.recv() is None:  # the other worker failed: no timed calls
                return
            start = time.perf_counter()
            for _ in range(calls):
                ours[name](x)
            pipe.send((x.shape[0], time.perf_counter() - start))
    except Exception:
        pipe.send(("error", traceback.format_exc()))
    finally:
        pipe.close()


MACHINE_ITEM_ITERATIONS = 2_000_000
"""Work per item of the machine reference: ~5 ms of arithmetic, the size of a denoiser call."""
VECTOR_ITEM_FRAMES = (1250, 512)
"""Per item of the vector reference: the frames of a 10 s clip's STFT (16 kHz, 512-point, hop 128)."""


def _machine_reference() -> Callable[[int], float]:
    """``run(threads)`` -> seconds for 16 items of pure arithmetic through ``parallel_map``.

    What two threads can give on this machine at this moment: no memory traffic, the GIL
    released, the same thread pool as the actions. On a shared VM the second vCPU comes and
    goes (a compiled loop measured 1.37x to 2.08x minutes apart), so each action's speed-up is
    reported beside this one, measured at the same moments. Without numba: NaN.
    """
    from avalign.actions._jit import numba_compile

    kernel = numba_compile(_arithmetic)
    if kernel is None:
        return lambda threads: math.nan
    kernel(10)
    items = list(range(16))
    return lambda threads: _pool_seconds(lambda _: kernel(MACHINE_ITEM_ITERATIONS), items, threads)


def _vector_reference() -> Callable[[int], float]:
    """``run(threads)`` -> seconds for 16 items of vector work through ``parallel_map``.

    Each item is one real FFT of a 10 s clip's frames, a scale and the inverse FFT: three torch
    ops, the GIL released in each, streaming ~10 MB through SIMD units and caches as a
    spectral denoiser does. The compute-only reference measures whether a second core is there;
    this one what vector work with almost no Python between its ops gets from it (SIMD units,
    caches and memory bandwidth shared). On this project's 2-vCPU VM, one afternoon: 1.90x and
    1.71-1.81x, while the actions, whose items run dozens of ops each, got 1.4x.
    """
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(*VECTOR_ITEM_FRAMES, generator=generator) for _ in range(16)]
    n = VECTOR_ITEM_FRAMES[1]

    def item(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(x) * 0.5, n=n)

    return lambda threads: _pool_seconds(item, frames, threads)


def _pool_seconds(fn: Callable[[Any], Any], items: list[Any], threads: int) -> float:
    """Seconds of ``parallel_map(fn, items)`` on ``threads`` torch threads (then back to 1)."""
    from avalign.actions._checks import parallel_map

    torch.set_num_threads(threads)
    try:
        return _timed(lambda: parallel_map(fn, items))[1]
    finally:
        torch.set_num_threads(1)


def _arithmetic(n):  # type: ignore[no-untyped-def]
    """A dependent chain of float operations: compute only."""
    acc = 0.0
    for i in range(n):
        acc += (i % 7) * 0.5
    return acc


# --------------------------------------------------------------------------------------------
# targets


def _machine_context(batching: dict[str, dict[str, Any]], key: str, what: str) -> str:
    """"; this machine at the same moments (<what>): median Mx, lo-hi" or "" when not measured."""
    values = [b.get(key) for b in batching.values()]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return ""
    return (f"; this machine at the same moments ({what}): median {statistics.median(values):.2f}x, "
            f"{min(values):.2f}-{max(values):.2f}x")


def _process_context(batching: dict[str, dict[str, Any]]) -> str:
    """"; the same clips split between two processes (nothing shared but the machine): median
    Mx, <action> Mx, ..." or "" when not measured (a report from before the processes were)."""
    values = {n: b.get("process_speedup_1_to_2") for n, b in batching.items()}
    values = {n: v for n, v in values.items() if v is not None and math.isfinite(v)}
    if not values:
        return ""
    return (f"; the same clips split between two processes (nothing shared but the machine): "
            f"median {statistics.median(values.values()):.2f}x, "
            + ", ".join(f"{n} {v:.2f}x" for n, v in values.items()))


def _line(name: str, ok: bool, measured: str, threshold: str) -> dict[str, Any]:
    return {"target": name, "pass": bool(ok), "measured": measured, "threshold": threshold}


def _bands(entry: dict[str, Any], key: str = "si_sdr_db") -> dict[str, float]:
    return {b: v for b, v in entry[key].items() if v is not None}


def _not_dominated(ours: dict, ref: dict) -> tuple[bool, list[str]]:
    """Issue 4's rule per SNR band: >= 2x faster at SI-SDR within 0.2 dB, or >= 1 dB better at
    no more than 2x the time. Returns (every band passes, failing bands)."""
    speedup = ref["single_ms"] / ours["single_ms"]
    failing = []
    for band, q in _bands(ours).items():
        r = ref["si_sdr_db"][band]
        fast = speedup >= 2.0 and q >= r - 0.2
        better = q >= r + 1.0 and speedup >= 0.5
        if not (fast or better):
            failing.append(band)
    return not failing, failing


def compute_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 4 as a pass/fail line computed from the measured numbers."""
    acts = report["actions"]
    lines: list[dict[str, Any]] = []
    for name, limit in TIME_LIMITS_MS.items():
        if name in acts:
            ms = acts[name]["ours"]["single_ms"]
            lines.append(_line(f"{name} <= {limit:g} ms per clip (1 thread)", ms <= limit,
                               f"{ms:.2f} ms", f"{limit:g} ms"))
    gating = acts.get("spectral_gating")
    if gating and "noisereduce" in gating["references"]:
        ref = gating["references"]["noisereduce"]
        speedup = ref["single_ms"] / gating["ours"]["single_ms"]
        worse = [b for b, v in _bands(gating["ours"]).items() if v < ref["si_sdr_db"][b]]
        lines.append(_line(
            "spectral_gating vs noisereduce: >= 5x faster, SI-SDR >= on every band",
            speedup >= 5.0 and not worse,
            f"{speedup:.1f}x faster; bands worse: {', '.join(worse) or 'none'}",
            ">= 5x, no band worse",
        ))
    pitch = acts.get("pitch_change")
    if pitch and "librosa.effects.pitch_shift" in pitch["references"]:
        ref = pitch["references"]["librosa.effects.pitch_shift"]
        speedup = ref["single_ms"] / pitch["ours"]["single_ms"]
        err = pitch["ours"]["pitch_error_pct"]
        lines.append(_line(
            "pitch_change vs librosa: >= 1.8x faster, pitch error <= 1 %",
            speedup >= 1.8 and err <= 1.0,
            f"{speedup:.2f}x faster, error {err:.3f} %",
            ">= 1.8x, <= 1 %",
        ))
    wiener = acts.get("wiener_filter")
    if wiener and "scipy.signal.wiener" in wiener["references"]:
        ref = wiener["references"]["scipy.signal.wiener"]
        deltas = {b: v - ref["si_sdr_db"][b] for b, v in _bands(wiener["ours"]).items()}
        lines.append(_line(
            "wiener_filter vs scipy.signal.wiener: >= 3 dB better SI-SDR on every band",
            min(deltas.values()) >= 3.0,
            "; ".join(f"{b} dB: {d:+.2f}" for b, d in deltas.items()),
            ">= +3 dB",
        ))
    volume = acts.get("volume_adjust")
    if volume:
        o = volume["ours"]
        agree = o["meter_vs_pyloudnorm_lu_max"]
        lines.append(_line(
            "volume_adjust: our meter within 0.1 LU of pyloudnorm (BS.1770 'DeMan' filter)",
            agree <= 0.1,
            f"max {agree:.5f} LU (vs its default RBJ filter: "
            f"{o['meter_vs_pyloudnorm_default_filter_lu_max']:.3f} LU)",
            "<= 0.1 LU",
        ))
        err = o["loudness_error_lu_max"]
        lines.append(_line(
            "volume_adjust: output within 0.1 LU of the target (read by pyloudnorm), no clipping",
            err <= 0.1 and not o["over_full_scale"],
            f"max {err:.4f} LU, true peak {o['max_true_peak_dbtp']:.2f} dBTP",
            "<= 0.1 LU, <= 0 dBTP",
        ))
    for name in DENOISERS:
        entry = acts.get(name)
        for ref_name, ref in (entry or {}).get("references", {}).items():
            ok, failing = _not_dominated(entry["ours"], ref)
            lines.append(_line(
                f"{name} not dominated by {ref_name} (every band)",
                ok,
                f"{ref['single_ms'] / entry['ours']['single_ms']:.1f}x faster; "
                f"failing bands: {', '.join(failing) or 'none'}",
                ">= 2x faster within 0.2 dB, or >= 1 dB better within 2x time",
            ))
    for name, key in (("pitch_change", "tone_purity_db"), ("speed_change", "tone_snr_db")):
        entry = acts.get(name)
        for ref_name, ref in (entry or {}).get("references", {}).items():
            if "time_stretch" in ref_name:
                continue  # a different edit (tempo only): reported, not judged
            speedup = ref["single_ms"] / entry["ours"]["single_ms"]
            q, r = entry["ours"][key], ref[key]
            ok = (speedup >= 2.0 and q >= r - 0.2) or (q >= r + 1.0 and speedup >= 0.5)
            lines.append(_line(
                f"{name} not dominated by {ref_name} ({key.replace('_db', '')})",
                ok,
                f"{speedup:.2f}x faster, {q:.1f} dB vs {r:.1f} dB",
                ">= 2x faster within 0.2 dB, or >= 1 dB better within 2x time",
            ))
    batching = report.get("batching", {})
    if batching:
        worse = []
        for name, b in batching.items():
            ratio = b.get("batched_over_single")
            if ratio is None:  # a report written before the ratio was paired
                ratio = b["batched_ms_per_clip"] / b["single_ms_same_inputs"]
            if ratio > BATCH_TOLERANCE:
                worse.append(f"{name} {ratio:.2f}x")
        lines.append(_line(
            f"B={next(iter(batching.values()))['batch']} per-clip time <= single-clip on the same "
            "clips (1 thread; median of the passes' ratios)",
            not worse,
            f"{len(batching) - len(worse)}/{len(batching)} ok; worse: {', '.join(worse) or 'none'}",
            f"<= {BATCH_TOLERANCE:g}x single",
        ))
        lines.append(_near_linear_line(batching))
    for name in NEURAL:
        entry = acts.get(name)
        if entry:
            gains = entry["ours"]["si_sdr_gain_db"]
            reported = all(gains.get(_band_key(b)) is not None for b in BANDS_DB)
            shown = ", ".join(f"{b}: {v:+.1f}" for b, v in gains.items() if v is not None)
            lines.append(
                _line(f"{name}: SI-SDR gain reported on every band", reported, shown, "all 5 bands")
            )
    rn = acts.get("rnnoise")
    if rn:
        rtf = rn["ours"]["rtf"]
        lines.append(_line("rnnoise >= 10x real time", rtf <= 0.1, f"{1 / rtf:.1f}x real time",
                           ">= 10x"))
    return lines


def _near_linear_line(batching: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The 1 -> 2 thread target: each action's median over the passes in which this machine's
    compute-only reference scaled (:data:`SCALED_PASS`; an action with fewer than half of
    ``thread_passes`` such passes fails as unmeasured), with the median over all passes beside
    it. A report written before the passes were gated uses all passes."""
    first = next(iter(batching.values()))
    gated = "thread_speedup_1_to_2_machine_scaled" in first
    needed = math.ceil(first.get("thread_passes_wanted", first.get("thread_passes", 1)) / 2)
    slow, unmeasured, counted, overall = [], [], {}, {}
    for name, b in batching.items():
        overall[name] = b["thread_speedup_1_to_2"]
        if gated and b["thread_speedup_scaled_passes"] < needed:
            unmeasured.append(f"{name} ({b['thread_speedup_scaled_passes']} passes)")
            continue
        value = b["thread_speedup_1_to_2_machine_scaled"] if gated else overall[name]
        counted[name] = value
        if value is None or value < NEAR_LINEAR:
            slow.append(f"{name} {value:.2f}x" if value is not None else name)
    how = (
        f"each action's median over the passes in which this machine's compute reference gave "
        f">= {SCALED_PASS:g}x: " + ", ".join(
            f"{n} {batching[n]['thread_speedup_scaled_passes']}/{batching[n]['thread_passes']}"
            for n in batching
        ) if gated else "each action's: the median of the paired passes"
    )
    valid = [v for v in counted.values() if v]
    return _line(
        "batched 1 -> 2 threads near-linear",
        not slow and not unmeasured,
        (f"median {statistics.median(valid):.2f}x" if valid else "no action measured")
        + f" ({how}); below: {', '.join(slow) or 'none'}"
        + (f"; too few passes with two threads to give: {', '.join(unmeasured)}"
           if unmeasured else "")
        + f"; over all passes: median {statistics.median(overall.values()):.2f}x, "
        + ", ".join(f"{n} {v:.2f}x" for n, v in overall.items())
        + _machine_context(batching, "machine_speedup_1_to_2", "compute only")
        + _machine_context(batching, "machine_vector_speedup_1_to_2", "FFT vector work")
        + _process_context(batching),
        f">= {NEAR_LINEAR:g}x",
    )


# --------------------------------------------------------------------------------------------
# the run


def run_bench(
    quick: bool = False,
    *,
    out: Path | str | None = DEFAULT_OUT,
    real_av_dir: Path | str | None = DEFAULT_REAL_AV,
    clip_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, write ``out`` (JSON) when given, return the report dict."""
    progress = progress or (lambda msg: None)
    settings = _settings(quick, Path(real_av_dir) if real_av_dir else None, clip_s)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        progress("inputs")
        clips = load_clips(settings)
        items = _noisy_inputs(clips)
        for it in items:
            it["input_si_sdr"] = si_sdr(it["noisy"], it["clean"])
        progress("denoisers")
        actions = _bench_denoisers(settings, items, progress)
        progress("timing and level")
        actions["speed_change"] = _bench_speed(settings, clips, progress)
        actions["pitch_change"] = _bench_pitch(settings, clips, progress)
        actions["volume_adjust"] = _bench_volume(settings, clips, progress)
        actions["fill_blanks"] = _bench_fill(settings, clips, progress)
        actions["time_shift"] = _bench_time_shift(settings, clips, progress)
        progress("batching")
        batching = _bench_batching(settings, items, progress)
        for name, b in batching.items():
            actions[name]["ours"].update(b)
        for name in NEURAL:
            actions[name]["ours"]["batched"] = "not batched: a loop over items (single-stream C)"
    finally:
        torch.set_num_threads(threads_before)
    report: dict[str, Any] = {
        "meta": {
            "sample_rate": SR,
            "clip_s": settings.clip_s,
            "quick": settings.quick,
            "torch_threads": 1,
            "batch": settings.batch,
            "repeats": settings.repeats,
            "bands_db": list(BANDS_DB),
            "noise": "white",
            "clips": [{"name": c.name, "source": c.source} for c in clips],
            "input_si_sdr_db": _by_band(items, [it["input_si_sdr"] for it in items]),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "loadavg": [round(v, 2) for v in os.getloadavg()],
            "machine": platform.machine(),
        },
        "actions": actions,
        "batching": batching,
    }
    report["targets"] = compute_targets(report)
    report["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False))
        tmp.replace(path)
    return report


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _row(label: str, values: dict[str, Any], bands: list[str]) -> str:
    return f"{label:34s} " + " ".join(f"{_fmt(values[b]):>7s}" for b in bands)


def format_report(report: dict[str, Any]) -> str:
    """The printed table: speed, then quality per band, then the other quality figures, then
    the targets."""
    meta, acts = report["meta"], report["actions"]
    clips = ", ".join(c["name"] for c in meta["clips"])
    lines = [
        f"actions bench: {meta['clip_s']:g} s mono {meta['sample_rate']} Hz clips, 1 torch "
        f"thread, B={meta['batch']}, {meta['repeats']} pass(es); clips: {clips}",
        f"loadavg {meta['loadavg']} on {meta['cpu_count']} cores; wall {meta['wall_s']} s",
        "",
        f"{'action / reference':34s} {'ms/clip':>8s} {'B ms/clip':>9s} {'2thr x':>6s} "
        f"{'2proc x':>7s} {'RTF':>7s} {'ours/ref':>8s}",
    ]
    for name, entry in acts.items():
        o = entry["ours"]
        lines.append(
            f"{name:34s} {_fmt(o['single_ms']):>8s} {_fmt(o.get('batched_ms_per_clip')):>9s} "
            f"{_fmt(o.get('thread_speedup_1_to_2')):>6s} "
            f"{_fmt(o.get('process_speedup_1_to_2')):>7s} {_fmt(o['rtf'], '.4f'):>7s}"
        )
        for ref_name, ref in entry["references"].items():
            lines.append(
                f"  <- {ref_name:30s} {_fmt(ref['single_ms']):>8s} {'':>9s} {'':>6s} {'':>7s} "
                f"{_fmt(ref['rtf'], '.4f'):>7s} {_fmt(ref['time_ratio_ours_over_ref'], '.3f'):>8s}"
            )
    bands = [_band_key(b) for b in meta["bands_db"]]
    header = f"{'SI-SDR (dB) by input SNR':34s} " + " ".join(f"{b + ' dB':>7s}" for b in bands)
    lines += ["", header, _row("noisy input", meta["input_si_sdr_db"], bands)]
    for name, entry in acts.items():
        if "si_sdr_db" not in entry["ours"]:
            continue
        lines.append(_row(name, entry["ours"]["si_sdr_db"], bands))
        speech = entry["ours"].get("si_sdr_gain_db_speech_clips")
        if entry["kind"] == "neural_denoiser" and speech:
            lines.append(_row("  (gain on speech clips only)", speech, bands))
        for ref_name, ref in entry["references"].items():
            lines.append(_row(f"  <- {ref_name}", ref["si_sdr_db"], bands))
    lines.append("")
    for name in ("pitch_change", "speed_change"):
        entry = acts[name]
        for label, q in [("ours", entry["ours"]), *entry["references"].items()]:
            snr = f", SNR vs exact {_fmt(q['tone_snr_db'], '.1f')} dB" if "tone_snr_db" in q else ""
            lines.append(
                f"{name:13s} {label:34s} tone {_fmt(q['tone_hz'], '.2f')} Hz (expected "
                f"{_fmt(q['expected_hz'], '.2f')}), pitch error "
                f"{_fmt(q['pitch_error_pct'], '.3f')} %, purity {_fmt(q['tone_purity_db'], '.1f')} dB{snr}, length error "
                f"{_fmt(q['length_error_ms'], '.1f')} ms, content end error "
                f"{_fmt(q['content_end_error_ms'], '.1f')} ms"
            )
    v = acts["volume_adjust"]
    for label, q in [("ours", v["ours"]), *v["references"].items()]:
        lines.append(
            f"volume_adjust {label:34s} loudness error mean "
            f"{_fmt(q['loudness_error_lu_mean'], '.3f')} / max "
            f"{_fmt(q['loudness_error_lu_max'], '.3f')} LU, max true peak "
            f"{_fmt(q['max_true_peak_dbtp'])} dBTP, meter {_fmt(q['meter_ms'])} ms"
        )
    lines.append(
        f"volume_adjust meter vs pyloudnorm: max {v['ours']['meter_vs_pyloudnorm_lu_max']} LU "
        f"(DeMan filter), {v['ours']['meter_vs_pyloudnorm_default_filter_lu_max']} LU (default); "
        f"with limiting (-14 LUFS): ours {v['ours']['limited_single_ms']} ms, pyloudnorm "
        f"{v['references']['pyloudnorm']['limited_single_ms']} ms"
    )
    f = acts["fill_blanks"]["ours"]
    lines.append(
        f"fill_blanks   found {f['gaps_found']}/{f['gaps_injected']} dropouts, "
        f"{f['false_fills']} false fills, level error {_fmt(f['fill_level_error_db_mean'])} dB, "
        f"SNR in gaps {_fmt(f['gap_snr_db_mean'])} dB (0 before)"
    )
    shift = acts["time_shift"]["ours"]["abs_offset_error_ms"]
    lines.append(f"time_shift    |offset error| max {shift} ms")
    create = acts.get("deepfilternet", {}).get("ours", {}).get("model_create_ms")
    if create is not None:
        lines.append(f"deepfilternet df_create {create} ms per clip and channel (included above)")
    lines += ["", "targets:"]
    for t in report["targets"]:
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"  {verdict}  {t['target']}: {t['measured']} (target {t['threshold']})")
    return "\n".join(lines)


def main(
    quick: bool = False,
    out: Path | str | None = DEFAULT_OUT,
    real_av_dir: Path | str | None = DEFAULT_REAL_AV,
) -> int:
    """``python -m avalign bench``: run, print the table, write the JSON."""
    report = run_bench(
        quick, out=out, real_av_dir=real_av_dir, progress=lambda m: print(m, flush=True)
    )
    print(format_report(report))
    if out is not None:
        print(f"\nwrote {out}")
    return 0
