"""Triton python-backend model `audio_describer`: a thin face over avalign.describe.audio."""

import json
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
        from avalign.describe.audio import AudioDescriber

        params = json.loads(args["model_config"]).get("parameters", {})
        transcribe = params.get("transcribe", {}).get("string_value", "true").lower() == "true"
        self.describer = AudioDescriber(transcribe=transcribe)

    def execute(self, requests):
        responses = []
        for request in requests:
            audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
            try:
                out = []
                for row in audio:  # batch dimension
                    text, evidence = self.describer.describe(row)
                    out.append((text, json.dumps(evidence)))
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("DESCRIPTION", np.array([[t.encode()] for t, _ in out], dtype=object)),
                    pb_utils.Tensor("EVIDENCE", np.array([[e.encode()] for _, e in out], dtype=object)),
                ]))
            except Exception as exc:  # one bad request must not fail its batch neighbours
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"audio_describer: {exc}")))
        return responses
