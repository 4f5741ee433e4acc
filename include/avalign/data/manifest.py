"""Manifests: one Parquet table of clips per partition, at <dataset>/manifests/part-NNNNN.parquet.

Why a fixed schema: the generator, ingest, the partition runner and the quality gates all read
these tables; a typed schema checked on write *and* on read turns a drifted or hand-edited
manifest into one clear error instead of a KeyError deep inside a run. All I/O goes through
:mod:`avalign.data.storage`, so local paths and s3:// behave the same.

Extra columns (beyond the schema) are kept as they are: producers may add information.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avalign.data import storage
from avalign.errors import AvalignError

ORIGINS: tuple[str, ...] = ("procedural", "real", "ingested")
CLIP_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
PARTITION_RE = re.compile(r"^part-\d{5}$")
MAX_CLIP_ID_LEN = 120

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("reference_audio_uri", pa.string(), nullable=True),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("sample_rate", pa.int64(), nullable=False),
        pa.field("channels", pa.int64(), nullable=False),
        pa.field("width", pa.int64(), nullable=False),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("category", pa.string(), nullable=True),
        pa.field("corruption", pa.string(), nullable=False),  # JSON list of {type, params}
        pa.field(
            "corruption_types", pa.string(), nullable=False
        ),  # "offset,noise"; "" when unknown
        pa.field("offset_ms", pa.float64(), nullable=False),  # injected offset, + = audio late
        pa.field("snr_db", pa.float64(), nullable=True),
        pa.field("partition", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=True),
    ]
)
COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA.names)


class ManifestError(AvalignError, ValueError):
    """A manifest that does not match the schema (missing/mistyped columns, bad values)."""

    reason = "bad_manifest"


# --------------------------------------------------------------------------------------------
# names


def partition_name(index: int) -> str:
    """'part-00003' for 3."""
    if index < 0 or index > 99999:
        raise ValueError(f"partition index must be in [0, 99999], got {index}")
    return f"part-{index:05d}"


def manifest_uri(dataset_uri: str, partition: str) -> str:
    """<dataset>/manifests/<partition>.parquet"""
    if not PARTITION_RE.match(partition):
        raise ValueError(f"bad partition name {partition!r} (expected part-NNNNN)")
    return storage.join(dataset_uri, "manifests", f"{partition}.parquet")


def list_partitions(dataset_uri: str) -> list[str]:
    """Sorted partition names that have a manifest under <dataset>/manifests/."""
    names = []
    for uri in storage.list_files(storage.join(dataset_uri, "manifests"), suffix=".parquet"):
        stem = uri.rstrip("/").rsplit("/", 1)[-1][: -len(".parquet")]
        if PARTITION_RE.match(stem):
            names.append(stem)
    return sorted(set(names))


def safe_clip_id(text: str, *, default: str = "clip") -> str:
    """A clip id made of [A-Za-z0-9_.-] from any text: accents folded, the rest replaced by '_'.

    Leading dots/dashes are dropped (no hidden files, no '..', no option-like names).
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", folded)
    cleaned = re.sub(r"_+", "_", cleaned)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip(".-_").rstrip("._-")
    return cleaned[:MAX_CLIP_ID_LEN].rstrip("._-") or default


# --------------------------------------------------------------------------------------------
# validation


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected or pa.types.is_null(actual):
        return True
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    return False


def _check_values(df: pd.DataFrame, where: str, strict_ids: bool = True) -> None:
    problems = []
    for field in MANIFEST_SCHEMA:
        if not field.nullable and df[field.name].isna().any():
            rows = df.index[df[field.name].isna()].tolist()[:5]
            problems.append(f"column {field.name!r} has nulls (rows {rows})")
    ids = df["clip_id"].dropna().astype(str)
    bad = [c for c in ids if clip_id_problem(c)]
    if bad and strict_ids:
        problems.append(f"clip_id not made of [A-Za-z0-9_.-] (or too long): {bad[:5]}")
    dup = ids[ids.duplicated()].unique().tolist()
    if dup and strict_ids:
        problems.append(f"duplicate clip_id: {dup[:5]}")
    bad_origin = sorted(set(df["origin"].dropna()) - set(ORIGINS))
    if bad_origin:
        problems.append(f"origin must be one of {ORIGINS}, got {bad_origin}")
    bad_part = sorted({p for p in df["partition"].dropna() if not PARTITION_RE.match(str(p))})
    if bad_part:
        problems.append(f"partition must look like part-NNNNN, got {bad_part[:5]}")
    for i, text in df["corruption"].dropna().items():
        try:
            steps = json.loads(text)
            ok = isinstance(steps, list) and all(isinstance(s, dict) and "type" in s for s in steps)
        except (TypeError, json.JSONDecodeError):
            ok = False
        if not ok:
            problems.append(
                f"row {i}: corruption is not a JSON list of {{type, params}}: {str(text)[:80]!r}"
            )
            break
    if problems:
        raise ManifestError(f"{where}: " + "; ".join(problems))


