"""Lip opening per frame from MediaPipe's face mesh (468 landmarks; weights ship in the wheel).

The sync estimator correlates the mouth *opening* with speech onsets. Landmarks follow the lips
themselves, where a frame difference or optical flow of a mouth crop also follows the head, the
jaw, the camera and compression noise; on the real talking heads the Haar-crop cues were within
±1 frame in about half the cases, the landmark opening on two of three heads at every injected
offset (numbers in docs/architecture.md, "Reflection scores").

mediapipe 0.10.14 is the last release whose wheel still bundles the face-mesh model; it asks
protobuf for ``GetPrototype``, which protobuf 5 removed (``GetMessageClass`` replaced it). The
shim below restores that one method, only when it is missing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

# Face-mesh indices: inner lip midpoints (upper 13, lower 14), forehead 10 and chin 152.
UPPER_LIP, LOWER_LIP, FOREHEAD, CHIN = 13, 14, 10, 152
MIN_FACE_SHARE = 0.5
"""A clip counts as showing a face when the mesh finds one in at least half of its frames."""

_lock = threading.Lock()
_recent: OrderedDict[str, np.ndarray] = OrderedDict()
_RECENT_CLIPS = 8
"""The scorer sees the same frames once per cycle (only the audio is edited): remember a few."""


def _protobuf_compat() -> None:
    from google.protobuf import message_factory, symbol_database

    for cls in (symbol_database.SymbolDatabase, message_factory.MessageFactory):
        if not hasattr(cls, "GetPrototype"):
            cls.GetPrototype = lambda self, descriptor: message_factory.GetMessageClass(descriptor)


@lru_cache(maxsize=1)
def available() -> bool:
    """True when mediapipe's face mesh can be built here (the sync estimator falls back otherwise)."""
    try:
        _protobuf_compat()
        import mediapipe  # noqa: F401
    except Exception:  # an optional dependency that fails to import for any reason
        return False
    return True


def _face_mesh() -> Any:
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                           min_detection_confidence=0.3, min_tracking_confidence=0.3)


def lip_opening(frames: np.ndarray) -> np.ndarray:
    """Inner-lip gap over face height for each RGB frame (N, H, W, 3); NaN where no face is found.

    Frames are tracked in order (the mesh reuses the previous frame's face), so pass one clip's
    frames in presentation order. Scale-free: the same mouth gives the same values at any size.
    """
    frames = np.ascontiguousarray(frames)
    out = np.full(frames.shape[0], np.nan)
    if frames.ndim != 4 or frames.shape[0] == 0 or not available():
        return out
    key = hashlib.blake2b(frames.data, digest_size=16, person=str(frames.shape).encode()[:16]).hexdigest()
    with _lock:  # one graph at a time: a mesh is not thread-safe and is cheap to build per clip
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key].copy()
        mesh = _face_mesh()
        try:
            h, w = frames.shape[1:3]
            for i, frame in enumerate(frames):
                found = mesh.process(np.ascontiguousarray(frame)).multi_face_landmarks
                if not found:
                    continue
                lm = found[0].landmark
                xy = {k: np.array([lm[k].x * w, lm[k].y * h]) for k in (UPPER_LIP, LOWER_LIP, FOREHEAD, CHIN)}
                face = float(np.linalg.norm(xy[FOREHEAD] - xy[CHIN]))
                if face > 1.0:
                    out[i] = float(np.linalg.norm(xy[UPPER_LIP] - xy[LOWER_LIP])) / face
        finally:
            mesh.close()
        _recent[key] = out.copy()
        while len(_recent) > _RECENT_CLIPS:
            _recent.popitem(last=False)
    return out
