"""What the review pages list: outputs, runs, partitions, their results tables and traces.

Why a module of its own: the pages only render; this module knows the storage layout of
``docs/contracts.md`` (``<out>/runs/<run_id>/<partition>/...`` and ``<out>/published/``), checks
every name that comes from a URL, and caches results tables by file identity so that paging
through a 1,000-clip partition does not re-read Parquet on each click.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avalign.review.config import ReviewConfig
from avalign.review.paths import PathRefused, locate, resolve_location

OUTCOMES = ("improved", "kept_original", "quarantined")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
_SKIP_DIRS = {"logs", "__pycache__", "node_modules", "media", "clips", "audio", "traces", "gx"}

# Columns the clip table may be sorted by (plus the derived gains).
SORTABLE = (
    "clip_id", "outcome", "actions", "cycles", "alignment_before", "alignment_after",
    "alignment_gain", "sync_before", "sync_after", "sync_gain", "offset_est_before_ms",
    "offset_est_after_ms", "seconds",
)


@dataclass(frozen=True)
class Output:
    location: str  # <root>/<rel>: what URLs carry as ``out``
    path: Path


@dataclass(frozen=True)
class PartitionSummary:
    out: str
    run: str
    part: str
    n_clips: int
    counts: dict[str, int]
    gx: dict[str, Any] | None
    published: bool


def check_name(value: str | None, what: str) -> str:
    """A run id, partition or clip id from a URL: one safe path component, else 404."""
    if not value or not _NAME.match(value) or value in (".", ".."):
        raise PathRefused(404, f"bad {what} name")
    return value


class _Lru:
    """A small thread-safe LRU keyed by file identity."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def _identity(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


