"""The bench's own batching measurement on another host (not a test; for a host with idle cores).

Runs ``avalign.bench._bench_batching`` (B = 16, 1 and 2 threads, the compute-only and FFT
vector references beside every call) on the bench's procedural noisy inputs and prints the
batching target lines exactly as ``make bench`` computes them, so a lent multi-core host gives
the same figures as this machine's ``make bench``.

The inputs need PyAV (the procedural generator); on a host without it, make them here first and
carry the file:

    PYTHONPATH=include .venv/bin/python tests/actions/device_batching.py --save-items X.npz
    PYTHONPATH=include python3 tests/actions/device_batching.py --items X.npz [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from avalign import bench


def _items() -> list[dict]:
    settings = bench._settings(False, None, None)  # procedural clips only
    return bench._noisy_inputs(bench.load_clips(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=Path, help="noisy inputs saved by --save-items")
    parser.add_argument("--save-items", type=Path, help="write the noisy inputs here and stop")
    parser.add_argument("--out", type=Path, help="write the batching figures and lines (JSON)")
    args = parser.parse_args(argv)
    if args.save_items:
        noisy = np.stack([it["noisy"] for it in _items()]).astype(np.float32)
        np.savez_compressed(args.save_items, noisy=noisy)
        print(f"saved {noisy.shape} to {args.save_items}")
        return 0
    if args.items:
        items = [{"noisy": row} for row in np.load(args.items)["noisy"]]
    else:
        items = _items()
    settings = bench._settings(False, None, None)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {len(items)} inputs, B = {settings.batch}",
          flush=True)
    batching = bench._bench_batching(settings, items, lambda msg: print(msg, flush=True))
    for name, row in batching.items():
        print(f"{name:22s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    lines = bench.compute_targets({"actions": {}, "batching": batching})
    for line in lines:
        print(f"{'PASS' if line['pass'] else 'FAIL'}  {line['target']}: {line['measured']} "
              f"(target {line['threshold']})")
    if args.out:
        args.out.write_text(json.dumps({"batching": batching, "targets": lines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
