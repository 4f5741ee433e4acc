"""Command line: ``python -m avalign <command>``. Each command is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from avalign.errors import AvalignError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REAL_AV = REPO_ROOT.parent / "shared" / "data" / "real_av"


def _cmd_generate(args: argparse.Namespace) -> int:
    from avalign.data.dataset import build_dataset

    real = Path(args.real_av) if args.real_av else None
    if real is not None and not real.is_dir():
        raise AvalignError(f"--real-av {real}: not a folder")
    parts = build_dataset(args.out, partitions=args.partitions, clips_per_partition=args.clips,
                          real_av_dir=real, seed=args.seed, duration_s=args.duration, mix=args.mix)
    print(json.dumps({"dataset": args.out, "partitions": parts}, indent=2))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from avalign.data.ingest import ingest

    report = ingest(args.src, args.out, partition_size=args.partition_size)
    print(report)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from avalign.serving.launcher import TritonServer

    server = TritonServer(models=args.models or None, instances=args.instances)
    t0 = time.perf_counter()
    server.start()
    print(f"tritonserver ready in {time.perf_counter() - t0:.1f}s: models {', '.join(server.models)}")
    print(f"  grpc: {server.grpc_url}\n  http: {server.http_url}\n  log:  {server.log_path}")
    print("Ctrl-C stops it.", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop and server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("tritonserver stopped")
    return 0


def _cmd_models_check(args: argparse.Namespace) -> int:
    from avalign.serving.check import check_models

    return check_models(args.clip, url=args.url)




def _cmd_align(args: argparse.Namespace) -> int:
    from avalign.agent.config import AlignConfig
    from avalign.agent.rebuild import align_manifests

    overrides = {"max_cycles": args.max_cycles, "planner": args.planner,
                 "alignment_threshold": args.alignment_threshold, "sync_threshold": args.sync_threshold}
    config = AlignConfig.from_dict(overrides)
    summary = align_manifests(args.manifest, args.out, run_id=args.run_id, config=config,
                              triton_url=args.triton_url, partitions=args.partitions)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from avalign.demo import run_demo

    run_demo(partitions=args.partitions, clips=args.clips)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from avalign.bench import main

    return main(quick=args.quick, out=args.out, real_av_dir=args.real_av)


def _cmd_ui(args: argparse.Namespace) -> int:
    from avalign.review.standalone import run_ui

    return run_ui(port=args.port, host=args.host, home=args.airflow_home)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from avalign.evaluation.harness import evaluate

    report = evaluate(args.suite, agents=tuple(args.agents), triton_url=args.triton_url,
                      out_dir=Path(args.out) if args.out else None, report_only=args.report_only,
                      **({"workers": args.workers} if args.workers is not None else {}))
    print(Path(args.out or REPO_ROOT / "var" / "eval", "alignment.md").read_text())
    print(f"MLflow run: {report.get('mlflow_run_id')}")
    return 0


def _cmd_train_eval(args: argparse.Namespace) -> int:
    from avalign.representation.compare import ComparisonSpec, run_comparison

    values = {"variants": args.variants, "seeds": args.seeds, "epochs": args.epochs, "device": args.device,
              "source": "published" if args.output_uri else "procedural", "output_uri": args.output_uri,
              "partitions": args.partitions, "n_train": args.n_train, "n_eval": args.n_eval,
              "workers": args.workers, "max_steps": args.max_steps, "register": not args.no_register,
              "tracking_uri": args.tracking_uri, "out_dir": args.out_dir}
    result = run_comparison(ComparisonSpec.from_dict(values))
    if args.export and result["registration"].get("registered"):
        from avalign.representation.export import export_scorer

        exported = export_scorer(result["registration"]["model_path"], args.export)
        print(f"exported av_scorer to {exported} (av_align param scorer_repository)")
    print(json.dumps({k: result[k] for k in ("report_uri", "table_uri", "gate", "targets", "elapsed_s")}, indent=2))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from avalign.agent.verify import format_report, verify_dataset

    report = verify_dataset(args.uri, progress=(lambda m: None) if args.quiet else print)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


def _cmd_distributed(args: argparse.Namespace) -> int:
    from avalign import distributed

    if args.compare_workers:
        distributed.compare_workers(partitions=args.partitions, clips=args.clips, name=args.name + "_scale",
                                    out_json=REPO_ROOT / "var" / "bench" / "distributed.json")
        return 0
    result = distributed.run_profile(dataset_uri=args.dataset, output_uri=args.output, workers=args.workers,
                                     name=args.name, keep=args.keep)
    return 0 if result["state"] == "success" and result["verified"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m avalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="build a procedural AV dataset with injected corruption")
    p.add_argument("--out", required=True, help="dataset URI (folder or s3://bucket/prefix)")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--clips", type=int, default=16, help="clips per procedural partition")
    p.add_argument("--duration", type=float, default=4.0, help="clip length in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-av", default=None,
                   help=f"also add a partition from real clips in this folder (e.g. {DEFAULT_REAL_AV})")
    p.add_argument("--mix", choices=["realistic", "single"], default="realistic",
                   help="realistic: combined corruptions, all noise kinds; single: one per clip, stationary noise")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("ingest", help="probe raw videos into a partitioned manifest dataset")
    p.add_argument("src", help="folder or s3:// prefix of videos")
    p.add_argument("--out", required=True, help="dataset URI to write manifests to")
    p.add_argument("--partition-size", type=int, default=64)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("align", help="run the alignment loop on manifests, without Airflow (debugging)")
    p.add_argument("--manifest", required=True,
                   help="a partition's manifest parquet URI, or a dataset URI (all its partitions)")
    p.add_argument("--out", required=True, help="output URI (staging under runs/<run_id>/)")
    p.add_argument("--run-id", default="manual", help="run id (re-using one makes the run idempotent)")
    p.add_argument("--partitions", nargs="*", default=None, help="subset of partitions of a dataset")
    p.add_argument("--triton-url", default=None, help="Triton gRPC host:port (default: start a local server)")
    p.add_argument("--max-cycles", type=int, default=None)
    p.add_argument("--planner", choices=["rules", "llm"], default=None)
    p.add_argument("--alignment-threshold", type=float, default=None)
    p.add_argument("--sync-threshold", type=float, default=None)
    p.set_defaults(func=_cmd_align)

    p = sub.add_parser("demo", help="sample data, local Triton, the av_align DAG, a summary (make demo)")
    p.add_argument("--partitions", type=int, default=2, help="procedural partitions")
    p.add_argument("--clips", type=int, default=16, help="clips per procedural partition")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="speed and quality of the edit actions vs reference libraries (make bench)")
    p.add_argument("--out", default=str(REPO_ROOT / "var" / "bench" / "actions.json"), help="JSON report path")
    p.add_argument("--real-av", default=str(DEFAULT_REAL_AV), help="folder of real clips (skipped when absent)")
    p.add_argument("--quick", action="store_true", help="one short clip, one pass: a smoke run")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("ui", help="Airflow UI with the AV Alignment review pages, on loopback (make ui)")
    p.add_argument("--port", type=int, default=None, help="API server port (default 8080, else a free one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--airflow-home", default=None,
                   help="Airflow home (default var/airflow, where `make demo` records its runs)")
    p.set_defaults(func=_cmd_ui)

    p = sub.add_parser("evaluate", help="run baseline agents and the rule agent on a ground-truth benchmark")
    p.add_argument("--suite", default="default", help="default | smoke")
    p.add_argument("--agents", nargs="+", default=["noop", "random", "always_denoise", "rules"])
    p.add_argument("--triton-url", default=None)
    p.add_argument("--out", default=None, help="output folder (default var/eval)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the report from the results of an earlier run in the same folder (no Triton)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="agents run side by side on this many threads after the first (default: 2, or 1 on one core)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("train-eval", help="AV representation on raw vs aligned vs clean data, in MLflow "
                                          "(the av_train_eval DAG without Airflow)")
    p.add_argument("--output-uri", default=None,
                   help="av_align output with published partitions (default: the procedural benchmark)")
    p.add_argument("--partitions", nargs="*", default=None, help="published partitions (default: all)")
    p.add_argument("--variants", nargs="+", default=["raw", "aligned", "clean"], choices=["raw", "aligned", "clean"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--n-train", type=int, default=None, help="procedural training clips (default 2000)")
    p.add_argument("--n-eval", type=int, default=None, help="procedural held-out clips (default 480)")
    p.add_argument("--workers", type=int, default=2, help="processes building the procedural features")
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per run (smoke runs)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default var/mlflow)")
    p.add_argument("--out-dir", default=None, help="where representation.json/.md go (default var/eval)")
    p.add_argument("--no-register", action="store_true", help="never register the model")
    p.add_argument("--export", default=None, help="also export the registered model as av_scorer into this folder")
    p.set_defaults(func=_cmd_train_eval)

    p = sub.add_parser("distributed", help="av_align on CeleryExecutor + PostgreSQL + Redis with a shared "
                                           "Triton (make distributed; docs/distributed.md)")
    p.add_argument("--dataset", default=None, help="dataset URI (default: a generated sample under var/)")
    p.add_argument("--output", default=None, help="output URI (default var/aligned/distributed)")
    p.add_argument("--workers", type=int, default=2, help="Celery workers, one process each")
    p.add_argument("--name", default="avalign", help="database names <name>_airflow, <name>_mlflow")
    p.add_argument("--keep", action="store_true", help="keep the stack (and its UI) running after the run")
    p.add_argument("--compare-workers", action="store_true",
                   help="measure 1 vs 2 workers on the same data (var/bench/distributed.json)")
    p.add_argument("--partitions", type=int, default=4, help="--compare-workers: partitions")
    p.add_argument("--clips", type=int, default=24,
                   help="--compare-workers: clips per partition (fewer: the fixed per-run latency dominates)")
    p.set_defaults(func=_cmd_distributed)

    p = sub.add_parser("verify", help="re-check a published dataset's checksums and counts (exit 1 on a problem)")
    p.add_argument("uri", help="the av_align output URI (holds published/*.json)")
    p.add_argument("--json", default=None, help="also write the report as JSON to this path")
    p.add_argument("--quiet", action="store_true", help="only the findings and the verdict")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("serve", help="run the local tritonserver on the model repository")
    p.add_argument("--models", nargs="*", help="subset of models (default: all)")
    p.add_argument("--instances", type=int, default=None,
                   help="instances per model (default: the repository's count, 1); one per concurrent caller")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("models", help="model utilities")
    msub = p.add_subparsers(dest="models_command", required=True)
    c = msub.add_parser("check", help="call every model through tritonclient gRPC on a real clip")
    c.add_argument("--clip", default=str(DEFAULT_REAL_AV / "talking_head_2_retalking.mp4"))
    c.add_argument("--url", default=None, help="Triton gRPC url (default: start a local server)")
    c.set_defaults(func=_cmd_models_check)
    return parser


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AvalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
