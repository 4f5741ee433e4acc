"""A client wrapper that answers a repeated model call from memory.

The evaluation harness runs several agents over the same clips: every agent first describes and
scores the untouched clip, with byte-identical inputs, and the models are deterministic. Wrapping
the Triton client in ``MemoizingClient`` sends each distinct call once. Keys are SHA-1 digests of
the inputs (arrays by dtype, shape and bytes), so memory holds only the small answers. Only the
describe / embed / score roles are memoised; anything else (planner calls, metadata) goes through.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import numpy as np

MEMOISED = ("describe_audio", "describe_frames", "embed_texts", "score")


def _digest(value: Any, h: "hashlib._Hash") -> None:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        h.update(f"nd{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        for item in value:
            _digest(item, h)
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


class MemoizingClient:
    """Wraps a client; ``hits`` and ``misses`` count memoised calls (bounded LRU of answers)."""

    def __init__(self, client: Any, *, max_entries: int = 50_000) -> None:
        self._client = client
        self._memo: OrderedDict[str, Any] = OrderedDict()
        self.max_entries = max_entries
        self.hits = self.misses = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in MEMOISED:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            h = hashlib.sha1(name.encode(), usedforsecurity=False)
            for value in (*args, *sorted(kwargs.items())):
                _digest(value, h)
            key = h.hexdigest()
            if key in self._memo:
                self.hits += 1
                self._memo.move_to_end(key)
                return self._memo[key]
            self.misses += 1
            answer = attr(*args, **kwargs)
            self._memo[key] = answer
            if len(self._memo) > self.max_entries:
                self._memo.popitem(last=False)
            return answer

        return call
