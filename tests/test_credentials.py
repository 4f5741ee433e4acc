"""Credentials: connection fields to boto3's variables, secrets to mask, passwords refused in params."""

from __future__ import annotations

import pytest

from avalign import tasks
from avalign.credentials import apply_storage_connection, check_no_credentials, redact_url, secrets_to_mask
from avalign.errors import AvalignError


def test_an_aws_connection_becomes_boto3_variables_and_names_only_what_it_set():
    env: dict[str, str] = {}
    names = apply_storage_connection("AKIA1", "s3cr3t", {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu"},
                                     env)
    assert env == {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
                   "AVALIGN_S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_DEFAULT_REGION": "eu"}
    assert "s3cr3t" not in " ".join(names)


def test_secrets_in_the_environment_are_found_for_masking():
    env = {"AWS_SECRET_ACCESS_KEY": "k3y", "MLFLOW_TRACKING_URI": "postgresql://u:pw0rd@db:5432/mlflow",
           "AVALIGN_REDIS_URL": "redis://127.0.0.1:6379/0", "HOME": "/root"}
    assert sorted(secrets_to_mask(env)) == ["k3y", "pw0rd"]
    assert redact_url(env["MLFLOW_TRACKING_URI"]) == "postgresql://u:***@db:5432/mlflow"


def test_a_password_in_a_param_is_refused_without_echoing_it():
    params = {"dataset_uri": "var/ds", "output_uri": "var/out",
              "mlflow_tracking_uri": "postgresql://mlflow:hunter2@db.internal:5432/mlflow"}
    with pytest.raises(AvalignError) as info:
        tasks.resolve_spec(params, "manual__1")
    assert "hunter2" not in str(info.value) and "mlflow_tracking_uri" in str(info.value)
    check_no_credentials({"dataset_uri": "s3://bucket/prefix"}, ["dataset_uri"])  # no password: fine


def test_an_environment_tracking_uri_is_redacted_in_the_spec(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:hunter2@db.internal:5432/mlflow")
    spec = tasks.resolve_spec({"dataset_uri": "var/ds", "output_uri": "var/out"}, "manual__1")
    assert "hunter2" not in str(spec) and spec["tracking_uri_source"] == "environment"
