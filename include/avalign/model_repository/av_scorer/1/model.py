"""Triton python-backend model `av_scorer`: a thin face over avalign.describe.scorer.

The semantic part embeds texts by calling `text_embedder` inside Triton (business logic
scripting), so one MiniLM instance serves every role.
"""

import json
import sys
from pathlib import Path

# Outside an installed package (local serving), find avalign next to this repository.
_INCLUDE = Path(__file__).resolve().parents[4]
if (_INCLUDE / "avalign").is_dir() and str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))

import numpy as np
import triton_python_backend_utils as pb_utils


def _embed_through_triton(texts):
    request = pb_utils.InferenceRequest(
        model_name="text_embedder",
        requested_output_names=["EMBEDDING"],
        inputs=[pb_utils.Tensor("TEXT", np.array([[t.encode()] for t in texts], dtype=object))],
    )
    response = request.exec()
    if response.has_error():
        raise RuntimeError(f"text_embedder: {response.error().message()}")
    return pb_utils.get_output_tensor_by_name(response, "EMBEDDING").as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        from avalign.describe.scorer import AVScorer

        self.scorer = AVScorer(_embed_through_triton)

    def execute(self, requests):
        responses = []
        for request in requests:
            audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
            frames = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy()
            fps = pb_utils.get_input_tensor_by_name(request, "FPS").as_numpy()
            evidence = pb_utils.get_input_tensor_by_name(request, "EVIDENCE").as_numpy()
            try:
                rows = []
                for i in range(audio.shape[0]):
                    ev = json.loads(evidence[i][0])
                    rows.append(self.scorer.score(audio[i], frames[i], float(fps[i][0]), ev))
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("ALIGNMENT", np.array([[a] for a, _, _ in rows], dtype=np.float32)),
                    pb_utils.Tensor("SYNC", np.array([[s] for _, s, _ in rows], dtype=np.float32)),
                    pb_utils.Tensor("DETAIL", np.array([[json.dumps(d).encode()] for _, _, d in rows], dtype=object)),
                ]))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"av_scorer: {exc}")))
        return responses
