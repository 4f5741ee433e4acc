"""Downstream metrics on frozen embeddings: pure functions of arrays, testable by hand.

- ``retrieval``: cross-modal recall@k from a similarity matrix whose diagonal holds the true pairs.
- ``linear_probe``: top-1 of a logistic regression trained on one part of the embeddings.
- ``sync_detection``: "is the audio shifted?" from the scores of in-sync and shifted pairs:
  AUROC, and accuracy at a threshold chosen on a separate calibration part.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def retrieval(similarity: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k both ways. ``similarity[i, j]`` = score of audio i against video j; pair i ↔ i is true.

    A→V: for audio query i, is video i among the k best columns? V→A: the same over rows. Ties
    count against the query (the true item must beat every other strictly to be rank 1).
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty square matrix, got {s.shape}")
    diag = np.diag(s)
    rank_a2v = (s >= diag[:, None]).sum(axis=1)  # 1 = best (the true item itself counts once)
    rank_v2a = (s >= diag[None, :]).sum(axis=0)
    out: dict[str, float] = {}
    for k in ks:
        out[f"a2v_r{k}"] = float(np.mean(rank_a2v <= k))
        out[f"v2a_r{k}"] = float(np.mean(rank_v2a <= k))
    out["a2v_median_rank"] = float(np.median(rank_a2v))
    out["v2a_median_rank"] = float(np.median(rank_v2a))
    return out


def probe_split(labels: np.ndarray, test_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified indices (train, test) among the labelled items (label >= 0). Fixed by ``seed``,
    so every variant and seed is probed on the same clips."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(idx.size * test_fraction))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 n_classes: int) -> dict[str, Any]:
    """Top-1 of a standardised logistic regression on frozen features, with its confusion matrix."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, max_iter=3000)
    clf.fit(scaler.transform(x_train), y_train)
    pred = clf.predict(scaler.transform(x_test))
    return {"top1": float(np.mean(pred == y_test)),
            "confusion": confusion_matrix(y_test, pred, labels=list(range(n_classes))).tolist()}


def sync_detection(in_sync: np.ndarray, shifted: np.ndarray, calibrate: np.ndarray | None = None) -> dict[str, float]:
    """Detect shifted pairs from scores (higher = more in sync).

    ``in_sync[i]`` and ``shifted[i]`` are the scores of clip i unshifted and shifted. AUROC uses all
    pairs. Accuracy uses a threshold fitted (best accuracy) on the clips flagged in ``calibrate``
    and is measured on the others; without ``calibrate`` it is fitted and measured on all clips.
    """
    from sklearn.metrics import roc_auc_score

    pos = np.asarray(in_sync, dtype=np.float64)
    neg = np.asarray(shifted, dtype=np.float64)
    labels = np.r_[np.zeros(pos.size), np.ones(neg.size)]  # 1 = shifted
    scores = -np.r_[pos, neg]
    cal = np.ones(pos.size, dtype=bool) if calibrate is None else np.asarray(calibrate, dtype=bool)
    test = ~cal if calibrate is not None else cal
    cand = np.unique(np.r_[pos[cal], neg[cal]])
    acc = [(np.mean(pos[cal] > t) + np.mean(neg[cal] <= t)) / 2 for t in cand]
    threshold = float(cand[int(np.argmax(acc))]) if cand.size else 0.0
    accuracy = (np.mean(pos[test] > threshold) + np.mean(neg[test] <= threshold)) / 2
    return {"auroc": float(roc_auc_score(labels, scores)), "accuracy": float(accuracy), "threshold": threshold,
            "margin": float(np.mean(pos - neg))}


def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}
