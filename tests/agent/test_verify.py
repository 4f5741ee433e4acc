"""Integrity manifests: publish checksums every object, ``verify`` finds what went missing or was
altered, counts reconcile, and publishing the same content again is not a second event."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.partition import run_partition
from avalign.agent.publish import IntegrityError, publish_partition
from avalign.agent.verify import verify_dataset
from avalign.cli import main
from avalign.data.manifest import write_manifest
from tests.agent.fakes import MeasuringClient
from tests.agent.test_partition import _row

PASSED = SimpleNamespace(success=True, result_uri=None)


@pytest.fixture()
def published(tmp_path, agent_clips) -> tuple[str, str, dict]:
    manifest = str(tmp_path / "ds" / "manifests" / "part-00000.parquet")
    rows = [_row("late", str(agent_clips["late"])), _row("clean", str(agent_clips["clean"])),
            _row("gone", str(tmp_path / "no_such.mp4"))]
    write_manifest(pd.DataFrame(rows), manifest)
    out = str(tmp_path / "out")
    run_partition(manifest, out, run_id="r1", config=AlignConfig(), client=MeasuringClient(), progress=lambda m: None)
    pub = publish_partition(out, "r1", "part-00000", PASSED)
    return manifest, out, json.loads(Path(pub.pointer_uri).read_text())


def test_pointer_lists_every_object_with_its_checksum(published):
    _, out, pointer = published
    roles = sorted(o["role"] for o in pointer["objects"])
    improved = [o for o in pointer["outputs"] if o["outcome"] == "improved"]
    assert improved, "the late clip is re-synced"
    # a clip + an audio per improved clip, a trace per clip (quarantined too), the results table
    assert roles.count("clip") == len(improved) and roles.count("audio") == len(improved)
    assert roles.count("trace") == 3 and roles.count("results") == 1
    assert pointer["n_in"] == 3 and sum(pointer["counts"].values()) == 3
    assert all(len(o["sha256"]) == 64 and o["bytes"] > 0 for o in pointer["objects"])
    report = verify_dataset(out, progress=lambda m: None)
    assert report.ok, report.findings
    assert report.objects_checked == len(pointer["objects"])


def test_verify_reports_altered_and_missing_objects(published, capsys):
    _, out, pointer = published
    clip = next(o["uri"] for o in pointer["objects"] if o["role"] == "clip")
    audio = next(o["uri"] for o in pointer["objects"] if o["role"] == "audio")
    data = bytearray(Path(clip).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(clip).write_bytes(bytes(data))
    Path(audio).unlink()
    report = verify_dataset(out, progress=lambda m: None)
    problems = {(f.problem, f.uri) for f in report.findings}
    assert problems == {("altered", clip), ("missing", audio)}
    assert main(["verify", out, "--quiet"]) == 1
    assert "FAILED: 2 problem(s)" in capsys.readouterr().out


def test_verify_reports_counts_that_do_not_reconcile(published):
    _, out, pointer = published
    target = Path(out) / "published" / "part-00000.json"
    doc = json.loads(target.read_text())
    doc["counts"]["quarantined"] = 0  # a clip silently dropped
    target.write_text(json.dumps(doc))
    report = verify_dataset(out, progress=lambda m: None)
    assert [f.problem for f in report.findings] == ["counts", "counts"]


def test_republishing_the_same_content_is_not_a_new_event(published):
    manifest, out, pointer = published
    pointer_file = Path(out) / "published" / "part-00000.json"
    before = pointer_file.read_bytes()
    assert publish_partition(out, "r1", "part-00000", PASSED).already
    # a later run of the same partition with the same result: byte-identical media, no new pointer
    run_partition(manifest, out, run_id="r2", config=AlignConfig(), client=MeasuringClient(), progress=lambda m: None)
    again = publish_partition(out, "r2", "part-00000", PASSED)
    assert again.already and pointer_file.read_bytes() == before
    r1 = {p.name: p.read_bytes() for p in (Path(out) / "runs" / "r1" / "part-00000" / "clips").iterdir()}
    r2 = {p.name: p.read_bytes() for p in (Path(out) / "runs" / "r2" / "part-00000" / "clips").iterdir()}
    assert r1 == r2 and r1


def test_an_incomplete_or_tampered_partition_is_not_published(published):
    manifest, out, _ = published
    run_partition(manifest, out, run_id="r3", config=AlignConfig(), client=MeasuringClient(), progress=lambda m: None)
    stage = Path(out) / "runs" / "r3" / "part-00000"
    clip = next((stage / "clips").iterdir())
    clip.write_bytes(clip.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match="changed after its run wrote it"):
        publish_partition(out, "r3", "part-00000", PASSED)
    (stage / "_SUCCESS").unlink()  # what a killed attempt leaves
    with pytest.raises(IntegrityError, match="not complete"):
        publish_partition(out, "r3", "part-00000", PASSED)
