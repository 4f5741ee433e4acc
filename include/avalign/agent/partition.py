"""Run the loop over one manifest partition and write its staging outputs and results table.

Staging lives under ``<out>/runs/<run_id>/<partition>/`` and is invisible to consumers until
``publish_partition`` writes the pointer. ``_SUCCESS`` is written last. A retried task first
deletes a stale one and the temp files of an attempt stopped mid-write; a finished partition
with the same manifest is not recomputed (idempotent).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from avalign.agent.config import AlignConfig
from avalign.agent.loop import OUTCOMES, align_decoded, decode_clip, dumps, trace_document
from avalign.agent.planner import Planner, RulePlanner
from avalign.data import storage
from avalign.errors import ClipError, ServingError

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
ROLES = ("audio_describer", "visual_describer", "text_embedder", "av_scorer")


def safe_id(value: str, *, unique: bool = False) -> str:
    """Run ids and clip ids as path components: no separators, no dots-only, bounded length.

    ``unique`` (for clip ids): an id that had to change gets 8 hex digits of its SHA-256
    appended, so ids that clean to the same name ('.a' and 'a', '...' and '_', '../x' and '.._x')
    never share a trace or an output file, nor a results row's clip_id. Ids that are already
    safe come back unchanged either way.
    """
    text = str(value)
    cleaned = _SAFE.sub("_", text).strip(".")[:120] or "_"
    if unique and cleaned != text:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:111]}-{digest}"
    return cleaned


@dataclass
class PartitionRun:
    partition: str
    run_id: str
    stage_uri: str
    results_uri: str
    counts: dict[str, int]
    n_clips: int
    seconds: float
    reused: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("rows")
        return d


def stage_uri(out_uri: str, run_id: str, partition: str) -> str:
    return storage.join(out_uri, "runs", safe_id(run_id), safe_id(partition))


def make_planner(config: AlignConfig, client=None) -> Planner:
    if config.planner == "rules":
        return RulePlanner()
    try:
        from avalign.agent.llm_planner import LLMPlanner
    except ImportError as exc:
        raise ClipError("planner 'llm' is not available in this build", reason="config_error") from exc
    return LLMPlanner(client)


def run_partition(manifest_uri: str, out_uri: str, *, run_id: str, config: AlignConfig, client,
                  planner: Planner | None = None, progress: Callable[[str], None] = print,
                  force: bool = False) -> PartitionRun:
    """Align every clip of one manifest partition. Per-clip failures quarantine that clip only."""
    from avalign.data.manifest import read_manifest

    t_start = time.perf_counter()
    manifest_bytes = storage.read_bytes(manifest_uri)
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    df = read_manifest(manifest_uri, strict_ids=False)  # bad / duplicated ids: quarantined per row below
    partition = str(df["partition"].iloc[0]) if len(df) and "partition" in df else Path(manifest_uri).stem
    stage = stage_uri(out_uri, run_id, partition)
    results_uri = storage.join(stage, "results.parquet")
    success_uri = storage.join(stage, "_SUCCESS")

    if not force and storage.exists(success_uri):
        marker = storage.read_json(success_uri)
        if marker.get("manifest_sha256") == manifest_sha and marker.get("config") == config.to_dict():
            progress(f"[{partition}] already complete for run {run_id}: reusing {results_uri}")
            return PartitionRun(partition, run_id, stage, results_uri, marker["counts"], marker["n_clips"],
                                0.0, reused=True)
    if storage.exists(success_uri):
        storage.delete(success_uri)
    stale = storage.remove_temp_files(stage)  # a stopped attempt's half-written files
    if stale:
        progress(f"[{partition}] removed {len(stale)} temp file(s) an earlier attempt left: "
                 + ", ".join(uri.rsplit("/", 1)[-1] for uri in stale[:5]))

    planner = planner or make_planner(config, client)
    versions = {role: client.model_version(role) for role in ROLES}
    if planner.name == "llm":  # fail before the first clip when the planner model is not served
        try:
            versions["planner"] = client.model_version("planner")
        except ClipError as exc:
            raise ServingError(f"planner 'llm' is selected but Triton does not serve model 'planner': {exc}") from exc
    rows: list[dict[str, Any]] = []
    n = len(df)
    progress(f"[{partition}] {n} clips, run {run_id}, planner {planner.name}, max_cycles {config.max_cycles}")
    seen: Counter[str] = Counter()
    for i, record in enumerate(df.to_dict("records"), start=1):
        rejection = _id_rejection(record, seen)
        if rejection:
            row = reject_clip(record, stage, rejection, run_id=run_id, partition=partition)
        else:
            row = process_clip(record, stage, client=client, planner=planner, config=config,
                               model_versions=versions, run_id=run_id, partition=partition)
        rows.append(row)
        progress(f"[{partition}] {i}/{n} {row['clip_id']}: {row['outcome']}"
                 f" align {_fmt(row['alignment_before'])}→{_fmt(row['alignment_after'])}"
                 f" sync {_fmt(row['sync_before'])}→{_fmt(row['sync_after'])}"
                 f" [{row['actions'] or '-'}] {row['seconds']:.1f}s"
                 + (f" ({row['reason']})" if row["outcome"] == "quarantined" else ""))

    table = results_table(rows)
    _write_parquet(table, results_uri)
    quarantined = table[table["outcome"] == "quarantined"]
    if len(quarantined):
        _write_parquet(quarantined, storage.join(out_uri, "quarantine", safe_id(run_id), f"{safe_id(partition)}.parquet"))
    counts = {o: int((table["outcome"] == o).sum()) for o in OUTCOMES}
    storage.write_json(success_uri, {"manifest_uri": manifest_uri, "manifest_sha256": manifest_sha,
                                     "config": config.to_dict(), "counts": counts, "n_clips": n})
    seconds = time.perf_counter() - t_start
    progress(f"[{partition}] done in {seconds:.1f}s: {counts}")
    return PartitionRun(partition, run_id, stage, results_uri, counts, n, seconds, rows=rows)


def _id_rejection(record: dict[str, Any], seen: Counter[str]) -> ClipError | None:
    """A clip id that cannot name files, or one already used in this partition, is quarantined
    (never renamed: the id is the dataset's key; a repeat is listed as ``<id>#2``, ``#3``…).
    Counts the id as seen."""
    from avalign.data.manifest import clip_id_problem

    raw = str(record.get("clip_id") or "")
    problem = clip_id_problem(raw)
    if problem:
        return ClipError(problem, reason="bad_clip_id")
    seen[raw] += 1
    if seen[raw] > 1:
        record["clip_id"] = f"{raw}#{seen[raw]}"
        return ClipError(f"clip_id {raw!r} appears more than once in the manifest; the first row is processed",
                         reason="duplicate_clip_id")
    return None


def reject_clip(record: dict[str, Any], stage: str, error: ClipError, *, run_id: str,
                partition: str) -> dict[str, Any]:
    """The quarantined row (and trace) of a manifest row that is not processed at all."""
    clip_id = safe_id(record.get("clip_id") or "", unique=True)
    row = _base_row(record, clip_id, run_id, partition)
    row["reason"] = f"{error.reason}: {error}"
    trace_uri = storage.join(stage, "traces", f"{clip_id}.json")
    storage.write_bytes(trace_uri, dumps({"clip_id": clip_id, "manifest_clip_id": str(record.get("clip_id")),
                                          "source_uri": row["source_uri"], "outcome": "quarantined",
                                          "reason": row["reason"]}))
    row["trace_uri"] = trace_uri
    return row


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def process_clip(record: dict[str, Any], stage: str, *, client, planner: Planner, config: AlignConfig,
                 model_versions: dict[str, str], run_id: str, partition: str) -> dict[str, Any]:
    """One clip end to end, returning its results-table row. Never raises a ClipError."""
    t0 = time.perf_counter()
    clip_id = safe_id(record.get("clip_id") or "", unique=True)  # '../x', '/abs', NUL: a plain name
    source_uri = str(record.get("source_uri") or "")
    row = _base_row(record, clip_id, run_id, partition)
    try:
        if not source_uri:
            raise ClipError("manifest row has no source_uri", reason="bad_manifest_row")
        with storage.local_copy(source_uri) as local:
            clip = decode_clip(Path(local), config)
            run = align_decoded(clip, client=client, planner=planner, config=config)
            row.update(_write_outputs(clip, run, stage, clip_id, source_uri, config))
        row.update({
            "outcome": run.outcome, "reason": run.reason,
            "cycles": sum(1 for c in run.cycles if c.plan),
            "actions": ",".join(step["action"] for step in run.best_plan),
            "plan_json": json.dumps(run.best_plan, sort_keys=True),
            "alignment_before": run.before["alignment"], "sync_before": run.before["sync"],
            "alignment_after": run.after["alignment"], "sync_after": run.after["sync"],
            "offset_est_before_ms": run.before.get("offset_ms"), "offset_est_after_ms": run.after.get("offset_ms"),
        })
        row["passed"] = config.passes(row["alignment_after"], row["sync_after"],
                                      run.after.get("offset_ms") is not None, run.after.get("content"))
        row["improved_or_passed"] = bool(run.outcome == "improved" or row["passed"])
        seconds = time.perf_counter() - t0
        trace = trace_document(clip_id, run, model_versions=model_versions, config=config,
                               source_uri=source_uri, seconds=seconds)
        trace_uri = storage.join(stage, "traces", f"{clip_id}.json")
        storage.write_bytes(trace_uri, dumps(trace))
        row["trace_uri"] = trace_uri
    except ServingError:
        raise  # Triton is down: fail the task, let Airflow retry; nothing is published
    except ClipError as exc:
        row.update({"outcome": "quarantined", "reason": f"{exc.reason}: {exc}"})
    except Exception as exc:  # a bug must not take the partition down; keep the evidence
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        row.update({"outcome": "quarantined", "reason": f"internal_error: {tb}"})
    if row["outcome"] == "quarantined":
        trace_uri = storage.join(stage, "traces", f"{clip_id}.json")
        storage.write_bytes(trace_uri, dumps({"clip_id": clip_id, "source_uri": source_uri,
                                              "outcome": "quarantined", "reason": row["reason"]}))
        row["trace_uri"] = trace_uri
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _base_row(record: dict[str, Any], clip_id: str, run_id: str, partition: str) -> dict[str, Any]:
    def num(key: str) -> float | None:
        value = record.get(key)
        try:
            return None if value is None or pd.isna(value) else float(value)
        except (TypeError, ValueError):
            return None

    return {
        "clip_id": clip_id, "partition": partition, "run_id": run_id,
        "source_uri": str(record.get("source_uri") or ""),
        "outcome": "quarantined", "reason": None, "cycles": 0, "actions": "", "plan_json": "[]",
        "alignment_before": None, "sync_before": None, "alignment_after": None, "sync_after": None,
        "passed": False, "improved_or_passed": False,
        "duration_in_s": None, "duration_out_s": None, "duration_error_s": None,
        "peak_out": None, "clipped_fraction_out": None,
        "offset_est_before_ms": None, "offset_est_after_ms": None,
        "output_uri": None, "audio_uri": None, "trace_uri": None, "output_sha256": None,
        "seconds": 0.0,
        "injected_offset_ms": num("offset_ms"), "injected_snr_db": num("snr_db"),
        "corruption_types": str(record.get("corruption_types") or ""),
        "corruption": str(record.get("corruption") or "[]"),
        "reference_audio_uri": record.get("reference_audio_uri") or None,
        "category": record.get("category") or None,
    }


def _write_outputs(clip, run, stage: str, clip_id: str, source_uri: str, config: AlignConfig) -> dict[str, Any]:
    """Apply the kept plan to the native-rate audio; write FLAC + remuxed video for improved clips."""
    from avalign.actions.registry import apply_plan

    native = clip.audio_native
    duration_in = native.shape[1] / clip.native_rate
    if run.outcome != "improved" or not config.write_outputs:
        out_audio, output_uri, audio_uri, sha = native, source_uri, None, None
    else:
        result = apply_plan(native, clip.native_rate, run.best_plan)
        out_audio = np.asarray(result.audio, dtype=np.float32)
        output_uri, audio_uri, sha = _publishable_media(clip, out_audio, stage, clip_id)
    if not np.isfinite(out_audio).all():
        raise ClipError("edited audio contains NaN/Inf", reason="edit_produced_nan")
    duration_out = out_audio.shape[1] / clip.native_rate
    peak = float(np.max(np.abs(out_audio))) if out_audio.size else 0.0
    return {
        "duration_in_s": round(duration_in, 6), "duration_out_s": round(duration_out, 6),
        "duration_error_s": round(abs(duration_out - duration_in), 6),
        "peak_out": round(peak, 6), "clipped_fraction_out": float(np.mean(np.abs(out_audio) >= 0.999)),
        "output_uri": output_uri, "audio_uri": audio_uri,
        "output_sha256": sha if sha else (storage.sha256(source_uri) if output_uri else None),
    }


def _publishable_media(clip, audio: np.ndarray, stage: str, clip_id: str) -> tuple[str, str, str]:
    """Write edited FLAC and the remux (video copied bit for bit) into staging; returns uris + sha."""
    from avalign.media.remux import remux_with_audio, write_audio

    with tempfile.TemporaryDirectory(prefix="avalign_out_") as tmp:
        flac = write_audio(Path(tmp) / f"{clip_id}.flac", audio, clip.native_rate)
        video = remux_with_audio(clip.path, audio, clip.native_rate, Path(tmp) / f"{clip_id}.mp4")
        audio_uri = storage.join(stage, "audio", flac.name)
        video_uri = storage.join(stage, "clips", Path(video).name)
        storage.upload_file(flac, audio_uri)
        storage.upload_file(video, video_uri)
        sha = hashlib.sha256(Path(video).read_bytes()).hexdigest()
    return video_uri, audio_uri, sha


RESULT_COLUMNS = [
    "clip_id", "partition", "run_id", "source_uri", "outcome", "reason", "cycles", "actions", "plan_json",
    "alignment_before", "sync_before", "alignment_after", "sync_after", "passed", "improved_or_passed",
    "duration_in_s", "duration_out_s", "duration_error_s", "peak_out", "clipped_fraction_out",
    "offset_est_before_ms", "offset_est_after_ms", "output_uri", "audio_uri", "trace_uri", "output_sha256",
    "seconds", "injected_offset_ms", "injected_snr_db", "corruption_types", "corruption", "reference_audio_uri",
    "category",
]
_FLOATS = ["alignment_before", "sync_before", "alignment_after", "sync_after", "duration_in_s", "duration_out_s",
           "duration_error_s", "peak_out", "clipped_fraction_out", "offset_est_before_ms", "offset_est_after_ms",
           "seconds", "injected_offset_ms", "injected_snr_db"]


def results_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows → the typed results table of docs/contracts.md."""
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for col in _FLOATS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["cycles"] = df["cycles"].fillna(0).astype("int64")
    for col in ("passed", "improved_or_passed"):
        df[col] = pd.Series([bool(v) if pd.notna(v) else False for v in df[col]], index=df.index, dtype=bool)
    for col in ("clip_id", "partition", "run_id", "source_uri", "outcome", "actions", "plan_json", "corruption_types",
                "corruption"):
        df[col] = df[col].fillna("").astype(str)
    return df


def _write_parquet(df: pd.DataFrame, uri: str) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())
