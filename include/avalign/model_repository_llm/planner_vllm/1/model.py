"""Triton python-backend model `planner` (GPU deployments): the contract's tensors over vLLM.

``PROMPT`` (+ ``MAX_NEW_TOKENS``, ``JSON_SCHEMA``) → ``TEXT``, the same tensors as the CPU
variant, so the client does not change. Each prompt is wrapped in the instruct model's chat
template (when ``tokenizer_path`` is set) and sent by BLS to the vLLM-backend model ``llm_model``
with greedy sampling and, when a schema comes with the request, guided decoding
(``sampling_parameters.guided_decoding.json``): the answer is then a schema-valid plan by
construction, and the planner still validates it. The vLLM model is decoupled, so the call is a
decoupled BLS exec whose text chunks are joined.

Self-contained on purpose (no avalign import): the vLLM Triton container need not have avalign.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

SYSTEM_PROMPT = ("You plan audio edits for an audio-visual alignment pipeline. Answer with one JSON "
                 "list of edit steps and nothing else.")


def _param(config, key, default=""):
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.llm_model = _param(config, "llm_model", "planner_llm")
        self.max_new_tokens = int(_param(config, "max_new_tokens", "256"))
        self.guided = _param(config, "guided_decoding", "true").lower() in {"1", "true", "yes"}
        self.tokenizer = None
        tokenizer_path = _param(config, "tokenizer_path")
        if tokenizer_path:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)

    def _render(self, prompt):
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt

    def _generate(self, prompt, max_new_tokens, schema):
        params = {"temperature": 0.0, "max_tokens": int(min(max_new_tokens, 4 * self.max_new_tokens))}
        if self.guided and schema:
            params["guided_decoding"] = {"json": json.loads(schema)}
        inputs = [
            pb_utils.Tensor("text_input", np.array([self._render(prompt).encode("utf-8")], dtype=object)),
            pb_utils.Tensor("stream", np.array([False], dtype=bool)),
            pb_utils.Tensor("sampling_parameters", np.array([json.dumps(params).encode("utf-8")], dtype=object)),
            pb_utils.Tensor("exclude_input_in_output", np.array([True], dtype=bool)),
        ]
        request = pb_utils.InferenceRequest(model_name=self.llm_model, inputs=inputs,
                                            requested_output_names=["text_output"])
        chunks = []
        for response in request.exec(decoupled=True):
            if response.has_error():
                raise pb_utils.TritonModelException(f"{self.llm_model}: {response.error().message()}")
            tensor = pb_utils.get_output_tensor_by_name(response, "text_output")
            if tensor is not None:
                chunks.extend(_text(v) for v in tensor.as_numpy().reshape(-1))
        return "".join(chunks)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                prompts = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)
                limit = pb_utils.get_input_tensor_by_name(request, "MAX_NEW_TOKENS")
                schema = pb_utils.get_input_tensor_by_name(request, "JSON_SCHEMA")
                limits = limit.as_numpy().reshape(-1) if limit is not None else [self.max_new_tokens] * len(prompts)
                schemas = schema.as_numpy().reshape(-1) if schema is not None else [None] * len(prompts)
                texts = [[self._generate(_text(p), int(n), None if s is None else _text(s)).encode("utf-8")]
                         for p, n, s in zip(prompts, limits, schemas)]
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TEXT", np.array(texts, dtype=object))]))
            except Exception as exc:  # this request fails, the model stays up
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"planner: {exc}")))
        return responses
