"""Triton python-backend model `visual_describer`: a thin face over avalign.describe.visual."""

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
        from avalign.describe.visual import VisualDescriber

        self.describer = VisualDescriber()

    def execute(self, requests):
        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy()
            fps = pb_utils.get_input_tensor_by_name(request, "FPS").as_numpy()
            times_t = pb_utils.get_input_tensor_by_name(request, "TIMES")
            times = times_t.as_numpy() if times_t is not None else None
            try:
                out = []
                for i in range(frames.shape[0]):
                    t = times[i].astype(np.float64) if times is not None else None
                    text, evidence = self.describer.describe(frames[i], float(fps[i][0]), t)
                    out.append((text, json.dumps(evidence)))
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("DESCRIPTION", np.array([[t.encode()] for t, _ in out], dtype=object)),
                    pb_utils.Tensor("EVIDENCE", np.array([[e.encode()] for _, e in out], dtype=object)),
                ]))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"visual_describer: {exc}")))
        return responses
