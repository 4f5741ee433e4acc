"""A small real feature set (procedural clips, no alignment loop) shared by the tests here."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_features(tmp_path_factory) -> Path:
    """24 training + 16 held-out procedural clips of 2.4 s, featurised for real.

    The loop is not run (it needs every describer model); the "aligned" variant is a copy of the
    raw one, so the gate's aligned >= raw is decided by equality and registration must happen.
    """
    from avalign.representation.data import ProceduralSpec, build_procedural

    fs = build_procedural(ProceduralSpec(n_train=24, n_eval=16, duration_s=2.4, align=False), workers=1,
                          progress=lambda _m: None)
    fs.train_mel["aligned"] = fs.train_mel["raw"].copy()
    fs.meta["aligned_means"] = "test stand-in: a copy of raw"
    folder = tmp_path_factory.mktemp("features")
    fs.save(folder)
    return folder
