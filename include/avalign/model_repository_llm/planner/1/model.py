"""Triton python-backend model `planner` (CPU): a local Hugging Face causal LM writes the plan.

Text in (``PROMPT``), text out (``TEXT``); the JSON constraint and the stop at the closing
bracket live in ``avalign.describe.causal_lm``. ``JSON_SCHEMA`` is accepted for the contract's
sake: this variant holds the answer to JSON syntax (a list of objects), the GPU variant to the
schema; the planner validates either way.
"""

import json
import sys
from pathlib import Path

# Outside an installed package (local serving), find avalign next to this repository; a copy
# written by write_planner_repository names the folder in its config (parameter avalign_include).
_INCLUDE = Path(__file__).resolve().parents[4]
if (_INCLUDE / "avalign").is_dir() and str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(config, key, default=""):
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        include = _param(config, "avalign_include")
        if include and include not in sys.path:
            sys.path.insert(0, include)
        from avalign.describe.causal_lm import CausalLMGenerator

        model_path = _param(config, "model_path")
        if not model_path:
            raise pb_utils.TritonModelException(
                "planner: parameter model_path is empty; serve a copy written by "
                "avalign.serving.llm.write_planner_repository(target_dir, model_path)")
        self.generator = CausalLMGenerator(
            model_path,
            max_new_tokens=int(_param(config, "max_new_tokens", "256")),
            constrain_json=_param(config, "constrain_json", "true").lower() in {"1", "true", "yes"},
            chat_template=_param(config, "chat_template", "auto"),
            num_threads=int(_param(config, "num_threads", "1")),
        )
        pb_utils.Logger.log_info(f"planner: {self.generator.model_version} loaded in "
                                 f"{self.generator.load_time_s:.1f}s")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                prompts = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)
                limit = pb_utils.get_input_tensor_by_name(request, "MAX_NEW_TOKENS")
                limits = limit.as_numpy().reshape(-1) if limit is not None else [None] * len(prompts)
                texts = []
                for prompt, n in zip(prompts, limits):
                    text = prompt.decode("utf-8", "replace") if isinstance(prompt, bytes) else str(prompt)
                    result = self.generator.generate(text, max_new_tokens=None if n is None else int(n))
                    texts.append([result.text.encode("utf-8")])
                out = pb_utils.Tensor("TEXT", np.array(texts, dtype=object))
                responses.append(pb_utils.InferenceResponse([out]))
            except Exception as exc:  # this request fails, the model stays up
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"planner: {exc}")))
        return responses
