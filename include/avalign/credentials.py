"""Where credentials come from: an Airflow connection or the environment, never code or params.

The DAG (dags/av_align.py) looks up the storage connection (``AVALIGN_STORAGE_CONN_ID``, default
``avalign_s3``, type ``aws``: login = access key id, password = secret key, extra
``{"endpoint_url": ..., "region_name": ...}``) at the start of each task and hands it to
``apply_storage_connection``, which sets the variables boto3 reads in that task's process. Airflow
masks a connection's password in task logs; ``secrets_to_mask`` names the environment's secrets
so the DAG masks those too. Params are visible in the UI and stored in XCom and MLflow, so
``check_no_credentials`` refuses a param URI that embeds a password.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, MutableMapping
from urllib.parse import urlsplit, urlunsplit

from avalign.errors import AvalignError

STORAGE_CONN_ID_ENV = "AVALIGN_STORAGE_CONN_ID"
DEFAULT_STORAGE_CONN_ID = "avalign_s3"
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AVALIGN_PG_URL", "AVALIGN_REDIS_URL",
                   "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def storage_conn_id() -> str:
    return os.environ.get(STORAGE_CONN_ID_ENV) or DEFAULT_STORAGE_CONN_ID


def apply_storage_connection(login: str | None, password: str | None, extra: Mapping[str, Any] | None,
                             env: MutableMapping[str, str] | None = None) -> list[str]:
    """Put an ``aws`` connection's fields into ``env`` (default os.environ) for boto3.

    Returns the names of the variables set (never their values).
    """
    env = os.environ if env is None else env
    extra = dict(extra or {})
    values = {
        "AWS_ACCESS_KEY_ID": login or extra.get("aws_access_key_id"),
        "AWS_SECRET_ACCESS_KEY": password or extra.get("aws_secret_access_key"),
        "AWS_SESSION_TOKEN": extra.get("aws_session_token"),
        "AVALIGN_S3_ENDPOINT_URL": extra.get("endpoint_url") or (extra.get("service_config") or {}).get(
            "s3", {}).get("endpoint_url"),
        "AWS_DEFAULT_REGION": extra.get("region_name"),
    }
    set_names = []
    for name, value in values.items():
        if value:
            env[name] = str(value)
            set_names.append(name)
    return set_names


def url_password(value: str) -> str | None:
    """The password embedded in a URL (``scheme://user:password@host``), if any."""
    try:
        return urlsplit(str(value)).password if "://" in str(value) else None
    except ValueError:
        return None


def redact_url(value: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(value)
    if not parts.password:
        return value
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def secrets_to_mask(env: Mapping[str, str]) -> list[str]:
    """Secret values present in ``env``: secret keys and tokens, and passwords inside URLs."""
    found = []
    for name in SECRET_ENV_VARS:
        value = env.get(name)
        if not value:
            continue
        password = url_password(value)
        if password:
            found.append(password)
        elif "://" not in value:
            found.append(value)
    return found


def check_no_credentials(params: Mapping[str, Any], names: Iterable[str]) -> None:
    """Refuse params that carry a password in a URL: it would land in the UI, XCom and MLflow."""
    for name in names:
        value = params.get(name)
        if isinstance(value, str) and url_password(value):
            raise AvalignError(f"param {name} ({redact_url(value)}) embeds a password: put credentials in an "
                               "Airflow connection or the workers' environment, never in params")
