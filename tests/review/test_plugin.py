"""The plugin inside Airflow's real API app: Airflow's auth manager guards every review route.

Runs in a subprocess, since the ``AIRFLOW_*`` environment binds at the first ``import airflow``:
a fresh SQLite metadata DB, the simple auth manager (Airflow 3's default) with a known viewer
password, this repository's ``plugins/`` folder, and the review roots of ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from avalign.orchestration import REPO_ROOT
from tests.review.conftest import airflow_test_env

SCRIPT = r'''
import json, os, sqlite3
from fastapi.testclient import TestClient

# The XComs of one av_align run, as the tasks return them (rows written directly: no DAG parsed).
stage = os.environ["AVALIGN_REVIEW_ROOTS"] + "/out/runs/run-1/part-00000"
db = sqlite3.connect(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///").split("?")[0])
db.execute("insert or replace into dag_run (id, dag_id, run_id, run_type, run_after, clear_number, span_status) "
           "values (1, 'av_align', 'manual__1', 'manual', '2026-01-01 00:00:00', 0, 'not_started')")
for task, index, value in [
    ("align_partition", 0, {"partition": "part-00000", "run_id": "run-1", "stage_uri": stage,
                            "results_uri": stage + "/results.parquet"}),
    ("prepare", -1, {"output_uri": os.environ["AVALIGN_REVIEW_ROOTS"] + "/out", "run_id": "run-1"}),
    ("log_to_mlflow", -1, {"mlflow_run_id": "abc"}),
]:
    db.execute("insert or replace into xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp) "
               "values (1, ?, ?, 'return_value', 'av_align', 'manual__1', ?, '2026-01-01 00:00:00')",
               (task, index, json.dumps(value)))
db.commit()
db.close()

from airflow.api_fastapi.app import create_app

app = create_app()
# base_url has the path /airflow (as behind a reverse proxy): every route lives under it.
c = TestClient(app, base_url="http://testserver/airflow")
out = {}
out["anonymous"] = c.get("/av-review/").status_code
out["anonymous_media"] = c.get("/av-review/file/var/data/media/src-0.mp4").status_code
plot = "/av-review/plot/sync.png?out=var/out&run=run-1&part=part-00000&clip=clip-0000"
out["anonymous_plot"] = c.get(plot).status_code
out["forged_bearer"] = c.get("/av-review/", headers={"Authorization": "Bearer not.a.jwt"}).status_code
out["forged_cookie"] = c.get("/av-review/", cookies={"_token": "not.a.jwt"}).status_code
login = c.post("/auth/token", json={"username": "viewer", "password": "viewer-pass"})
out["login"] = login.status_code
token = login.json()["access_token"]
bearer = {"Authorization": f"Bearer {token}"}
index = c.get("/av-review/", headers=bearer)
out["bearer"] = index.status_code
out["index_has_run"] = "run-1" in index.text
out["cookie"] = c.get("/av-review/", cookies={"_token": token}).status_code
out["range"] = c.get("/av-review/file/var/data/media/src-0.mp4", headers={**bearer, "Range": "bytes=0-9"}).status_code
out["escape"] = c.get("/av-review/file/var/escape.mp4", headers=bearer).status_code
out["bad_login"] = c.post("/auth/token", json={"username": "viewer", "password": "wrong"}).status_code
plugins = c.get("/api/v2/plugins", headers=bearer).json()["plugins"]
mine = [p for p in plugins if p["name"] == "av_review"][0]
out["external_views"] = mine["external_views"]
out["fastapi_apps"] = mine["fastapi_apps"]
out["global_links"] = mine["global_operator_extra_links"]

from airflow.models.taskinstancekey import TaskInstanceKey
from av_review import AVReviewLink
link = AVReviewLink()
out["link_other_dag"] = link.get_link(None, ti_key=TaskInstanceKey("other", "t", "run", 1, -1))
out["link_no_xcom"] = link.get_link(None, ti_key=TaskInstanceKey("av_align", "align_partition", "run", 1, 0))
out["link_partition"] = link.get_link(None, ti_key=TaskInstanceKey("av_align", "align_partition", "manual__1", 1, 0))
out["link_run"] = link.get_link(None, ti_key=TaskInstanceKey("av_align", "log_to_mlflow", "manual__1", 1, -1))
if out["link_partition"]:
    page = TestClient(app).get(out["link_partition"], headers=bearer)
    out["link_partition_status"] = page.status_code
    out["link_partition_page"] = "Partition <code>part-00000</code>" in page.text
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def airflow_results(review_root, airflow_home, tmp_path_factory):
    env = {**os.environ, **airflow_test_env(airflow_home, review_root, tmp_path_factory.mktemp("cache"))}
    env["AIRFLOW__API__BASE_URL"] = "http://127.0.0.1:9/airflow"  # links keep a proxy's path prefix
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=180, cwd=REPO_ROOT / "plugins")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_without_a_valid_airflow_login_every_route_is_refused(airflow_results):
    assert airflow_results["anonymous"] == 401
    assert airflow_results["anonymous_media"] == 401
    assert airflow_results["anonymous_plot"] == 401
    assert airflow_results["forged_bearer"] == 403
    assert airflow_results["forged_cookie"] == 403
    assert airflow_results["bad_login"] == 401


def test_an_airflow_login_opens_pages_and_media(airflow_results):
    assert airflow_results["login"] == 201
    assert airflow_results["bearer"] == 200 and airflow_results["index_has_run"]
    assert airflow_results["cookie"] == 200  # the UI's session cookie, as in a browser
    assert airflow_results["range"] == 206
    assert airflow_results["escape"] == 403


def test_the_plugin_registers_menu_app_and_extra_link(airflow_results):
    view = airflow_results["external_views"][0]
    assert view["name"] == "AV Alignment" and view["href"] == "av-review/"  # relative
    assert not view["href"].startswith("/")
    assert airflow_results["fastapi_apps"][0]["url_prefix"] == "/av-review"
    assert any("AVReviewLink" in link for link in airflow_results["global_links"])
    assert airflow_results["link_other_dag"] == ""
    assert airflow_results["link_no_xcom"] == ""  # no run recorded: no page to open


def test_the_extra_link_opens_the_run_and_partition_of_the_task(airflow_results):
    assert airflow_results["link_partition"] == "/airflow/av-review/partition?out=var%2Fout&run=run-1&part=part-00000"
    assert airflow_results["link_run"] == "/airflow/av-review/run?out=var%2Fout&run=run-1"
    assert airflow_results["link_partition_status"] == 200 and airflow_results["link_partition_page"]
