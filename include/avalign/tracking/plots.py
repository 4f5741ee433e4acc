"""Figures logged with a rebuild: score histograms and before/after spectrograms.

Why: a reviewer of a rebuild in MLflow should see at a glance whether the scores moved and what
an edit did to the sound. Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so
no global backend or figure registry is touched and nothing needs a display.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avalign.errors import ClipError

log = logging.getLogger(__name__)

SPECTROGRAM_RATE = 16000  # both sides are decoded at this rate, so the panels share axes
_DB_RANGE = 80.0


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def score_histogram_png(
    before: Sequence[float] | np.ndarray,
    after: Sequence[float] | np.ndarray,
    title: str,
    path: str | Path,
    *,
    bins: int = 20,
) -> Path:
    """Overlaid histograms of one score before and after editing (NaN / None are left out)."""
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for values, label, color in ((before, "before", "tab:gray"), (after, "after", "tab:blue")):
        data = _finite(values)
        mean = f", mean {data.mean():.3f}" if data.size else ""
        ax.hist(
            np.clip(data, 0.0, 1.0),
            bins=edges,
            alpha=0.55,
            color=color,
            label=f"{label} (n={data.size}{mean})",
        )
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("score")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def spectrogram_pair_png(
    audio_before: np.ndarray,
    audio_after: np.ndarray,
    sample_rate: int,
    title: str,
    path: str | Path,
) -> Path:
    """Spectrograms of the untouched and the edited audio, stacked on a shared dB scale.

    Audio is float (T,) or (C, T); channels are averaged. One colour scale for both panels, so
    removed noise shows as darker, not as a re-normalised picture.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    spectra = [_spectrogram_db(_mono(a), sample_rate) for a in (audio_before, audio_after)]
    top = max(float(s[2].max()) for s in spectra)
    fig = _figure(8.0, 5.4)
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    image = None
    for ax, (freqs, times, db), label in zip(axes, spectra, ("before", "after")):
        extent = (
            0.0,
            max(float(times[-1]) if times.size else 0.0, 1e-3),
            0.0,
            float(freqs[-1]) / 1000.0,
        )
        image = ax.imshow(
            db,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=top - _DB_RANGE,
            vmax=top,
            cmap="magma",
        )
        ax.set_ylabel(f"{label}\nkHz")
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title(title)
    fig.colorbar(image, ax=list(axes), label="dB")
    return _save(fig, path)


def clip_spectrograms(frame: Any, out_dir: str | Path, *, max_clips: int = 3) -> list[Path]:
    """Spectrogram pairs (source vs edited audio) of the improved clips that gained most.

    Reads ``source_uri`` and ``audio_uri`` of the results table through storage. A clip whose
    media cannot be read is skipped with a warning: figures are never worth failing a rebuild.
    """
    from avalign.data import storage
    from avalign.media.decode import decode_audio

    if max_clips <= 0 or frame is None or len(frame) == 0 or "audio_uri" not in frame.columns:
        return []
    rows = frame[(frame["outcome"] == "improved") & frame["audio_uri"].notna()].copy()
    if rows.empty:
        return []
    gain = rows["alignment_after"].astype(float) - rows["alignment_before"].astype(float)
    rows = rows.assign(_gain=gain.fillna(-math.inf)).sort_values(
        ["_gain", "clip_id"], ascending=[False, True]
    )
    out: list[Path] = []
    for row in rows.head(max_clips).itertuples(index=False):
        try:
            tracks = []
            for uri in (row.source_uri, row.audio_uri):
                with storage.local_copy(uri) as local:
                    tracks.append(decode_audio(local, sample_rate=SPECTROGRAM_RATE).samples)
        except ClipError as exc:
            log.warning("no spectrogram for %s: %s", row.clip_id, exc)
            continue
        title = f"{row.clip_id}: {row.actions or 'no actions'}"
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in str(row.clip_id))
        out.append(
            spectrogram_pair_png(
                tracks[0], tracks[1], SPECTROGRAM_RATE, title, Path(out_dir) / f"{name}.png"
            )
        )
    return out


def _mono(audio: np.ndarray) -> np.ndarray:
    data = np.asarray(audio, dtype=np.float64)
    if data.ndim == 2:
        data = data.mean(axis=0)
    if data.ndim != 1:
        raise ValueError(f"audio must be (T,) or (C, T), got shape {np.shape(audio)}")
    return np.nan_to_num(data)


def _spectrogram_db(samples: np.ndarray, sample_rate: int):
    from scipy.signal import spectrogram

    nperseg = min(512, max(16, samples.size))
    if samples.size < nperseg:
        samples = np.pad(samples, (0, nperseg - samples.size))
    freqs, times, power = spectrogram(
        samples, fs=sample_rate, nperseg=nperseg, noverlap=nperseg * 3 // 4
    )
    return freqs, times, 10.0 * np.log10(power + 1e-12)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return data[np.isfinite(data)]
