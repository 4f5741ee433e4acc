"""``python -m avalign evaluate --suite NAME``: every agent on the same benchmark clips.

Per agent and corruption type it reports offset error (median, p90, share within ±1 video
frame), SI-SDR gain where a clean reference exists, the do-no-harm rate on clean controls
(output within 0.5 dB SI-SDR of the input against the reference, or untouched), mean cycles,
seconds per clip and the reflection score before/after; plus the precision of applied shifts
and, from the untouched (noop) run, the Spearman correlation between the alignment score and
the corruption's severity. Writes ``<out>/alignment.json`` and ``<out>/alignment.md``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from avalign.agent.summary import _audio16k, applied_shift_ms, shift, si_sdr
from avalign.data import storage
from avalign.evaluation.benchmark import SUITES, build_benchmark, severity

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_AGENTS = ("noop", "random", "always_denoise", "rules")
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
"""Agents run side by side on this many threads after the first (see ``_run_agents``)."""


SI_SDR_TYPES = {"noise", "none", "gain", "gaps", "distractor"}
"""Types whose content stays in place, so SI-SDR against the clean reference is meaningful."""

HEADLINE = {
    "offset": ("offset_within_1_frame", "higher"),
    "noise": ("si_sdr_gain_db_median", "higher"),
    "gaps": ("gap_silent_share_median", "lower"),
    "distractor": ("si_sdr_gain_db_median", "higher"),
    "speed_drift": ("drift_residual_ms_median", "lower"),
    "gain": ("level_error_db_median", "lower"),
    "none": ("do_no_harm", "higher"),
}
"""The ground-truth metric each corruption type is judged on when agents are compared."""
CLEAN_TOLERANCE = 0.02
"""On clean controls the rules agent may trail noop's do-no-harm by at most this (issue 5)."""


SPEAKING_FACE_SPEECH_S = 3.0
"""Clips with this much speech (VAD) and a face in half of the sampled frames form the
``real_speaking_face`` group (issue 5's "real clips with speech and a visible face")."""


def _plan_speed(plan_json: str) -> float:
    """Product of the speed_change factors of a kept plan (1.0 without one)."""
    factor = 1.0
    for step in json.loads(plan_json or "[]"):
        if step.get("action") == "speed_change":
            factor *= float(step.get("params", {}).get("factor", 1.0))
    return factor


def _trace_evidence(trace_uri: str | None) -> dict[str, Any]:
    """Speech seconds and face share as the describers measured them (the same for every agent),
    and the untouched clip's score components (for the calibration)."""
    keys = ("speech_s", "face_fraction", "semantic_before", "quality_before")
    if not trace_uri:
        return dict.fromkeys(keys)
    trace = json.loads(storage.read_bytes(trace_uri))
    evidence, before = trace.get("evidence", {}), (trace.get("scores") or {}).get("before") or {}
    return {"speech_s": (evidence.get("audio") or {}).get("speech_s"),
            "face_fraction": (evidence.get("visual") or {}).get("face_fraction"),
            "semantic_before": before.get("semantic"), "quality_before": before.get("quality")}


