"""The real tritonserver serves every role, and the describers say what a person would."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.serving.check import load_clip

pytestmark = [pytest.mark.triton, pytest.mark.real_av]


@pytest.fixture(scope="module")
def described(triton_client, real_av_dir):
    """Audio and visual descriptions of every real clip, through Triton."""
    out = {}
    for path in sorted(real_av_dir.iterdir()):
        if path.suffix not in {".mp4", ".avi"}:
            continue
        audio, video = load_clip(path)
        out[path.stem] = (
            triton_client.describe_audio(audio),
            triton_client.describe_frames(video.frames, video.fps, video.times_s),
            audio,
            video,
        )
    return out


def _audio_labels(description) -> list[str]:
    return [t["label"].lower() for t in description.evidence["tags"][:3]]


@pytest.mark.parametrize("name", ["talking_head_1_retalking", "talking_head_2_retalking", "talking_head_3_retalking"])
def test_talking_heads_are_speech_plus_a_face(described, name):
    audio, visual, _, _ = described[name]
    assert "speech" in _audio_labels(audio)
    assert audio.evidence["speech_s"] >= 3.0
    assert audio.evidence["transcript"]  # whisper heard words
    assert visual.evidence["face_fraction"] >= 0.75
    assert "face is visible" in visual.text


def test_applause_is_applause(described):
    audio, _, _, _ = described["stage_applause_videollama"]
    assert "applause" in _audio_labels(audio)[:2]
    assert audio.evidence["speech_s"] < 1.0


def test_chaplin_is_music(described):
    audio, _, _, _ = described["chaplin_moviepy"]
    assert "music" in _audio_labels(audio)
    assert "no speech" in audio.text.lower()


def test_smpte_bars_are_ticks(described):
    audio, _, _, _ = described["smpte_bars_2997_moviepy"]
    assert any("tick" in label for label in _audio_labels(audio))
    assert audio.evidence["gaps"] == []  # silence between beeps is content, not dropouts


def test_quiet_clip_is_reported_quiet(described):
    audio, _, _, _ = described["fireplace_dog_moviepy"]
    assert audio.evidence["rms_dbfs"] < -45
    assert "quiet" in audio.text


def test_text_embedder_returns_unit_vectors(triton_client):
    emb = triton_client.embed_texts(["a dog barks", "a barking dog", "a piano plays"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_av_scorer_scores_in_unit_range_and_drops_for_noise(described, triton_client):
    audio_desc, visual_desc, audio, video = described["talking_head_2_retalking"]
    evidence = {"heard": audio_desc.text, "seen": visual_desc.text, "frame_times_s": video.times_s.tolist()}
    clean = triton_client.score(audio, video.frames, video.fps, evidence)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(audio.size).astype(np.float32)
    noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2)) / np.sqrt(10 ** (0 / 10))  # 0 dB SNR
    noisy = triton_client.score(audio + noise, video.frames, video.fps, evidence)
    for s in (clean, noisy):
        assert 0.0 <= s.alignment <= 1.0 and 0.0 <= s.sync <= 1.0
    assert noisy.detail["snr_db"] < clean.detail["snr_db"] - 10
    assert noisy.alignment < clean.alignment


def test_bad_input_is_a_model_error_not_a_crash(triton_client):
    from avalign.errors import ClipError

    with pytest.raises(ClipError, match="audio_describer") as info:
        triton_client.describe_audio(np.full(16000, np.nan, dtype=np.float32))
    assert info.value.reason == "model_error"
    # the server survives and answers the next call
    assert triton_client.describe_audio(np.zeros(16000, dtype=np.float32)).evidence["duration_s"] == 1.0


def test_av_scorer_reads_a_speaking_face_by_its_lips(described, triton_client):
    """Inside the Triton python backend too: mediapipe's face mesh loads and the lips give the offset."""
    from avalign.agent.summary import shift

    audio_desc, visual_desc, audio, video = described["talking_head_3_retalking"]
    evidence = {"heard": audio_desc.text, "seen": visual_desc.text, "frame_times_s": video.times_s.tolist(),
                "speech_s": audio_desc.evidence["speech_s"]}
    late = triton_client.score(shift(audio, 200.0), video.frames, video.fps, evidence)
    assert late.detail["offset_method"] == "lips", late.detail
    assert abs(late.detail["offset_ms"] - 200.0) <= 40.0 and late.detail["offset_confidence"] >= 0.5
    assert late.detail["drift_speed"] is None  # drift is read from whole-frame motion only
