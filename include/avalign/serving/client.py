"""Typed gRPC clients for the Triton roles, with deadlines and bounded retries.

The model names and tensors are the contract (docs/architecture.md): a GPU deployment can swap
any implementation behind the same name and this client does not change.
"""

from __future__ import annotations

import json
import os
import queue
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
                    np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32",
                    np.dtype(np.bool_): "BOOL"}[array.dtype]
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

    def plan_text(self, prompt: str, *, max_new_tokens: int = 256, json_schema: str | None = None,
                  model: str = "planner", protocol: str | None = None) -> str:
        """The planner model's answer to ``prompt`` (text; the caller parses and validates it).

        ``protocol`` (default: ``AVALIGN_PLANNER_PROTOCOL``, else ``"avalign"``):
        - ``avalign``: the contract's tensors, ``PROMPT`` BYTES [1] (+ optional ``MAX_NEW_TOKENS``
          INT32 [1], ``JSON_SCHEMA`` BYTES [1]) → ``TEXT`` BYTES [1]; served by the CPU model
          (model_repository_llm/planner) and by the vLLM wrapper (model_repository_llm/planner_vllm);
        - ``vllm``: straight to a Triton vLLM-backend model (``text_input`` / ``sampling_parameters``
          → ``text_output``, a decoupled model, so over a gRPC stream); the schema goes in as
          ``guided_decoding``. The prompt is sent as is: no chat template (docs/llm_planner.md).
        """
        protocol = (protocol or os.environ.get("AVALIGN_PLANNER_PROTOCOL") or "avalign").lower()
        if protocol == "vllm":
            return self._plan_text_vllm(model, prompt, max_new_tokens, json_schema)
        if protocol != "avalign":
            raise ServingError(f"AVALIGN_PLANNER_PROTOCOL must be 'avalign' or 'vllm', got {protocol!r}")
        inputs = {"PROMPT": np.array([[prompt.encode("utf-8")]], dtype=object),
                  "MAX_NEW_TOKENS": np.array([[int(max_new_tokens)]], dtype=np.int32)}
        if json_schema is not None:
            inputs["JSON_SCHEMA"] = np.array([[json_schema.encode("utf-8")]], dtype=object)
        return _text(self._infer(model, inputs, ["TEXT"])["TEXT"])

    def _plan_text_vllm(self, model: str, prompt: str, max_new_tokens: int, json_schema: str | None) -> str:
        from tritonclient.utils import InferenceServerException

        g = self._grpc
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": int(max_new_tokens)}
        if json_schema is not None:
            params["guided_decoding"] = {"json": json.loads(json_schema)}
        tensors = {"text_input": np.array([prompt.encode("utf-8")], dtype=object),
                   "stream": np.array([False], dtype=bool),
                   "sampling_parameters": np.array([json.dumps(params).encode("utf-8")], dtype=object),
                   "exclude_input_in_output": np.array([True], dtype=bool)}

        def call() -> str:
            inputs = []
            for name, array in tensors.items():
                t = g.InferInput(name, list(array.shape), "BYTES" if array.dtype == object else "BOOL")
                t.set_data_from_numpy(array)
                inputs.append(t)
            answers: queue.Queue = queue.Queue()
            self._client.start_stream(callback=lambda result, error: answers.put((result, error)))
            try:
                self._client.async_stream_infer(model, inputs, outputs=[g.InferRequestedOutput("text_output")],
                                                enable_empty_final_response=True)
                chunks: list[str] = []
                while True:
                    try:
                        result, error = answers.get(timeout=self.timeout_s)
                    except queue.Empty:
                        raise InferenceServerException(f"no answer from {model} in {self.timeout_s:.0f}s",
                                                       status="StatusCode.DEADLINE_EXCEEDED") from None
                    if error is not None:
                        raise error
                    array = result.as_numpy("text_output")
                    if array is not None:
                        chunks.extend(_text_items(array))
                    final = result.get_response().parameters.get("triton_final_response")
                    if final is not None and final.bool_param:
                        return "".join(chunks)
            finally:
                self._client.stop_stream()

        return self._retrying(f"{model} call", call)

    def close(self) -> None:
        self._client.close()


def _text_items(array: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(array).reshape(-1)]


def _text(array: np.ndarray) -> str:
    value = np.asarray(array).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
