"""MLflow record of a rebuild: one parent run per DAG run, one nested run per partition.

Why: a rebuild changes published data; MLflow keeps what each one did (parameters, counts per
outcome, score distributions before/after, time per clip, the GX verdict) next to the artifacts a
reviewer needs (results table, histograms, spectrograms, the GX validation result), so rebuilds
can be compared run against run.

Runs are written through an explicit ``MlflowClient`` (no fluent ``mlflow.start_run`` state), so
logging never depends on, or leaks into, the process-global active run. MLflow is imported inside
the functions: it is slow to import and most callers of this package never log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "av_align"
PARENT_TAG = "mlflow.parentRunId"
SCORES: tuple[str, ...] = ("alignment", "sync")
OUTCOMES: tuple[str, ...] = ("improved", "kept_original", "quarantined")

_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH_PARAMS = 100  # MLflow's limit per log_batch
_BATCH_METRICS = 1000


@dataclass
class PartitionSummary:
    """What the DAG knows about one partition once it is gated and (maybe) published."""

    partition: str
    results_uri: str
    gate: dict[str, Any]  # GateResult.to_dict(): success, statistics, failed_expectations, ...
    published: bool
    spectrograms: list[str] = field(default_factory=list)  # local PNG paths (before/after pairs)
    params: dict[str, Any] = field(
        default_factory=dict
    )  # partition-only params (manifest_uri, ...)

    def __post_init__(self) -> None:
        if hasattr(self.gate, "to_dict"):  # a GateResult passed as is
            self.gate = self.gate.to_dict()
        self.gate = dict(self.gate or {})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionSummary:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite store under the repo's ``var/mlflow/``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    folder = Path(__file__).resolve().parents[3] / "var" / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def mlflow_client(tracking_uri: str):
    """An ``MlflowClient`` on ``tracking_uri`` whose store exists (see :func:`ensure_store`)."""
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    db = _sqlite_path(tracking_uri)
    if db is None:  # a server or another database creates its own schema
        return MlflowClient(tracking_uri=tracking_uri)
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # creates and migrates a fresh store, inside the lock
    return client


def ensure_store(tracking_uri: str) -> None:
    """Create a fresh SQLite store once, however many processes start on it together.

    MLflow builds a new SQLite store by running its schema migrations on first use. Two processes
    doing that at once (two backfill days logging to one fresh ``mlflow.db``) fail with
    "table ... already exists" or "duplicate column name" and leave the schema half-migrated, so
    every later attempt fails too (measured: 4 of 6 processes started together on a fresh store).
    An exclusive lock on ``<db>.lock`` around the first use serialises it; other stores (a server,
    PostgreSQL) are left alone.
    """
    mlflow_client(tracking_uri)


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix):]) if tracking_uri.startswith(prefix) else None


def log_rebuild(
    tracking_uri: str,
    *,
    run_name: str,
    params: dict[str, Any],
    partitions: list[PartitionSummary],
    experiment: str = DEFAULT_EXPERIMENT,
    spectrograms_per_partition: int = 3,
) -> str:
    """Log one rebuild; returns the parent run id.

    A partition whose ``spectrograms`` list is empty gets up to ``spectrograms_per_partition``
    pairs drawn from its results table (improved clips with the largest alignment gain; 0: none).
    A partition whose results table cannot be read is logged as a FAILED nested run with the
    error, and the others are still logged.
    """
    from avalign.errors import StorageError

    client = mlflow_client(tracking_uri)
    experiment_id = _experiment_id(client, experiment, tracking_uri)
    parent = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={"avalign.kind": "rebuild", "avalign.n_partitions": str(len(partitions))},
    )
    parent_id = parent.info.run_id
    try:
        flat_params = _flatten(params)
        _log_batch(client, parent_id, params=flat_params)
        frames = []
        rows = []
        for summary in partitions:
            child = client.create_run(
                experiment_id,
                run_name=f"{run_name}/{summary.partition}",
                tags={
                    PARENT_TAG: parent_id,
                    "avalign.kind": "partition",
                    "avalign.partition": summary.partition,
                },
            )
            try:
                frame, metrics = _log_partition(
                    client, child.info.run_id, summary, flat_params, spectrograms_per_partition
                )
            except StorageError as exc:
                log.warning("partition %s not logged: %s", summary.partition, exc)
                client.set_tag(child.info.run_id, "avalign.error", str(exc)[:5000])
                client.set_terminated(child.info.run_id, status="FAILED")
                rows.append({"partition": summary.partition, "error": str(exc)})
                continue
            except BaseException:
                client.set_terminated(child.info.run_id, status="FAILED")
                raise
            client.set_terminated(child.info.run_id, status="FINISHED")
            frames.append(frame)
            rows.append({"partition": summary.partition, "run_id": child.info.run_id, **metrics})
        _log_parent_totals(client, parent_id, partitions, frames, rows)
    except BaseException:
        client.set_terminated(parent_id, status="FAILED")
        raise
    client.set_terminated(parent_id, status="FINISHED")
    return parent_id


def partition_metrics(frame: Any) -> dict[str, float]:
    """Counts per outcome, score distributions before/after, seconds per clip of a results table."""
    metrics: dict[str, float] = {"n_clips": float(len(frame))}
    outcome = frame["outcome"] if "outcome" in frame.columns else None
    for name in OUTCOMES:
        metrics[f"n_{name}"] = float((outcome == name).sum()) if outcome is not None else 0.0
    n = len(frame)
    for column in ("passed", "improved_or_passed"):
        if column in frame.columns and n:
            metrics[f"{column}_share"] = float((frame[column] == True).sum()) / n
    if n:
        metrics["quarantined_share"] = metrics["n_quarantined"] / n
    for score in SCORES:
        for when in ("before", "after"):
            metrics.update(_distribution(frame, f"{score}_{when}"))
        before, after = f"{score}_before", f"{score}_after"
        if before in frame.columns and after in frame.columns:
            gain = (frame[after].astype(float) - frame[before].astype(float)).dropna()
            if len(gain):
                metrics[f"{score}_gain_mean"] = float(gain.mean())
    if "seconds" in frame.columns:
        seconds = frame["seconds"].astype(float).dropna()
        if len(seconds):
            metrics["seconds_per_clip_mean"] = float(seconds.mean())
            metrics["seconds_per_clip_median"] = float(seconds.median())
            metrics["seconds_total"] = float(seconds.sum())
    for when in ("before", "after"):
        column = f"offset_est_{when}_ms"
        if column in frame.columns:
            offsets = frame[column].astype(float).abs().dropna()
            if len(offsets):
                metrics[f"offset_abs_{when}_ms_median"] = float(offsets.median())
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def _distribution(frame: Any, column: str) -> dict[str, float]:
    if column not in frame.columns:
        return {}
    values = frame[column].astype(float).dropna()
    if values.empty:
        return {}
    return {
        f"{column}_mean": float(values.mean()),
        f"{column}_median": float(values.median()),
        f"{column}_p10": float(values.quantile(0.10)),
        f"{column}_p90": float(values.quantile(0.90)),
    }


def _log_partition(
    client,
    run_id: str,
    summary: PartitionSummary,
    parent_params: dict[str, str],
    n_spectrograms: int,
):
    import pandas as pd

    from avalign.data import storage
    from avalign.tracking.plots import clip_spectrograms, score_histogram_png

    gate = summary.gate
    stats = gate.get("statistics") or {}
    with tempfile.TemporaryDirectory(prefix="avalign-mlflow-") as tmp:
        tmp_dir = Path(tmp)
        table = tmp_dir / "results" / "results.parquet"
        table.parent.mkdir()
        storage.download_file(summary.results_uri, table)
        frame = pd.read_parquet(table)
        frame.to_csv(table.with_suffix(".csv"), index=False)

        params = {
            **parent_params,
            "partition": summary.partition,
            "results_uri": summary.results_uri,
            **_flatten(summary.params),
        }
        metrics = partition_metrics(frame)
        metrics["gx_success"] = 1.0 if gate.get("success") else 0.0
        metrics["published"] = 1.0 if summary.published else 0.0
        for key in ("evaluated_expectations", "unsuccessful_expectations"):
            if isinstance(stats.get(key), (int, float)):
                metrics[f"gx_{key}"] = float(stats[key])
        failed = list(gate.get("failed_expectations") or [])
        tags = {
            "avalign.gx_success": str(bool(gate.get("success"))).lower(),
            "avalign.published": str(bool(summary.published)).lower(),
            "avalign.gx_failed": "; ".join(failed)[:4000],
        }
        if gate.get("data_docs_uri"):
            tags["avalign.gx_data_docs_uri"] = str(gate["data_docs_uri"])
        _log_batch(client, run_id, params=params, metrics=metrics, tags=tags)

        plots = tmp_dir / "plots"
        plots.mkdir()
        for score in SCORES:
            before, after = (frame.get(f"{score}_{w}") for w in ("before", "after"))
            if before is not None and after is not None:
                score_histogram_png(
                    before.tolist(),
                    after.tolist(),
                    f"{summary.partition}: {score} score",
                    plots / f"{score}_hist.png",
                )
        gx_dir = tmp_dir / "gx"
        gx_dir.mkdir()
        (gx_dir / "gate.json").write_text(json.dumps(gate, indent=2, sort_keys=True, default=str))
        if gate.get("result_uri") and storage.exists(gate["result_uri"]):
            storage.download_file(gate["result_uri"], gx_dir / "validation.json")

        spectrograms = [Path(p) for p in summary.spectrograms]
        if not spectrograms and n_spectrograms > 0:
            spectrograms = clip_spectrograms(
                frame, tmp_dir / "spectrograms", max_clips=n_spectrograms
            )

        client.log_artifacts(run_id, str(table.parent))  # results.parquet, results.csv at the root
        client.log_artifacts(run_id, str(plots), "plots")
        client.log_artifacts(run_id, str(gx_dir), "gx")
        for png in spectrograms:
            client.log_artifact(run_id, str(png), "spectrograms")
    return frame, metrics


def _log_parent_totals(client, parent_id: str, partitions, frames, rows) -> None:
    import pandas as pd

    totals: dict[str, float] = {
        "n_partitions": float(len(partitions)),
        "n_partitions_gx_passed": float(sum(bool(p.gate.get("success")) for p in partitions)),
        "n_partitions_published": float(sum(bool(p.published) for p in partitions)),
        "n_partitions_failed": float(sum(1 for r in rows if "error" in r)),
    }
    if frames:
        pooled = partition_metrics(pd.concat(frames, ignore_index=True))
        totals.update(pooled)
    _log_batch(client, parent_id, metrics=totals)
    with tempfile.TemporaryDirectory(prefix="avalign-mlflow-") as tmp:
        path = Path(tmp) / "partitions.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        client.log_artifact(parent_id, str(path))


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    """Existing experiment, or a new one whose artifacts sit next to a SQLite/file store."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = _artifact_location(tracking_uri, name)
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent rebuild
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """``<db folder>/artifacts/<experiment>`` for a SQLite store; the server decides otherwise.

    Without it MLflow would put artifacts under ``./mlruns`` of whatever the working folder is.
    """
    db = _sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "artifacts" / experiment).resolve().as_uri()


def _log_batch(client, run_id: str, *, params=None, metrics=None, tags=None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    param_items = [Param(k, v) for k, v in (params or {}).items()]
    metric_items = [
        Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if math.isfinite(float(v))
    ]
    tag_items = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, len(param_items), _BATCH_PARAMS):
        client.log_batch(run_id, params=param_items[i : i + _BATCH_PARAMS])
    for i in range(0, len(metric_items), _BATCH_METRICS):
        client.log_batch(run_id, metrics=metric_items[i : i + _BATCH_METRICS])
    if tag_items:
        client.log_batch(run_id, tags=tag_items)


def _flatten(params: dict[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys, values as strings within MLflow's length limit."""
    flat: dict[str, str] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        flat[name] = text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."
    return flat


def _quiet_mlflow() -> None:
    """No progress bars, no 'creating tables' chatter from a fresh SQLite store."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
