"""Links into the review pages from Airflow task XComs, and out of them to MLflow."""

from __future__ import annotations

import asyncio

from avalign.review.asgi import LazyApp
from avalign.review.config import name_roots
from avalign.review.links import MlflowLinks, page_url, review_target


def test_page_url_is_relative_and_drops_empty_params():
    assert page_url("partition", out="var/demo/aligned", run="r", part="p", outcome=None, q="") == \
        "partition?out=var%2Fdemo%2Faligned&run=r&part=p"
    assert page_url("./") == "./"


def test_partition_tasks_link_to_their_partition(tmp_path):
    roots = name_roots([tmp_path / "var"])
    stage = tmp_path / "var" / "demo" / "aligned" / "runs" / "demo_1" / "part-00001"
    align_xcom = {"partition": "part-00001", "run_id": "demo_1", "stage_uri": str(stage),
                  "results_uri": str(stage / "results.parquet"), "counts": {"improved": 3}}
    assert review_target(align_xcom, roots) == "partition?out=var%2Fdemo%2Faligned&run=demo_1&part=part-00001"
    without_stage = {k: v for k, v in align_xcom.items() if k != "stage_uri"}
    assert review_target(without_stage, roots) == review_target(align_xcom, roots)


def test_run_level_tasks_link_to_the_run(tmp_path):
    roots = name_roots([tmp_path / "var"])
    spec = {"output_uri": str(tmp_path / "var" / "out"), "run_id": "manual_1", "partitions": []}
    assert review_target(spec, roots) == "run?out=var%2Fout&run=manual_1"


def test_outputs_outside_the_roots_or_on_s3_have_no_page(tmp_path):
    roots = name_roots([tmp_path / "var"])
    assert review_target({"output_uri": "s3://bucket/out", "run_id": "r"}, roots) is None
    assert review_target({"output_uri": str(tmp_path / "elsewhere"), "run_id": "r"}, roots) is None
    assert review_target(["not", "a", "dict"], roots) is None
    assert review_target(None, roots) is None


def test_mlflow_links_point_at_the_ui_and_are_off_without_a_store():
    links = MlflowLinks(None, "http://127.0.0.1:5000/")
    assert links.links("demo_1") == {}
    assert links.run_url("1", "abc") == "http://127.0.0.1:5000/#/experiments/1/runs/abc"


def test_lazy_app_builds_once_on_first_request():
    built = []

    async def inner(scope, receive, send):
        await send({"type": "marker", "path": scope["path"]})

    def factory():
        built.append(1)
        return inner

    app = LazyApp(factory)
    assert built == []  # importing the plugin builds nothing
    sent = []

    async def send(message):
        sent.append(message)

    for _ in range(2):
        asyncio.run(app({"type": "http", "path": "/x"}, None, send))
    assert built == [1] and sent == [{"type": "marker", "path": "/x"}] * 2
