"""Batched throughput of the batched actions (not a test; for a machine with a GPU and idle cores).

Per action, on 10 s mono 16 kHz speech-like clips with white noise: CPU single-clip and B=16
per-clip time on 1 thread, the B=16 speed-up from 1 to 2 and 4 threads, and CUDA per-clip time
at B=16 and B=64 (median of 5 after a warm-up, synchronised). Beside each 1-, 2- and 4-thread
batched call the bench's compute-only kernel (``avalign.bench._machine_reference``) runs through
the same thread pool, so each action's speed-up sits next to what the host's threads gave at that
moment. Writes JSON to argv[1] or stdout.

PYTHONPATH=include python tests/actions/device_throughput.py [out.json]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_actions import SR, _clip

from avalign.actions import functional as AF
from avalign.bench import _machine_reference

ACTIONS = {
    "spectral_subtraction": lambda x: AF.spectral_subtraction(x, SR),
    "wiener_filter": lambda x: AF.wiener_filter(x, SR),
    "wavelet_denoise": lambda x: AF.wavelet_denoise(x, SR),
    "spectral_gating": lambda x: AF.spectral_gating(x, SR),
    "speed_change": lambda x: AF.speed_change(x, SR, 1.1),
    "pitch_change": lambda x: AF.pitch_change(x, SR, 2.0),
    "volume_adjust": lambda x: AF.volume_adjust(x, SR, -23.0),
    "fill_blanks": lambda x: AF.fill_blanks(x, SR)[0],
    "time_shift": lambda x: AF.time_shift(x, SR, 123.0),
    "suppress_event": lambda x: AF.suppress_event(x, SR, 3.0, 3.5)[0],
}


def _ms(fn, x: torch.Tensor, repeats: int) -> float:
    def sync() -> None:
        if x.is_cuda:
            torch.cuda.synchronize()

    fn(x)
    sync()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        sync()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000.0


THREADS = (1, 2, 4)


def _threads(fn, x: torch.Tensor, machine, repeats: int) -> dict[str, float]:
    """Per-clip ms of ``fn(x)`` at each thread count and the machine reference's speed-ups,
    the thread counts alternating so that every one sees the same host load."""
    for threads in THREADS:  # warm-up, the pools included
        torch.set_num_threads(threads)
        fn(x)
        machine(threads)
    ours: dict[int, list[float]] = {t: [] for t in THREADS}
    ref: dict[int, list[float]] = {t: [] for t in THREADS}
    for _ in range(repeats):
        for threads in THREADS:
            torch.set_num_threads(threads)
            fn(x)  # untimed: the first call after a switch finds the other cores idle
            start = time.perf_counter()
            fn(x)
            ours[threads].append(time.perf_counter() - start)
            ref[threads].append(machine(threads))
    torch.set_num_threads(1)
    row: dict[str, float] = {}
    for threads in THREADS:
        row[f"cpu_b16_ms_per_clip_{threads}t"] = round(
            statistics.median(ours[threads]) * 1000.0 / x.shape[0], 3
        )
    for threads in THREADS[1:]:
        row[f"speedup_1_to_{threads}"] = round(
            statistics.median(ours[1]) / statistics.median(ours[threads]), 2
        )
        row[f"machine_speedup_1_to_{threads}"] = round(
            statistics.median(ref[1]) / statistics.median(ref[threads]), 2
        )
    return row


def main() -> int:
    cuda = torch.cuda.is_available()
    machine = _machine_reference()
    x64 = torch.stack([_clip(10.0, i) for i in range(64)])  # (64, 1, 160000)
    x16 = x64[:16].contiguous()
    report: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_count": torch.get_num_threads(),
        "actions": {},
    }
    for name, fn in ACTIONS.items():
        row: dict = {}
        torch.set_num_threads(1)
        row["cpu_single_ms"] = round(_ms(fn, x16[:1], 5), 3)
        row.update(_threads(fn, x16, machine, 5))
        if cuda:
            row["cuda_b16_ms_per_clip"] = round(_ms(fn, x16.cuda(), 5) / 16, 3)
            row["cuda_b64_ms_per_clip"] = round(_ms(fn, x64.cuda(), 5) / 64, 3)
            row["cuda_b64_clips_per_s"] = round(1000.0 / row["cuda_b64_ms_per_clip"], 1)
        report["actions"][name] = row
        print(name, row, flush=True)
    text = json.dumps(report, indent=2)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
