"""The hostile media corpus (tests/media/hostile.py) through ingest and a partition run.

Every kind is either quarantined with its specific reason or processed; no clip takes the run
down; nothing is written outside the output roots; peak RSS stays bounded even for files that
lie about being two hours long. ``pytest -s`` prints the per-kind table with the peak RSS; the
same table is written to ``<tmp>/hostile_report.json``.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.partition import process_clip, run_partition, safe_id
from avalign.agent.planner import RulePlanner
from avalign.data.ingest import ingest, read_rejects
from avalign.data.manifest import ManifestError, list_partitions, manifest_uri, read_manifest
from avalign.data.manifest import write_manifest
from tests.agent.fakes import MeasuringClient
from tests.media.hostile import ACCEPTED, KINDS, PROCESSED, Kind, build_corpus

MAX_RSS_BYTES = 3 << 30  # the bound asserted on the whole test process's peak
MAX_GROWTH_BYTES = 1 << 30  # and on what ingest + the partition add to it (naive decoding: ~7 GB)
QUICK_S = 15.0  # a too_long / frame_too_large verdict must not need a full decode
CONFIG = AlignConfig()  # max_duration_s = 600: the "two hour" files are 12x over it
NON_UTF8_NAME = b"latin1 caf\xe9 \xff.mkv"

# Manifest rows that are not corpus files of their own (odd source URIs), and a file only ingest
# can see (a manifest cannot hold a name that is not UTF-8).
EXTRA = (
    Kind("source_is_dir", "", "not_a_file", "", "source_uri is a folder named .mp4"),
    Kind("source_nul", "", "bad_uri", "", "source_uri with a NUL byte"),
    Kind("source_dotdot", "", PROCESSED, "", "relative source_uri full of ../"),
    Kind("source_file_uri", "", PROCESSED, "", "file:// URI, percent-encoded unicode"),
    Kind("non_utf8_name", "", "", "bad_file_name", "file name that is not UTF-8 (ingest only)"),
)
# Clip ids that pass the manifest's checks but clean to the same file name ('_' or 'hidden').
TRICKY_IDS = ("...", "....", "_", ".hidden", "hidden")
# Ids a manifest must never carry; run_partition refuses the whole manifest, process_clip
# (given one anyway) must keep its files inside the stage. Depth 5 = traces/part/run/runs/out.
ESCAPE_IDS = ("../" * 5 + "escaped_rel", "{root}/escaped_abs", "nul\x00id")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below root -> (size, mtime_ns), to tell what a step wrote."""
    out = {}
    for dirpath, _, names in os.walk(os.fsencode(root)):
        for name in names:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.fsdecode(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(p for p, sig in after.items() if before.get(p) != sig)


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _row(clip_id: str, uri: str) -> dict:
    return {"clip_id": clip_id, "source_uri": uri, "reference_audio_uri": None, "duration_s": 2.0,
            "fps": 25.0, "sample_rate": 16000, "channels": 1, "width": 64, "height": 64,
            "category": None, "corruption": "[]", "corruption_types": "", "offset_ms": 0.0,
            "snr_db": None, "partition": "part-00000", "origin": "ingested", "seed": None}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> dict:
    """Build the corpus, ingest it, run one partition over all of it; record what happened."""
    root = tmp_path_factory.mktemp("hostile")
    t0 = time.perf_counter()
    paths = build_corpus(root / "corpus")
    (root / "corpus" / "folder.mp4").mkdir()
    bad_name = os.path.join(os.fsencode(root / "corpus"), NON_UTF8_NAME)
    with open(bad_name, "wb") as f:
        f.write(paths["good"].read_bytes())
    good = paths["good"]
    sources = {k.name: str(paths[k.name]) for k in KINDS}
    sources |= {
        "source_is_dir": str(root / "corpus" / "folder.mp4"),
        "source_nul": str(good) + "\x00../../etc/passwd",
        "source_dotdot": os.path.relpath(good.parent, Path.cwd()) + "/../corpus/./" + good.name,
        "source_file_uri": paths["unicode_name"].absolute().as_uri(),
    }
    assert "%" in sources["source_file_uri"] and sources["source_dotdot"].startswith("..")
    rows = [_row(name, uri) for name, uri in sources.items()]
    rows += [_row(cid, str(good)) for cid in TRICKY_IDS]
    manifest = str(root / "ds" / "manifests" / "part-00000.parquet")
    write_manifest(pd.DataFrame(rows), manifest)
    build_s = time.perf_counter() - t0

    import torch  # noqa: F401  the edits import it on the first clip: ~670 MB RSS, not ours

    (root / "sys_tmp").mkdir()
    with pytest.MonkeyPatch.context() as mp:  # the run's temp files land where we can see them
        mp.setenv("TMPDIR", str(root / "sys_tmp"))
        mp.setattr(tempfile, "tempdir", None)
        rss0, before = _maxrss_bytes(), _files(root)
        t0 = time.perf_counter()
        report = ingest(str(root / "corpus"), str(root / "ingest_out"), max_duration_s=600.0,
                        progress=None)
        ingest_s, rss1, after_ingest = time.perf_counter() - t0, _maxrss_bytes(), _files(root)
        lines: list[str] = []
        t0 = time.perf_counter()
        run = run_partition(manifest, str(root / "out"), run_id="hostile", config=CONFIG,
                            client=MeasuringClient(), progress=lines.append)
        run_s, rss2, after_run = time.perf_counter() - t0, _maxrss_bytes(), _files(root)
    return {
        "root": root, "paths": paths, "sources": sources, "report": report, "run": run,
        "results": pd.read_parquet(run.results_uri), "lines": lines,
        "written_by_ingest": _changed(before, after_ingest),
        "written_by_run": _changed(after_ingest, after_run),
        "rss": {"before": rss0, "after_ingest": rss1, "after_run": rss2},
        "seconds": {"build": build_s, "ingest": ingest_s, "partition": run_s},
    }


def test_ingest_gives_each_kind_its_verdict(hostile_run):
    root, report = hostile_run["root"], hostile_run["report"]
    rejects = read_rejects(str(root / "ingest_out"))
    by_file = {r.file_name: r for r in rejects.itertuples()}
    manifests = pd.concat([read_manifest(manifest_uri(str(root / "ingest_out"), p))
                           for p in list_partitions(str(root / "ingest_out"))])
    accepted = set(manifests.source_uri)
    for kind in KINDS + EXTRA:
        if not kind.ingest:
            continue
        if kind.name == "non_utf8_name":
            name = NON_UTF8_NAME.decode("utf-8", "backslashreplace")
            assert by_file[name].reason == "bad_file_name", by_file[name]
            assert "UTF-8" in by_file[name].message
            continue
        path = str(hostile_run["paths"][kind.name])
        if kind.ingest == ACCEPTED:
            assert path in accepted, (kind.name, by_file.get(kind.file_name))
        else:
            assert path not in accepted, kind.name
            row = by_file[kind.file_name]
            assert row.reason == kind.ingest, (kind.name, row.reason, row.message)
            assert kind.file_name in row.message and len(row.message) > len(kind.file_name) + 10
    # every file is either in a manifest or in the rejects, exactly once
    assert report.n_files == len(accepted) + len(rejects) == len(manifests) + report.n_rejected
    assert manifests.clip_id.is_unique
    assert manifests.clip_id.str.fullmatch(r"[A-Za-z0-9_.\-]+").all()


def test_partition_quarantines_or_processes_each_kind(hostile_run):
    table = hostile_run["results"].set_index("clip_id")
    out = hostile_run["root"] / "out"
    n_rows = len(hostile_run["sources"]) + len(TRICKY_IDS)
    assert len(table) == n_rows and hostile_run["run"].n_clips == n_rows  # nothing lost
    for kind in KINDS + EXTRA:
        if not kind.partition:
            continue
        row = table.loc[kind.name]
        assert Path(row.trace_uri).resolve().is_relative_to(out.resolve()), kind.name
        if kind.partition == PROCESSED:
            assert row.outcome in ("improved", "kept_original"), (kind.name, row.reason)
            assert row.duration_error_s < 1e-3, kind.name
            if row.outcome == "improved":
                assert Path(row.output_uri).resolve().is_relative_to(out.resolve()), kind.name
        else:
            assert row.outcome == "quarantined", (kind.name, row.outcome, row.reason)
            assert row.reason.startswith(kind.partition + ": "), (kind.name, row.reason)
            assert "internal_error" not in row.reason
            if kind.partition in ("too_long", "frame_too_large"):
                assert row.seconds < QUICK_S, (kind.name, row.seconds)
    assert not table.reason.fillna("").str.startswith("internal_error").any()


def test_ids_that_clean_to_the_same_name_stay_apart(hostile_run):
    table = hostile_run["results"]
    rows = table[table.source_uri == str(hostile_run["paths"]["good"])]
    tricky = rows[~rows.clip_id.isin(["good"])]
    assert len(tricky) == len(TRICKY_IDS) and tricky.clip_id.is_unique
    assert set(tricky.clip_id) == {safe_id(c, unique=True) for c in TRICKY_IDS}
    assert (tricky.outcome != "quarantined").all()
    traces = {Path(u).name for u in table.trace_uri}
    assert len(traces) == len(table)  # one trace file per row: none overwrote another


def test_nothing_is_written_outside_the_output_roots(hostile_run):
    root = hostile_run["root"]
    for path in hostile_run["written_by_ingest"]:
        assert Path(path).is_relative_to(root / "ingest_out"), path
    for path in hostile_run["written_by_run"]:
        assert Path(path).is_relative_to(root / "out"), path
    assert hostile_run["written_by_ingest"] and hostile_run["written_by_run"]
    assert not any((root / "sys_tmp").iterdir())  # temp files of the run were removed


def test_memory_stays_bounded_and_report(hostile_run):
    table = hostile_run["results"].set_index("clip_id")
    rejects = read_rejects(str(hostile_run["root"] / "ingest_out"))
    rejected = {r.file_name: r.reason for r in rejects.itertuples()}
    file_names = {k.name: k.file_name for k in KINDS}
    file_names["non_utf8_name"] = NON_UTF8_NAME.decode("utf-8", "backslashreplace")
    report = []
    for kind in KINDS + EXTRA:
        ingest_verdict = partition_verdict = "-"
        seconds = None
        if kind.ingest:
            name = file_names[kind.name]
            ingest_verdict = f"rejected: {rejected[name]}" if name in rejected else "accepted"
        if kind.partition:
            row = table.loc[kind.name]
            partition_verdict = row.outcome
            if row.outcome == "quarantined":
                partition_verdict += ": " + row.reason.split(":", 1)[0]
            seconds = float(row.seconds)
        report.append({"kind": kind.name, "what": kind.what, "ingest": ingest_verdict,
                       "partition": partition_verdict, "seconds": seconds})
    for cid in TRICKY_IDS:
        row = table.loc[safe_id(cid, unique=True)]
        report.append({"kind": f"clip_id {cid!r}", "what": f"-> {row.name}", "ingest": "-",
                       "partition": row.outcome, "seconds": float(row.seconds)})
    rss = hostile_run["rss"]
    summary = {"peak_rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
               "seconds": {k: round(v, 2) for k, v in hostile_run["seconds"].items()},
               "kinds": report}
    (hostile_run["root"] / "hostile_report.json").write_text(json.dumps(summary, indent=2))

    print(f"\n{'kind':<22} {'what':<44} {'ingest':<32} {'partition':<30} {'s':>5}")
    for r in report:
        s = f"{r['seconds']:5.2f}" if r["seconds"] is not None else "    -"
        print(f"{r['kind']:<22} {r['what'][:44]:<44} {r['ingest']:<32} {r['partition']:<30} {s}")
    print("peak RSS MB (ru_maxrss of this process; 'before' includes torch):",
          summary["peak_rss_mb"])
    print("seconds:", summary["seconds"])
    assert rss["after_run"] < MAX_RSS_BYTES, summary["peak_rss_mb"]
    assert rss["after_run"] - rss["before"] < MAX_GROWTH_BYTES, summary["peak_rss_mb"]
    assert json.loads((hostile_run["root"] / "hostile_report.json").read_text())["kinds"]


def test_manifest_rows_with_path_ids_are_quarantined_and_the_rest_is_processed(tmp_path, hostile_run):
    good = str(hostile_run["paths"]["good"])
    ids = [c.format(root=tmp_path) for c in ESCAPE_IDS]
    rows = [_row(c, good) for c in ids] + [_row("fine", good), _row("fine", good)]
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    manifest = tmp_path / "ds" / "manifests" / "part-00000.parquet"
    manifest.parent.mkdir(parents=True)
    pq.write_table(table, manifest)  # bypasses write_manifest's checks, as a hand-made file would
    with pytest.raises(ManifestError, match="clip_id not made of"):
        read_manifest(str(manifest))  # a strict reader refuses it as a whole
    out = tmp_path / "out"
    before = _files(tmp_path)
    run = run_partition(str(manifest), str(out), run_id="r", config=CONFIG, client=MeasuringClient(),
                        progress=lambda m: None)
    results = pd.read_parquet(run.results_uri)
    assert len(results) == len(rows) and not results["clip_id"].duplicated().any()  # nothing lost
    reasons = [str(r).split(":")[0] for r in results["reason"]]
    assert reasons[:3] == ["bad_clip_id"] * 3 and reasons[4] == "duplicate_clip_id"
    assert results.loc[3, "clip_id"] == "fine" and results.loc[3, "outcome"] != "quarantined"
    written = _changed(before, _files(tmp_path))
    assert written and all(Path(p).is_relative_to(out) for p in written), written


def test_process_clip_keeps_path_ids_inside_the_stage(tmp_path, hostile_run):
    good = str(hostile_run["paths"]["good"])
    stage = tmp_path / "out" / "runs" / "r" / "part-00000"  # traces 5 levels below tmp_path
    before = _files(tmp_path)
    rows = []
    for raw in ESCAPE_IDS:
        cid = raw.format(root=tmp_path)
        rows.append(process_clip(_row(cid, good), str(stage), client=MeasuringClient(),
                                 planner=RulePlanner(), config=CONFIG, model_versions={},
                                 run_id="r", partition="part-00000"))
        assert rows[-1]["outcome"] != "quarantined", rows[-1]["reason"]
        assert "/" not in rows[-1]["clip_id"] and "\x00" not in rows[-1]["clip_id"]
    written = _changed(before, _files(tmp_path))
    assert written and all(Path(p).is_relative_to(stage) for p in written), written
    assert not list(tmp_path.glob("escaped*")) and len({r["clip_id"] for r in rows}) == len(rows)
