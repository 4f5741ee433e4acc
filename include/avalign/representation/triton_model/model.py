"""Triton python-backend model `av_scorer` (learned): a thin face over
avalign.representation.scorer.LearnedScorer, written into a model repository by
``avalign.representation.export.export_scorer``. Same tensors as the default av_scorer; it does
not call text_embedder.
"""

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(config, key, default=""):
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        # The stub ignores PYTHONPATH: find avalign where the export recorded it, unless installed.
        include = _param(config, "avalign_include")
        try:
            import avalign  # noqa: F401
        except ImportError:
            if include and include not in sys.path:
                sys.path.insert(0, include)
        from avalign.representation.scorer import LearnedScorer

        weights = Path(args["model_repository"]) / args["model_version"] / _param(config, "weights", "model.pt")
        self.scorer = LearnedScorer(str(weights), num_threads=int(_param(config, "num_threads", "1")))

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
                    raw = evidence[i][0]
                    ev = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw else {}
                    rows.append(self.scorer.score(audio[i], frames[i], float(fps[i][0]), ev))
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("ALIGNMENT", np.array([[a] for a, _, _ in rows], dtype=np.float32)),
                    pb_utils.Tensor("SYNC", np.array([[s] for _, s, _ in rows], dtype=np.float32)),
                    pb_utils.Tensor("DETAIL", np.array([[json.dumps(d).encode()] for _, _, d in rows], dtype=object)),
                ]))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"av_scorer (learned): {exc}")))
        return responses
