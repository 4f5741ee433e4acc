"""``make demo``: a sample dataset, a local Triton, the av_align DAG through ``airflow dags test``,
and a summary against ground truth in ``var/demo/summary.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from avalign.data import storage

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "var" / "demo"
REAL_AV_DIR = REPO_ROOT.parent / "shared" / "data" / "real_av"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def build_sample(dataset: Path, *, partitions: int, clips: int, progress: Callable[[str], None]) -> None:
    from avalign.data.dataset import build_dataset
    from avalign.data.manifest import list_partitions

    if list_partitions(str(dataset)):
        progress(f"sample dataset already at {dataset}: reusing it")
        return
    real = REAL_AV_DIR if REAL_AV_DIR.is_dir() else None
    if real is None:
        progress(f"no real clips at {REAL_AV_DIR}: procedural partitions only")
    # One corruption per clip, stationary noise: each ground-truth metric measures one repair.
    # (`python -m avalign generate --mix realistic` draws combined corruptions, babble included.)
    build_dataset(str(dataset), partitions=partitions, clips_per_partition=clips, real_av_dir=real, seed=0,
                  progress=lambda m: None, mix="single")
    progress(f"generated {dataset} with partitions {list_partitions(str(dataset))}")


def mlflow_run_for(tracking_uri: str, rebuild_id: str) -> str | None:
    """The parent MLflow run logged for this rebuild id (the DAG logs params.run_id)."""
    from avalign.tracking.runs import mlflow_client

    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name("av_align")
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"params.run_id = '{rebuild_id}'",
                              order_by=["attributes.start_time DESC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents[0].info.run_id if parents else None


def collect(out_uri: str, rebuild_id: str) -> tuple[list, list[str], list[str]]:
    """Results tables of this rebuild, and which partitions were published or rejected."""
    import pandas as pd

    from avalign.agent.publish import read_published

    tables, published, rejected = [], [], []
    pointers = read_published(out_uri)
    for uri in storage.list_files(storage.join(out_uri, "runs", rebuild_id), suffix="results.parquet"):
        with storage.local_copy(uri) as local:
            table = pd.read_parquet(local)
        tables.append(table)
        name = str(table["partition"].iloc[0]) if len(table) else uri.rsplit("/", 2)[-2]
        if pointers.get(name, {}).get("run_id") == rebuild_id:
            published.append(name)
        else:
            rejected.append(name)
    return tables, published, rejected


def run_demo(*, partitions: int = 2, clips: int = 16) -> dict[str, Any]:
    from avalign.agent.summary import summarise
    from avalign.orchestration import airflow_env, ensure_airflow_db, run_dag_test
    from avalign.serving.launcher import TritonServer
    from avalign.tracking.runs import default_tracking_uri

    t0 = time.perf_counter()
    dataset, out = DEMO_DIR / "dataset", DEMO_DIR / "aligned"
    _say(f"1/4 sample dataset ({partitions} procedural partitions x {clips} clips + real clips)")
    build_sample(dataset, partitions=partitions, clips=clips, progress=_say)

    _say("2/4 starting the local tritonserver (nvidia-pytriton binary) ...")
    server = TritonServer().start()
    _say(f"tritonserver ready at {server.grpc_url} ({time.perf_counter() - t0:.0f}s elapsed)")
    try:
        env = airflow_env()
        _say(f"3/4 Airflow on SQLite at {env['AIRFLOW_HOME']}: migrating the metadata DB, pool 'triton'")
        ensure_airflow_db(env)
        rebuild_id = time.strftime("demo_%Y%m%dT%H%M%S")
        tracking_uri = default_tracking_uri()
        conf = {"dataset_uri": str(dataset), "output_uri": str(out), "triton_url": server.grpc_url,
                "mlflow_tracking_uri": tracking_uri, "rebuild_id": rebuild_id}
        _say(f"4/4 airflow dags test av_align (rebuild {rebuild_id}) ...")
        proc = run_dag_test(conf, env)
        log = DEMO_DIR / "dags_test.log"
        log.write_text((proc.stdout or "") + (proc.stderr or ""))
        if proc.returncode != 0:
            raise SystemExit(f"airflow dags test failed (exit {proc.returncode}); log: {log}")
    finally:
        server.stop()

    tables, published, rejected = collect(str(out), rebuild_id)
    summary = summarise(tables, published=published, rejected=rejected,
                        mlflow_run_id=mlflow_run_for(tracking_uri, rebuild_id),
                        elapsed_s=time.perf_counter() - t0)
    summary["rebuild_id"] = rebuild_id
    summary["output_uri"] = str(out)
    path = DEMO_DIR / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    print_summary(summary, path, out, rebuild_id)
    return summary


def print_summary(summary: dict[str, Any], path: Path, out: Path, rebuild_id: str) -> None:
    s = summary
    print("\n" + "=" * 72)
    print(f"av_align demo — rebuild {rebuild_id}  ({s['elapsed_s']:.0f} s)")
    print("=" * 72)
    print(f"clips: {s['clips_total']}  improved {s['improved']}  kept_original {s['kept_original']}"
          f"  quarantined {s['quarantined']}")
    print(f"partitions published: {', '.join(s['partitions_published']) or '-'}")
    print(f"partitions rejected by the GX gate: {', '.join(s['partitions_rejected']) or '-'}")
    if "offset_clips" in s:
        print(f"offset clips ({s['offset_clips']}): median |offset error| {s['offset_error_ms_median_before']:.0f} ms"
              f" -> {s['offset_error_ms_median_after']:.0f} ms")
    if "noisy_clips" in s:
        print(f"noisy clips ({s['noisy_clips']}): median SI-SDR {s['si_sdr_db_median_before']:+.1f} dB"
              f" -> {s['si_sdr_db_median_after']:+.1f} dB (median gain {s['si_sdr_db_median_gain']:+.1f} dB)")
    if "clean_controls" in s:
        print(f"clean controls ({s['clean_controls']}): {100 * s['clean_controls_unchanged_share']:.0f}% left unchanged,"
              f" {100 * s['clean_controls_no_harm_share']:.0f}% unharmed (SI-SDR within 0.5 dB)")
    print(f"MLflow run: {s['mlflow_run_id']}")
    print(f"summary: {path}")
    print("\nNext:")
    print("  make ui          # Airflow UI (airflow standalone on our dags)")
    print("  make mlflow-ui   # MLflow UI on http://127.0.0.1:5000")
    print(f"  GX Data Docs:    {out}/runs/{rebuild_id}/<partition>/gx/data_docs/index.html")
