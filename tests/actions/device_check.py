"""CUDA check for the actions (not a test; needs a GPU): CPU vs CUDA results, batch == single.

PYTHONPATH=include python tests/actions/device_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_actions import SR, _clip

from avalign.actions import apply_plan
from avalign.actions import functional as AF

CASES = {
    "spectral_subtraction": lambda x, p: AF.spectral_subtraction(x, SR, p["a"]),
    "wiener_filter": lambda x, p: AF.wiener_filter(x, SR, p["alpha"]),
    "wavelet_denoise": lambda x, p: AF.wavelet_denoise(x, SR, p["scale"]),
    "spectral_gating": lambda x, p: AF.spectral_gating(x, SR, p["thr"]),
    "speed_change": lambda x, p: AF.speed_change(x, SR, p["factor"]),
    "pitch_change": lambda x, p: AF.pitch_change(x, SR, p["semi"]),
    "volume_adjust": lambda x, p: AF.volume_adjust(x, SR, p["lufs"]),
    "fill_blanks": lambda x, p: AF.fill_blanks(x, SR)[0],
    "time_shift": lambda x, p: AF.time_shift(x, SR, p["shift"]),
    "suppress_event": lambda x, p: AF.suppress_event(x, SR, p["ev_start"], p["ev_end"], p["ev_strength"])[0],
}
PARAMS = {
    "a": [1.0, 2.0, 3.0, 4.0],
    "alpha": [0.9, 0.95, 0.98, 0.9],
    "scale": [0.5, 1.0, 2.0, 1.0],
    "thr": [3.0, 6.0, 9.0, 6.0],
    "factor": [1.1, 0.9, 1.0, 1.1],
    "semi": [2.0, -3.0, 0.0, 2.0],
    "lufs": [-23.0, -12.0, -30.0, -23.0],
    "shift": [10.0, -25.5, 0.0, 300.0],
    "ev_start": [0.5, 1.0, 1.2, 0.3],
    "ev_end": [1.0, 1.6, 2.0, 0.9],
    "ev_strength": [1.0, 0.5, 1.0, 0.8],
}


def main() -> int:
    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.__version__, torch.cuda.get_device_name(0))
    x = torch.stack(
        [torch.cat([_clip(3.0, i), 0.5 * _clip(3.0, i + 10)]) for i in range(4)]
    )  # (4, 2, T)
    failures = 0
    print(
        f"{'action':22s} {'max|cpu-cuda|':>14s} {'cpu~cuda SNR dB':>16s} "
        f"{'max|batch-single| cuda':>24s}"
    )
    for name, fn in CASES.items():
        cpu = fn(x, PARAMS)
        gpu_batch = fn(x.cuda(), PARAMS)
        singles = torch.cat(
            [fn(x[i : i + 1].cuda(), {k: [v[i]] for k, v in PARAMS.items()}) for i in range(4)]
        )
        d_dev = float((cpu - gpu_batch.cpu()).abs().max())
        d_batch = float((gpu_batch - singles).abs().max())
        # thresholds (gating masks, phase wrapping) may flip on a few bins between devices, so the
        # devices are compared by SNR; batch vs single on one device must agree to float rounding
        err = (cpu - gpu_batch.cpu()).double().pow(2).sum()
        snr = float(10 * torch.log10(cpu.double().pow(2).sum() / err)) if err > 0 else float("inf")
        ok = (
            gpu_batch.is_cuda
            and bool(torch.isfinite(gpu_batch).all())
            and snr > 40
            and d_batch < 1e-5
        )
        failures += not ok
        print(f"{name:22s} {d_dev:14.2e} {snr:16.1f} {d_batch:24.2e} {'ok' if ok else 'FAIL'}")
    result = apply_plan(
        x[0].cuda(),
        SR,
        [{"action": "wiener_filter"}, {"action": "pitch_change", "params": {"semitones": 1}}],
    )
    print("apply_plan on cuda:", result.audio.device, tuple(result.audio.shape), result.audio.dtype)
    return failures


if __name__ == "__main__":
    sys.exit(main())
