"""One URI layer for datasets: local paths (plain or file://) and s3://bucket/key.

Everything above this module passes URIs as strings and never branches on where data lives.
Writes are atomic on both sides: locally a temp file in the same folder is renamed into place
(os.replace), on S3 an object only appears once a put (or a multipart upload) completes. A reader
therefore sees the old content or the new, never a torn file; ``list_files`` hides our temp files.

Integrity on S3: every write stores the content's SHA-256 as object metadata (``x-amz-meta-sha256``)
and every read or download checks it, re-reading a transfer that was torn or altered on the way.

Every failure is a ``StorageError`` with a stable ``reason``:
bad_uri, not_found, not_a_file, access_denied, unreachable, io_error, s3_error, checksum_mismatch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from avalign.errors import StorageError

ENDPOINT_ENV_VARS = ("AVALIGN_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
DEFAULT_MAX_ATTEMPTS = 8  # AVALIGN_S3_MAX_ATTEMPTS overrides
READ_ATTEMPTS = 5  # whole verified transfers (each one with botocore's own request retries)
SHA_METADATA_KEY = "sha256"  # x-amz-meta-sha256: the content's SHA-256, set by every write

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(//)?")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_TEMP_RE = re.compile(r"^\..+\.tmp$")  # our in-flight temp files: '.<name>.<random>.tmp'
_CHUNK = 1 << 20
LIST_PAGE_SIZE = 1000  # keys per list_objects_v2 call (S3's maximum)

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


@dataclass(frozen=True)
class _Local:
    path: Path
    file_uri: bool  # given as file://, so listings answer in the same style


@dataclass(frozen=True)
class _S3:
    bucket: str
    key: str


def _parse(uri: str | os.PathLike[str], *, need_key: bool = True) -> _Local | _S3:
    """Split a URI into where it points, or raise StorageError(bad_uri) saying what is wrong."""
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str):
        raise StorageError(
            f"bad URI {uri!r}: expected a string, got {type(uri).__name__}", reason="bad_uri"
        )
    if not uri.strip():
        raise StorageError("bad URI '': empty", reason="bad_uri")
    if "\x00" in uri:
        raise StorageError(f"bad URI {uri!r}: contains a NUL byte", reason="bad_uri")
    match = _SCHEME_RE.match(uri)
    scheme = match.group(1).lower() if match else None
    if scheme is not None and match is not None and not match.group(2):
        # 'name:thing' without '//' is a local file name with a colon, unless it claims a scheme
        # we know (a typo such as 's3:/bucket/key' must not become a local file).
        if scheme in ("s3", "file"):
            raise StorageError(f"bad URI {uri!r}: expected {scheme}://...", reason="bad_uri")
        scheme = None
    if scheme is None:
        return _Local(Path(uri), file_uri=False)
    rest = uri[match.end() :]  # type: ignore[union-attr]
    if scheme == "file":
        host, sep, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise StorageError(
                f"bad URI {uri!r}: file:// URIs must not name a host ({host!r})", reason="bad_uri"
            )
        if not sep or not path:
            raise StorageError(f"bad URI {uri!r}: file:// URI without a path", reason="bad_uri")
        return _Local(Path("/" + unquote(path)), file_uri=True)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"bad URI {uri!r}: s3:// URI without a bucket", reason="bad_uri")
        if not _BUCKET_RE.match(bucket):
            raise StorageError(
                f"bad URI {uri!r}: {bucket!r} is not a valid S3 bucket name "
                "(3-63 chars of a-z, 0-9, '.', '-')",
                reason="bad_uri",
            )
        if need_key and not key:
            raise StorageError(
                f"bad URI {uri!r}: s3:// URI names a bucket but no object key", reason="bad_uri"
            )
        return _S3(bucket, key)
    raise StorageError(
        f"bad URI {uri!r}: unsupported scheme {scheme!r} (use a local path, file:// or s3://)",
        reason="bad_uri",
    )


def is_s3(uri: str) -> bool:
    """True for s3://bucket/key URIs (validity is checked when the URI is used)."""
    return isinstance(uri, str) and uri[:5].lower() == "s3://"


