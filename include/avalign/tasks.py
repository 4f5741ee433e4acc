"""The ``av_align`` DAG's task bodies as plain functions: JSON-safe arguments and results.

Each function is one Airflow task (dags/av_align.py calls it in one line), so everything worth
testing runs without Airflow and the values passed between tasks are XCom-ready dicts. Nothing
here imports Airflow; heavy modules (torch, GX, MLflow) load inside the functions that need them.

Idempotence: the rebuild id is the Airflow run id made path-safe, so a retried or cleared task of
the same DAG run writes into the same staging folder ``<out>/runs/<rebuild_id>/<partition>/``;
``run_partition`` stages and marks completion itself, and ``publish_partition`` writes the pointer
last, atomically, and only once for the same content.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from avalign.errors import AvalignError

# DAG params that override AlignConfig fields (None in the params: the AlignConfig default).
CONFIG_PARAMS = ("max_cycles", "alignment_threshold", "sync_threshold", "planner",
                 "max_quarantined_share", "min_improved_or_passed_share", "scorer_repository")
GATE_PARAMS = ("max_quarantined_share", "min_improved_or_passed_share", "duration_tolerance_s")


def rebuild_id(airflow_run_id: str, override: str | None = None) -> str:
    """The storage run id: ``override`` if given, else the Airflow run id, path-safe.

    ``manual__2026-01-02T03:04:05+00:00`` → ``manual__2026-01-02T03_04_05_00_00`` (contracts.md).
    """
    from avalign.agent.partition import safe_id

    value = override if override else airflow_run_id
    if not value or not str(value).strip():
        raise AvalignError("a rebuild needs a run id (the Airflow run id or the rebuild_id param)")
    return safe_id(str(value))


def resolve_spec(params: dict[str, Any], airflow_run_id: str) -> dict[str, Any]:
    """DAG params → the rebuild's spec, every default filled in (what later tasks and MLflow see).

    Unset thresholds come from ``AlignConfig`` and the tracking URI from ``default_tracking_uri``,
    so the DAG file never imports avalign (and never duplicates a default).
    """
    from avalign.agent.config import AlignConfig
    from avalign.credentials import check_no_credentials, redact_url

    check_no_credentials(params, ("dataset_uri", "output_uri", "mlflow_tracking_uri", "triton_url",
                                  "scorer_repository"))
    dataset_uri = str(params.get("dataset_uri") or "").strip()
    output_uri = str(params.get("output_uri") or "").strip()
    if not dataset_uri or not output_uri:
        raise AvalignError("params dataset_uri and output_uri are required")
    if dataset_uri.rstrip("/") == output_uri.rstrip("/"):
        raise AvalignError(f"output_uri must differ from dataset_uri ({dataset_uri})")
    config = AlignConfig.from_dict({k: params.get(k) for k in CONFIG_PARAMS})
    tracking_uri = params.get("mlflow_tracking_uri")
    tracking_source = "param"
    if not tracking_uri:
        from avalign.tracking.runs import default_tracking_uri

        tracking_uri, tracking_source = default_tracking_uri(), "environment"
    return {
        "dataset_uri": dataset_uri,
        "output_uri": output_uri,
        "partitions": [str(p) for p in params.get("partitions") or []],
        "partition_size": int(params.get("partition_size") or 64),
        "run_id": rebuild_id(airflow_run_id, params.get("rebuild_id")),
        "airflow_run_id": airflow_run_id,
        "config": config.to_dict(),
        "triton_url": str(params.get("triton_url") or ""),
        # Redacted: the spec is XCom. log_to_mlflow re-reads an environment URI (its password) itself.
        "tracking_uri": redact_url(str(tracking_uri)),
        "tracking_uri_source": tracking_source,
    }


def is_manifest_dataset(uri: str) -> bool:
    """A dataset has ``<uri>/manifests/*.parquet``; anything else is a folder/prefix of videos."""
    from avalign.data import storage

    return bool(storage.list_files(storage.join(uri, "manifests"), suffix=".parquet"))


def ingest_if_raw(spec: dict[str, Any], progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The dataset to align: ``dataset_uri`` itself, or its videos ingested into ``<out>/dataset``."""
    from avalign.data import storage

    source = spec["dataset_uri"]
    if is_manifest_dataset(source):
        progress(f"{source} is a manifest dataset: nothing to ingest")
        return {"dataset_uri": source, "ingested": False}
    from avalign.data.ingest import ingest

    target = storage.join(spec["output_uri"], "dataset")
    progress(f"{source} has no manifests/: ingesting its videos into {target}")
    report = ingest(source, target, partition_size=spec["partition_size"], progress=progress)
    return {"dataset_uri": target, "ingested": True, "source_uri": source, "partitions": report.partitions,
            "n_accepted": report.n_accepted, "n_rejected": report.n_rejected, "rejects_uri": report.rejects_uri}


def list_partition_manifests(dataset_uri: str, partitions: list[str] | None = None) -> list[dict[str, str]]:
    """One ``{"partition", "manifest_uri"}`` per (selected) partition: the DAG's mapping input."""
    from avalign.agent.rebuild import resolve_manifests

    items = []
    for uri in resolve_manifests(dataset_uri, partitions or None):
        name = uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")
        items.append({"partition": name, "manifest_uri": uri})
    return items


def align_partition(item: dict[str, str], spec: dict[str, Any],
                    progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the agent loop over one partition (a local tritonserver when ``triton_url`` is empty)."""
    from avalign.agent.config import AlignConfig
    from avalign.agent.partition import run_partition
    from avalign.agent.rebuild import triton_client

    config = AlignConfig.from_dict(spec["config"])
    url = spec["triton_url"] or None
    with _learned_scorer(url, config, progress) as url, \
            triton_client(url, progress, planner=config.planner) as client:
        run = run_partition(item["manifest_uri"], spec["output_uri"], run_id=spec["run_id"],
                            config=config, client=client, progress=progress)
    return {**run.to_dict(), "manifest_uri": item["manifest_uri"]}


@contextlib.contextmanager
def _learned_scorer(url: str | None, config, progress: Callable[[str], None]):
    """With ``scorer_repository`` and no ``triton_url``: a local tritonserver whose av_scorer is the
    exported learned one (avalign.representation.export); otherwise ``url`` unchanged."""
    if url or not config.scorer_repository:
        yield url
        return
    from avalign.representation.export import scorer_server

    with scorer_server(config.scorer_repository, progress) as local:
        yield local


def gate_partition(run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Great Expectations over the partition's results table; the report goes to ``<stage>/gx``."""
    from avalign.data import storage
    from avalign.quality.gate import validate_partition

    config = spec["config"]
    gate = validate_partition(run["results_uri"], storage.join(run["stage_uri"], "gx"),
                              **{k: config[k] for k in GATE_PARAMS})
    return {**run, "gate": gate.to_dict()}


def publish(gated: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Write ``published/<partition>.json`` when the gate passed; a failed one stays unpublished."""
    from avalign.agent.publish import publish_partition
    from avalign.quality.gate import GateResult

    gate = GateResult.from_dict(gated["gate"])
    pub = publish_partition(spec["output_uri"], spec["run_id"], gated["partition"], gate)
    return {**gated, "pointer_uri": pub.pointer_uri, "already_published": pub.already,
            "n_outputs": pub.n_outputs}


def asset_event_extra(published: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The extra of the ``avalign://aligned`` asset event, or None when there is nothing new.

    New means at least one partition got a pointer whose content changed: re-publishing the same
    run (a retry, a re-run that changed nothing) does not wake downstream consumers again.
    """
    fresh = [p for p in published if p.get("pointer_uri") and not p.get("already_published")]
    if not fresh:
        return None
    return {
        "output_uri": spec["output_uri"],
        "run_id": spec["run_id"],
        "partitions": sorted(p["partition"] for p in fresh),
        "pointers": sorted(p["pointer_uri"] for p in fresh),
        "rejected": sorted(p["partition"] for p in published if not p.get("pointer_uri")),
    }


def log_to_mlflow(published: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """One MLflow parent run for the DAG run, a nested run per partition (avalign.tracking)."""
    from avalign.tracking.runs import PartitionSummary, log_rebuild

    t0 = time.perf_counter()
    summaries = [
        PartitionSummary(partition=p["partition"], results_uri=p["results_uri"], gate=p["gate"],
                         published=bool(p.get("pointer_uri")),
                         params={"manifest_uri": p.get("manifest_uri"), "pointer_uri": p.get("pointer_uri"),
                                 "stage_uri": p.get("stage_uri"), "reused": p.get("reused")})
        for p in published
    ]
    params = {"dataset_uri": spec["dataset_uri"], "output_uri": spec["output_uri"],
              "run_id": spec["run_id"], "airflow_run_id": spec["airflow_run_id"],
              "triton_url": spec["triton_url"] or "local", **spec["config"]}
    tracking_uri = spec["tracking_uri"]
    if spec.get("tracking_uri_source") == "environment":
        from avalign.tracking.runs import default_tracking_uri

        tracking_uri = default_tracking_uri()
    parent = log_rebuild(tracking_uri, run_name=f"av_align {spec['run_id']}", params=params,
                         partitions=summaries)
    return {"mlflow_run_id": parent, "tracking_uri": spec["tracking_uri"],
            "seconds": round(time.perf_counter() - t0, 2)}
