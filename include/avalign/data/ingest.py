"""Ingest a folder (or s3:// prefix) of videos into partitioned manifests.

Why: the platform runs on manifests, not folders. Ingest probes every file once, keeps those
that are usable audio-visual clips (rows with origin=ingested, no reference audio, no known
corruption) and lists every other file in ``<out>/ingest_rejects.parquet`` with a reason and a
message: nothing is dropped silently, not even a README next to the videos.

Clip ids come from file names: accents folded to ASCII, anything outside [A-Za-z0-9_.-]
replaced, leading dots removed (so '../x' or '.hidden' cannot escape a folder), and a short hash
of the file's path appended when two names collide (case-insensitively, for case-insensitive
file systems). The same folder always gives the same ids.

One bad file never stops an ingest: a file name that is not UTF-8 (manifests store UTF-8 text)
is rejected as ``bad_file_name``, and an unexpected error while probing as ``internal_error``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avalign.data import storage
from avalign.data.manifest import (
    list_partitions,
    manifest_uri,
    partition_name,
    read_manifest,
    safe_clip_id,
    write_manifest,
)
from avalign.errors import ClipError
from avalign.media.probe import probe

VIDEO_EXTS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
REJECTS_NAME = "ingest_rejects.parquet"
REJECT_COLUMNS = ("source_uri", "file_name", "reason", "message")


@dataclass
class IngestReport:
    """What an ingest did: partitions written, files accepted, files rejected (with reasons)."""

    src_uri: str
    out_uri: str
    partitions: list[str] = field(default_factory=list)
    n_files: int = 0
    n_accepted: int = 0
    rejects: list[dict] = field(default_factory=list)
    rejects_uri: str = ""
    removed_partitions: list[str] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)

    def to_dict(self) -> dict:
        return {**asdict(self), "n_rejected": self.n_rejected}


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _relative(uri: str, src_uri: str) -> str:
    base = str(src_uri).rstrip("/") + "/"
    return uri[len(base) :] if uri.startswith(base) else _name(uri)


def _printable(text: str) -> str:
    """``text`` with the undecodable bytes of a non-UTF-8 file name shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_within(uri: str, folder: str) -> bool:
    return uri.startswith(str(folder).rstrip("/") + "/")


def unique_clip_ids(rel_paths: list[str]) -> list[str]:
    """Clip ids for files (by relative path, in the given order): sanitised, then de-duplicated."""
    ids: list[str] = []
    seen: set[str] = set()
    for rel in rel_paths:
        name = rel.rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
        cid = safe_clip_id(stem, default="")
        if not cid:  # nothing ASCII left (e.g. a CJK name): name it by its path's hash
            cid = "clip-" + hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        if cid.lower() in seen:
            digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            cid = f"{cid[:100]}-{digest}"
            k = 2
            while cid.lower() in seen:  # a hash collision on top of a name collision: count on
                cid = f"{cid.rsplit('~', 1)[0]}~{k}"
                k += 1
        seen.add(cid.lower())
        ids.append(cid)
    return ids


def _write_rejects(uri: str, rejects: list[dict]) -> None:
    table = pa.table(
        {c: pa.array([r[c] for r in rejects], type=pa.string()) for c in REJECT_COLUMNS}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue())


def read_rejects(out_uri: str) -> pd.DataFrame:
    """The rejects table an ingest wrote into ``out_uri``."""
    return pq.read_table(
        io.BytesIO(storage.read_bytes(storage.join(out_uri, REJECTS_NAME)))
    ).to_pandas()


