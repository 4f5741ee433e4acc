"""numba compilation of the actions' loop kernels, optional: without numba every caller falls back
to its vectorised torch/numpy path.

A kernel may call other loop functions (``calls``): several passes fused into one compiled call
per row keep a row's temporaries in cache and hold the GIL once, where one kernel per pass
wrote and re-read clip-sized arrays between Python steps. numba resolves the names a kernel
calls at compile time, and its disk cache checks only the kernel's own file and bytecode (a
changed callee in another file would leave a stale kernel), so the callees' bytecode is part
of the cache key here.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable, Sequence
from typing import Any

CALLEE_OPTIONS = "_numba_options"
"""Attribute in which :func:`numba_callee` keeps a callee's ``njit`` options."""


def numba_callee(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a plain loop function as callable from compiled kernels, compiled with ``options``
    (``fastmath``, ``error_model``) when a kernel that calls it is compiled; the function itself
    is returned unchanged (Python can still call it, and it can be a kernel of its own)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, CALLEE_OPTIONS, dict(options))
        return fn

    return mark


def numba_compile(
    fn: Callable[..., Any], calls: Sequence[Callable[..., Any]] = (), **options: Any
) -> Callable[..., Any] | None:
    """``fn`` compiled by ``numba.njit`` (cached on disk, GIL released), or None without numba.

    ``options`` go to ``njit`` as well (``fastmath``, ``error_model``). ``calls``: the
    :func:`numba_callee` functions ``fn`` calls by name; each is compiled with its own options,
    and their bytecode joins ``fn``'s in the cache key.
    """
    try:
        import numba
    except ImportError:
        return None
    if not calls:
        return numba.njit(cache=True, nogil=True, **options)(fn)
    scope = dict(fn.__globals__)
    for callee in calls:
        callee_options = getattr(callee, CALLEE_OPTIONS, None)
        if callee_options is None:
            raise TypeError(f"{callee.__qualname__} is not marked with numba_callee")
        scope[callee.__name__] = numba.njit(nogil=True, **callee_options)(callee)
    bound = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    bound.__qualname__, bound.__module__ = fn.__qualname__, fn.__module__
    dispatcher = numba.njit(nogil=True, **options)(bound)
    dispatcher._cache = _cache_with_callees(bound, calls)  # what cache=True would set, keyed more
    return dispatcher


def _cache_with_callees(fn: Callable[..., Any], calls: Sequence[Callable[..., Any]]) -> Any:
    """numba's per-function disk cache, with the callees' bytecode, constants and options in
    every index key."""
    from numba.core.caching import FunctionCache

    digest = hashlib.sha256()
    for callee in calls:
        digest.update(callee.__qualname__.encode())
        _add_code(digest, callee.__code__)
        digest.update(repr(sorted(getattr(callee, CALLEE_OPTIONS).items())).encode())
    callees = digest.hexdigest()

    class CacheWithCallees(FunctionCache):  # type: ignore[misc]
        def _index_key(self, sig: Any, codegen: Any) -> Any:
            return (*super()._index_key(sig, codegen), callees)

    return CacheWithCallees(fn)


def _add_code(digest: Any, code: types.CodeType) -> None:
    """Bytecode and constants of ``code`` into ``digest`` (nested code objects by content: their
    repr holds an address that changes from process to process)."""
    digest.update(code.co_code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _add_code(digest, const)
        else:
            digest.update(repr(const).encode())