def join(base: str, *parts: str) -> str:
    """Append path segments to a URI: join('s3://b/runs', 'r1', 'x.json') -> 's3://b/runs/r1/x.json'.

    Leading/trailing slashes of the parts are ignored, so a part never resets the path to root.
    """
    base = os.fspath(base)
    _parse(base, need_key=False)
    segments = [str(p).strip("/") for p in parts]
    if any("\x00" in s for s in segments):
        raise StorageError(f"bad URI part in {parts!r}: contains a NUL byte", reason="bad_uri")
    segments = [s for s in segments if s]
    if not segments:
        return base
    if _SCHEME_RE.match(base) and "://" in base:
        return base.rstrip("/") + "/" + "/".join(segments)
    return os.path.join(base, *segments)


# ----------------------------------------------------------------------------------------- S3


def s3_client() -> Any:
    """Cached boto3 S3 client (thread-safe) for the endpoint and credentials in the environment.

    Endpoint: AVALIGN_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL, else AWS. Standard retry mode with
    8 attempts in all (AVALIGN_S3_MAX_ATTEMPTS) rides out throttling (503 SlowDown) and dropped
    connections; explicit timeouts stop a dead endpoint from hanging a task. A custom endpoint
    (MinIO, moto) gets path-style URLs.
    """
    endpoint = next((os.environ[v] for v in ENDPOINT_ENV_VARS if os.environ.get(v)), None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    attempts = int(os.environ.get("AVALIGN_S3_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    return _client(
        endpoint,
        region,
        attempts,
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_PROFILE"),
    )


@lru_cache(maxsize=8)
def _client(
    endpoint: str | None, region: str, attempts: int, _key_id: str | None, _profile: str | None
) -> Any:
    # Key id and profile only key the cache: a changed environment gets a new client.
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},  # attempts, not retries
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


s3_client.cache_clear = _client.cache_clear  # type: ignore[attr-defined]


def _s3_error(exc: Exception, loc: _S3, action: str) -> StorageError:
    uri = f"s3://{loc.bucket}/{loc.key}"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code == "NoSuchBucket":
            return StorageError(
                f"{action} {uri}: bucket {loc.bucket!r} does not exist", reason="not_found"
            )
        if code in _NOT_FOUND_CODES or status == "404":
            return StorageError(f"{action} {uri}: no such object", reason="not_found")
        if code in _DENIED_CODES or status == "403":
            return StorageError(f"{action} {uri}: access denied ({code})", reason="access_denied")
        if code == "InvalidBucketName":
            return StorageError(f"{action} {uri}: invalid bucket name", reason="bad_uri")
        return StorageError(
            f"{action} {uri}: S3 error {code or status}: {err.get('Message', exc)}",
            reason="s3_error",
        )
    return StorageError(f"{action} {uri}: S3 endpoint unreachable ({exc})", reason="unreachable")


def _local_error(exc: OSError, path: Path, action: str) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{action} {path}: no such file", reason="not_found")
    if isinstance(exc, IsADirectoryError):
        return StorageError(f"{action} {path}: is a directory, not a file", reason="not_a_file")
    if isinstance(exc, PermissionError):
        return StorageError(f"{action} {path}: permission denied", reason="access_denied")
    return StorageError(f"{action} {path}: {exc.strerror or exc}", reason="io_error")


# ------------------------------------------------------------------------------------ local


def _temp_path(final: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_local_write(path: Path, write: Any) -> None:
    """Write via ``write(tmp_path)`` to a temp file beside ``path``, fsync, then os.replace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_path(path)
    except OSError as exc:
        raise _local_error(exc, path, "write") from exc
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        raise _local_error(exc, path, "write") from exc
    finally:
        tmp.unlink(missing_ok=True)


# -------------------------------------------------------------------------------------- API


def exists(uri: str) -> bool:
    """True when the file / object exists (a local directory counts; an S3 prefix does not)."""
    loc = _parse(uri)
    if isinstance(loc, _Local):
        return loc.path.exists()
    try:
        s3_client().head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except ClientError as exc:
        error = _s3_error(exc, loc, "exists")
        if error.reason == "not_found":
            return False
        raise error from exc
    except BotoCoreError as exc:
        raise _s3_error(exc, loc, "exists") from exc


def read_bytes(uri: str) -> bytes:
    """Whole content of a file / object. StorageError: not_found, bad_uri, access_denied, ...

    S3 reads are verified against the SHA-256 our writes store in the object's metadata; a torn
    or altered transfer is read again (``READ_ATTEMPTS``), then fails with ``checksum_mismatch``.
    """
    loc = _parse(uri)
    if isinstance(loc, _Local):
        try:
            return loc.path.read_bytes()
        except OSError as exc:
            raise _local_error(exc, loc.path, "read") from exc

    def attempt() -> bytes:
        response = s3_client().get_object(Bucket=loc.bucket, Key=loc.key)
        data = response["Body"].read()
        _check_sha(loc, response, hashlib.sha256(data).hexdigest())
        return data

    return _verified_read(loc, "read", attempt)


def _check_sha(loc: _S3, response: dict[str, Any], actual: str) -> None:
    expected = (response.get("Metadata") or {}).get(SHA_METADATA_KEY)
    if expected and expected != actual:
        raise _ChecksumMismatch(f"s3://{loc.bucket}/{loc.key}: sha256 {actual[:12]}… read, "
                                f"{expected[:12]}… written")


class _ChecksumMismatch(Exception):
    pass


def _verified_read(loc: _S3, action: str, attempt: Any) -> Any:
    """Run ``attempt`` until a transfer completes and matches its checksum (botocore retries the
    request itself; a body torn mid-stream or a checksum mismatch, ours or botocore's CRC check
    where the server sends one, is retried here)."""
    last: Exception | None = None
    for i in range(READ_ATTEMPTS):
        try:
            return attempt()
        except ClientError as exc:
            raise _s3_error(exc, loc, action) from exc
        except (BotoCoreError, _ChecksumMismatch, OSError, ValueError) as exc:
            last = exc
            time.sleep(min(0.1 * 2**i, 2.0))
    if isinstance(last, (_ChecksumMismatch, FlexibleChecksumError)):
        raise StorageError(f"{action} s3://{loc.bucket}/{loc.key}: checksum mismatch after {READ_ATTEMPTS} "
                           f"attempts ({last})", reason="checksum_mismatch")
    raise _s3_error(last, loc, action)  # type: ignore[arg-type]


def write_bytes(uri: str, data: bytes) -> None:
    """Replace the content atomically (local temp + os.replace; S3 one put with Content-MD5)."""
    data = bytes(data)
    loc = _parse(uri)
    if isinstance(loc, _Local):

        def _write(tmp: Path) -> None:
            tmp.write_bytes(data)

        _atomic_local_write(loc.path, _write)
        return
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
    try:
        s3_client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentMD5=md5,
                               Metadata={SHA_METADATA_KEY: hashlib.sha256(data).hexdigest()})
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, loc, "write") from exc


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """Content decoded as text."""
    return read_bytes(uri).decode(encoding)


def write_text(uri: str, text: str, encoding: str = "utf-8") -> None:
    """Atomic text write."""
    write_bytes(uri, text.encode(encoding))


def read_json(uri: str) -> Any:
    """Parsed JSON; malformed content is StorageError(bad_json) naming the URI."""
    raw = read_bytes(uri)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StorageError(f"read {uri}: not valid JSON ({exc})", reason="bad_json") from exc


def write_json(uri: str, obj: Any, *, indent: int | None = 2) -> None:
    """Atomic JSON write (sorted keys, so identical content gives identical bytes and checksums)."""
    write_text(uri, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def list_files(prefix_uri: str, *, suffix: str | None = None) -> list[str]:
    """Sorted URIs of all files below a folder (recursive), optionally only those ending in suffix.

    The prefix is a folder: 's3://b/run1' lists 's3://b/run1/...' but not 's3://b/run10/...'.
    A missing folder lists as []. Our in-flight temp files are never listed.
    """
    return sorted(
        uri for uri in _all_files(prefix_uri)
        if not _TEMP_RE.match(uri.rsplit("/", 1)[-1]) and (not suffix or uri.endswith(suffix))
    )


def remove_temp_files(prefix_uri: str) -> list[str]:
    """Delete our in-flight temp files ('.<name>.<random>.tmp') below a folder; returns their URIs.

    Why: a writer stopped between creating its temp file and renaming it over the final name
    (a worker killed mid-partition) leaves the temp file behind, beside the finished files of
    the attempt that retries the work. Call it only where no other writer is at work: a retry
    of a partition, once the attempt before it has stopped.
    """
    stale = sorted(uri for uri in _all_files(prefix_uri) if _TEMP_RE.match(uri.rsplit("/", 1)[-1]))
    for uri in stale:
        delete(uri)
    return stale


def _all_files(prefix_uri: str) -> list[str]:
    """URIs of every file below a folder, temp files included (unsorted)."""
    loc = _parse(prefix_uri, need_key=False)
    found: list[str] = []
    if isinstance(loc, _Local):
        root = loc.path
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            try:
                candidates = [p for p in root.rglob("*") if p.is_file()]
            except OSError as exc:
                raise _local_error(exc, root, "list") from exc
        else:
            return []
        return [p.absolute().as_uri() if loc.file_uri else str(p) for p in candidates]

    prefix = loc.key.rstrip("/") + "/" if loc.key.strip("/") else ""
    try:
        pages = (
            s3_client()
            .get_paginator("list_objects_v2")
            .paginate(
                Bucket=loc.bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
            )
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/"):
                    found.append(f"s3://{loc.bucket}/{key}")
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, loc, "list") from exc
    return found


def upload_file(local_path: str | Path, uri: str) -> None:
    """Copy a local file to a URI (S3: managed, multipart for big files; local: atomic copy)."""
    src = Path(local_path)
    if not src.is_file():
        raise StorageError(f"upload {src}: no such local file", reason="not_found")
    loc = _parse(uri)
    if isinstance(loc, _Local):
        _atomic_local_write(loc.path, lambda tmp: shutil.copyfile(src, tmp))
        return
    try:
        s3_client().upload_file(str(src), loc.bucket, loc.key,
                                ExtraArgs={"Metadata": {SHA_METADATA_KEY: _file_sha256(src)}})
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, loc, "upload") from exc
    except S3UploadFailedError as exc:
        raise StorageError(f"upload {src} -> {uri}: {exc}", reason="s3_error") from exc


def download_file(uri: str, local_path: str | Path) -> None:
    """Copy a URI to a local file, atomically (the target never holds a partial download)."""
    dst = Path(local_path)
    loc = _parse(uri)
    if isinstance(loc, _Local):
        if not loc.path.is_file():
            raise _local_error(
                IsADirectoryError() if loc.path.is_dir() else FileNotFoundError(),
                loc.path,
                "download",
            )
        _atomic_local_write(dst, lambda tmp: shutil.copyfile(loc.path, tmp))
        return

    def _download(tmp: Path) -> None:
        def attempt() -> None:
            response = s3_client().get_object(Bucket=loc.bucket, Key=loc.key)
            digest = hashlib.sha256()
            with open(tmp, "wb") as f:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
            _check_sha(loc, response, digest.hexdigest())

        _verified_read(loc, "download", attempt)

    _atomic_local_write(dst, _download)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path holding the content: the file itself when local, else a temp download.

    The temp copy keeps the object's file name (decoders guess formats from suffixes) and is
    removed when the block exits. Treat the yielded path as read-only.
    """
    loc = _parse(uri)
    if isinstance(loc, _Local):
        if not loc.path.is_file():
            raise _local_error(
                IsADirectoryError() if loc.path.is_dir() else FileNotFoundError(), loc.path, "read"
            )
        yield loc.path
        return
    with tempfile.TemporaryDirectory(prefix="avalign-s3-") as tmpdir:
        name = loc.key.rstrip("/").rsplit("/", 1)[-1] or "object"
        target = Path(tmpdir) / name
        download_file(uri, target)
        yield target


def delete(uri: str) -> None:
    """Remove a file / object. Idempotent: deleting what is not there is not an error."""
    loc = _parse(uri)
    if isinstance(loc, _Local):
        try:
            loc.path.unlink(missing_ok=True)
        except OSError as exc:
            raise _local_error(exc, loc.path, "delete") from exc
        return
    try:
        s3_client().delete_object(Bucket=loc.bucket, Key=loc.key)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, loc, "delete") from exc


def sha256(uri: str) -> str:
    """Hex SHA-256 of the content, streamed (never holds a large object in memory)."""
    return checksum(uri)[0]


def checksum(uri: str) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of the content, streamed."""
    loc = _parse(uri)
    digest = hashlib.sha256()
    size = 0
    if isinstance(loc, _Local):
        try:
            with open(loc.path, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise _local_error(exc, loc.path, "read") from exc
        return digest.hexdigest(), size

    def attempt() -> tuple[str, int]:
        response = s3_client().get_object(Bucket=loc.bucket, Key=loc.key)
        digest = hashlib.sha256()
        size = 0
        for chunk in response["Body"].iter_chunks(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        _check_sha(loc, response, digest.hexdigest())
        return digest.hexdigest(), size

    return _verified_read(loc, "read", attempt)