class Catalog:
    """Read-only view of the outputs found under the review roots."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self._tables = _Lru(16)
        self._json = _Lru(256)
        self._outputs: tuple[float, list[Output]] | None = None
        self._lock = threading.Lock()

    # -- outputs, runs, partitions ------------------------------------------------------------

    def outputs(self, *, max_age_s: float = 5.0) -> list[Output]:
        """Folders with a ``runs/`` child, at most ``discovery_depth`` below a root."""
        with self._lock:
            if self._outputs and time.monotonic() - self._outputs[0] < max_age_s:
                return self._outputs[1]
        found: list[Output] = []
        for name, root in self.config.roots.items():
            frontier, budget = [(root, 0)], 5000  # bounded scan: roots like var/ hold logs too
            while frontier and budget > 0:
                folder, depth = frontier.pop(0)
                if (folder / "runs").is_dir():
                    loc = locate(self.config.roots, folder)
                    if loc is not None:
                        found.append(Output(loc, folder.resolve()))
                    continue
                if depth >= self.config.discovery_depth:
                    continue
                try:
                    children = sorted(folder.iterdir())
                except OSError:
                    continue
                for child in children:
                    budget -= 1
                    if child.name.startswith(".") or child.name in _SKIP_DIRS or child.is_symlink():
                        continue
                    if child.is_dir():
                        frontier.append((child, depth + 1))
        with self._lock:
            self._outputs = (time.monotonic(), found)
        return found

    def output_dir(self, out: str | None) -> Path:
        if not out:
            raise PathRefused(404, "no output given")
        path = resolve_location(self.config.roots, out, want="dir")
        if not (path / "runs").is_dir():
            raise PathRefused(404, "not an output folder (no runs/)")
        return path

    def runs(self, out_dir: Path) -> list[tuple[str, float]]:
        """(run_id, mtime) newest first."""
        runs = []
        for child in (out_dir / "runs").iterdir():
            if child.is_dir() and _NAME.match(child.name) and not child.is_symlink():
                runs.append((child.name, child.stat().st_mtime))
        return sorted(runs, key=lambda r: (-r[1], r[0]))

    def run_dir(self, out: str, run: str) -> Path:
        path = self.output_dir(out) / "runs" / check_name(run, "run")
        if not path.is_dir():
            raise PathRefused(404, "no such run")
        return self._checked(path)

    def partitions(self, run_dir: Path) -> list[str]:
        return sorted(
            c.name for c in run_dir.iterdir()
            if c.is_dir() and _NAME.match(c.name) and (c / "results.parquet").is_file()
        )

    def partition_dir(self, out: str, run: str, part: str) -> Path:
        path = self.run_dir(out, run) / check_name(part, "partition")
        if not (path / "results.parquet").is_file():
            raise PathRefused(404, "no such partition (no results.parquet)")
        return self._checked(path)

    def _checked(self, path: Path) -> Path:
        """Resolve again: a symlinked run or partition folder must stay under a root too."""
        loc = locate(self.config.roots, path)
        if loc is None:
            raise PathRefused(403, "path leaves the review roots")
        return resolve_location(self.config.roots, loc, want="dir")

    # -- files of a partition -----------------------------------------------------------------

    def results(self, part_dir: Path):
        """The partition's results table (pandas), cached until the file changes."""
        import pandas as pd

        path = part_dir / "results.parquet"
        key = _identity(path)
        table = self._tables.get(key)
        if table is None:
            table = pd.read_parquet(path)
            self._tables.put(key, table)
        return table

    def _read_json(self, path: Path) -> Any:
        key = _identity(path)
        value = self._json.get(key)
        if value is None:
            value = json.loads(path.read_text(encoding="utf-8"))
            self._json.put(key, value)
        return value

    def counts(self, part_dir: Path) -> tuple[int, dict[str, int]]:
        table = self.results(part_dir)
        counts = {o: 0 for o in OUTCOMES}
        for outcome, n in table["outcome"].value_counts().items():
            counts[str(outcome)] = int(n)
        return len(table), counts

    def gx(self, part_dir: Path) -> dict[str, Any] | None:
        """The GX verdict: success, statistics, failed checks, and the Data Docs location."""
        path = part_dir / "gx" / "validation.json"
        if not path.is_file():
            return None
        try:
            result = self._read_json(path)
        except (OSError, ValueError):
            return {"success": False, "error": "validation.json unreadable", "failed": [], "statistics": {}}
        failed = []
        for item in result.get("results", []):
            if not item.get("success", True):
                cfg = item.get("expectation_config") or {}
                meta = cfg.get("meta") or {}
                column = (cfg.get("kwargs") or {}).get("column")
                failed.append({"check": meta.get("check", ""), "type": cfg.get("type", ""),
                               "column": column, "observed": (item.get("result") or {}).get("observed_value")})
        docs = part_dir / "gx" / "data_docs" / "index.html"
        return {
            "success": bool(result.get("success")),
            "statistics": result.get("statistics") or {},
            "failed": failed,
            "docs": locate(self.config.roots, docs) if docs.is_file() else None,
            "result": locate(self.config.roots, path),
        }

    def published(self, out_dir: Path) -> dict[str, str]:
        """{partition: run_id} of the published pointers of an output."""
        pointers: dict[str, str] = {}
        folder = out_dir / "published"
        if not folder.is_dir():
            return pointers
        for path in folder.glob("*.json"):
            try:
                data = self._read_json(path)
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("run_id"):
                pointers[path.stem] = str(data["run_id"])
        return pointers

    def summaries(self, out: str, run: str) -> list[PartitionSummary]:
        out_dir = self.output_dir(out)
        run_dir = self.run_dir(out, run)
        pointers = self.published(out_dir)
        rows = []
        for part in self.partitions(run_dir):
            part_dir = run_dir / part
            n, counts = self.counts(part_dir)
            rows.append(PartitionSummary(out, run, part, n, counts, self.gx(part_dir),
                                         pointers.get(part) == run))
        return rows

    def clip_row(self, part_dir: Path, clip_id: str) -> dict[str, Any]:
        table = self.results(part_dir)
        match = table[table["clip_id"] == clip_id]
        if match.empty:
            raise PathRefused(404, "no such clip in this partition")
        return _plain(match.iloc[0].to_dict())

    def trace(self, part_dir: Path, clip_id: str, row: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The clip's trace JSON (from the row's ``trace_uri`` when it lies under a root)."""
        candidates = [part_dir / "traces" / f"{clip_id}.json"]
        loc = locate(self.config.roots, (row or {}).get("trace_uri"))
        if loc is not None:
            try:
                candidates.insert(0, resolve_location(self.config.roots, loc))
            except PathRefused:
                pass
        for path in candidates:
            if path.is_file():
                try:
                    return self._read_json(path)
                except (OSError, ValueError):
                    return None
        return None

    def neighbours(self, part_dir: Path, clip_id: str) -> tuple[str | None, str | None]:
        ids = sorted(self.results(part_dir)["clip_id"].astype(str))
        try:
            i = ids.index(clip_id)
        except ValueError:
            return None, None
        return (ids[i - 1] if i > 0 else None), (ids[i + 1] if i + 1 < len(ids) else None)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and NaN to plain Python (None for missing)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and value != value:
            value = None
        out[key] = value
    return out


@dataclass(frozen=True)
class ClipQuery:
    outcome: str | None = None
    action: str | None = None
    q: str | None = None
    sort: str = "clip_id"
    order: str = "asc"
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class ClipPage:
    rows: list[dict[str, Any]]
    total: int  # rows matching the filter
    page: int
    pages: int
    actions: list[str]  # every action in the partition (for the filter)


def query_clips(table, query: ClipQuery) -> ClipPage:
    """Filter, sort and cut one page of a results table; only that page becomes dicts."""
    import numpy as np

    actions_col = table["actions"].fillna("").astype(str)
    all_actions = sorted({a for cell in actions_col.unique() for a in cell.split(",") if a})
    mask = np.ones(len(table), dtype=bool)
    if query.outcome:
        mask &= (table["outcome"] == query.outcome).to_numpy()
    if query.action:
        if query.action == "(none)":
            mask &= (actions_col == "").to_numpy()
        else:
            pattern = rf"(?:^|,){re.escape(query.action)}(?:,|$)"
            mask &= actions_col.str.contains(pattern, regex=True).to_numpy()
    if query.q:
        mask &= table["clip_id"].astype(str).str.contains(query.q, case=False, regex=False).to_numpy()
    view = table[mask]
    sort = query.sort if query.sort in SORTABLE else "clip_id"
    if sort in ("alignment_gain", "sync_gain"):
        base = sort.split("_")[0]
        key = view[f"{base}_after"].astype(float) - view[f"{base}_before"].astype(float)
    else:
        key = view[sort]
    ascending = query.order != "desc"
    order = key.sort_values(ascending=ascending, na_position="last", kind="stable").index
    total = len(view)
    pages = max(1, -(-total // query.per_page))
    page = min(max(1, query.page), pages)
    start = (page - 1) * query.per_page
    chunk = view.loc[order[start:start + query.per_page]]
    rows = [_plain(r) for r in chunk.to_dict(orient="records")]
    for r in rows:
        for base in ("alignment", "sync"):
            a, b = r.get(f"{base}_after"), r.get(f"{base}_before")
            r[f"{base}_gain"] = None if a is None or b is None else a - b
    return ClipPage(rows, total, page, pages, all_actions)
