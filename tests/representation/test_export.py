"""The learned scorer: scores a clip in-process, and served by a real tritonserver as av_scorer
(without text_embedder) answers a tritonclient call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avalign.representation.export import export_scorer
from avalign.representation.model import AVModel, save


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    weights = tmp / "model.pt"
    save(AVModel(), weights, {"calibration": {"a": 6.0, "b": -3.0}, "variant": "aligned", "seed": 0})
    return export_scorer(weights, tmp / "repo")


@pytest.fixture(scope="module")
def clip():
    from avalign.data.generator import synthesize

    syn = synthesize("drum", 3, duration_s=3.0, width=96, height=72)
    return syn.audio[0], syn.frames, syn.fps


def test_export_layout(exported):
    config = (exported / "config.pbtxt").read_text()
    assert 'name: "av_scorer"' in config and "avalign_include" in config
    assert (exported / "1" / "model.py").exists() and (exported / "1" / "model.pt").exists()


def test_learned_scorer_in_process(exported, clip):
    from avalign.representation.scorer import LearnedScorer

    audio, frames, fps = clip
    scorer = LearnedScorer(str(exported / "1" / "model.pt"))
    alignment, sync, detail = scorer.score(audio, frames, fps, {})
    assert 0.0 <= alignment <= 1.0 and 0.0 <= sync <= 1.0
    cosine = detail["cosine"]
    assert alignment == pytest.approx(1 / (1 + np.exp(-(6.0 * cosine - 3.0))), abs=1e-4)
    assert len(detail["window_cosines"]) == 3  # 3 s clip, 1.6 s windows every 0.8 s (+ one flush right)
    assert abs(detail["learned_offset_ms"]) <= 600 and "offset_ms" in detail
    short_alignment, _, short = scorer.score(audio[:16000], frames[:25], fps, {})  # shorter than a window
    assert 0.0 <= short_alignment <= 1.0 and len(short["window_cosines"]) == 1


def test_triton_serves_the_exported_model_and_tritonclient_gets_a_score(exported, clip):
    from avalign.serving.client import TritonClient
    from avalign.serving.launcher import TritonServer

    audio, frames, fps = clip
    with TritonServer(models=("av_scorer",), extra_model_dirs={"av_scorer": exported}) as server:
        client = TritonClient(server.grpc_url, retry_deadline_s=10.0)
        try:
            scores = client.score(audio, frames, fps, {"frame_times_s": (np.arange(len(frames)) / fps).tolist()})
        finally:
            client.close()
    assert server.models == ("av_scorer",)  # served alone: no text_embedder needed
    assert 0.0 <= scores.alignment <= 1.0 and 0.0 <= scores.sync <= 1.0
    assert scores.detail["scorer"] == "av_representation" and scores.detail["model"]["variant"] == "aligned"
