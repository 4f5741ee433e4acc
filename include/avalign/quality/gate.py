"""The Great Expectations gate: a partition is published only if its results table passes.

Why: the agent loop judges clips one at a time; the gate judges the partition as a whole (schema,
score ranges, durations kept, no clipping, quarantine and success shares) before anything is
published, and leaves a Data Docs site next to the run so a rejection can be read by a person.

GX runs in a throw-away file-mode context in a local temp folder (the validation result and the
Data Docs HTML are built there), then both are copied to ``gx_dir_uri`` through
:mod:`avalign.data.storage`, so the run folder may be local or on S3. Great Expectations is
imported inside the functions: importing it costs about two seconds, and :class:`GateResult` is
needed by callers (publish, tracking) that never validate.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The results table of docs/contracts.md, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "partition",
    "run_id",
    "source_uri",
    "outcome",
    "reason",
    "cycles",
    "actions",
    "plan_json",
    "alignment_before",
    "sync_before",
    "alignment_after",
    "sync_after",
    "passed",
    "improved_or_passed",
    "duration_in_s",
    "duration_out_s",
    "duration_error_s",
    "peak_out",
    "clipped_fraction_out",
    "offset_est_before_ms",
    "offset_est_after_ms",
    "output_uri",
    "audio_uri",
    "trace_uri",
    "output_sha256",
    "seconds",
    "injected_offset_ms",
    "injected_snr_db",
    "corruption_types",
    "reference_audio_uri",
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "partition",
    "run_id",
    "source_uri",
    "outcome",
    "cycles",
    "actions",
    "plan_json",
    "passed",
    "improved_or_passed",
    "seconds",
    "corruption_types",
)
SCORE_COLUMNS: tuple[str, ...] = (
    "alignment_before",
    "alignment_after",
    "sync_before",
    "sync_after",
)
OUTCOMES: tuple[str, ...] = ("improved", "kept_original", "quarantined")

# Clipping is checked only on audio this platform wrote: a kept_original clip publishes the
# untouched source, whose own clipping is a property of the input, not of an edit.
EDITED_ROWS = 'outcome == "improved"'
NOT_QUARANTINED_ROWS = 'outcome != "quarantined"'
IMPROVED_OR_PASSED_ROWS = 'outcome == "improved" or passed == True'

# Data Docs files not worth copying with every run: help animations (3.3 MB) no page links to.
_DOCS_SKIP = re.compile(r"^static/images/.*\.gif$")
_EPS = 1e-9  # so that a share exactly at its limit passes despite float rounding


@dataclass
class GateResult:
    """Verdict of the gate on one partition (JSON-friendly: see :meth:`to_dict`)."""

    success: bool
    statistics: dict[str, Any]
    failed_expectations: list[str]
    result_uri: str
    data_docs_uri: str | None
    details: dict[str, Any] = field(default_factory=dict)  # counts behind each failed check

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """Rebuild from :meth:`to_dict` output (e.g. an Airflow XCom)."""
        return cls(
            success=bool(data["success"]),
            statistics=dict(data.get("statistics") or {}),
            failed_expectations=list(data.get("failed_expectations") or []),
            result_uri=str(data.get("result_uri") or ""),
            data_docs_uri=data.get("data_docs_uri"),
            details=dict(data.get("details") or {}),
        )


def validate_partition(
    results_uri: str,
    gx_dir_uri: str,
    *,
    max_quarantined_share: float,
    min_improved_or_passed_share: float,
    duration_tolerance_s: float = 0.025,
) -> GateResult:
    """Validate one partition's ``results.parquet``; write ``validation.json`` and Data Docs.

    ``gx_dir_uri`` receives ``validation.json`` (the GX validation result) and
    ``data_docs/index.html`` (with the pages it links to). Failing expectations are returned as
    readable sentences; the partition fails when any expectation fails, an empty table included.
    """
    if not 0.0 <= float(max_quarantined_share) <= 1.0:
        raise ValueError(
            f"max_quarantined_share must be within [0, 1], got {max_quarantined_share!r}"
        )
    if not 0.0 <= float(min_improved_or_passed_share):  # > 1 is allowed: nothing passes
        raise ValueError(
            f"min_improved_or_passed_share must be >= 0, got {min_improved_or_passed_share!r}"
        )
    if duration_tolerance_s < 0:
        raise ValueError(f"duration_tolerance_s must be >= 0, got {duration_tolerance_s!r}")

    import pandas as pd

    from avalign.data import storage

    started = time.perf_counter()
    with storage.local_copy(results_uri) as local_path:
        frame = pd.read_parquet(local_path)

    partition = _single_value(frame, "partition") or Path(results_uri.rstrip("/")).parent.name
    run_id = _single_value(frame, "run_id") or "gate"
    suite = build_suite(
        max_quarantined_share=max_quarantined_share,
        min_improved_or_passed_share=min_improved_or_passed_share,
        duration_tolerance_s=duration_tolerance_s,
    )

    result_uri = storage.join(gx_dir_uri, "validation.json")
    docs_uri = storage.join(gx_dir_uri, "data_docs", "index.html")
    with tempfile.TemporaryDirectory(prefix="avalign-gx-") as tmp:
        validation, docs_dir = _run_checkpoint(frame, suite, Path(tmp), partition, run_id)
        if docs_dir is not None:
            _copy_tree(docs_dir, storage.join(gx_dir_uri, "data_docs"))
        else:
            docs_uri = None
        storage.write_json(result_uri, validation)  # last: its presence means the gate ran

    missing = set(RESULT_COLUMNS) - set(frame.columns)
    failed, details = describe_failures(validation, missing_columns=missing)
    statistics = _statistics(frame, validation)
    statistics["seconds_gate"] = round(time.perf_counter() - started, 3)
    return GateResult(
        success=bool(validation["success"]),
        statistics=statistics,
        failed_expectations=failed,
        result_uri=result_uri,
        data_docs_uri=docs_uri,
        details=details,
    )


def build_suite(
    *,
    max_quarantined_share: float,
    min_improved_or_passed_share: float,
    duration_tolerance_s: float,
    name: str = "avalign_results",
):
    """The expectation suite over a results table; ``meta.check`` names each check for messages."""
    import great_expectations as gx

    E = gx.expectations
    expectations: list[Any] = [
        E.ExpectTableRowCountToBeBetween(min_value=1, meta={"check": "not_empty"}),
        E.ExpectTableColumnsToMatchSet(
            column_set=list(RESULT_COLUMNS), exact_match=False, meta={"check": "schema"}
        ),
    ]
    expectations += [
        E.ExpectColumnValuesToNotBeNull(column=c, meta={"check": "required"})
        for c in REQUIRED_COLUMNS
    ]
    expectations += [
        E.ExpectColumnValuesToBeUnique(column="clip_id", meta={"check": "unique"}),
        E.ExpectColumnUniqueValueCountToBeBetween(
            column="partition", max_value=1, meta={"check": "single_value"}
        ),
        E.ExpectColumnUniqueValueCountToBeBetween(
            column="run_id", max_value=1, meta={"check": "single_value"}
        ),
        E.ExpectColumnValuesToBeInSet(
            column="outcome", value_set=list(OUTCOMES), meta={"check": "outcome"}
        ),
        E.ExpectColumnValuesToBeBetween(column="cycles", min_value=0, meta={"check": "cycles"}),
        E.ExpectColumnValuesToBeInSet(
            column="improved_or_passed",
            value_set=[True],
            row_condition=IMPROVED_OR_PASSED_ROWS,
            condition_parser="pandas",
            meta={"check": "consistent"},
        ),
    ]
    for column in SCORE_COLUMNS:
        expectations.append(
            E.ExpectColumnValuesToBeBetween(
                column=column, min_value=0.0, max_value=1.0, meta={"check": "score_range"}
            )
        )
        expectations.append(
            E.ExpectColumnValuesToNotBeNull(
                column=column,
                row_condition=NOT_QUARANTINED_ROWS,
                condition_parser="pandas",
                meta={"check": "score_present"},
            )
        )
    expectations += [
        E.ExpectColumnValuesToBeBetween(
            column="duration_error_s",
            min_value=0.0,
            max_value=float(duration_tolerance_s),
            meta={"check": "duration", "tolerance_s": float(duration_tolerance_s)},
        ),
        E.ExpectColumnValuesToBeBetween(
            column="clipped_fraction_out",
            min_value=0.0,
            max_value=0.0,
            row_condition=EDITED_ROWS,
            condition_parser="pandas",
            meta={"check": "clipped"},
        ),
        E.ExpectColumnValuesToBeBetween(
            column="peak_out",
            min_value=0.0,
            max_value=1.0,
            row_condition=EDITED_ROWS,
            condition_parser="pandas",
            meta={"check": "peak"},
        ),
        E.ExpectColumnValuesToNotBeInSet(
            column="outcome",
            value_set=["quarantined"],
            mostly=_mostly(1.0 - max_quarantined_share),
            meta={"check": "quarantined_share", "max_share": float(max_quarantined_share)},
        ),
        # the mean of a bool column is its share of True; unlike ``mostly`` it can be asked to
        # exceed 1 (a gate nothing passes, used to test the rejection path)
        E.ExpectColumnMeanToBeBetween(
            column="improved_or_passed",
            min_value=float(min_improved_or_passed_share) - _EPS,
            meta={"check": "improved_share", "min_share": float(min_improved_or_passed_share)},
        ),
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


def describe_failures(
    validation: dict[str, Any], *, missing_columns: set[str] | frozenset[str] = frozenset()
) -> tuple[list[str], dict[str, Any]]:
    """Readable sentences (and their numbers) for the failed expectations of a validation dict.

    Checks on a column the schema check already reports missing are not repeated.
    """
    messages: list[str] = []
    details: dict[str, Any] = {}
    for item in validation.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        column = kwargs.get("column")
        if column in missing_columns or (
            missing_columns and _exception_message(item.get("exception_info") or {})
        ):
            continue  # the schema check already names the missing column this one tripped on
        check = (config.get("meta") or {}).get("check", config.get("type", "expectation"))
        if check == "improved_share" and (item.get("result") or {}).get("observed_value") is None:
            continue  # no non-null value at all: the empty-table or not-null check says so
        message = _message(
            check, config, item.get("result") or {}, item.get("exception_info") or {}
        )
        messages.append(message)
        details[f"{column or 'table'}:{check}"] = item.get("result") or {}
    return messages, details


def _message(check: str, config: dict, result: dict, exception: dict) -> str:
    kwargs = config.get("kwargs") or {}
    meta = config.get("meta") or {}
    column = kwargs.get("column") or "table"
    error = _exception_message(exception)
    if error:
        return f"{column}: {config.get('type')} could not run: {error}"
    unexpected = int(result.get("unexpected_count") or 0)
    counted = int(result.get("element_count") or 0) - int(result.get("missing_count") or 0)
    examples = _examples(result)
    if check == "not_empty":
        return f"table: {result.get('observed_value', 0)} rows (an empty partition fails)"
    if check == "schema":
        missing = ((result.get("details") or {}).get("mismatched") or {}).get("missing") or []
        return f"schema: missing columns {sorted(missing)}"
    if check == "required":
        return f"{column}: {unexpected} null value(s) in a required column"
    if check == "unique":
        return f"{column}: {unexpected} duplicated value(s){examples}"
    if check == "single_value":
        return f"{column}: {result.get('observed_value')} distinct values, expected one"
    if check == "outcome":
        return f"{column}: {unexpected} value(s) not in {list(OUTCOMES)}{examples}"
    if check == "cycles":
        return f"{column}: {unexpected} negative value(s){examples}"
    if check == "consistent":
        return f"{column}: {unexpected} row(s) improved or passed but flagged False"
    if check == "score_range":
        return f"{column}: {unexpected} score(s) outside [0, 1]{examples}"
    if check == "score_present":
        return f"{column}: {unexpected} null score(s) on rows that are not quarantined"
    if check == "duration":
        tol = meta.get("tolerance_s", kwargs.get("max_value"))
        return f"{column}: {unexpected} clip(s) changed duration by more than {tol:g} s{examples}"
    if check == "clipped":
        return f"{column}: {unexpected} edited output(s) clip (fraction > 0){examples}"
    if check == "peak":
        return f"{column}: {unexpected} edited output(s) peak outside [0, 1]{examples}"
    if check == "quarantined_share":
        share = unexpected / counted if counted else 0.0
        limit = float(meta.get("max_share", 0.0))
        return f"outcome: quarantined share {share:.2f} > {limit:.2f} ({unexpected} of {counted} clips)"
    if check == "improved_share":
        share = result.get("observed_value")
        limit = float(meta.get("min_share", 0.0))
        return f"improved_or_passed: share {float(share or 0.0):.2f} < {limit:.2f}"
    return f"{column}: {config.get('type')} failed ({unexpected} unexpected){examples}"


def _run_checkpoint(frame, suite, root: Path, partition: str, run_id: str):
    """Run the suite over ``frame`` in a file context under ``root``; (validation dict, docs dir)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("results").add_dataframe_asset(_safe_name(partition))
    batch = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name="partition_gate")
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="partition_gate",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format="SUMMARY",
        )
    )
    outcome = checkpoint.run(
        batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=_safe_name(run_id))
    )
    (validation,) = [r.to_json_dict() for r in outcome.run_results.values()]
    docs_dir = None
    for site in context.get_docs_sites_urls():
        url = site.get("site_url") or ""
        if url.startswith("file://"):
            index = Path(url[len("file://") :])
            if index.is_file():
                docs_dir = index.parent
                break
    return _strict_json(json.loads(json.dumps(validation, default=str))), docs_dir


