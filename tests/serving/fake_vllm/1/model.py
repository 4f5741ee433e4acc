"""Test double of the vLLM backend's contract (decoupled; text_input/sampling_parameters → text_output).

Answers, in two streamed chunks and an empty final response, the plan
``[{"action": "time_shift", "params": {"shift_ms": -120.0}, "reason": "<what it received>"}]``.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _first(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            prompt = _first(request, "text_input")
            prompt = prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)
            raw = _first(request, "sampling_parameters")
            params = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "{}"))
            guided = params.get("guided_decoding", {}).get("json", {})
            seen = (f"guided={guided.get('type') == 'array'} temperature={params.get('temperature')} "
                    f"max_tokens={params.get('max_tokens')} exclude={bool(_first(request, 'exclude_input_in_output'))} "
                    f"stream={bool(_first(request, 'stream'))} prompt_chars={len(prompt)}")
            text = json.dumps([{"action": "time_shift", "params": {"shift_ms": -120.0}, "reason": seen}])
            half = len(text) // 2
            for chunk in (text[:half], text[half:]):
                out = pb_utils.Tensor("text_output", np.array([chunk.encode("utf-8")], dtype=object))
                sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