def clip_id_problem(clip_id: str) -> str | None:
    """Why ``clip_id`` cannot name files (path separators, NUL, dots only, too long), or None."""
    if not CLIP_ID_RE.match(clip_id):
        return f"clip_id {clip_id[:80]!r} is not made of [A-Za-z0-9_.-] (a path, NUL or other characters)"
    if clip_id in (".", ".."):
        return f"clip_id {clip_id!r} is a relative path"
    if len(clip_id) > MAX_CLIP_ID_LEN:
        return f"clip_id is {len(clip_id)} characters long (at most {MAX_CLIP_ID_LEN})"
    return None


def validate_manifest(df: pd.DataFrame, *, where: str = "manifest", strict_ids: bool = True) -> pd.DataFrame:
    """Check columns, types and values; returns the frame with the schema's dtypes.

    ``strict_ids=False`` lets rows with unusable or duplicated clip ids through, for a reader
    that quarantines them one by one (run_partition) instead of refusing the whole partition.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: missing columns {missing} (expected {list(COLUMNS)})")
    out = df.reset_index(drop=True).copy()
    problems = []
    for field in MANIFEST_SCHEMA:
        col = out[field.name]
        try:
            if pa.types.is_string(field.type):
                bad = col.dropna().map(lambda v: not isinstance(v, str))
                if bad.any():
                    raise TypeError(f"non-string values such as {col.dropna()[bad].iloc[0]!r}")
                out[field.name] = col.astype(object).where(col.notna(), None)
            elif pa.types.is_integer(field.type):
                num = pd.to_numeric(col, errors="raise")
                if (num.dropna() % 1 != 0).any():
                    raise TypeError("non-integer values")
                out[field.name] = num.astype("Int64")
            else:
                out[field.name] = pd.to_numeric(col, errors="raise").astype("float64")
        except (TypeError, ValueError) as exc:
            problems.append(f"column {field.name!r} is not {field.type} ({exc})")
    if problems:
        raise ManifestError(f"{where}: " + "; ".join(problems))
    _check_values(out, where, strict_ids)
    return out


def _to_table(df: pd.DataFrame) -> pa.Table:
    extra = [c for c in df.columns if c not in COLUMNS]
    arrays = [
        pa.Array.from_pandas(df[f.name], type=f.type) for f in MANIFEST_SCHEMA
    ]  # NaN/NA → null
    table = pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA)
    for c in extra:
        table = table.append_column(str(c), pa.Array.from_pandas(df[c]))
    return table


# --------------------------------------------------------------------------------------------
# I/O


def write_manifest(df: pd.DataFrame, uri: str) -> None:
    """Validate and write one partition's manifest (atomic; local or s3://)."""
    clean = validate_manifest(df, where=f"manifest {uri}")
    buf = io.BytesIO()
    pq.write_table(_to_table(clean), buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def read_manifest(uri: str, *, strict_ids: bool = True) -> pd.DataFrame:
    """Read and validate a manifest. ManifestError names the URI and every schema problem.

    ``strict_ids=False``: see ``validate_manifest``."""
    raw = storage.read_bytes(uri)
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {uri}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    wrong = [
        f"{f.name}: {table.schema.field(f.name).type} (expected {f.type})"
        for f in MANIFEST_SCHEMA
        if f.name in table.column_names and not _type_ok(table.schema.field(f.name).type, f.type)
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if wrong:
            parts.append(f"wrong column types [{'; '.join(wrong)}]")
        raise ManifestError(f"manifest {uri}: " + "; ".join(parts))
    df = table.to_pandas()
    return validate_manifest(df, where=f"manifest {uri}", strict_ids=strict_ids)


def empty_manifest() -> pd.DataFrame:
    """A manifest with the schema's columns and no rows."""
    return validate_manifest(pd.DataFrame({c: [] for c in COLUMNS}))
