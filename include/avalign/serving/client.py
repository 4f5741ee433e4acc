"""Typed gRPC clients for the Triton roles, with deadlines and bounded retries.

The model names and tensors are the contract (docs/architecture.md): a GPU deployment can swap
any implementation behind the same name and this client does not change.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

from avalign.errors import ClipError, ServingError

T = TypeVar("T")


@dataclass(frozen=True)
class Description:
    text: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Scores:
    alignment: float
    sync: float
    detail: dict[str, Any]


class TritonClient:
    """One connection to a Triton server; one method per role.

    ``timeout_s`` is each call's deadline on the server; a call that fails with an unavailable
    server is retried with exponential backoff (plus jitter) until ``retry_deadline_s`` has passed,
    then raises ``ServingError``. Model errors (bad input) are not retried.
    """

    def __init__(self, url: str, *, timeout_s: float = 120.0, retry_deadline_s: float = 60.0,
                 max_backoff_s: float = 5.0) -> None:
        import tritonclient.grpc as grpcclient

        self.url = url.removeprefix("grpc://")
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(self.url)
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.max_backoff_s = max_backoff_s

    # -- plumbing ----------------------------------------------------------------------------
    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.retry_deadline_s
        delay, attempt = 0.2, 0
        while True:
            attempt += 1
            try:
                return call()
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                transient = any(s in status for s in ("UNAVAILABLE", "DEADLINE", "RESOURCE_EXHAUSTED")) or \
                    "unavailable" in str(exc).lower() or "connect" in str(exc).lower()
                if not transient:
                    # The model rejected this input: a problem of the clip, not of the service.
                    raise ClipError(f"{what} rejected the input: {exc.message()}", reason="model_error") from exc
                if time.monotonic() + delay > deadline:
                    raise ServingError(
                        f"{what}: Triton at {self.url} unavailable after {attempt} attempts"
                        f" over {self.retry_deadline_s:.0f}s: {exc}"
                    ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff_s)

    def _infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        g = self._grpc

        def call() -> dict[str, np.ndarray]:
            tensors = []
            for name, array in inputs.items():
                dtype = "BYTES" if array.dtype == object else {
                    np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8"}[array.dtype]
                t = g.InferInput(name, list(array.shape), dtype)
                t.set_data_from_numpy(array)
                tensors.append(t)
            result = self._client.infer(model, tensors, outputs=[g.InferRequestedOutput(o) for o in outputs],
                                        client_timeout=self.timeout_s)
            return {o: result.as_numpy(o) for o in outputs}

        return self._retrying(f"{model} call", call)

    def is_ready(self, models: tuple[str, ...] = ()) -> bool:
        try:
            return self._client.is_server_ready() and all(self._client.is_model_ready(m) for m in models)
        except Exception:
            return False

    def model_version(self, model: str) -> str:
        """The model's served version (Triton's version directory), e.g. "1"."""
        meta = self._retrying(f"{model} metadata", lambda: self._client.get_model_metadata(model, as_json=True))
        versions = meta.get("versions") or ["?"]
        return str(versions[-1])

    # -- roles -------------------------------------------------------------------------------
    def describe_audio(self, audio_16k: np.ndarray) -> Description:
        audio = np.ascontiguousarray(np.asarray(audio_16k, dtype=np.float32).reshape(1, -1))
        out = self._infer("audio_describer", {"AUDIO": audio}, ["DESCRIPTION", "EVIDENCE"])
        return Description(_text(out["DESCRIPTION"]), json.loads(_text(out["EVIDENCE"])))

    def describe_frames(self, frames: np.ndarray, fps: float, times_s: np.ndarray | None = None) -> Description:
        inputs = {
            "FRAMES": np.ascontiguousarray(np.asarray(frames, dtype=np.uint8)[None]),
            "FPS": np.array([[fps]], dtype=np.float32),
        }
        if times_s is not None:
            inputs["TIMES"] = np.asarray(times_s, dtype=np.float32).reshape(1, -1)
        out = self._infer("visual_describer", inputs, ["DESCRIPTION", "EVIDENCE"])
        return Description(_text(out["DESCRIPTION"]), json.loads(_text(out["EVIDENCE"])))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        batch = np.array([[t.encode("utf-8")] for t in texts], dtype=object)
        return self._infer("text_embedder", {"TEXT": batch}, ["EMBEDDING"])["EMBEDDING"]

    def score(self, audio_16k: np.ndarray, frames: np.ndarray, fps: float, evidence: dict[str, Any]) -> Scores:
        inputs = {
            "AUDIO": np.ascontiguousarray(np.asarray(audio_16k, dtype=np.float32).reshape(1, -1)),
            "FRAMES": np.ascontiguousarray(np.asarray(frames, dtype=np.uint8)[None]),
            "FPS": np.array([[fps]], dtype=np.float32),
            "EVIDENCE": np.array([[json.dumps(evidence).encode("utf-8")]], dtype=object),
        }
        out = self._infer("av_scorer", inputs, ["ALIGNMENT", "SYNC", "DETAIL"])
        return Scores(float(out["ALIGNMENT"].reshape(-1)[0]), float(out["SYNC"].reshape(-1)[0]),
                      json.loads(_text(out["DETAIL"])))

    def close(self) -> None:
        self._client.close()


def _text(array: np.ndarray) -> str:
    value = np.asarray(array).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
