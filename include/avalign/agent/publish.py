"""Publish a validated partition: one pointer file, written last and atomically.

``<out>/published/<partition>.json`` names the run, the results table, the GX result and every
output with its checksum. Consumers read only through pointers, so staging that never passed the
gate is never seen. Publishing the same run again writes nothing and reports ``already``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from avalign.agent.partition import safe_id, stage_uri
from avalign.data import storage


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
    stage = stage_uri(out_uri, run_id, partition)
    results_uri = storage.join(stage, "results.parquet")
    with storage.local_copy(results_uri) as local:
        table = pd.read_parquet(local)
    outputs = [
        {"clip_id": r.clip_id, "outcome": r.outcome, "output_uri": r.output_uri, "sha256": r.output_sha256,
         "audio_uri": r.audio_uri, "trace_uri": r.trace_uri}
        for r in table.itertuples() if r.outcome != "quarantined"
    ]
    document = {
        "partition": partition,
        "run_id": run_id,
        "results_uri": results_uri,
        "gx_result_uri": getattr(gate, "result_uri", None),
        "counts": {o: int((table["outcome"] == o).sum()) for o in ("improved", "kept_original", "quarantined")},
        "outputs": outputs,
    }
    payload = json.dumps(document, sort_keys=True, indent=1).encode("utf-8")
    target = pointer_uri(out_uri, partition)
    if storage.exists(target) and storage.read_bytes(target) == payload:
        return Publication(target, True, len(outputs))
    storage.write_bytes(target, payload)
    return Publication(target, False, len(outputs))


def read_published(out_uri: str) -> dict[str, dict[str, Any]]:
    """All published pointers of a dataset, by partition."""
    found = {}
    for uri in storage.list_files(storage.join(out_uri, "published"), suffix=".json"):
        doc = json.loads(storage.read_bytes(uri))
        found[doc["partition"]] = doc
    return found


def results_frame(uri: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
