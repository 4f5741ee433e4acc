"""Publish a validated partition: one pointer file, written last and atomically.

``<out>/published/<partition>.json`` names the run, the manifest it came from, the results
table, the GX result and **every object** a consumer may read (clips, edited audio, traces, the
results table, the GX result) with its SHA-256 and size: the partition's integrity manifest,
re-checked by ``python -m avalign verify URI`` (avalign.agent.verify). Consumers read only
through pointers, so staging that never passed the gate is never seen.

Refusals (``IntegrityError``, nothing written): the partition has no ``_SUCCESS`` marker (an
attempt died mid-partition), the counts do not reconcile (in = improved + kept_original +
quarantined), or a staged clip's checksum differs from the one its run recorded.

Idempotence: the pointer's ``content_sha256`` covers what consumers get (per clip: outcome and
media checksums; not timings). Publishing the same content again, from the same run or from a
re-run under another run id, writes nothing and reports ``already`` (no second event).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from avalign.agent.partition import safe_id, stage_uri
from avalign.data import storage
from avalign.errors import AvalignError

POINTER_FORMAT = 2
OUTCOME_NAMES = ("improved", "kept_original", "quarantined")


class IntegrityError(AvalignError):
    """A partition that must not be published (or a published one that fails its checks)."""


@dataclass(frozen=True)
class Publication:
    pointer_uri: str | None  # None: not published (gate failed)
    already: bool  # True: the same content was already published (no new event)
    n_outputs: int


def pointer_uri(out_uri: str, partition: str) -> str:
    return storage.join(out_uri, "published", f"{safe_id(partition)}.json")


def publish_partition(out_uri: str, run_id: str, partition: str, gate: Any) -> Publication:
    """Write the pointer if the gate passed. ``gate`` has ``success`` and ``result_uri``."""
    if not bool(getattr(gate, "success", False)):
        return Publication(None, False, 0)
    document = build_pointer(out_uri, run_id, partition, getattr(gate, "result_uri", None))
    payload = json.dumps(document, sort_keys=True, indent=1).encode("utf-8")
    target = pointer_uri(out_uri, partition)
    if storage.exists(target):
        current = storage.read_bytes(target)
        if current == payload or _content_sha(current) == document["content_sha256"]:
            return Publication(target, True, len(document["outputs"]))
    storage.write_bytes(target, payload)
    return Publication(target, False, len(document["outputs"]))


def build_pointer(out_uri: str, run_id: str, partition: str, gx_result_uri: str | None) -> dict[str, Any]:
    """The pointer document of a finished, staged partition (checks and checksums every object)."""
    stage = stage_uri(out_uri, run_id, partition)
    success_uri = storage.join(stage, "_SUCCESS")
    if not storage.exists(success_uri):
        raise IntegrityError(f"partition {partition} of run {run_id} is not complete ({success_uri} missing): "
                             "an attempt stopped mid-partition; re-run align_partition before publishing")
    marker = storage.read_json(success_uri)
    results_uri = storage.join(stage, "results.parquet")
    table = results_frame(results_uri)
    counts = {o: int((table["outcome"] == o).sum()) for o in OUTCOME_NAMES}
    n_in = int(marker.get("n_clips", -1))
    if sum(counts.values()) != n_in or len(table) != n_in:
        raise IntegrityError(f"partition {partition}: counts do not reconcile: {n_in} clips in, "
                             f"{len(table)} result rows, {counts}")
    if table["clip_id"].duplicated().any():
        dupes = sorted(set(table.loc[table["clip_id"].duplicated(), "clip_id"]))
        raise IntegrityError(f"partition {partition}: duplicated clip ids in the results: {dupes[:5]}")

    outputs, objects = [], []
    for r in table.itertuples():
        r = r._replace(**{k: _text(getattr(r, k)) for k in ("trace_uri", "output_uri", "audio_uri", "output_sha256")})
        if r.trace_uri:
            objects.append(_object(r.trace_uri, "trace", r.clip_id))
        if r.outcome == "quarantined":
            continue
        outputs.append({"clip_id": r.clip_id, "outcome": r.outcome, "output_uri": r.output_uri,
                        "sha256": r.output_sha256, "audio_uri": r.audio_uri, "trace_uri": r.trace_uri})
        if r.output_uri:
            media = _object(r.output_uri, "clip" if r.outcome == "improved" else "source", r.clip_id)
            if r.output_sha256 and media["sha256"] != r.output_sha256:
                raise IntegrityError(f"partition {partition}: {r.output_uri} changed after its run wrote it "
                                     f"(sha256 {media['sha256'][:12]}…, recorded {r.output_sha256[:12]}…)")
            objects.append(media)
        if r.audio_uri:
            objects.append(_object(r.audio_uri, "audio", r.clip_id))
    objects.append(_object(results_uri, "results", None))
    if gx_result_uri and storage.exists(gx_result_uri):
        objects.append(_object(gx_result_uri, "gx", None))
    media_sha = {o["clip_id"]: o["sha256"] for o in outputs}
    audio_sha = {o["clip_id"]: o["sha256"] for o in objects if o["role"] == "audio"}
    content = [[r.clip_id, r.outcome, media_sha.get(r.clip_id), audio_sha.get(r.clip_id)]
               for r in table.sort_values("clip_id").itertuples()]
    return {
        "format": POINTER_FORMAT,
        "partition": partition,
        "run_id": run_id,
        "manifest_uri": marker.get("manifest_uri"),
        "manifest_sha256": marker.get("manifest_sha256"),
        "n_in": n_in,
        "results_uri": results_uri,
        "gx_result_uri": gx_result_uri,
        "counts": counts,
        "outputs": outputs,
        "objects": objects,
        "content_sha256": hashlib.sha256(json.dumps(content).encode("utf-8")).hexdigest(),
    }


def _text(value: Any) -> str | None:
    """A table cell as a string, or None when empty (None, NaN, "")."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    return str(value)


def _object(uri: str, role: str, clip_id: str | None) -> dict[str, Any]:
    digest, size = storage.checksum(uri)
    return {"uri": uri, "role": role, "clip_id": clip_id, "sha256": digest, "bytes": size}


def _content_sha(payload: bytes) -> str | None:
    try:
        return json.loads(payload).get("content_sha256")
    except (ValueError, AttributeError):
        return None


def read_published(out_uri: str) -> dict[str, dict[str, Any]]:
    """All published pointers of a dataset, by partition."""
    found = {}
    for uri in storage.list_files(storage.join(out_uri, "published"), suffix=".json"):
        doc = json.loads(storage.read_bytes(uri))
        found[doc["partition"]] = doc
    return found


def results_frame(uri: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
