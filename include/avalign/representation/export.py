"""Export a trained (or registered) AV representation into a Triton model repository as
``av_scorer``, the drop-in alternative to the default reflection scorer.

Layout written (``<out>/av_scorer``)::

    config.pbtxt        same name and tensors as the default av_scorer
    1/model.py          avalign/representation/triton_model/model.py (a thin face)
    1/model.pt          the weights, model config and calibration

Serving it locally::

    TritonServer(models=("av_scorer",), extra_model_dirs={"av_scorer": exported})

and in ``av_align`` through the AlignConfig setting / DAG param ``scorer_repository`` (a local
tritonserver started by the partition task then serves this directory as ``av_scorer``; with a
shared ``triton_url`` the server's own repository decides).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Callable, Iterator

PACKAGE_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = PACKAGE_DIR.parents[1]
TEMPLATE = PACKAGE_DIR / "triton_model" / "model.py"

CONFIG = """# Learned reflection scorer (avalign.representation): cosine of audio and visual embeddings,
# calibrated to [0, 1]. Same tensors as the default av_scorer; no text_embedder needed.
name: "av_scorer"
backend: "python"
max_batch_size: 4
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
input [
  {{ name: "AUDIO" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "FRAMES" data_type: TYPE_UINT8 dims: [ -1, -1, -1, 3 ] }},
  {{ name: "FPS" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "EVIDENCE" data_type: TYPE_STRING dims: [ 1 ] }}
]
output [
  {{ name: "ALIGNMENT" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "SYNC" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "DETAIL" data_type: TYPE_STRING dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "weights" value: {{ string_value: "model.pt" }} }}
parameters {{ key: "num_threads" value: {{ string_value: "1" }} }}
parameters {{ key: "avalign_include" value: {{ string_value: "{include}" }} }}
"""


def resolve_model(source: str, tracking_uri: str | None = None) -> Path:
    """A local ``.pt`` path as is, or an MLflow ``models:/name/version`` / ``runs:/...`` URI
    downloaded to a temporary folder (the file ``av_representation.pt`` inside it)."""
    path = Path(source)
    if path.exists():
        return path
    import tempfile

    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tempfile.mkdtemp(prefix="avrep-")))
    found = local / "av_representation.pt" if local.is_dir() else local
    if not found.exists():
        raise FileNotFoundError(f"{source}: no av_representation.pt in the downloaded artifacts ({local})")
    return found


def export_scorer(source: str | Path, out_dir: str | Path, *, tracking_uri: str | None = None,
                  version: int = 1) -> Path:
    """Write ``<out_dir>/av_scorer``; returns that directory (the value for ``extra_model_dirs``)."""
    weights = resolve_model(str(source), tracking_uri)
    target = Path(out_dir) / "av_scorer"
    version_dir = target / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATE, version_dir / "model.py")
    shutil.copy2(weights, version_dir / "model.pt")
    (target / "config.pbtxt").write_text(CONFIG.format(include=str(INCLUDE_DIR)))
    return target


@contextlib.contextmanager
def scorer_server(repository: str | Path, progress: Callable[[str], None] = print,
                  models: tuple[str, ...] | None = None) -> Iterator[str]:
    """A local tritonserver whose ``av_scorer`` is the exported one; yields its gRPC URL.

    ``models`` defaults to the pipeline's four roles (the describers and text_embedder stay the
    defaults; only the scorer is swapped).
    """
    from avalign.serving.launcher import ALL_MODELS, TritonServer

    repository = Path(repository)
    if not (repository / "config.pbtxt").exists():
        raise FileNotFoundError(f"{repository}: not an exported av_scorer (no config.pbtxt)")
    server = TritonServer(models=models or ALL_MODELS, extra_model_dirs={"av_scorer": repository})
    progress(f"starting local tritonserver with the learned av_scorer from {repository} ...")
    server.start()
    try:
        yield server.grpc_url
    finally:
        server.stop()
