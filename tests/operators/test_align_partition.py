"""The operator stores arguments only, and its execute runs a real partition through Triton."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from avalign.data.dataset import build_dataset
from avalign.data.manifest import manifest_uri


def test_init_does_no_io_and_imports_nothing_heavy():
    code = ("import sys; from operators import AlignPartitionOperator as O; "
            "O(task_id='t', manifest_uri='s3://nowhere/m.parquet', output_uri='/nonexistent'); "
            "heavy = [m for m in ('torch', 'avalign.agent', 'mlflow', 'great_expectations') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.triton
def test_execute_aligns_a_partition(tmp_path, triton_server):
    from operators import AlignPartitionOperator

    dataset = str(tmp_path / "ds")
    build_dataset(dataset, partitions=1, clips_per_partition=2, duration_s=2.0, width=64, height=48,
                  progress=None, mix="single")
    op = AlignPartitionOperator(task_id="align", manifest_uri=manifest_uri(dataset, "part-00000"),
                                output_uri=str(tmp_path / "out"), triton_url=triton_server.grpc_url,
                                config={"max_cycles": 1})
    result = op.execute({"run_id": "manual__2026-11-26T00:00:00+00:00"})
    assert result["run_id"] == "manual__2026-11-26T00_00_00_00_00"
    table = pd.read_parquet(result["results_uri"])
    assert len(table) == 2 and set(table.outcome) <= {"improved", "kept_original", "quarantined"}
    assert result["counts"] == table.outcome.value_counts().reindex(
        ["improved", "kept_original", "quarantined"], fill_value=0).to_dict()
