"""Contrastive AV training: InfoNCE over the clips of a batch, plus time-shifted audio of the same
clip as hard negatives, so the model has to learn *when* as well as *what*.

For each clip of a batch a window of ``window_s`` seconds is drawn at a random start; its audio
at the same start is the positive. ``hard_negatives`` more audio windows of the same clip, shifted
by 200-800 ms (within the clip), join the other clips' audio as negatives of the video→audio
direction. The loss is the mean of video→audio and audio→video cross-entropy at a learnt
temperature.

Device-agnostic: ``device="auto"`` picks CUDA when present; on CUDA the forward pass runs under
autocast (bfloat16 where supported, else float16 with a gradient scaler).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from avalign.representation import features as F
from avalign.representation.model import AVModel, ModelConfig

MIN_SHIFT_S = 0.2  # a shift the sync task calls "shifted" (>= 200 ms)
MAX_SHIFT_S = 0.8


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    hard_negatives: int = 2
    warmup_frac: float = 0.05
    max_steps: int | None = None  # stop early (tests)
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # autocast on CUDA
    num_threads: int | None = 2  # CPU threads for torch (the shared machine has 2 cores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when asked and supported, float16 otherwise; off on CPU."""
    if device.type != "cuda" or not enabled:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


@dataclass
class Tensors:
    """A FeatureSet's arrays for one variant, on the training device."""

    mel: Tensor  # (N, Ta, N_MELS)
    motion: Tensor  # (N, Tv, MOTION_DIM)
    semantic: Tensor  # (N, SEMANTIC_DIM)

    @classmethod
    def of(cls, mel: np.ndarray, motion: np.ndarray, semantic: np.ndarray, device: torch.device) -> "Tensors":
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        return cls(as_t(mel), as_t(motion), as_t(semantic))

    def __len__(self) -> int:
        return int(self.mel.shape[0])


def windows(x: Tensor, idx: Tensor, start: Tensor, length: int) -> Tensor:
    """(B, length, C) slices ``x[idx[b], start[b]:start[b]+length]``."""
    steps = start[:, None] + torch.arange(length, device=x.device)[None, :]
    return x[idx[:, None], steps]


