"""Task bodies of the ``av_train_eval`` DAG: plain JSON in, plain JSON out, no Airflow imports.

``resolve_spec`` turns the DAG params and the triggering ``avalign://aligned`` asset events into a
``ComparisonSpec``: an event's extra names the av_align output, run id and partitions, which
become the dataset to compare on (source ``published``) and its recorded version. Without an
event (a manual run) the params decide; ``source="procedural"`` runs the benchmark instead.
"""

from __future__ import annotations

from typing import Any, Callable

from avalign.representation.compare import ComparisonSpec

PARAM_KEYS = ("variants", "seeds", "epochs", "device", "batch_size", "max_steps", "source", "output_uri", "partitions",
              "n_train", "n_eval", "duration_s", "eval_fraction", "workers", "register", "out_dir", "cache_dir")


def resolve_spec(params: dict[str, Any], events: list[dict[str, Any]] | None = None,
                 airflow_run_id: str | None = None) -> dict[str, Any]:
    """DAG params + asset-event extras → the comparison spec (JSON)."""
    values = {k: params.get(k) for k in PARAM_KEYS if params.get(k) not in (None, "")}
    latest = next((e for e in reversed(events or []) if e and e.get("output_uri")), None)
    if latest is not None and not values.get("output_uri") and values.get("source", "published") == "published":
        values["source"] = "published"
        values["output_uri"] = latest["output_uri"]
        values.setdefault("partitions", list(latest.get("partitions") or []))
        values["av_align_run_id"] = latest.get("run_id")
    if values.get("output_uri") and "source" not in values:
        values["source"] = "published"
    tracking = params.get("mlflow_tracking_uri")
    if not tracking:
        from avalign.tracking.runs import default_tracking_uri

        tracking = default_tracking_uri()
    values["tracking_uri"] = tracking
    if airflow_run_id:
        values["run_name"] = f"av_train_eval {airflow_run_id}"
    return ComparisonSpec.from_dict(values).to_dict()


def prepare(spec: dict[str, Any], progress: Callable[[str], None] = print) -> dict[str, Any]:
    from avalign.representation.compare import prepare as _prepare

    return _prepare(ComparisonSpec.from_dict(spec), progress)


def train_eval(item: dict[str, Any], spec: dict[str, Any], prepared: dict[str, Any],
               progress: Callable[[str], None] = print) -> dict[str, Any]:
    from avalign.representation.compare import train_one

    return train_one(ComparisonSpec.from_dict(spec), prepared, item["variant"], int(item["seed"]), progress,
                     show_bar=True)


def summarize(results: list[dict[str, Any]], spec: dict[str, Any], prepared: dict[str, Any],
              progress: Callable[[str], None] = print) -> dict[str, Any]:
    from avalign.representation.compare import summarize as _summarize

    return _summarize(ComparisonSpec.from_dict(spec), prepared, list(results), progress)


def register(summarized: dict[str, Any], spec: dict[str, Any], prepared: dict[str, Any],
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    from avalign.representation.compare import register as _register

    """Registers the aligned model when the gate passed; always closes the parent run."""
    return _register(ComparisonSpec.from_dict(spec), prepared, summarized, progress)
