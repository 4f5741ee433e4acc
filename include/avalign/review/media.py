"""Media the pages play: files as they are, and the original audio decoded for the browser.

Why decode the original: the source may be any container or codec that PyAV reads (AVI, MKV,
5.1 AAC ...), which a browser's ``<audio>`` may not; FLAC of the decoded track, aligned to the
first video frame like the pipeline's own output, plays everywhere and seeks exactly. Decoded
audio and rendered plots are cached on disk by the identity (path, mtime, size) of their inputs,
so a page reload costs nothing; files are served by Starlette's ``FileResponse``, which answers
HTTP Range requests (206 + Content-Range, 416 when unsatisfiable) so players can seek.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

CACHE_VERSION = "1"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()

MEDIA_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
    ".webm": "video/webm", ".avi": "video/x-msvideo", ".flac": "audio/flac", ".wav": "audio/wav",
    ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg",
    ".opus": "audio/ogg", ".html": "text/html; charset=utf-8", ".css": "text/css",
    ".js": "text/javascript", ".json": "application/json", ".png": "image/png",
    ".svg": "image/svg+xml", ".parquet": "application/octet-stream",
}


def media_type(path: Path) -> str | None:
    return MEDIA_TYPES.get(path.suffix.lower())


def cache_key(kind: str, inputs: list[Path], *extra: object) -> str:
    """A name that changes whenever an input file changes (path, mtime, size)."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{kind}".encode())
    for path in inputs:
        st = path.stat()
        h.update(f"|{path}|{st.st_mtime_ns}|{st.st_size}".encode())
    for item in extra:
        h.update(f"|{item}".encode())
    return h.hexdigest()[:40]


def cached_file(cache_dir: Path, key: str, suffix: str, produce: Callable[[Path], None]) -> Path:
    """``cache_dir/<key><suffix>``, produced once (per key, one producer at a time), atomically."""
    final = cache_dir / f"{key}{suffix}"
    if final.is_file():
        return final
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if final.is_file():
            return final
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=suffix)
        os.close(fd)
        try:
            produce(Path(tmp))
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return final


def decoded_audio_flac(source: Path, cache_dir: Path) -> Path:
    """The source's first audio stream at its own rate and channels, sample 0 at the first frame."""

    def produce(out: Path) -> None:
        import soundfile as sf

        from avalign.media.decode import decode_audio

        track = decode_audio(source, sample_rate=None, mono=False)
        samples = track.samples
        if samples.shape[0] > 8:  # FLAC holds at most 8 channels
            samples = samples.mean(axis=0, keepdims=True)
        sf.write(str(out), samples.T.clip(-1.0, 1.0), track.sample_rate, format="FLAC", subtype="PCM_16")

    return cached_file(cache_dir, cache_key("audio", [source]), ".flac", produce)