def shifted_starts(v0: np.ndarray, cfg: ModelConfig, total_audio: int, k: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Audio starts shifted by 200-800 ms from ``2 * v0`` and kept inside the clip; (starts, valid)."""
    a0 = 2 * v0  # the audio grid runs at twice the video grid
    lo, hi = int(round(MIN_SHIFT_S * F.AUDIO_RATE)), int(round(MAX_SHIFT_S * F.AUDIO_RATE))
    room = total_audio - cfg.audio_steps
    starts = np.zeros((v0.size, k), dtype=np.int64)
    valid = np.zeros((v0.size, k), dtype=bool)
    for i, a in enumerate(a0):
        options = np.r_[np.arange(a - hi, a - lo + 1), np.arange(a + lo, a + hi + 1)]
        options = options[(options >= 0) & (options <= room)]
        if options.size:
            starts[i] = rng.choice(options, size=k)
            valid[i] = True
    return starts, valid


def contrastive_loss(model: AVModel, za: Tensor, zv: Tensor, zneg: Tensor | None, neg_valid: Tensor | None
                     ) -> tuple[Tensor, dict[str, float]]:
    """Symmetric InfoNCE; video→audio also sees the shifted audio of its own clip."""
    temp = model.temperature
    logits = zv @ za.T / temp  # (B, B): video i vs audio j
    target = torch.arange(za.shape[0], device=za.device)
    logits_va = logits
    if zneg is not None:
        hard = torch.einsum("bd,bkd->bk", zv, zneg) / temp
        hard = hard.masked_fill(~neg_valid, float("-inf"))
        logits_va = torch.cat([logits, hard], dim=1)
    loss_va = nn.functional.cross_entropy(logits_va, target)
    loss_av = nn.functional.cross_entropy(logits.T, target)
    loss = 0.5 * (loss_va + loss_av)
    with torch.no_grad():
        stats = {"loss": float(loss), "loss_v2a": float(loss_va), "loss_a2v": float(loss_av),
                 "batch_top1": float((logits.argmax(dim=1) == target).float().mean())}
        if zneg is not None:
            pos = logits.diagonal()
            beats = (pos[:, None] > hard) | ~neg_valid
            stats["sync_acc"] = float(beats.all(dim=1).float().mean())
    return loss, stats


@dataclass
class TrainResult:
    model: AVModel
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"


def fit(train: Tensors, model_cfg: ModelConfig, cfg: TrainConfig, *, seed: int,
        held_out: Tensors | None = None, progress: bool = True, desc: str = "train",
        log: Callable[[str], None] | None = None) -> TrainResult:
    """Train one model from scratch on ``train``; returns it with per-epoch losses.

    When ``held_out`` is given, each epoch also reports the same loss on it (fixed centre windows
    and shifts), so the curves show over- or under-fitting.
    """
    from tqdm import tqdm

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = train.mel.device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AVModel(model_cfg).to(device)
    n = len(train)
    total_audio, total_video = int(train.mel.shape[1]), int(train.motion.shape[1])
    if total_video < model_cfg.video_steps or total_audio < model_cfg.audio_steps:
        raise ValueError(f"clips ({total_video} video steps) are shorter than the window ({model_cfg.video_steps})")
    batch = min(cfg.batch_size, n)
    per_epoch = max(1, n // batch)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(per_epoch * cfg.epochs, cfg.max_steps)
    params_decay = [p for name, p in model.named_parameters() if p.ndim > 1]
    params_other = [p for name, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": params_decay, "weight_decay": cfg.weight_decay},
                             {"params": params_other, "weight_decay": 0.0}], lr=cfg.lr)
    warm = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))))
    use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    result = TrainResult(model=model, device=str(device))
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=True)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(n)
        rows: list[dict[str, float]] = []
        for b in range(per_epoch):
            if step >= total:
                break
            idx_np = order[b * batch:(b + 1) * batch]
            v0 = rng.integers(0, total_video - model_cfg.video_steps + 1, size=idx_np.size)
            neg_starts, neg_valid = shifted_starts(v0, model_cfg, total_audio, cfg.hard_negatives, rng)
            idx = torch.from_numpy(idx_np).to(device)
            v0_t = torch.from_numpy(v0).to(device)
            with autocast(device, cfg.amp):
                mel = windows(train.mel, idx, 2 * v0_t, model_cfg.audio_steps)
                zneg, valid = None, None
                if cfg.hard_negatives > 0:
                    # positives and shifted negatives in one pass: one set of batch-norm statistics
                    k = cfg.hard_negatives
                    starts = torch.from_numpy(neg_starts.reshape(-1)).to(device)
                    mel = torch.cat([mel, windows(train.mel, idx.repeat_interleave(k), starts,
                                                  model_cfg.audio_steps)])
                    valid = torch.from_numpy(neg_valid).to(device)
                z_all = model.audio(mel)
                za = z_all[:idx.numel()]
                if cfg.hard_negatives > 0:
                    zneg = z_all[idx.numel():].reshape(idx.numel(), cfg.hard_negatives, -1)
                zv = model.visual(windows(train.motion, idx, v0_t, model_cfg.video_steps), train.semantic[idx])
                loss, stats = contrastive_loss(model, za.float(), zv.float(),
                                               None if zneg is None else zneg.float(), valid)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            rows.append(stats)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{stats['loss']:.3f}")
        if not rows:
            break
        summary = {k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[0]}
        summary.update(epoch=epoch, steps=step, seconds=round(time.perf_counter() - t0, 2),
                       temperature=float(model.temperature.detach()), lr=float(sched.get_last_lr()[0]))
        if held_out is not None:
            summary.update({f"heldout_{k}": v for k, v in held_out_loss(model, held_out, cfg).items()})
        result.history.append(summary)
        if log is not None:
            log(f"{desc} epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in summary.items()
                                                      if isinstance(v, float)))
    bar.close()
    result.seconds = time.perf_counter() - t0
    result.steps = step
    model.eval()
    return result


@torch.no_grad()
def held_out_loss(model: AVModel, data: Tensors, cfg: TrainConfig, batch: int = 256) -> dict[str, float]:
    """The training loss on fixed windows: centre windows, shifts drawn once with seed 0."""
    was_training = model.training
    model.eval()
    mc = model.cfg
    device = data.mel.device
    total_audio, total_video = int(data.mel.shape[1]), int(data.motion.shape[1])
    rng = np.random.default_rng(0)
    rows = []
    for s in range(0, len(data), batch):
        idx_np = np.arange(s, min(s + batch, len(data)))
        if idx_np.size < 2:
            continue
        v0 = np.full(idx_np.size, (total_video - mc.video_steps) // 2)
        neg_starts, neg_valid = shifted_starts(v0, mc, total_audio, max(1, cfg.hard_negatives), rng)
        idx = torch.from_numpy(idx_np).to(device)
        v0_t = torch.from_numpy(v0).to(device)
        k = neg_starts.shape[1]
        with autocast(device, cfg.amp):
            za = model.audio(windows(data.mel, idx, 2 * v0_t, mc.audio_steps))
            zv = model.visual(windows(data.motion, idx, v0_t, mc.video_steps), data.semantic[idx])
            zneg = model.audio(windows(data.mel, idx.repeat_interleave(k),
                                       torch.from_numpy(neg_starts.reshape(-1)).to(device),
                                       mc.audio_steps)).reshape(idx.numel(), k, -1)
        _, stats = contrastive_loss(model, za.float(), zv.float(), zneg.float(),
                                    torch.from_numpy(neg_valid).to(device))
        rows.append((idx_np.size, stats))
    if was_training:
        model.train()
    n = sum(w for w, _ in rows)
    return {k: float(sum(w * st[k] for w, st in rows) / n) for k in ("loss", "batch_top1", "sync_acc")}
