"""Downstream evaluation of a trained model on the clean held-out split.

Every model is evaluated on the same clips, windows, shifts and probe split, so the numbers of
different variants and seeds compare like for like:

- embeddings of the centre window (``window_s``) of each held-out clip, clean audio;
- linear probe (category, top-1) on the audio, the visual and the concatenated embeddings; the
  clips are split 50/50, stratified, with a fixed seed;
- retrieval both ways over all held-out clips (R@1, R@5);
- sync detection: each clip once in sync and once with its audio shifted by 200-700 ms (fixed per
  clip), score = cosine; AUROC, and accuracy at a threshold fitted on the probe-training half.

``calibration`` fits the [0, 1] score the exported ``av_scorer`` serves: a logistic map from the
cosine to P(matching, in-sync pair), fitted on the held-out pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avalign.representation import metrics as M
from avalign.representation.data import FeatureSet
from avalign.representation.model import AVModel
from avalign.representation.train import MIN_SHIFT_S, Tensors, autocast, windows

SHIFT_SEED = 1234
PROBE_SEED = 0


@dataclass
class Embeddings:
    audio: np.ndarray  # (M, D) centre windows, clean audio
    visual: np.ndarray  # (M, D)
    shifted_audio: np.ndarray  # (M, D) the same clips' audio shifted by ``shifts_s``
    shifts_s: np.ndarray  # (M,)


def eval_shifts(n: int, total_audio: int, audio_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre audio start and a fixed shifted start per held-out clip (both in audio frames)."""
    from avalign.representation import features as F

    a0 = (total_audio - audio_steps) // 2
    a0 -= a0 % 2  # on the video grid
    lo = int(round(MIN_SHIFT_S * F.AUDIO_RATE))
    hi = min(a0, total_audio - audio_steps - a0)
    if hi < lo:
        raise ValueError(f"held-out clips leave no room for a {MIN_SHIFT_S * 1000:.0f} ms shift of the window")
    rng = np.random.default_rng(SHIFT_SEED)
    mag = rng.integers(lo, hi + 1, size=n)
    sign = rng.choice([-1, 1], size=n)
    return np.full(n, a0), a0 + sign * mag


@torch.no_grad()
def embed(model: AVModel, data: Tensors, audio_starts: np.ndarray, video_starts: np.ndarray,
          batch: int = 256, amp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(audio, visual) unit embeddings of the given windows of every clip in ``data``."""
    model.eval()
    mc = model.cfg
    device = data.mel.device
    za, zv = [], []
    for s in range(0, len(data), batch):
        idx = torch.arange(s, min(s + batch, len(data)), device=device)
        a0 = torch.from_numpy(np.asarray(audio_starts[s:s + batch])).to(device)
        v0 = torch.from_numpy(np.asarray(video_starts[s:s + batch])).to(device)
        with autocast(device, amp):
            za.append(model.audio(windows(data.mel, idx, a0, mc.audio_steps)).float().cpu().numpy())
            zv.append(model.visual(windows(data.motion, idx, v0, mc.video_steps),
                                   data.semantic[idx]).float().cpu().numpy())
    return np.concatenate(za), np.concatenate(zv)


def held_out_embeddings(model: AVModel, data: Tensors, amp: bool = True) -> Embeddings:
    from avalign.representation import features as F

    mc = model.cfg
    total_audio = int(data.mel.shape[1])
    a0, shifted = eval_shifts(len(data), total_audio, mc.audio_steps)
    v0 = a0 // 2
    za, zv = embed(model, data, a0, v0, amp=amp)
    zs, _ = embed(model, data, shifted, v0, amp=amp)
    return Embeddings(za, zv, zs, (shifted - a0) / F.AUDIO_RATE)


def evaluate(model: AVModel, fs: FeatureSet, data: Tensors, amp: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details) on the held-out split; details carry what the plots need."""
    emb = held_out_embeddings(model, data, amp=amp)
    sim = emb.audio @ emb.visual.T
    metrics: dict[str, float] = {}
    metrics.update(M.retrieval(sim))
    labels = fs.eval_category
    train_idx, test_idx = M.probe_split(labels, 0.5, PROBE_SEED)
    details: dict[str, Any] = {"similarity": sim, "probe_test_idx": test_idx}
    if train_idx.size and test_idx.size and np.unique(labels[train_idx]).size > 1:
        for name, x in (("audio", emb.audio), ("visual", emb.visual),
                        ("joint", np.concatenate([emb.audio, emb.visual], axis=1))):
            probe = M.linear_probe(x[train_idx], labels[train_idx], x[test_idx], labels[test_idx],
                                   len(fs.categories))
            metrics[f"probe_{name}_top1"] = probe["top1"]
            details[f"confusion_{name}"] = probe["confusion"]
    pos = np.sum(emb.audio * emb.visual, axis=1)
    neg = np.sum(emb.shifted_audio * emb.visual, axis=1)
    calibrate = np.zeros(len(pos), dtype=bool)
    calibrate[train_idx] = True
    if not calibrate.any() or calibrate.all():
        calibrate = np.arange(len(pos)) % 2 == 0
    sync = M.sync_detection(pos, neg, calibrate)
    metrics.update({f"sync_{k}": v for k, v in sync.items() if k != "threshold"})
    details["sync_scores"] = {"in_sync": pos, "shifted": neg, "shifts_s": emb.shifts_s}
    return metrics, details


def calibration(model: AVModel, data: Tensors, amp: bool = True) -> dict[str, float]:
    """Logistic map cosine → [0, 1] fitted on held-out pairs.

    Positives: each clip's own audio, in sync. Negatives, as many: half the same clip shifted by
    200-700 ms, half another clip's audio (a fixed derangement). score = sigmoid(a * cos + b).
    """
    from sklearn.linear_model import LogisticRegression

    emb = held_out_embeddings(model, data, amp=amp)
    n = len(emb.audio)
    pos = np.sum(emb.audio * emb.visual, axis=1)
    shifted = np.sum(emb.shifted_audio * emb.visual, axis=1)
    other = np.roll(np.arange(n), 1 + n // 3)
    mismatched = np.sum(emb.audio[other] * emb.visual, axis=1)
    half = np.arange(n) % 2 == 0
    neg = np.where(half, shifted, mismatched)
    x = np.r_[pos, neg][:, None]
    y = np.r_[np.ones(n), np.zeros(n)]
    clf = LogisticRegression(C=10.0).fit(x, y)
    a, b = float(clf.coef_[0, 0]), float(clf.intercept_[0])
    p = 1 / (1 + np.exp(-(a * x[:, 0] + b)))
    return {"a": a, "b": b, "pos_cos_mean": float(pos.mean()), "neg_cos_mean": float(neg.mean()),
            "pos_score_mean": float(p[:n].mean()), "neg_score_mean": float(p[n:].mean())}