def _strict_json(value: Any) -> Any:
    """NaN / inf (e.g. the mean of an empty column) as null: strict JSON readers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _copy_tree(local_dir: Path, target_uri: str) -> None:
    from avalign.data import storage

    # index.html last, so the index never links to pages that are not there yet
    for path in sorted(local_dir.rglob("*"), key=lambda p: (p.name == "index.html", str(p))):
        rel = path.relative_to(local_dir).as_posix()
        if path.is_file() and not _DOCS_SKIP.match(rel):
            storage.upload_file(path, storage.join(target_uri, *rel.split("/")))


def _statistics(frame, validation: dict[str, Any]) -> dict[str, Any]:
    stats: dict[str, Any] = {k: v for k, v in (validation.get("statistics") or {}).items()}
    n = len(frame)
    stats["n_rows"] = n
    if "outcome" in frame.columns:
        counts = frame["outcome"].value_counts(dropna=False)
        for outcome in OUTCOMES:
            stats[f"n_{outcome}"] = int(counts.get(outcome, 0))
        stats["quarantined_share"] = stats["n_quarantined"] / n if n else 0.0
    if "improved_or_passed" in frame.columns:
        good = int((frame["improved_or_passed"] == True).sum())
        stats["improved_or_passed_share"] = good / n if n else 0.0
    return stats


def _single_value(frame, column: str) -> str | None:
    if column not in frame.columns:
        return None
    values = frame[column].dropna().unique()
    return str(values[0]) if len(values) else None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "unnamed"


def _mostly(value: float) -> float:
    return min(1.0, max(0.0, value - _EPS))


def _examples(result: dict) -> str:
    values = result.get("partial_unexpected_list") or []
    shown = [v for v in values if v is not None][:3]
    return f", e.g. {shown}" if shown else ""


def _exception_message(exception: dict) -> str | None:
    if exception.get("raised_exception"):
        return str(exception.get("exception_message") or "error").splitlines()[0]
    for value in exception.values():  # GX 1.x nests per metric: {metric_id: {raised_exception...}}
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "error").splitlines()[0]
    return None
