"""The allocator setting applied on import of avalign.actions, and its opt-out."""

from __future__ import annotations

import platform

import pytest

from avalign.actions import _allocator


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_allocator, "_applied", None)


def test_glibc_takes_the_setting_once(fresh: None) -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: the setting is a no-op")
    assert _allocator.keep_freed_memory() is True
    assert _allocator.keep_freed_memory() is True  # idempotent


def test_environment_turns_it_off(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVALIGN_MALLOC_TUNING", "0")
    assert _allocator.keep_freed_memory() is False
