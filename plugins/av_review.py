"""Airflow plugin: the AV Alignment review pages inside the Airflow UI.

- ``fastapi_apps``: the review app (``avalign.review``) under ``/av-review``, built on its first
  request, with Airflow's auth-manager check on every route (Airflow 3 does not protect plugin
  apps on its own): the caller's JWT (``Authorization: Bearer`` or the UI's ``_token`` cookie)
  must be valid (401 without one, 403 when invalid) and allow reading ``av_align`` task instances.
- ``external_views``: the "AV Alignment" entry of the UI's navigation (relative href).
- ``global_operator_extra_links``: "AV Alignment review" on ``av_align`` task instances, opening
  the page of that run and partition (found from the task's XCom).
"""

import json
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from avalign.review.asgi import LazyApp

URL_PREFIX = "/av-review"
DAG_ID = "av_align"


async def airflow_auth(request) -> None:
    """Airflow's own checks: a valid login (``get_user``) that may read av_align's task instances."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
    from starlette.concurrency import run_in_threadpool

    credentials = await bearer_scheme(request)
    user = await get_user(request=request, _oauth_token=None, bearer_credentials=credentials)
    check = requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=DAG_ID)
    await run_in_threadpool(check, request, user)  # reads the DAG's team from the metadata DB


def _build_app():
    from fastapi import Request

    from avalign.review.app import create_app

    # No ``from __future__ import annotations`` in this file: FastAPI must see the real class.
    async def auth(request: Request) -> None:
        await airflow_auth(request)

    return create_app(auth=auth)


def _return_value(ti_key, task_id: str, map_index: int) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(key="return_value", run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                               task_ids=task_id, map_indexes=map_index).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row.value
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class AVReviewLink(BaseOperatorLink):
    """The review page of an av_align task instance's run (and partition, for mapped tasks)."""

    name = "AV Alignment review"

    def get_link(self, operator, *, ti_key) -> str:  # runs in the API server
        if ti_key.dag_id != DAG_ID:
            return ""
        from airflow.configuration import conf

        from avalign.review.config import ReviewConfig
        from avalign.review.links import review_target

        roots = ReviewConfig.from_env().roots
        target = review_target(_return_value(ti_key, ti_key.task_id, ti_key.map_index), roots)
        if target is None:  # unmapped tasks, or a task that has not returned yet: the run page
            target = review_target(_return_value(ti_key, "prepare", -1), roots)
        if target is None:
            return ""
        base = urlsplit(conf.get("api", "base_url", fallback="") or "/").path.rstrip("/")
        return f"{base}{URL_PREFIX}/{target}"


class AVReviewPlugin(AirflowPlugin):
    name = "av_review"
    fastapi_apps = [{"app": LazyApp(_build_app, "av_review"), "url_prefix": URL_PREFIX, "name": "AV Alignment"}]
    external_views = [{
        "name": "AV Alignment",
        "href": "av-review/",  # relative: resolved against the UI's base URL (reverse proxies)
        "url_route": "av-alignment",  # shown inside the Airflow UI
        "destination": "nav",
        "category": "browse",
    }]
    global_operator_extra_links = [AVReviewLink()]