def ingest(
    src_uri: str,
    out_uri: str,
    *,
    partition_size: int = 64,
    max_duration_s: float | None = None,
    progress: Callable[[str], None] | None = print,
) -> IngestReport:
    """Probe every file below ``src_uri`` and write manifests + a rejects table into ``out_uri``.

    Stale partitions left by an earlier, larger ingest into the same ``out_uri`` are removed,
    but only when every row in them came from ingest (generated data is never touched).
    """
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size}")
    src_uri, out_uri = str(src_uri), str(out_uri)
    say = progress or (lambda _msg: None)
    report = IngestReport(
        src_uri=src_uri, out_uri=out_uri, rejects_uri=storage.join(out_uri, REJECTS_NAME)
    )
    files = [u for u in storage.list_files(src_uri) if not _is_within(u, out_uri)]
    report.n_files = len(files)
    rels = [_relative(u, src_uri) for u in files]
    ids = unique_clip_ids(rels)
    rows: list[dict] = []

    def reject(uri: str, reason: str, message: str) -> None:
        uri, message = _printable(uri), _printable(message)
        report.rejects.append(
            {"source_uri": uri, "file_name": _name(uri), "reason": reason, "message": message}
        )
        say(f"reject {_name(uri)}: {reason}: {message}")

    for uri, rel, clip_id in zip(files, rels, ids, strict=True):
        name = _name(uri)
        if _printable(uri) != uri:
            reject(
                uri,
                "bad_file_name",
                f"{name}: the file name is not valid UTF-8, which manifests cannot store; "
                "rename the file",
            )
            continue
        ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in VIDEO_EXTS:
            reject(
                uri,
                "unsupported_extension",
                f"{name}: extension {ext or '(none)'!r} is not a video container we ingest "
                f"({', '.join(VIDEO_EXTS)})",
            )
            continue
        try:
            with storage.local_copy(uri) as path:
                info = probe(path, max_duration_s=max_duration_s)
        except ClipError as exc:
            reject(uri, exc.reason, str(exc))
            continue
        except Exception as exc:  # a bug or an FFmpeg surprise on one file must not end the ingest
            reject(uri, "internal_error", f"{name}: probe failed ({type(exc).__name__}: {exc})")
            continue
        missing = [
            k for k in ("fps", "width", "height", "sample_rate", "channels") if not getattr(info, k)
        ]
        if missing:
            reject(uri, "missing_stream_info", f"{name}: probe found no {', '.join(missing)}")
            continue
        rows.append(
            {
                "clip_id": clip_id,
                "source_uri": uri,
                "reference_audio_uri": None,
                "duration_s": float(info.duration_s),
                "fps": float(info.fps),
                "sample_rate": int(info.sample_rate),
                "channels": int(info.channels),
                "width": int(info.width),
                "height": int(info.height),
                "category": None,
                "corruption": "[]",
                "corruption_types": "",
                "offset_ms": 0.0,
                "snr_db": None,
                "partition": "",
                "origin": "ingested",
                "seed": None,
                "source_name": rel,
                "container": info.container,
                "video_codec": info.video_codec,
                "audio_codec": info.audio_codec,
            }
        )
        say(
            f"ok {name} -> {clip_id} ({info.container}, {info.video_codec}/{info.audio_codec}, "
            f"{info.duration_s:.2f}s)"
        )

    report.n_accepted = len(rows)
    for k in range(0, len(rows), partition_size):
        part = partition_name(k // partition_size)
        chunk = [{**r, "partition": part} for r in rows[k : k + partition_size]]
        write_manifest(pd.DataFrame(chunk), manifest_uri(out_uri, part))
        report.partitions.append(part)
    for stale in sorted(set(list_partitions(out_uri)) - set(report.partitions)):
        uri = manifest_uri(out_uri, stale)
        if (read_manifest(uri)["origin"] == "ingested").all():
            storage.delete(uri)
            report.removed_partitions.append(stale)
    _write_rejects(report.rejects_uri, report.rejects)
    say(
        f"ingest {src_uri} -> {out_uri}: {report.n_accepted} clips in "
        f"{len(report.partitions)} partitions, "
        f"{report.n_rejected} rejected (see {report.rejects_uri})"
    )
    return report
