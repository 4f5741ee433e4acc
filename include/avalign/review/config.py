"""What the review app may read and where it links to, from the environment.

Why: the app runs inside the Airflow API server, so it is configured like the rest of avalign,
through environment variables, and a test passes its own ``ReviewConfig`` instead.

- ``AVALIGN_REVIEW_ROOTS``: folders (``os.pathsep``-separated) whose files may be served. Default:
  ``$AVALIGN_VAR`` or ``<repo>/var``. Each root is named by its folder name in URLs
  (``file/var/demo/...``); duplicates get ``-2``, ``-3``.
- ``AVALIGN_REVIEW_CACHE``: where decoded audio and rendered plots are cached
  (default ``<repo>/var/review-cache``).
- ``AVALIGN_REVIEW_MLFLOW_URI``: MLflow tracking URI to look runs up in (default: avalign's
  ``default_tracking_uri()``; ``off`` disables the lookup).
- ``AVALIGN_MLFLOW_UI_URL``: the MLflow UI that links point to (default ``http://127.0.0.1:5000``,
  what ``make mlflow-ui`` serves).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DAG_ID = "av_align"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def name_roots(paths: list[str | Path]) -> dict[str, Path]:
    """{url name: resolved folder}; the name is the folder's own name, made unique."""
    roots: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        base = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in path.name) or "root"
        base = base.lstrip(".") or "root"
        name, n = base, 1
        while name in roots:
            n += 1
            name = f"{base}-{n}"
        roots[name] = path
    return roots


@dataclass(frozen=True)
class ReviewConfig:
    """Roots that may be served, the cache folder, and where MLflow runs are found and shown."""

    roots: dict[str, Path]
    cache_dir: Path
    dag_id: str = DEFAULT_DAG_ID
    mlflow_tracking_uri: str | None = None  # None: no MLflow links
    mlflow_ui_url: str = DEFAULT_MLFLOW_UI
    page_size: int = 50
    max_page_size: int = 500
    plot_max_seconds: float = 120.0  # plots and onset curves cover at most this much of a clip
    discovery_depth: int = 3  # how deep below a root outputs (folders with runs/) are looked for

    @classmethod
    def for_roots(cls, roots: list[str | Path], cache_dir: str | Path, **kwargs) -> ReviewConfig:
        return cls(roots=name_roots(roots), cache_dir=Path(cache_dir).resolve(), **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReviewConfig:
        env = os.environ if env is None else env
        var = Path(env.get("AVALIGN_VAR") or REPO_ROOT / "var")
        raw = env.get("AVALIGN_REVIEW_ROOTS", "")
        roots = [p for p in raw.split(os.pathsep) if p.strip()] or [var]
        mlflow_uri: str | None = env.get("AVALIGN_REVIEW_MLFLOW_URI") or env.get("MLFLOW_TRACKING_URI")
        if not mlflow_uri:
            folder = REPO_ROOT / "var" / "mlflow"
            mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
        if mlflow_uri.strip().lower() == "off":
            mlflow_uri = None
        return cls.for_roots(
            roots,
            env.get("AVALIGN_REVIEW_CACHE") or REPO_ROOT / "var" / "review-cache",
            dag_id=env.get("AVALIGN_REVIEW_DAG_ID", DEFAULT_DAG_ID),
            mlflow_tracking_uri=mlflow_uri,
            mlflow_ui_url=env.get("AVALIGN_MLFLOW_UI_URL", DEFAULT_MLFLOW_UI).rstrip("/"),
        )
