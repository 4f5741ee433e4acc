"""Keep the actions' freed buffers in the heap rather than handing them back to the kernel.

Why: a spectral action allocates several MB of (frames x bins) temporaries per 10 s clip. glibc
serves blocks that large with ``mmap`` and unmaps them on ``free`` (its dynamic threshold moves,
and the heap top is trimmed past twice it), so the next call faults the same pages in again, and a
page fault is expensive on this machine's VM. Measured (one 10 s clip, one thread, median of 30
calls, two runs each): Wiener 7.6-9.4 -> 3.7-4.7 ms, gating 9.3-11.2 -> 5.8-6.5 ms, subtraction
11.6-12.5 -> 4.9-5.8 ms, pitch 9.1-14.1 -> 8.6-9.5 ms; peak RSS unchanged (977-981 MB).

So on import of ``avalign.actions``: blocks under 32 MB come from the heap, and the heap keeps up
to 128 MB free at its top (plus 16 MB of padding per extension) instead of trimming it. A process
may therefore hold up to ~150 MB per malloc arena that it no longer uses. No-op off glibc;
``AVALIGN_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 128 << 20
TOP_PAD_BYTES = 16 << 20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; True when glibc took them."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("AVALIGN_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(
        mallopt(option, value) == 1
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_TOP_PAD, TOP_PAD_BYTES),
        )
    )
    return _applied
