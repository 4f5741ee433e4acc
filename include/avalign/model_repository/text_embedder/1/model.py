"""Triton python-backend model `text_embedder`: all-MiniLM-L6-v2 sentence embeddings."""

import sys
from pathlib import Path

# Outside an installed package (local serving), find avalign next to this repository.
_INCLUDE = Path(__file__).resolve().parents[4]
if (_INCLUDE / "avalign").is_dir() and str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from avalign.describe.text import TextEmbedder

        self.embedder = TextEmbedder()

    def execute(self, requests):
        # Embed every request's texts in one call: the dynamic batcher hands us several at once.
        texts, counts = [], []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            decoded = [r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r) for r in rows]
            texts.extend(decoded)
            counts.append(len(decoded))
        vectors = self.embedder.embed(texts)
        responses, start = [], 0
        for n in counts:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", vectors[start:start + n])]))
            start += n
        return responses
