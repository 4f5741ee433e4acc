"""PNG figures of one clip, rendered server-side on matplotlib's Agg canvas (no pyplot state).

- spectrograms of the original and the aligned audio, on one shared dB scale, so removed noise
  shows as darker rather than as a re-normalised picture;
- the audio onset envelope against the visual motion onsets, and their cross-correlation, with
  the offset estimated by ``avalign.describe.sync`` for the original and for the aligned audio
  (recomputed from the media with the clip's own frame rate, frame size and speech band).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000  # model rate: what the scorer measured on
_DB_RANGE = 80.0


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def load_audio(path: Path, max_s: float) -> np.ndarray:
    """Mono 16 kHz samples of a media or audio file, first ``max_s`` seconds."""
    from avalign.media.decode import decode_audio

    track = decode_audio(path, sample_rate=RATE, mono=True)
    return track.samples[0, : int(max_s * RATE)].astype(np.float64)


def _spectrogram_db(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from avalign.describe.features import power_spectrogram

    power, freqs, times = power_spectrogram(np.nan_to_num(x), RATE, win_s=0.032, hop_s=0.008)
    return freqs, times, 10.0 * np.log10(power + 1e-12)


def spectrogram_png(before: np.ndarray, after: np.ndarray, which: str, title: str) -> bytes:
    """One panel (``which`` = "before" or "after"), scaled like the other one."""
    spectra = {"before": _spectrogram_db(before), "after": _spectrogram_db(after)}
    top = max(float(s[2].max()) for s in spectra.values())
    freqs, times, db = spectra[which]
    fig = _figure(7.2, 2.7)
    ax = fig.add_subplot(1, 1, 1)
    extent = (0.0, max(float(times[-1]) if times.size else 0.0, 1e-3), 0.0, float(freqs[-1]) / 1000.0)
    image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=top - _DB_RANGE, vmax=top,
                      cmap="magma", interpolation="nearest")
    ax.set_ylabel("kHz")
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    fig.tight_layout()
    return _png(fig)


@dataclass
class SyncCurves:
    grid_s: np.ndarray  # time of each envelope sample
    envelope: np.ndarray
    motion_onsets: np.ndarray
    lags_ms: np.ndarray
    corr: np.ndarray
    offset_ms: float | None
    confidence: float


def sync_curves(audio: np.ndarray, motion_grid: np.ndarray, band: tuple[float, float] | None) -> SyncCurves:
    """The scorer's own computation (onset envelope, motion onsets, cross-correlation, estimate)."""
    from avalign.describe.features import ENVELOPE_RATE, onset_envelope
    from avalign.describe.sync import estimate_offset, motion_onsets, xcorr_lags

    env = onset_envelope(audio, RATE, band_hz=band)
    n = min(env.size, motion_grid.size)
    env, motion = env[:n], motion_grid[:n]
    estimate = estimate_offset(env, motion)
    max_lag = int(min(ENVELOPE_RATE, max(n // 2 - 1, 0)))
    if max_lag >= 2:
        lags, corr = xcorr_lags(env, motion_onsets(motion), max_lag)
    else:
        lags, corr = np.zeros(0), np.zeros(0)
    return SyncCurves(np.arange(n) / ENVELOPE_RATE, env, motion_onsets(motion),
                      lags / ENVELOPE_RATE * 1000.0, corr, estimate.offset_ms, estimate.confidence)


def motion_grid(source: Path, *, frame_rate: float, frame_side: int, duration_s: float) -> np.ndarray:
    """Motion energy of the source's frames on the 100 Hz grid, like the scorer sees it."""
    from avalign.describe.features import motion_energy, resample_series
    from avalign.media.decode import decode_frames

    video = decode_frames(source, sample_fps=frame_rate, max_side=frame_side,
                          max_frames=int(duration_s * frame_rate) + 2)
    energy, times = motion_energy(video.frames, video.times_s)
    return resample_series(energy, times, duration_s)


def _std(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def _label(curves: SyncCurves) -> str:
    if curves.offset_ms is None:
        return f"cannot tell (confidence {curves.confidence:.2f})"
    return f"{curves.offset_ms:+.0f} ms (confidence {curves.confidence:.2f})"


def sync_png(before: SyncCurves, after: SyncCurves, *, title: str, traced: tuple[float | None, float | None]) -> bytes:
    """Onset envelope vs motion onsets (original, aligned) and the cross-correlation by lag."""
    fig = _figure(7.2, 6.4)
    axes = fig.subplots(3, 1)
    for ax, curves, name in ((axes[0], before, "original"), (axes[1], after, "aligned")):
        ax.plot(curves.grid_s, _std(curves.motion_onsets), color="tab:green", lw=0.9, label="motion onsets (video)")
        ax.plot(curves.grid_s, _std(curves.envelope), color="tab:purple", lw=0.9, alpha=0.8,
                label=f"onset envelope ({name} audio)")
        ax.set_ylabel("z-score")
        ax.set_title(f"{name} audio: estimated offset {_label(curves)}", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    axes[1].set_xlabel("time (s)")
    ax = axes[2]
    for curves, name, color in ((before, "original", "tab:gray"), (after, "aligned", "tab:blue")):
        if curves.corr.size:
            ax.plot(curves.lags_ms, curves.corr, color=color, lw=1.0, label=f"{name}")
        if curves.offset_ms is not None:
            ax.axvline(curves.offset_ms, color=color, ls="--", lw=1.0)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_xlabel("lag (ms, positive = audio late)")
    ax.set_ylabel("correlation")
    t_before, t_after = traced
    fmt = lambda v: "cannot tell" if v is None else f"{v:+.0f} ms"  # noqa: E731
    ax.set_title(f"cross-correlation; trace: before {fmt(t_before)}, after {fmt(t_after)}", fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)
