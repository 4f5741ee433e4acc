"""The AV representation learner: two compact encoders into one embedding space.

- ``AudioEncoder``: log-mel window (40 bands x 50 Hz) → 1-D CNN over time (mel bands as channels),
  down to 12.5 Hz → flattened → MLP → unit vector. Flattening (not pooling) keeps *when* things
  happen inside the window, which is what lets the model tell a shifted soundtrack from a
  synchronous one.
- ``VisualEncoder``: per-step frame-difference descriptors (25 Hz) → the same kind of 1-D CNN,
  plus the frozen EfficientNet-Lite0 clip vector through a linear layer → MLP → unit vector.

Both towers are small (0.95 M parameters together, most of them in the two MLP heads) so that a few thousand clips train in minutes
on 2 CPU cores; nothing here is CPU-specific (``.to(device)`` and autocast work on CUDA).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avalign.representation import features as F


@dataclass(frozen=True)
class ModelConfig:
    window_s: float = 1.6  # seconds of audio and video per embedding
    width: int = 64  # CNN channels
    embed_dim: int = 128
    semantic_dim: int = 64  # projected EfficientNet features
    dropout: float = 0.1

    @property
    def audio_steps(self) -> int:
        return int(round(self.window_s * F.AUDIO_RATE))

    @property
    def video_steps(self) -> int:
        return int(round(self.window_s * F.VIDEO_RATE))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _block(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2), nn.BatchNorm1d(c_out), nn.GELU())


def _head(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, 256), nn.GELU(), nn.Linear(256, d_out))


class AudioEncoder(nn.Module):
    """(B, Ta, N_MELS) log-mel → (B, D) unit vectors."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.width
        self.norm = nn.BatchNorm1d(F.N_MELS)
        self.net = nn.Sequential(_block(F.N_MELS, w, 5), _block(w, w, 5, 2), _block(w, w, 5, 2), _block(w, w, 3))
        steps = (cfg.audio_steps + 3) // 4
        self.head = _head(w * steps, cfg.embed_dim, cfg.dropout)

    def forward(self, mel: Tensor) -> Tensor:
        h = self.net(self.norm(mel.transpose(1, 2)))
        return nn.functional.normalize(self.head(h.flatten(1)).float(), dim=-1)


class VisualEncoder(nn.Module):
    """(B, Tv, MOTION_DIM) motion descriptors + (B, SEMANTIC_DIM) frozen features → (B, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.width
        self.norm = nn.BatchNorm1d(F.MOTION_DIM)
        self.net = nn.Sequential(_block(F.MOTION_DIM, w, 5), _block(w, w, 5, 2), _block(w, w, 3))
        steps = (cfg.video_steps + 1) // 2
        self.semantic = nn.Sequential(nn.LayerNorm(F.SEMANTIC_DIM), nn.Linear(F.SEMANTIC_DIM, cfg.semantic_dim), nn.GELU())
        self.head = _head(w * steps + cfg.semantic_dim, cfg.embed_dim, cfg.dropout)

    def forward(self, motion: Tensor, semantic: Tensor) -> Tensor:
        h = self.net(self.norm(motion.transpose(1, 2)))
        z = torch.cat([h.flatten(1), self.semantic(semantic)], dim=1)
        return nn.functional.normalize(self.head(z).float(), dim=-1)


class AVModel(nn.Module):
    """Both towers and a learnable temperature for the contrastive logits."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.audio = AudioEncoder(self.cfg)
        self.visual = VisualEncoder(self.cfg)
        self.log_temp = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(0.1)))))

    @property
    def temperature(self) -> Tensor:
        return self.log_temp.exp().clamp(0.01, 1.0)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save(model: AVModel, path, extra: dict[str, Any] | None = None) -> None:
    """Weights + config in one file (``torch.load(weights_only=True)`` can read it back)."""
    torch.save({"config": model.cfg.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load(path, map_location: str = "cpu") -> tuple[AVModel, dict[str, Any]]:
    blob = torch.load(path, map_location=map_location, weights_only=True)
    model = AVModel(ModelConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), dict(blob.get("extra") or {})
