"""Credentials come from an Airflow connection, never from code, params or logs.

A real `airflow dags test` of av_align writes its output to S3 (moto over HTTP) with credentials
that exist only in the Airflow connection ``avalign_s3``: the worker environment has none, so the
run can only succeed through the connection. Afterwards the secret must appear nowhere: not in the
console, the task logs, the metadata DB (XCom included), MLflow, or any object written to S3.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from avalign.data import storage
from avalign.orchestration import airflow_env, ensure_airflow_db, run_dag_test

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(1200)]
REPO_ROOT = Path(__file__).resolve().parents[2]
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AVALIGN_S3_ENDPOINT_URL",
            "AWS_ENDPOINT_URL")


def test_a_connection_secret_is_used_but_never_written_anywhere(tmp_path, triton_server, s3_server, s3_bucket,
                                                               monkeypatch):
    from avalign.data.dataset import build_dataset

    secret = f"avalign-secret-{uuid.uuid4().hex}"
    dataset = tmp_path / "ds"
    build_dataset(str(dataset), partitions=1, clips_per_partition=2, duration_s=2.0, seed=1, progress=None)
    out = f"s3://{s3_bucket}/aligned"
    for name in AWS_VARS:  # the only way to S3 is the connection
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "airflow"
    env = airflow_env(REPO_ROOT, home=home)
    env["AVALIGN_VAR"] = str(tmp_path / "var")
    env["AIRFLOW_CONN_AVALIGN_S3"] = json.dumps({
        "conn_type": "aws", "login": "AKIAAVALIGNTEST", "password": secret,
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"}})
    ensure_airflow_db(env)
    conf = {"dataset_uri": str(dataset), "output_uri": out, "triton_url": triton_server.grpc_url,
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "max_quarantined_share": 1.0, "min_improved_or_passed_share": 0.0}
    proc = run_dag_test(conf, env, timeout_s=900)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-6000:]
    assert "storage credentials from Airflow connection avalign_s3" in console

    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert secret not in console and not leaks, leaks

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "reader")  # read back what the run wrote to S3
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "reader")
    monkeypatch.setenv("AVALIGN_S3_ENDPOINT_URL", s3_server)
    storage.s3_client.cache_clear()
    objects = storage.list_files(out)
    assert any(uri.endswith("/published/part-00000.json") for uri in objects), objects
    assert not [uri for uri in objects if secret.encode() in storage.read_bytes(uri)]
