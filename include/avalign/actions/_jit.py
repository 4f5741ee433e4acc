"""numba compilation of the actions' loop kernels, optional: without numba every caller falls back
to its vectorised torch/numpy path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def numba_compile(fn: Callable[..., Any], **options: Any) -> Callable[..., Any] | None:
    """``fn`` compiled by ``numba.njit`` (cached on disk, GIL released), or None without numba.

    ``options`` go to ``njit`` as well (``fastmath``, ``error_model``).
    """
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True, nogil=True, **options)(fn)
