"""The GX gate over a hand-built results table: one passing partition, one failure per check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avalign.quality.gate import RESULT_COLUMNS, GateResult, validate_partition

LIMITS = {"max_quarantined_share": 0.25, "min_improved_or_passed_share": 0.5}


def _row(i: int, outcome: str, *, passed: bool = True) -> dict:
    """One clip's row as run_partition writes it (contract: docs/contracts.md)."""
    quarantined = outcome == "quarantined"
    improved = outcome == "improved"
    score_before = None if quarantined else 0.6
    score_after = None if quarantined else (0.9 if improved or passed else 0.6)
    return {
        "clip_id": f"clip-{i:03d}",
        "partition": "part-00000",
        "run_id": "manual__2024-01-01",
        "source_uri": f"/data/media/clip-{i:03d}.mp4",
        "outcome": outcome,
        "reason": "no_audio_stream: none" if quarantined else (None if improved else "no_gain"),
        "cycles": 0 if quarantined else 2,
        "actions": "shift" if improved else "",
        "plan_json": '[{"action": "shift", "params": {"ms": 80}}]' if improved else "[]",
        "alignment_before": score_before,
        "sync_before": score_before,
        "alignment_after": score_after,
        "sync_after": score_after,
        "passed": bool(not quarantined and (improved or passed)),
        "improved_or_passed": bool(not quarantined and (improved or passed)),
        "duration_in_s": None if quarantined else 4.0,
        "duration_out_s": None if quarantined else 4.0,
        "duration_error_s": None if quarantined else 0.0,
        "peak_out": None if quarantined else 0.7,
        "clipped_fraction_out": None if quarantined else 0.0,
        "offset_est_before_ms": None if quarantined else 80.0,
        "offset_est_after_ms": None if quarantined else 0.0,
        "output_uri": None if quarantined else f"/out/clips/clip-{i:03d}.mp4",
        "audio_uri": f"/out/audio/clip-{i:03d}.flac" if improved else None,
        "trace_uri": f"/out/traces/clip-{i:03d}.json",
        "output_sha256": None if quarantined else "0" * 64,
        "seconds": 1.5,
        "injected_offset_ms": 80.0,
        "injected_snr_db": np.nan,
        "corruption_types": "offset",
        "reference_audio_uri": None,
    }


def _table(outcomes: list[str], *, kept_passed: bool = True) -> pd.DataFrame:
    return pd.DataFrame([_row(i, o, passed=kept_passed) for i, o in enumerate(outcomes)])


GOOD = ["improved"] * 5 + ["kept_original"] * 2 + ["quarantined"]


def _gate(tmp_path: Path, frame: pd.DataFrame, name: str, **limits) -> GateResult:
    results = tmp_path / name / "results.parquet"
    results.parent.mkdir(parents=True)
    frame.to_parquet(results, index=False)
    return validate_partition(str(results), str(tmp_path / name / "gx"), **(limits or LIMITS))


def test_a_good_partition_passes_and_keeps_its_data_docs(tmp_path):
    frame = _table(GOOD)
    assert list(frame.columns) == list(RESULT_COLUMNS)
    gate = _gate(tmp_path, frame, "good")

    assert gate.success, gate.failed_expectations
    assert gate.failed_expectations == []
    assert gate.statistics["n_rows"] == 8
    assert gate.statistics["n_improved"] == 5 and gate.statistics["n_quarantined"] == 1
    assert gate.statistics["unsuccessful_expectations"] == 0
    assert gate.statistics["quarantined_share"] == pytest.approx(1 / 8)
    assert gate.statistics["seconds_gate"] < 5.0
    validation = json.loads(Path(gate.result_uri).read_text())
    assert validation["success"] is True
    assert len(validation["results"]) == gate.statistics["evaluated_expectations"] >= 20
    index = Path(gate.data_docs_uri)
    assert index.name == "index.html" and index.is_file()
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == 1 and "part-00000" in pages[0].name
    assert not list(index.parent.rglob("*.gif"))  # unused help animations are left out
    # the verdict survives an XCom-style round trip
    assert GateResult.from_dict(json.loads(json.dumps(gate.to_dict()))) == gate


