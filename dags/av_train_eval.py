"""av_train_eval: does aligned data make a better AV representation than raw data?

Scheduled on the ``avalign://aligned`` asset: every time ``av_align`` publishes new partitions,
the same contrastive learner is trained on the raw, the aligned and (as an upper bound) the clean
audio of that dataset, for several seeds, and evaluated on a clean held-out split.

```
resolve → prepare → train_eval[variant × seed] → summarize → register (only if aligned ≥ raw)
```

* ``resolve`` reads the triggering asset events (output URI, av_align run id, partitions) and the
  params; without an event it uses the params (``source="procedural"``: the in-memory benchmark).
* ``prepare`` builds or loads the cached features and opens the MLflow parent run.
* ``train_eval`` is mapped, one task per variant and seed, each an MLflow child run.
* ``summarize`` writes ``representation.json`` / ``.md`` and the gate decision.
* ``register`` registers the aligned model as ``av_representation`` when aligned ≥ raw on the
  headline metrics (within the seeds' std); otherwise it is skipped (and says why).

The DAG file imports only Airflow's Task SDK: avalign, torch and MLflow load inside the tasks.
``python -m avalign train-eval`` runs the same steps without Airflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

# The asset av_align's ``announce`` task emits (same name and URI as in dags/av_align.py).
ALIGNED = Asset(name="av_aligned", uri="avalign://aligned")

PARAMS = {
    "variants": Param(["raw", "aligned", "clean"], type="array", items={"type": "string",
                      "enum": ["raw", "aligned", "clean"]}, description="Dataset variants to train on."),
    "seeds": Param([0, 1, 2], type="array", items={"type": "integer"}, minItems=1, description="Training seeds."),
    "epochs": Param(12, type="integer", minimum=1, description="Epochs per run (same for every variant)."),
    "device": Param("auto", type="string", enum=["auto", "cpu", "cuda"],
                    description="auto: CUDA when available (with autocast), else CPU."),
    "source": Param(None, type=["null", "string"], enum=[None, "published", "procedural"],
                    description="Default (null): the dataset of the triggering av_align event "
                                "(published), else the procedural benchmark."),
    "output_uri": Param(None, type=["null", "string"],
                        description="av_align output URI to read published partitions from. "
                                    "Default (null): the triggering event's."),
    "partitions": Param(None, type=["null", "array"], items={"type": "string"},
                        description="Published partitions. Default (null): the event's, else all."),
    "max_steps": Param(None, type=["null", "integer"], minimum=1, description="Cap on steps per run (smoke runs)."),
    "n_train": Param(None, type=["null", "integer"], minimum=16, description="Procedural: training clips (2000)."),
    "n_eval": Param(None, type=["null", "integer"], minimum=16, description="Procedural: held-out clips (480)."),
    "register": Param(True, type="boolean", description="Register the aligned model when the gate passes."),
    "out_dir": Param(None, type=["null", "string"],
                     description="Where representation.json/.md and the model files go. Default (null): var/eval."),
    "mlflow_tracking_uri": Param(None, type=["null", "string"],
                                 description="Default (null): avalign.tracking.default_tracking_uri()."),
}


@dag(
    dag_id="av_train_eval",
    schedule=[ALIGNED],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["avalign", "representation"],
    doc_md=__doc__,
)
def av_train_eval():
    @task
    def resolve(params=None, triggering_asset_events=None, run_id=None):
        from avalign.representation import tasks as steps

        extras = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                extra = getattr(event, "extra", None)
                extras.append(dict(extra or {}))
        return steps.resolve_spec(dict(params), extras, run_id)

    @task
    def prepare(spec: dict):
        from avalign.representation import tasks as steps

        return steps.prepare(spec)

    @task
    def list_runs(prepared: dict) -> list[dict]:
        return prepared["runs"]

    @task(map_index_template="{{ run_label }}")
    def train_eval(item: dict, spec: dict, prepared: dict):
        from avalign.representation import tasks as steps

        get_current_context()["run_label"] = f"{item['variant']}/seed{item['seed']}"

        return steps.train_eval(item, spec, prepared)

    @task
    def summarize(results: list[dict], spec: dict, prepared: dict):
        from avalign.representation import tasks as steps

        return steps.summarize(results[:], spec, prepared)

    @task
    def register(summary: dict, spec: dict, prepared: dict):
        from avalign.representation import tasks as steps

        outcome = steps.register(summary, spec, prepared)
        if not outcome["registered"]:
            raise AirflowSkipException(f"not registered: {outcome['reason']}")
        return outcome

    spec = resolve()
    prepared = prepare(spec)
    results = train_eval.partial(spec=spec, prepared=prepared).expand(item=list_runs(prepared))
    register(summarize(results, spec, prepared), spec, prepared)


av_train_eval()
