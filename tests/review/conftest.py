"""A review root on tmp_path: one output with real (tiny) media, traces, GX result and pointers.

Layout (the root is named ``var`` in URLs, like the default root):

    <tmp>/var/data/media/clip-000.mp4 ...      sources (PyAV, 2 s, a click at 1.0 s)
    <tmp>/var/out/runs/run-1/part-00000/       results.parquet, traces/, audio/*.flac, gx/
    <tmp>/var/out/runs/run-1/big-00001/        1,000 rows (all pointing at the same media)
    <tmp>/var/out/runs/run-1/outside-00002/   one clip whose source lies outside the root
    <tmp>/var/out/published/part-00000.json
    <tmp>/var/airflow/airflow.cfg, *.generated  things under a root that must never be served
    <tmp>/outside/secret.mp4                   outside the root; <tmp>/var/escape.mp4 links to it
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from avalign.agent.partition import results_table
from avalign.review.app import create_app
from avalign.review.config import ReviewConfig
from tests.media.clipgen import click_signal, write_clip

RUN, PART, BIG, OUTSIDE = "run-1", "part-00000", "big-00001", "outside-00002"
GOOD_TOKEN, VIEWER_WITHOUT_ACCESS = "good-token", "no-dag-access"


def fake_auth(request: Request) -> None:
    """Stands in for Airflow's check: 401 without credentials, 403 when they do not grant access."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.cookies.get("_token")
    if not token:
        raise HTTPException(401, "Not authenticated")
    if token != GOOD_TOKEN:
        raise HTTPException(403, "Forbidden")


def _row(i: int, clip: str, source: Path, part_dir: Path, outcome: str, *, audio: Path | None) -> dict:
    actions = {"improved": ["time_shift", "volume_adjust"], "kept_original": [], "quarantined": []}[outcome]
    if outcome == "improved" and i % 3 == 0:
        actions = ["fill_blanks", "spectral_gating", "time_shift"]
    reason = {"improved": None, "kept_original": "no_edit_planned: no rule fired",
              "quarantined": "no_audio_stream: clip has no audio"}[outcome]
    scored = outcome != "quarantined"
    before = 0.3 + (i % 50) / 100.0
    return {
        "clip_id": clip, "partition": part_dir.name, "run_id": RUN, "source_uri": str(source),
        "outcome": outcome, "reason": reason, "cycles": 1 if scored else 0, "actions": ",".join(actions),
        "plan_json": json.dumps([{"action": a, "params": {}} for a in actions]),
        "alignment_before": before if scored else None, "sync_before": 0.2 if scored else None,
        "alignment_after": (before + 0.2 if outcome == "improved" else before) if scored else None,
        "sync_after": (0.9 if outcome == "improved" else 0.2) if scored else None,
        "passed": outcome == "improved", "improved_or_passed": outcome == "improved",
        "duration_in_s": 2.0, "duration_out_s": 2.0, "duration_error_s": 0.0, "peak_out": 0.9,
        "clipped_fraction_out": 0.0, "offset_est_before_ms": -120.0 if scored else None,
        "offset_est_after_ms": 3.0 if outcome == "improved" else None,
        "output_uri": str(part_dir / "clips" / f"{clip}.mp4") if audio else str(source),
        "audio_uri": str(audio) if audio else None,
        "trace_uri": str(part_dir / "traces" / f"{clip}.json"), "output_sha256": "0" * 64,
        "seconds": 0.5 + i % 7 / 10.0, "injected_offset_ms": 120.0, "injected_snr_db": None,
        "corruption_types": "offset", "corruption": "", "reference_audio_uri": None, "category": "click",
    }


def _trace(row: dict) -> dict:
    cycles = []
    if row["cycles"]:
        cycles = [{"cycle": 1, "planner": "rules", "plan": json.loads(row["plan_json"]),
                   "rationale": ["audio estimated +120 ms against the picture (confidence 0.80)"],
                   "alignment": row["alignment_after"], "sync": row["sync_after"],
                   "detail": {"offset_ms": row["offset_est_after_ms"]}, "rejected_reason": None,
                   "fallback_reason": None, "seconds": 0.1}]
    return {
        "clip_id": row["clip_id"], "outcome": row["outcome"], "reason": row["reason"],
        "source_uri": row["source_uri"], "config": {"frame_rate": 25.0, "frame_side": 160},
        "descriptions": {"audio": "The audio sounds like a click.", "visual": "The frames look like grey."},
        "evidence": {"audio": {"speech_s": 0.0}, "visual": {"face_fraction": 0.0}},
        "scores": {"before": {"alignment": row["alignment_before"], "sync": row["sync_before"],
                              "offset_ms": row["offset_est_before_ms"], "offset_confidence": 0.8},
                   "after": {"alignment": row["alignment_after"], "sync": row["sync_after"],
                             "offset_ms": row["offset_est_after_ms"], "offset_confidence": 0.8}},
        "cycles": cycles, "kept_plan": json.loads(row["plan_json"]) if row["outcome"] == "improved" else [],
        "models": {}, "timings": {"total_s": 0.5},
    }


