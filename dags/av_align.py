"""av_align: rebuild an AV dataset's audio alignment, partition by partition, behind a GX gate.

```
prepare → ingest → list_partitions → align_partition[part] → validate_partition[part]
        → publish_partition[part] → announce (asset avalign://aligned) + log_to_mlflow
```

* ``ingest`` does nothing when ``dataset_uri`` holds ``manifests/*.parquet``; otherwise it probes
  the videos under that folder/prefix into ``<output_uri>/dataset``.
* ``align_partition`` is mapped, one task instance per partition, in pool ``triton`` (one slot
  each). An empty ``triton_url`` starts a local tritonserver inside the task and stops it after.
* A partition whose results fail the Great Expectations gate is not published; its GX report
  stays under ``<output_uri>/runs/<run_id>/<partition>/gx/``.
* ``announce`` emits the ``avalign://aligned`` asset event (extra: output URI, run id, published
  partitions) only when at least one partition got a new pointer. Otherwise it raises
  ``AirflowSkipException``: Airflow 3 records asset events for *successful* task instances of a
  task with outlets, so a skipped one emits nothing and consumers are not woken for no data.
* The storage run id is the Airflow run id made path-safe (or the ``rebuild_id`` param), so a
  retried or cleared task rewrites the same staging; partitions are published atomically.

Run it (environment from ``avalign.orchestration.airflow_env``)::

    airflow dags test av_align --conf '{"dataset_uri": "var/datasets/demo", "output_uri": "var/aligned/demo"}'

Backfill past dates (Airflow 3: the scheduler runs the created runs; ``completed`` rebuilds dates
that already succeeded)::

    airflow backfill create --dag-id av_align --from-date 2026-01-01 --to-date 2026-01-03 \\
        --reprocess-behavior completed

The DAG file imports only Airflow's Task SDK and the standard library: avalign, torch, Great
Expectations and MLflow load inside the tasks, and nothing here touches the metadata DB.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

REPO_ROOT = Path(__file__).resolve().parents[1]
VAR_DIR = Path(os.environ.get("AVALIGN_VAR", REPO_ROOT / "var"))
DEFAULT_DATASET_URI = os.environ.get("AVALIGN_DATASET_URI", str(VAR_DIR / "datasets" / "demo"))
DEFAULT_OUTPUT_URI = os.environ.get("AVALIGN_OUTPUT_URI", str(VAR_DIR / "aligned" / "demo"))

# One fixed asset for "aligned partitions were published"; the output URI (a param) and the
# partitions travel in the event's extra.
ALIGNED = Asset(name="av_aligned", uri="avalign://aligned")
TRITON_POOL = "triton"

_FROM_CONFIG = "Default (null): AlignConfig's value, recorded in the prepare task's XCom and in MLflow."

PARAMS = {
    "dataset_uri": Param(DEFAULT_DATASET_URI, type="string", minLength=1,
                         description="Manifest dataset (has manifests/*.parquet) or a folder/s3 prefix "
                                     "of videos to ingest first."),
    "output_uri": Param(DEFAULT_OUTPUT_URI, type="string", minLength=1,
                        description="Where runs/, published/ and quarantine/ are written."),
    "partitions": Param([], type="array", items={"type": "string"},
                        description="Partition names to rebuild, e.g. part-00000. Empty: all."),
    "partition_size": Param(64, type="integer", minimum=1,
                            description="Clips per partition when raw videos are ingested."),
    "max_cycles": Param(None, type=["null", "integer"], minimum=1, maximum=10, description=_FROM_CONFIG),
    "alignment_threshold": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                 description=_FROM_CONFIG),
    "sync_threshold": Param(None, type=["null", "number"], minimum=0, maximum=1, description=_FROM_CONFIG),
    "planner": Param(None, type=["null", "string"], enum=[None, "rules", "llm"], description=_FROM_CONFIG),
    "max_quarantined_share": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                   description="GX gate. " + _FROM_CONFIG),
    "min_improved_or_passed_share": Param(None, type=["null", "number"], minimum=0, maximum=1.01,
                                          description="GX gate (1.01: a gate nothing passes). "
                                                      + _FROM_CONFIG),
    "scorer_repository": Param(None, type=["null", "string"],
                               description="An exported learned av_scorer folder (python -m avalign train-eval "
                                           "--export). Used when triton_url is empty. " + _FROM_CONFIG),
    "triton_url": Param("", type="string",
                        description="Triton gRPC host:port. Empty: each partition task starts a local "
                                    "tritonserver and stops it after."),
    "mlflow_tracking_uri": Param(None, type=["null", "string"],
                                 description="Default (null): avalign.tracking.default_tracking_uri()."),
    "rebuild_id": Param(None, type=["null", "string"], pattern="^[A-Za-z0-9_.-]+$",
                        description="Storage run id. Default (null): this DAG run's id, path-safe. "
                                    "Set it to rebuild into an earlier run's staging."),
}


def _credentials() -> None:
    """Storage credentials for this task's process: the Airflow connection named by
    AVALIGN_STORAGE_CONN_ID (default avalign_s3; Airflow masks its password in task logs), else
    the worker's environment. Secrets found in the environment are masked in the logs too."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    from avalign import credentials

    try:
        conn = BaseHook.get_connection(credentials.storage_conn_id())
    except AirflowNotFoundException:
        conn = None
    if conn is not None:
        names = credentials.apply_storage_connection(conn.login, conn.password, conn.extra_dejson)
        print(f"storage credentials from Airflow connection {conn.conn_id}: {', '.join(names)}")
    for secret in credentials.secrets_to_mask(os.environ):
        mask_secret(secret)


