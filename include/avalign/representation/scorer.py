"""The learned alternative to ``av_scorer``: how well a clip's audio fits its picture, as judged by
the AV representation trained on aligned data.

- ``ALIGNMENT`` = sigmoid(a · cos + b), where cos is the mean cosine between the audio and visual
  embeddings over windows of ``window_s`` sliding by half a window across the clip, and (a, b) were
  fitted on held-out pairs (``avalign.representation.evaluate.calibration``): in-sync matching
  pairs against shifted or mismatched ones. No text model is needed.
- ``SYNC`` and the ``offset_ms`` / ``offset_confidence`` in ``DETAIL`` are the same weights-free
  onset-vs-motion estimate the default scorer uses (``avalign.describe.sync``): the rule planner
  reads them to plan time shifts, and the loop's thresholds are calibrated on them.
- ``DETAIL`` also carries ``learned_offset_ms``: the audio shift (±600 ms) at which the model finds
  the centre window most in sync; informative only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avalign.representation import features as F
from avalign.representation.model import load
from avalign.representation.train import windows

MAX_LEARNED_SHIFT_S = 0.6


class LearnedScorer:
    def __init__(self, model_path: str, *, num_threads: int = 1) -> None:
        torch.set_num_threads(num_threads)
        self.model, self.extra = load(model_path)
        cal = self.extra.get("calibration") or {}
        self.a, self.b = float(cal.get("a", 8.0)), float(cal.get("b", -2.0))
        self.semantic = F.SemanticEncoder(num_threads=num_threads)

    def calibrated(self, cosine: float) -> float:
        return float(1.0 / (1.0 + np.exp(-(self.a * cosine + self.b))))

    @torch.no_grad()
    def embeddings(self, audio: np.ndarray, frames: np.ndarray, fps: float, times_s: np.ndarray | None = None
                   ) -> dict[str, Any]:
        """Per-window embeddings of one clip, and the centre window's cosine at each audio shift."""
        cfg = self.model.cfg
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = x.size / F.SAMPLE_RATE
        tv = max(cfg.video_steps, int(round(duration * F.VIDEO_RATE)))
        ta = 2 * tv
        mel = F.log_mel(x, ta)  # zero audio past the end reads as the log floor
        motion = F.motion_descriptors(frames, times_s, fps=fps, n_steps=tv)
        sem = torch.from_numpy(self.semantic(frames))[None]
        mel_t, motion_t = torch.from_numpy(mel)[None], torch.from_numpy(motion)[None]
        hop = max(1, cfg.video_steps // 2)
        starts = list(range(0, tv - cfg.video_steps + 1, hop))
        if starts[-1] != tv - cfg.video_steps:
            starts.append(tv - cfg.video_steps)
        v0 = torch.tensor(starts)
        idx = torch.zeros_like(v0)
        za = self.model.audio(windows(mel_t, idx, 2 * v0, cfg.audio_steps))
        zv = self.model.visual(windows(motion_t, idx, v0, cfg.video_steps), sem.expand(len(starts), -1))
        cos = (za * zv).sum(dim=1).numpy()
        centre = (tv - cfg.video_steps) // 2
        a_c = 2 * centre
        max_shift = int(MAX_LEARNED_SHIFT_S * F.AUDIO_RATE)
        shifts = np.arange(max(-max_shift, -a_c), min(max_shift, ta - cfg.audio_steps - a_c) + 1)
        zs = self.model.audio(windows(mel_t, torch.zeros(len(shifts), dtype=torch.long),
                                      torch.from_numpy(a_c + shifts), cfg.audio_steps))
        zc = self.model.visual(windows(motion_t, torch.zeros(1, dtype=torch.long), torch.tensor([centre]),
                                       cfg.video_steps), sem)
        shift_cos = (zs @ zc[0]).numpy()
        return {"window_cosines": cos, "shifts_ms": shifts * 1000.0 / F.AUDIO_RATE, "shift_cosines": shift_cos}

    def score(self, audio: np.ndarray, frames: np.ndarray, fps: float, evidence: dict[str, Any] | None = None
              ) -> tuple[float, float, dict[str, Any]]:
        """(alignment, sync, detail) for one clip: 16 kHz mono audio, (N, H, W, 3) uint8 frames."""
        from avalign.describe.scorer import scorer_inputs
        from avalign.describe.sync import estimate_fused, sync_score

        evidence = evidence or {}
        x, frames, times = scorer_inputs(audio, frames, fps, evidence)
        emb = self.embeddings(x, frames, fps, times)
        cosine = float(np.mean(emb["window_cosines"]))
        estimate = estimate_fused(x, F.SAMPLE_RATE, frames, times, speech_s=float(evidence.get("speech_s") or 0.0))
        sync = sync_score(estimate)
        best = int(np.argmax(emb["shift_cosines"]))
        detail = {
            "scorer": "av_representation",
            "cosine": round(cosine, 4),
            "window_cosines": [round(float(c), 4) for c in emb["window_cosines"]],
            "calibration": {"a": round(self.a, 4), "b": round(self.b, 4)},
            "learned_offset_ms": round(float(emb["shifts_ms"][best]), 1),
            "sync": round(sync, 4),
            "offset_ms": None if estimate.offset_ms is None else round(estimate.offset_ms, 2),
            "offset_confidence": round(estimate.confidence, 4),
            "offset_method": estimate.method,
            "model": {k: self.extra.get(k) for k in ("variant", "seed", "mlflow_run_id", "dataset_version")},
        }
        return self.calibrated(cosine), float(sync), detail