def _groups(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Report groups: procedural, real, and the real clips that show a speaking face."""
    groups = {origin: df[df["origin"] == origin] for origin in ("procedural", "real")}
    real = groups["real"]
    speaking = (real["speech_s"].fillna(0) >= SPEAKING_FACE_SPEECH_S) & (real["face_fraction"].fillna(0) >= 0.5)
    groups["real_speaking_face"] = real[speaking]
    groups["real_other"] = real[~speaking]  # music, ambience, voice-over: sync mostly cannot be told
    return groups


def _gap_silent_share(audio: np.ndarray, corruption: list[dict], sample_rate: int = 16000) -> float:
    """Share of the injected dropouts' samples that are still digital silence in ``audio``."""
    silent = total = 0
    for step in corruption:
        for start_s, dur_s in step.get("params", {}).get("gaps", []) if step["type"] == "gaps" else []:
            part = audio[int(start_s * sample_rate): int((start_s + dur_s) * sample_rate)]
            silent += int(np.count_nonzero(np.abs(part) < 1e-4))
            total += part.size
    return silent / total if total else float("nan")


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _per_clip(table: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Ground-truth metrics for one agent's results table."""
    m = manifest.set_index("clip_id")
    rows = []
    for r in table.itertuples():
        mr = m.loc[r.clip_id]
        kind, sev = severity(mr["corruption"])
        source = f"{mr['category']}#{mr['seed']}" if mr["origin"] == "procedural" else str(mr["source_uri"])
        row: dict[str, Any] = {"clip_id": r.clip_id, "origin": mr["origin"], "type": kind, "severity": sev,
                               "source": source if mr["origin"] == "procedural" else None,
                               "outcome": r.outcome, "cycles": r.cycles, "seconds": r.seconds,
                               "alignment_before": r.alignment_before, "alignment_after": r.alignment_after,
                               "sync_before": r.sync_before,
                               "frame_ms": 1000.0 / float(mr["fps"] or 25.0)}
        row.update(_trace_evidence(getattr(r, "trace_uri", None)))
        shift_ms = applied_shift_ms(r.plan_json) if r.outcome == "improved" else 0.0
        injected = float(mr["offset_ms"] or 0.0)
        row["offset_before_ms"] = abs(injected)
        row["offset_after_ms"] = abs(injected + shift_ms)
        row["shifted"] = bool(shift_ms)
        if kind == "speed_drift":
            # audio time t holds picture time t * speed; the plan's speed changes rescale that
            speed = next(float(st["params"].get("speed_exact", st["params"].get("speed", 1.0)))
                         for st in json.loads(mr["corruption"]) if st["type"] == "speed_drift")
            factor = _plan_speed(r.plan_json) if r.outcome == "improved" else 1.0
            row["drift_residual_ms"] = abs(speed * factor - 1.0) * float(mr["duration_s"]) * 1000.0
        if r.outcome != "quarantined" and mr["reference_audio_uri"]:
            ref = _audio16k(mr["reference_audio_uri"])
            inp = _audio16k(mr["source_uri"])
            out = _audio16k(r.audio_uri) if r.outcome == "improved" and r.audio_uri else inp
            # SI-SDR is only meaningful where the content is unmoved: an offset repaired to within
            # a few ms still reads as a large SI-SDR loss, so offset clips use the offset error.
            if kind in SI_SDR_TYPES:
                b = si_sdr(inp, shift(ref, injected))
                a = si_sdr(out, shift(ref, injected + shift_ms))
                row["si_sdr_gain_db"] = a - b
            if kind == "gain":  # SI-SDR ignores level: how far the level is from the clean clip's
                row["level_error_db"] = abs(_rms_db(out) - _rms_db(ref))
            if kind == "gaps":  # SI-SDR punishes any fill that is not the lost audio itself
                row["gap_silent_share"] = _gap_silent_share(out, json.loads(mr["corruption"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _summarise(df: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"clips": int(len(df))}
    off = df[df["type"] == "offset"]
    if len(off):
        err = off["offset_after_ms"]
        out["offset_error_ms_median"] = round(float(err.median()), 1)
        out["offset_error_ms_p90"] = round(float(err.quantile(0.9)), 1)
        out["offset_within_1_frame"] = round(float((err <= off["frame_ms"]).mean()), 3)
        out["offset_within_80ms"] = round(float((err <= 80).mean()), 3)
        # do no harm in time: the clip ends no farther from sync than it started
        out["timing_do_no_harm"] = round(float((off["offset_after_ms"] <= off["offset_before_ms"] + 1.0).mean()), 3)
        out["shift_rate"] = round(float(off["shifted"].mean()), 3)
        moved = off[off["shifted"]]
        out["shifts_applied"] = int(len(moved))
        if len(moved):
            out["shift_precision"] = round(float((moved["offset_after_ms"] < moved["offset_before_ms"]).mean()), 3)
    if "si_sdr_gain_db" in df and df["si_sdr_gain_db"].notna().any():
        out["si_sdr_gain_db_median"] = round(float(df["si_sdr_gain_db"].median()), 2)
        out["si_sdr_gain_db_mean"] = round(float(df["si_sdr_gain_db"].mean()), 2)
    if "drift_residual_ms" in df and df["drift_residual_ms"].notna().any():
        out["drift_residual_ms_median"] = round(float(df["drift_residual_ms"].median()), 1)
    if "gap_silent_share" in df and df["gap_silent_share"].notna().any():
        out["gap_silent_share_median"] = round(float(df["gap_silent_share"].median()), 3)
    if "level_error_db" in df and df["level_error_db"].notna().any():
        out["level_error_db_median"] = round(float(df["level_error_db"].median()), 2)
    clean = df[df["type"] == "none"]
    if len(clean):
        ok = (clean["outcome"] != "improved") | (clean.get("si_sdr_gain_db", pd.Series(0.0, index=clean.index)) >= -0.5)
        out["do_no_harm"] = round(float(ok.mean()), 3)
    out["cycles_mean"] = round(float(df["cycles"].mean()), 2)
    out["seconds_per_clip"] = round(float(df["seconds"].mean()), 2)
    out["alignment_before_mean"] = round(float(df["alignment_before"].mean()), 3)
    out["alignment_after_mean"] = round(float(df["alignment_after"].mean()), 3)
    out["improved_share"] = round(float((df["outcome"] == "improved").mean()), 3)
    return out


def calibration(df: pd.DataFrame) -> dict[str, Any]:
    """Spearman correlation of the untouched clip's score with corruption severity, per type.

    ``spearman``: pooled over all clips, the clean controls joining each type at severity 0.
    Content sets each clip's baseline (a rain clip never scores like a drum clip), so pooled
    ranks mix content with damage. ``spearman_within_source`` therefore correlates severity with
    the score's *drop* from the same procedural source's clean control (the comparison the loop
    itself makes: the same clip before and after an edit). Both for ``alignment``; the offset
    type also for ``sync``, the score that carries timing.
    """
    from scipy.stats import spearmanr

    result = {}
    clean = df[df["type"] == "none"]
    baseline = {}
    if "source" in df:
        for score in ("alignment_before", "sync_before"):
            if score in clean:
                baseline[score] = clean.dropna(subset=["source"]).groupby("source")[score].mean()
    for kind in sorted(set(df["type"]) - {"none"}):
        part = pd.concat([df[df["type"] == kind], clean])
        if part["severity"].nunique() < 3:
            continue
        rho, p = spearmanr(-part["alignment_before"], part["severity"])  # higher severity → lower score
        entry: dict[str, Any] = {"spearman": round(float(rho), 3), "p_value": round(float(p), 4), "n": int(len(part))}
        for score, label in (("alignment_before", ""), ("sync_before", "_sync")):
            if score not in baseline or (label and kind != "offset"):
                continue
            own = part[part["source"].isin(baseline[score].index)]
            if own["severity"].nunique() < 3:
                continue
            drop = own["source"].map(baseline[score]) - own[score]
            rho_w, p_w = spearmanr(drop, own["severity"])
            entry[f"spearman_within_source{label}"] = round(float(rho_w), 3)
            entry[f"p_within_source{label}"] = round(float(p_w), 4)
            entry[f"n_within_source{label}"] = int(len(own))
        result[kind] = entry
    return result


def compare_agents(by_origin: dict[str, dict[str, dict[str, Any]]], agent: str = "rules",
                   baselines: tuple[str, ...] = ("noop", "random")) -> dict[str, dict[str, Any]]:
    """Per origin and corruption type: does ``agent`` beat each baseline on the type's headline metric?

    "Beats" is strictly better; on clean controls (``none``) the bar is issue 5's: do-no-harm no more
    than ``CLEAN_TOLERANCE`` below noop's (and strictly above random's).
    """
    out: dict[str, dict[str, Any]] = {}
    for origin, per_agent in by_origin.items():
        if agent not in per_agent:
            continue
        out[origin] = {}
        for kind, (metric, better) in HEADLINE.items():
            ours = per_agent[agent].get(kind, {}).get(metric)
            if ours is None:
                continue
            entry: dict[str, Any] = {"metric": metric, "better": better, agent: ours}
            for base in baselines:
                theirs = per_agent.get(base, {}).get(kind, {}).get(metric)
                if theirs is None:
                    continue
                entry[base] = theirs
                if kind == "none" and base == "noop":
                    entry[f"beats_{base}"] = ours >= theirs - CLEAN_TOLERANCE
                else:
                    entry[f"beats_{base}"] = ours > theirs if better == "higher" else ours < theirs
            out[origin][kind] = entry
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Alignment evaluation — suite `{report['suite']}`", "",
             f"{report['clips']} clips, agents: {', '.join(report['agents'])}; {report['elapsed_s']:.0f} s"
             + (" (report rebuilt from an earlier run's results)." if report.get("report_only") else "."), ""]
    cols = ["clips", "offset_error_ms_median", "offset_error_ms_p90", "offset_within_1_frame",
            "offset_within_80ms", "shift_precision", "si_sdr_gain_db_median", "si_sdr_gain_db_mean",
            "level_error_db_median", "gap_silent_share_median", "drift_residual_ms_median", "do_no_harm", "timing_do_no_harm", "shift_rate",
            "cycles_mean",
            "seconds_per_clip", "alignment_before_mean", "alignment_after_mean"]
    for origin, per_agent in report["by_origin"].items():
        lines += [f"## {origin} clips", ""]
        for kind in sorted({k for a in per_agent.values() for k in a}):
            lines += [f"### {kind}", "", "| agent | " + " | ".join(cols) + " |",
                      "|---|" + "---|" * len(cols)]
            for agent, kinds in per_agent.items():
                if kind in kinds:
                    vals = [kinds[kind].get(c, "") for c in cols]
                    lines.append(f"| {agent} | " + " | ".join(str(v) for v in vals) + " |")
            lines.append("")
    for origin, kinds in report.get("comparison", {}).items():
        lines += [f"## Rules against the baselines ({origin} clips)", "",
                  "Each type on its ground-truth metric; clean controls: do-no-harm within "
                  f"{CLEAN_TOLERANCE:.0%} of noop.", "",
                  "| type | metric | rules | noop | random | beats noop | beats random |", "|---|---|---|---|---|---|---|"]
        for kind, c in kinds.items():
            lines.append(f"| {kind} | {c['metric']} ({c['better']} is better) | {c.get('rules', '')} | "
                         f"{c.get('noop', '')} | {c.get('random', '')} | {_yes(c.get('beats_noop'))} | "
                         f"{_yes(c.get('beats_random'))} |")
        lines.append("")
    lines += ["## Reflection calibration (noop run: Spearman of the score vs severity)", "",
              "Pooled: −alignment over all clips. Within source: the alignment drop from the same procedural",
              "source's clean control (sync drop for offsets in the last column).", "",
              "| type | pooled spearman | p | n | within-source spearman | n | within-source (sync) |",
              "|---|---|---|---|---|---|---|"]
    for kind, c in report["calibration"].items():
        lines.append(f"| {kind} | {c['spearman']} | {c['p_value']} | {c['n']} | "
                     f"{c.get('spearman_within_source', '')} | {c.get('n_within_source', '')} | "
                     f"{c.get('spearman_within_source_sync', '')} |")
    return "\n".join(lines) + "\n"


def _yes(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "**no**")


def evaluate(suite_name: str = "default", *, out_dir: Path | None = None, agents: tuple[str, ...] = DEFAULT_AGENTS,
             triton_url: str | None = None, real_av_dir: Path | None = None, tracking_uri: str | None = None,
             progress: Callable[[str], None] = print, report_only: bool = False,
             workers: int = DEFAULT_WORKERS) -> dict[str, Any]:
    """Run ``agents`` on the suite's benchmark (built once under ``out_dir``) and report.

    ``workers``: threads that run agents side by side after the first one (1 = one at a time).

    ``report_only``: skip the runs and rebuild the report from the results an earlier run left
    under ``out_dir/runs-<suite>`` (after a change to the metrics, not to the agents).
    """
    from avalign.agent.config import AlignConfig
    from avalign.agent.rebuild import resolve_manifests
    from avalign.data.manifest import read_manifest

    if suite_name not in SUITES:
        raise ValueError(f"unknown suite {suite_name!r}; choose from {sorted(SUITES)}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not agents:
        raise ValueError("agents must name at least one agent")
    suite = SUITES[suite_name]
    out_dir = Path(out_dir or REPO_ROOT / "var" / "eval")
    dataset = str(out_dir / f"bench-{suite_name}")
    real_av_dir = real_av_dir if real_av_dir is not None else REPO_ROOT.parent / "shared" / "data" / "real_av"
    t0 = time.perf_counter()
    if not storage.list_files(storage.join(dataset, "manifests"), suffix=".parquet"):
        build_benchmark(suite, dataset, real_av_dir=real_av_dir, progress=progress)
    manifests = resolve_manifests(dataset)
    manifest = pd.concat([read_manifest(m) for m in manifests], ignore_index=True)
    config = AlignConfig()
    per_agent: dict[str, pd.DataFrame] = {}
    runs_uri = str(out_dir / f"runs-{suite_name}")
    if report_only:
        for agent in agents:
            tables = [pd.read_parquet(u) for u in storage.list_files(storage.join(runs_uri, "runs", agent),
                                                                   suffix="results.parquet")]
            if not tables:
                raise FileNotFoundError(f"no results of agent {agent!r} under {runs_uri}: run without --report-only")
            per_agent[agent] = _per_clip(pd.concat(tables, ignore_index=True), manifest)
    else:
        per_agent = _run_agents(agents, manifests, manifest, runs_uri, config, triton_url, t0, suite_name, progress,
                                workers=workers)
    return _report(suite_name, manifest, per_agent, agents, config, out_dir, t0, tracking_uri, progress,
                   report_only=report_only)


def _run_agents(agents: tuple[str, ...], manifests: list[str], manifest: pd.DataFrame, runs_uri: str, config: Any,
                triton_url: str | None, t0: float, suite_name: str, progress: Callable[[str], None],
                workers: int = DEFAULT_WORKERS) -> dict[str, pd.DataFrame]:
    """Every agent through ``run_partition`` on every partition, sharing one memoising client.

    The first agent runs alone and fills the memory with the untouched clips' descriptions and
    scores (every agent asks for them first). The others then run side by side on ``workers``
    threads, each (agent, partition) a task; each thread holds one of ``workers`` Triton
    connections while it runs one: while one waits on a model, another applies its edits, and
    the server's models answer different threads at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    from avalign.agent.partition import run_partition
    from avalign.agent.rebuild import triton_client
    from avalign.evaluation.agents import make_agent
    from avalign.serving.client import TritonClient
    from avalign.serving.memo import MemoizingClient

    tables: dict[str, dict[str, pd.DataFrame]] = {agent: {} for agent in agents}
    lock = threading.Lock()
    with triton_client(triton_url, progress) as triton:
        client = MemoizingClient(triton)

        def run(agent: str, m: str, own: Any) -> None:
            run = run_partition(m, runs_uri, run_id=agent, config=config, client=own,
                                planner=make_agent(agent, own), progress=lambda msg: None, force=True)
            table = pd.read_parquet(run.results_uri)
            with lock:
                tables[agent][m] = table
                if len(tables[agent]) == len(manifests):
                    progress(f"evaluate {suite_name}: agent {agent} done ({time.perf_counter() - t0:.0f}s elapsed, "
                             f"model calls answered from memory so far: {client.hits} of {client.hits + client.misses})")

        first, rest = agents[0], agents[1:]
        for m in manifests:
            run(first, m, client)
        tasks = [(agent, m) for agent in rest for m in manifests]
        if workers <= 1 or len(tasks) <= 1:
            for agent, m in tasks:
                run(agent, m, client)
        else:
            extra = [TritonClient(triton.url, timeout_s=triton.timeout_s, retry_deadline_s=triton.retry_deadline_s,
                                  max_backoff_s=triton.max_backoff_s) for _ in range(workers - 1)]
            free = [client] + [client.sharing(connection) for connection in extra]

            def task(agent: str, m: str) -> None:
                with lock:
                    own = free.pop()
                try:
                    run(agent, m, own)
                finally:
                    with lock:
                        free.append(own)

            pool = ThreadPoolExecutor(workers, thread_name_prefix="eval-agent")
            try:
                for future in [pool.submit(task, agent, m) for agent, m in tasks]:
                    future.result()  # re-raises the first failure
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # after a failure, queued tasks do not start
                for connection in extra:
                    connection.close()
    return {agent: _per_clip(pd.concat([tables[agent][m] for m in manifests], ignore_index=True), manifest)
            for agent in agents}


def _report(suite_name: str, manifest: pd.DataFrame, per_agent: dict[str, pd.DataFrame], agents: tuple[str, ...],
            config: Any, out_dir: Path, t0: float, tracking_uri: str | None, progress: Callable[[str], None], *,
            report_only: bool = False) -> dict[str, Any]:
    """Summaries per group, agent and type; the comparison and calibration; files and MLflow."""
    by_origin: dict[str, dict[str, dict[str, Any]]] = {}
    for agent, df in per_agent.items():
        for origin, sub in _groups(df).items():
            by_origin.setdefault(origin, {})
            if len(sub):
                by_origin[origin][agent] = {kind: _summarise(g) for kind, g in sub.groupby("type")}
                by_origin[origin][agent]["all"] = _summarise(sub)
    calib_source = per_agent.get("noop", next(iter(per_agent.values())))
    report = {"suite": suite_name, "clips": int(len(manifest)), "agents": list(agents), "by_origin": by_origin,
              "comparison": compare_agents(by_origin),
              "calibration": calibration(calib_source), "elapsed_s": round(time.perf_counter() - t0, 1),
              "report_only": report_only, "config": config.to_dict()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "alignment.json").write_text(json.dumps(report, indent=2))
    (out_dir / "alignment.md").write_text(markdown(report))
    for agent, df in per_agent.items():
        df.to_csv(out_dir / f"alignment-{suite_name}-{agent}.csv", index=False)
    report["mlflow_run_id"] = _log(report, out_dir, tracking_uri)
    progress(f"wrote {out_dir / 'alignment.json'} and {out_dir / 'alignment.md'}")
    return report


def _log(report: dict[str, Any], out_dir: Path, tracking_uri: str | None) -> str | None:
    """One MLflow run in experiment ``av_eval`` with the headline metrics and both reports."""
    import mlflow

    from avalign.tracking.runs import default_tracking_uri, ensure_store

    tracking_uri = tracking_uri or default_tracking_uri()
    ensure_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("av_eval")
    with mlflow.start_run(run_name=f"evaluate {report['suite']}") as run:
        mlflow.log_params({"suite": report["suite"], "agents": ",".join(report["agents"]), "clips": report["clips"]})
        for origin, agents in report["by_origin"].items():
            for agent, kinds in agents.items():
                for kind, metrics in kinds.items():
                    for key, value in metrics.items():
                        if isinstance(value, (int, float)):
                            mlflow.log_metric(f"{origin}.{agent}.{kind}.{key}", float(value))
        for kind, c in report["calibration"].items():
            mlflow.log_metric(f"calibration.{kind}.spearman", c["spearman"])
        mlflow.log_artifact(str(out_dir / "alignment.json"))
        mlflow.log_artifact(str(out_dir / "alignment.md"))
        return run.info.run_id
