"""Device check (not collected by pytest): the learner on CUDA with autocast, against CPU.

    PYTHONPATH=include python3 tests/representation/device_check.py <features_dir> [epochs] [cpu_epochs]

Trains the same model on the same features on CPU (a few steps) and on CUDA (bf16 autocast), checks
that the first-step losses agree and that CUDA training learns (held-out metrics well above
chance), and prints per-epoch timings as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from avalign.representation.data import FeatureSet
from avalign.representation.evaluate import evaluate
from avalign.representation.model import ModelConfig
from avalign.representation.train import Tensors, TrainConfig, fit


def main(folder: str, epochs: int = 12, cpu_epochs: int = 0) -> dict:
    fs = FeatureSet.load(Path(folder))
    variant = fs.variants[-1]
    out: dict = {"n_train": len(fs.train_ids), "n_eval": len(fs.eval_ids), "variant": variant,
                 "cuda": torch.cuda.is_available(),
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    cfg = TrainConfig(epochs=1, batch_size=128, max_steps=2, device="cpu", num_threads=4)
    cpu = torch.device("cpu")
    tr = Tensors.of(fs.train_mel[variant], fs.train_motion, fs.train_semantic, cpu)
    res_cpu = fit(tr, ModelConfig(), cfg, seed=0, progress=False)
    out["cpu_first_loss"] = res_cpu.history[0]["loss"]
    if cpu_epochs:  # the same training on 2 CPU threads (run under taskset -c 0,1 for 2 cores)
        res = fit(tr, ModelConfig(), TrainConfig(epochs=cpu_epochs, device="cpu", num_threads=2), seed=0,
                  progress=False)
        out["cpu2_train_s"] = round(res.seconds, 2)
        out["cpu2_steps"] = res.steps
    if not torch.cuda.is_available():
        return out
    gpu = torch.device("cuda")
    tr_g = Tensors.of(fs.train_mel[variant], fs.train_motion, fs.train_semantic, gpu)
    ev_g = Tensors.of(fs.eval_mel, fs.eval_motion, fs.eval_semantic, gpu)
    res_fp32 = fit(tr_g, ModelConfig(), replace(cfg, device="cuda", amp=False), seed=0, progress=False)
    out["cuda_fp32_first_loss"] = res_fp32.history[0]["loss"]
    t0 = time.perf_counter()
    full = fit(tr_g, ModelConfig(), TrainConfig(epochs=epochs, device="cuda", amp=True), seed=0, held_out=ev_g,
               progress=False)
    torch.cuda.synchronize()
    out["cuda_amp_train_s"] = round(time.perf_counter() - t0, 2)
    out["cuda_amp_steps"] = full.steps
    out["cuda_amp_history"] = [{k: round(v, 4) for k, v in r.items()} for r in full.history]
    metrics, _ = evaluate(full.model, fs, ev_g, amp=True)
    out["cuda_amp_metrics"] = {k: round(v, 4) for k, v in metrics.items()}
    return out


if __name__ == "__main__":
    result = main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 12,
                  int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print("DEVICE_CHECK " + json.dumps(result))
