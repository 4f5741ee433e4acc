"""Which files the review app may serve: only regular files under the configured roots.

Why: media URLs carry paths, and the API server runs with the rights of Airflow itself (its
metadata DB, its config with secrets, the generated admin passwords). A location is
``<root name>/<relative path>``; it is refused when it holds a ``..`` segment or an absolute
path (403), when it resolves, symlinks followed, outside its root (403), when its type is not a
media, report or trace file (404), or when it does not exist (404).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

# What a reviewer needs: media, the GX Data Docs (HTML and its assets), traces and results.
SERVED_SUFFIXES = frozenset({
    ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi", ".flac", ".wav", ".mp3", ".m4a", ".aac",
    ".ogg", ".opus", ".html", ".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico",
    ".woff", ".woff2", ".ttf", ".json", ".parquet",
})


class PathRefused(Exception):
    """A location that is not served; ``status`` is 403 (outside the roots) or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def resolve_location(roots: dict[str, Path], location: str, *, want: str = "file") -> Path:
    """The real path of ``<root>/<rel>``, checked; ``want`` is "file", "dir" or "any"."""
    if "\x00" in location or "\\" in location:
        raise PathRefused(403, "bad character in path")
    name, _, rel = location.partition("/")
    root = roots.get(name)
    if root is None:
        raise PathRefused(404, f"no root named {name!r}")
    if rel.startswith("/") or PurePosixPath(rel).is_absolute():
        raise PathRefused(403, "absolute paths are not served")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(403, "'..' is not allowed in paths")
    real = root.joinpath(*parts).resolve()  # follows symlinks: a link out of the root is caught below
    if not _inside(real, root):
        raise PathRefused(403, "path leaves the review roots")
    if any(p.startswith(".") for p in real.relative_to(root).parts):
        raise PathRefused(404, "hidden files are not served")
    if want == "file":
        if not real.is_file():
            raise PathRefused(404, "no such file")
        if real.suffix.lower() not in SERVED_SUFFIXES:
            raise PathRefused(404, "this file type is not served")
    elif want == "dir" and not real.is_dir():
        raise PathRefused(404, "no such folder")
    elif want == "any" and not real.exists():
        raise PathRefused(404, "not found")
    return real


def locate(roots: dict[str, Path], path: str | Path | None) -> str | None:
    """The location (``<root>/<rel>``) of a local path under a root, or None (outside, s3, none).

    The path is resolved first, so a symlink is located where it really points.
    """
    if path is None or str(path) == "" or "://" in str(path):
        return None
    try:
        real = Path(str(path)).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    for name, root in roots.items():
        if _inside(real, root):
            rel = real.relative_to(root).as_posix()
            return name if rel == "." else f"{name}/{rel}"
    return None
