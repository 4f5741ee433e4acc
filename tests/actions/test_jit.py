"""Kernels that call other loop functions: compiled together, and a changed callee in another
file is recompiled, not served stale from numba's disk cache."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from avalign.actions import _jit

ACTIONS = Path(_jit.__file__).parent  # _jit imported alone: no torch in the child processes

CALLER = '''
from functools import lru_cache

import numpy as np

from _jit import numba_compile
from callee import scale_row


def kernel(x):
    for r in range(x.shape[0]):
        scale_row(x[r])


@lru_cache(maxsize=1)
def compiled():
    return numba_compile(kernel, calls=(scale_row,))


if __name__ == "__main__":
    x = np.ones((2, 3))
    compiled()(x)
    print(x[0, 0], compiled().stats.cache_hits.total())
'''

CALLEE = '''
from _jit import numba_callee


@numba_callee(error_model="numpy")
def scale_row(row):
    for i in range(row.shape[0]):
        row[i] *= {factor}
'''


def _run(folder: Path) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, str(folder / "caller.py")],
        capture_output=True, text=True, timeout=300, check=True,
        env={"PYTHONPATH": f"{folder}:{ACTIONS}", "PATH": "/usr/bin:/bin"},
    )
    value, hits = done.stdout.split()[-2:]
    return float(value), int(hits)


def test_a_changed_callee_recompiles_its_caller(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    (tmp_path / "caller.py").write_text(textwrap.dedent(CALLER))
    (tmp_path / "callee.py").write_text(CALLEE.format(factor="2.0"))
    assert _run(tmp_path) == (2.0, 0)  # compiled, written to the cache
    assert _run(tmp_path) == (2.0, 1)  # read back from it
    (tmp_path / "callee.py").write_text(CALLEE.format(factor="3.0"))  # the caller's file as it was
    assert _run(tmp_path) == (3.0, 0)


def test_an_unmarked_callee_is_refused() -> None:
    pytest.importorskip("numba")

    def plain(row):  # type: ignore[no-untyped-def]
        return row

    def kernel(x):  # type: ignore[no-untyped-def]
        return plain(x)

    with pytest.raises(TypeError, match="not marked with numba_callee"):
        _jit.numba_compile(kernel, calls=(plain,))