def write_partition(part_dir: Path, sources: list[Path], n: int) -> list[dict]:
    """A results table of ``n`` clips (outcomes cycling), traces, and aligned FLACs of the first few."""
    for sub in ("traces", "audio", "clips"):
        (part_dir / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    outcomes = ("improved", "kept_original", "improved", "quarantined")
    for i in range(n):
        clip = f"clip-{i:04d}"
        outcome = outcomes[i % 4]
        audio = None
        if outcome == "improved":
            audio = part_dir / "audio" / f"{clip}.flac"
            if i < len(sources):  # real aligned audio for the clips with their own media
                x = click_signal(16000, 2.0, 0.88)[0]
                sf.write(str(audio), x, 16000, format="FLAC")
        rows.append(_row(i, clip, sources[i % len(sources)], part_dir, outcome, audio=audio))
    results_table(rows).to_parquet(part_dir / "results.parquet", index=False)
    for row in rows[: max(len(sources), 8)]:
        (part_dir / "traces" / f"{row['clip_id']}.json").write_text(json.dumps(_trace(row)))
    return rows


@pytest.fixture(scope="session")
def review_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("review")
    root = base / "var"
    media = root / "data" / "media"
    media.mkdir(parents=True)
    sources = [write_clip(media / f"src-{i}.mp4", sample_rate=16000, click_s=1.0 + 0.12) for i in range(4)]
    out = root / "out"
    part = out / "runs" / RUN / PART
    write_partition(part, sources, 8)
    write_partition(out / "runs" / RUN / BIG, sources, 1000)
    gx = part / "gx"
    (gx / "data_docs" / "static").mkdir(parents=True)
    (gx / "data_docs" / "index.html").write_text("<html><body>data docs</body></html>")
    (gx / "data_docs" / "static" / "docs.css").write_text("body{}")
    (gx / "validation.json").write_text(json.dumps({
        "success": False, "statistics": {"evaluated_expectations": 3, "successful_expectations": 2},
        "results": [{"success": True, "expectation_config": {"type": "expect_table_row_count_to_be_between"}},
                    {"success": False, "result": {"observed_value": 0.25},
                     "expectation_config": {"type": "expect_column_values_to_not_be_in_set",
                                            "kwargs": {"column": "outcome"},
                                            "meta": {"check": "quarantined_share"}}}]}))
    (out / "published").mkdir()
    (out / "published" / f"{PART}.json").write_text(json.dumps({"run_id": RUN, "partition": PART}))
    # Must never be served although they lie under the root.
    (root / "airflow").mkdir()
    (root / "airflow" / "airflow.cfg").write_text("[api_auth]\njwt_secret = s3cret\n")
    (root / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "pw"}')
    (root / ".hidden.mp4").write_bytes(b"hidden")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"secret video bytes")
    os.symlink(outside / "secret.mp4", root / "escape.mp4")
    # A results row may point anywhere (ingest reads sources in place): its media are refused.
    write_partition(out / "runs" / RUN / OUTSIDE, [outside / "secret.mp4"], 1)
    os.symlink(outside, root / "escape-dir")
    os.symlink(media / "src-0.mp4", root / "inside-link.mp4")  # a link that stays inside is fine
    return root


AIRFLOW_PASSWORDS = {"admin": "admin-pass", "viewer": "viewer-pass"}


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """A migrated SQLite metadata DB with simple-auth-manager passwords we know (shared: ~3 s)."""
    import subprocess
    import sys

    from avalign.orchestration import REPO_ROOT, airflow_env

    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(AIRFLOW_PASSWORDS))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   timeout=180, env={**os.environ, **airflow_env(REPO_ROOT, home=home)})
    return home


def airflow_test_env(home: Path, review_root: Path, cache: Path) -> dict[str, str]:
    """The API server's environment for the review tests: our plugin, no DAGs, known users."""
    from avalign.orchestration import REPO_ROOT, airflow_env

    return {**airflow_env(REPO_ROOT, home=home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),  # the auth check needs no DAG parsed
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AVALIGN_REVIEW_ROOTS": str(review_root),
            "AVALIGN_REVIEW_CACHE": str(cache),
            "AVALIGN_REVIEW_MLFLOW_URI": "off"}


@pytest.fixture(scope="session")
def review_config(review_root, tmp_path_factory) -> ReviewConfig:
    return ReviewConfig.for_roots([review_root], tmp_path_factory.mktemp("review-cache"), mlflow_tracking_uri=None)


@pytest.fixture(scope="session")
def app(review_config):
    return create_app(review_config, auth=fake_auth)


@pytest.fixture()
def client(app) -> TestClient:
    return TestClient(app, headers={"authorization": f"Bearer {GOOD_TOKEN}"})


@pytest.fixture()
def anonymous(app) -> TestClient:
    return TestClient(app)


def ids(clip: str = "clip-0000", part: str = PART) -> dict[str, str]:
    return {"out": "var/out", "run": RUN, "part": part, "clip": clip}

