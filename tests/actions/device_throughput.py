"""Batched throughput of the batched actions (not a test; for a machine with a GPU and idle cores).

Per action, on 10 s mono 16 kHz speech-like clips with white noise: CPU single-clip and B=16
per-clip time on 1 thread, the B=16 speed-up from 1 to 2 and 4 threads, and CUDA per-clip time
at B=16 and B=64 (median of 5 after a warm-up, synchronised). Writes JSON to argv[1] or stdout.

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


def main() -> int:
    cuda = torch.cuda.is_available()
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
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            row[f"cpu_b16_ms_per_clip_{threads}t"] = round(_ms(fn, x16, 3) / 16, 3)
        torch.set_num_threads(1)
        one = row["cpu_b16_ms_per_clip_1t"]
        row["speedup_1_to_2"] = round(one / row["cpu_b16_ms_per_clip_2t"], 2)
        row["speedup_1_to_4"] = round(one / row["cpu_b16_ms_per_clip_4t"], 2)
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