def _with(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    frame = frame.copy()
    for column, value in values.items():
        frame[column] = frame[column].astype(object) if value is None else frame[column]
        frame.at[row, column] = value
    return frame


# each case breaks exactly one check; the message must name it
BROKEN = {
    "score_out_of_range": (
        _with(_table(GOOD), 0, alignment_after=1.3),
        "alignment_after: 1 score(s) outside [0, 1]",
    ),
    "null_clip_id": (_with(_table(GOOD), 3, clip_id=None), "clip_id: 1 null value(s)"),
    "clipped_output": (
        _with(_table(GOOD), 1, clipped_fraction_out=0.01),
        "clipped_fraction_out: 1 edited output(s) clip",
    ),
    "peak_over_one": (
        _with(_table(GOOD), 2, peak_out=1.2),
        "peak_out: 1 edited output(s) peak outside [0, 1]",
    ),
    "duration_changed": (
        _with(_table(GOOD), 4, duration_error_s=0.5),
        "duration_error_s: 1 clip(s) changed duration by more than 0.025 s",
    ),
    "too_many_quarantined": (
        _table(["improved"] * 5 + ["quarantined"] * 3),
        "outcome: quarantined share 0.38 > 0.25 (3 of 8 clips)",
    ),
    "too_few_improved": (
        _table(["improved"] * 2 + ["kept_original"] * 5 + ["quarantined"], kept_passed=False),
        "improved_or_passed: share 0.25 < 0.50",
    ),
    "two_partitions_mixed": (
        _with(_table(GOOD), 6, partition="part-00001"),
        "partition: 2 distinct values, expected one",
    ),
    "improved_but_flagged_failed": (
        _with(_table(GOOD), 0, improved_or_passed=False),
        "improved_or_passed: 1 row(s) improved or passed but flagged False",
    ),
    "missing_score_on_kept_clip": (
        _with(_table(GOOD), 5, sync_after=None),
        "sync_after: 1 null score(s) on rows that are not quarantined",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_partition_fails_on_exactly_its_check(tmp_path, case):
    frame, expected = BROKEN[case]
    gate = _gate(tmp_path, frame, case)

    assert not gate.success
    assert len(gate.failed_expectations) == 1, gate.failed_expectations
    assert gate.failed_expectations[0].startswith(expected), gate.failed_expectations
    assert gate.statistics["unsuccessful_expectations"] == 1
    assert Path(gate.data_docs_uri).is_file()  # a rejection is documented too


def test_clipping_in_a_kept_original_source_is_not_an_edit_fault(tmp_path):
    frame = _with(_table(GOOD), 5, peak_out=1.0, clipped_fraction_out=0.02)
    assert _gate(tmp_path, frame, "kept_clipped").success


def test_a_missing_column_is_reported_once_and_extra_columns_are_fine(tmp_path):
    frame = _table(GOOD).drop(columns=["peak_out"]).assign(extra_debug=1)
    gate = _gate(tmp_path, frame, "schema")
    assert not gate.success
    assert gate.failed_expectations == ["schema: missing columns ['peak_out']"]


def test_an_empty_partition_fails(tmp_path):
    frame = _table(GOOD).iloc[0:0]
    gate = _gate(tmp_path, frame, "empty")
    assert not gate.success
    assert gate.failed_expectations == ["table: 0 rows (an empty partition fails)"]
    json.loads(Path(gate.result_uri).read_text(), parse_constant=pytest.fail)  # strict JSON, no NaN


def test_shares_exactly_at_their_limits_pass(tmp_path):
    # 2 of 8 quarantined (0.25) and 4 of 8 improved (0.5): both limits inclusive
    frame = _table(
        ["improved"] * 4 + ["kept_original"] * 2 + ["quarantined"] * 2, kept_passed=False
    )
    gate = _gate(tmp_path, frame, "limits")
    assert gate.success, gate.failed_expectations


def test_a_share_above_one_is_a_gate_nothing_passes(tmp_path):
    gate = _gate(
        tmp_path,
        _table(["improved"] * 4),
        "all_good",
        max_quarantined_share=0.0,
        min_improved_or_passed_share=1.01,
    )
    assert gate.failed_expectations == ["improved_or_passed: share 1.00 < 1.01"]


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_quarantined_share"):
        validate_partition(
            "unused", "unused", max_quarantined_share=1.5, min_improved_or_passed_share=0.5
        )
