"""Rebuild summary against ground truth: what ``make demo`` prints and writes to summary.json.

Offset error: the injected offset is the ground truth (positive = audio late). Before the edit
the error is |injected|; after, the kept plan's time shifts are added (a shift moves the audio
later by ``shift_ms``), so the error is |injected + Σ shift_ms|.
SI-SDR: on 16 kHz mono against the clip's clean reference audio, for clips whose injected
corruption is noise (optionally with an offset or a gain change, which the reference can follow:
it is moved by the injected offset plus the applied shift and SI-SDR ignores scale). Clips with
speed drift, gaps or a distractor are left out: their clean content differs from the reference.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from avalign.data import storage


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (both 1-D, same rate; trimmed to the shorter)."""
    n = min(estimate.size, reference.size)
    est, ref = estimate[:n].astype(np.float64), reference[:n].astype(np.float64)
    est, ref = est - est.mean(), ref - ref.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def applied_shift_ms(plan_json: str) -> float:
    plan = json.loads(plan_json or "[]")
    return float(sum(step.get("params", {}).get("shift_ms", 0.0) for step in plan if step.get("action") == "time_shift"))


def _noise_kind(corruption_json: str | None) -> str:
    try:
        steps = json.loads(corruption_json or "[]")
    except (TypeError, ValueError):
        return "unknown"
    return next((s["params"].get("noise_kind", "unknown") for s in steps if s.get("type") == "noise"), "unknown")


def _si_sdr_comparable(types: str) -> bool:
    kinds = {t for t in str(types).split(",") if t}
    return "noise" in kinds and kinds <= {"noise", "offset", "gain"}


def shift(x: np.ndarray, shift_ms: float, sample_rate: int = 16000) -> np.ndarray:
    """Delay (positive) or advance (negative) by whole samples, keeping the length."""
    k = int(round(shift_ms * sample_rate / 1000.0))
    out = np.zeros_like(x)
    if k >= 0:
        out[k:] = x[: x.size - k] if k < x.size else out[k:]
    else:
        out[: x.size + k] = x[-k:]
    return out


def _audio16k(uri: str) -> np.ndarray:
    from avalign.media.decode import decode_audio

    with storage.local_copy(uri) as local:
        return decode_audio(local, sample_rate=16000, mono=True).samples[0]


def summarise(tables: list[pd.DataFrame], *, published: list[str], rejected: list[str],
              mlflow_run_id: str | None, elapsed_s: float) -> dict[str, Any]:
    df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    counts = {o: int((df.get("outcome") == o).sum()) if len(df) else 0
              for o in ("improved", "kept_original", "quarantined")}
    summary: dict[str, Any] = {"clips_total": int(len(df)), **counts,
                               "partitions_published": sorted(published), "partitions_rejected": sorted(rejected)}
    ok = df[df["outcome"] != "quarantined"] if len(df) else df

    off = ok[ok["injected_offset_ms"].fillna(0).abs() > 0] if len(ok) else ok
    if len(off):
        before = off["injected_offset_ms"].abs()
        after = (off["injected_offset_ms"] + off["plan_json"].map(applied_shift_ms)).abs()
        summary["offset_clips"] = int(len(off))
        summary["offset_error_ms_median_before"] = round(float(before.median()), 1)
        summary["offset_error_ms_median_after"] = round(float(after.median()), 1)
        # the target is on procedural clips: report them (and the real ones) apart
        procedural = off["clip_id"].str.startswith("gen")
        for name, mask in (("procedural", procedural), ("real", ~procedural)):
            if mask.any():
                summary[f"offset_error_ms_median_after_{name}"] = round(float(after[mask].median()), 1)
                summary[f"offset_clips_{name}"] = int(mask.sum())

    comparable = ok["corruption_types"].map(_si_sdr_comparable) if len(ok) else []
    noisy = ok[ok["injected_snr_db"].notna() & ok["reference_audio_uri"].notna() & comparable] if len(ok) else ok
    if len(noisy):
        b, a, kinds = [], [], []
        for r in noisy.itertuples():
            kinds.append(_noise_kind(getattr(r, "corruption", None)))
            ref = _audio16k(r.reference_audio_uri)
            inp = _audio16k(r.source_uri)
            out = _audio16k(r.audio_uri) if r.outcome == "improved" and r.audio_uri else inp
            injected = float(r.injected_offset_ms or 0.0)
            b.append(si_sdr(inp, shift(ref, injected)))
            a.append(si_sdr(out, shift(ref, injected + applied_shift_ms(r.plan_json))))
        summary["noisy_clips"] = int(len(noisy))
        summary["si_sdr_db_median_before"] = round(float(np.median(b)), 2)
        summary["si_sdr_db_median_after"] = round(float(np.median(a)), 2)
        gains = np.array(a) - np.array(b)
        summary["si_sdr_db_median_gain"] = round(float(np.median(gains)), 2)
        summary["si_sdr_db_gain_by_noise_kind"] = {
            kind: round(float(np.median(gains[np.array(kinds) == kind])), 2) for kind in sorted(set(kinds))}

    clean = df[df["corruption_types"].isin(["", "none"])] if len(df) else df
    if len(clean):
        summary["clean_controls"] = int(len(clean))
        summary["clean_controls_unchanged_share"] = round(float((clean["outcome"] == "kept_original").mean()), 3)
        # do-no-harm (the evaluation's definition): untouched, or the output's SI-SDR against the
        # clean reference within 0.5 dB of the input's (a loudness change alone does no harm)
        harmless = []
        for r in clean.itertuples():
            if r.outcome != "improved" or not r.audio_uri or not r.reference_audio_uri:
                harmless.append(r.outcome != "improved")
                continue
            ref = _audio16k(r.reference_audio_uri)
            harmless.append(si_sdr(_audio16k(r.audio_uri), ref) >= si_sdr(_audio16k(r.source_uri), ref) - 0.5)
        summary["clean_controls_no_harm_share"] = round(float(np.mean(harmless)), 3)
    summary["seconds_per_clip_median"] = round(float(df["seconds"].median()), 2) if len(df) else None
    summary["mlflow_run_id"] = mlflow_run_id
    summary["elapsed_s"] = round(elapsed_s, 1)
    return summary
