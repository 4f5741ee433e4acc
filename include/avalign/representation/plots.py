"""PNG plots a reviewer opens in MLflow: loss curves, retrieval examples, confusion matrix, and
the variant comparison. Matplotlib (Agg) is imported inside each function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"raw": "#c0392b", "aligned": "#2471a3", "clean": "#27ae60"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(histories: dict[str, list[dict[str, float]]], path: Path, title: str = "contrastive loss") -> Path:
    """Training (solid) and held-out (dashed) loss per epoch, one colour per run label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in histories.items():
        if not rows:
            continue
        colour = COLOURS.get(label.split("/")[0])
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["loss"] for r in rows], "-", color=colour, label=f"{label} train", alpha=0.8)
        if "heldout_loss" in rows[0]:
            ax.plot(epochs, [r["heldout_loss"] for r in rows], "--", color=colour, label=f"{label} held-out",
                    alpha=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion(matrix: list[list[int]], categories: list[str], path: Path, title: str) -> Path:
    plt = _plt()
    cm = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(categories)), categories, fontsize=8)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def retrieval_examples(similarity: np.ndarray, thumbs: np.ndarray, labels: np.ndarray, categories: list[str],
                       path: Path, *, n_queries: int = 6, k: int = 5, seed: int = 0) -> Path:
    """Audio→video: per query row, the query clip's frame, then the top-k videos by cosine.

    Frame borders: green = the query's own clip, orange = same category, red = other category.
    """
    plt = _plt()
    rng = np.random.default_rng(seed)
    n = similarity.shape[0]
    queries = rng.choice(n, size=min(n_queries, n), replace=False)
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.6 * (k + 1), 1.45 * len(queries)), squeeze=False)
    for r, q in enumerate(queries):
        order = np.argsort(-similarity[q])[:k]
        panels = [(q, None)] + [(int(j), float(similarity[q, j])) for j in order]
        for c, (j, score) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(thumbs[j])
            ax.set_xticks([])
            ax.set_yticks([])
            name = categories[labels[j]] if labels[j] >= 0 else "?"
            if score is None:
                ax.set_title(f"query: {name}", fontsize=6)
                colour = "black"
            else:
                colour = "green" if j == q else ("orange" if labels[j] == labels[q] else "red")
                ax.set_title(f"{score:.2f} {name}", fontsize=6, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5)
    fig.suptitle("audio → video retrieval (green: own clip, orange: same category)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def comparison_bars(summary: dict[str, dict[str, dict[str, float]]], metrics: list[str], path: Path) -> Path:
    """Mean ± std per variant for each metric (values in [0, 1])."""
    plt = _plt()
    variants = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(metrics)), 4))
    width = 0.8 / max(1, len(variants))
    x = np.arange(len(metrics))
    for i, v in enumerate(variants):
        means = [summary[v].get(m, {}).get("mean", np.nan) for m in metrics]
        stds = [summary[v].get(m, {}).get("std", 0.0) for m in metrics]
        ax.bar(x + i * width, means, width, yerr=stds, capsize=3, label=v, color=COLOURS.get(v))
    ax.set_xticks(x + width * (len(variants) - 1) / 2, metrics, rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("held-out metrics, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sync_histogram(scores: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(-1, 1, 41)
    ax.hist(scores["in_sync"], bins=bins, alpha=0.6, label="in sync")
    ax.hist(scores["shifted"], bins=bins, alpha=0.6, label="shifted 200-700 ms")
    ax.set_xlabel("cosine(audio, video)")
    ax.legend()
    ax.set_title("sync detection on held-out clips")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
