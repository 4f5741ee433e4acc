"""Links out of and into the review pages: MLflow runs, and the page for an Airflow task's XCom.

Why here: the Airflow plugin's extra link reads a task instance's XCom (the dicts that
``avalign.tasks`` return) and needs the review URL of that run and partition; turning the dict
into a URL is plain Python and is tested without Airflow.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from avalign.review.paths import locate

log = logging.getLogger(__name__)


def page_url(target: str, /, **params: Any) -> str:
    """A relative URL of the review app (``partition?out=...``); None-valued params are left out."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{target}?{query}" if query else target


def review_target(value: Any, roots: dict[str, Path]) -> str | None:
    """The review page (relative to the app) for an ``av_align`` task's return value.

    Mapped partition tasks return ``results_uri``/``stage_uri`` (``<out>/runs/<run>/<part>/...``),
    ``prepare`` returns the spec (``output_uri``, ``run_id``), ``announce`` returns
    ``output_uri``/``run_id``. Outputs outside the review roots (or on s3) have no page: None.
    """
    if not isinstance(value, dict):
        return None
    stage = value.get("stage_uri") or (
        str(Path(value["results_uri"]).parent) if value.get("results_uri") else None)
    if stage and value.get("partition"):
        stage_path = Path(str(stage))
        out = locate(roots, stage_path.parent.parent.parent)
        if out is not None and stage_path.parent.parent.name == "runs":
            return page_url("partition", out=out, run=stage_path.parent.name, part=stage_path.name)
    if value.get("output_uri") and value.get("run_id"):
        out = locate(roots, value["output_uri"])
        if out is not None:
            return page_url("run", out=out, run=value["run_id"])
    return None


class MlflowLinks:
    """MLflow UI links of a rebuild (parent run) and of its partitions (nested runs).

    Runs are found the way ``avalign.demo`` finds them: ``params.run_id`` is the storage run id,
    nested runs carry the tag ``avalign.partition``. Lookups are cached for ``ttl_s``; MLflow is
    imported on first use (about a second) and any MLflow failure just means no link.
    """

    def __init__(self, tracking_uri: str | None, ui_url: str, *, experiment: str = "av_align",
                 ttl_s: float = 60.0) -> None:
        self.tracking_uri = tracking_uri
        self.ui_url = ui_url.rstrip("/")
        self.experiment = experiment
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def links(self, rebuild_id: str) -> dict[str, str]:
        """{"": parent run URL, "<partition>": nested run URL}; empty when none is found."""
        if not self.tracking_uri:
            return {}
        with self._lock:
            hit = self._cache.get(rebuild_id)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
        try:
            found = self._lookup(rebuild_id)
        except Exception as exc:  # an MLflow outage must not break the review pages
            log.warning("MLflow lookup for %s failed: %s", rebuild_id, exc)
            found = {}
        with self._lock:
            self._cache[rebuild_id] = (time.monotonic(), found)
        return found

    def _lookup(self, rebuild_id: str) -> dict[str, str]:
        from avalign.tracking.runs import mlflow_client

        if "'" in rebuild_id:
            return {}
        client = mlflow_client(self.tracking_uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return {}
        runs = client.search_runs([exp.experiment_id], f"params.run_id = '{rebuild_id}'",
                                  order_by=["attributes.start_time DESC"], max_results=500)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        if not parents:
            return {}
        parent = parents[0].info.run_id
        found = {"": self.run_url(exp.experiment_id, parent)}
        for r in runs:
            if r.data.tags.get("mlflow.parentRunId") == parent and r.data.tags.get("avalign.partition"):
                found.setdefault(r.data.tags["avalign.partition"], self.run_url(exp.experiment_id, r.info.run_id))
        return found