def _label(name: str) -> None:
    """Show the partition as the mapped task instance's name in the UI (map_index_template)."""
    get_current_context()["partition"] = name


@dag(
    dag_id="av_align",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs publish to the same pointers: the latest run must publish last
    params=PARAMS,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["avalign"],
    doc_md=__doc__,
)
def av_align():
    # Tasks return dicts without a ``-> dict`` annotation on purpose: TaskFlow infers
    # multiple_outputs=True from it and would push every key as its own XCom.
    @task
    def prepare(params=None, run_id=None):
        from avalign import tasks as steps

        _credentials()
        return steps.resolve_spec(dict(params), run_id)

    @task
    def ingest(spec: dict):
        from avalign import tasks as steps

        _credentials()
        return steps.ingest_if_raw(spec)

    @task
    def list_partitions(spec: dict, dataset: dict) -> list[dict]:
        from avalign import tasks as steps

        _credentials()
        return steps.list_partition_manifests(dataset["dataset_uri"], spec["partitions"])

    @task(pool=TRITON_POOL, pool_slots=1, map_index_template="{{ partition }}")
    def align_partition(item: dict, spec: dict):
        from avalign import tasks as steps

        _credentials()
        _label(item["partition"])
        return steps.align_partition(item, spec)

    @task(map_index_template="{{ partition }}")
    def validate_partition(run: dict, spec: dict):
        from avalign import tasks as steps

        _credentials()
        _label(run["partition"])
        return steps.gate_partition(run, spec)

    @task(map_index_template="{{ partition }}")
    def publish_partition(gated: dict, spec: dict):
        from avalign import tasks as steps

        _credentials()
        _label(gated["partition"])
        return steps.publish(gated, spec)

    @task(outlets=[ALIGNED])
    def announce(published: list[dict], spec: dict, outlet_events=None):
        # published[:] fetches all mapped results in one call (iterating asks one by one and
        # logs a spurious "XCom not found" error when it runs past the end).
        from avalign import tasks as steps

        _credentials()
        extra = steps.asset_event_extra(published[:], spec)
        if extra is None:
            raise AirflowSkipException("no partition newly published: no asset event")
        outlet_events[ALIGNED].extra = extra
        return extra

    @task
    def log_to_mlflow(published: list[dict], spec: dict):
        from avalign import tasks as steps

        _credentials()
        return steps.log_to_mlflow(published[:], spec)

    spec = prepare()
    items = list_partitions(spec, ingest(spec))
    runs = align_partition.partial(spec=spec).expand(item=items)
    gated = validate_partition.partial(spec=spec).expand(run=runs)
    published = publish_partition.partial(spec=spec).expand(gated=gated)
    announce(published, spec)
    log_to_mlflow(published, spec)


av_align()
