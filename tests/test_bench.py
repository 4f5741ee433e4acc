"""``python -m avalign bench`` in its quick mode: the report's structure, not its timings."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import pytest

import numpy as np
import torch

from avalign import bench
from avalign.bench import BANDS_DB, _near_linear_line, _paired_ratios, format_report, run_bench
from avalign.cli import build_parser

ACTIONS = {
    "spectral_subtraction", "wiener_filter", "wavelet_denoise", "spectral_gating",
    "deepfilternet", "rnnoise", "speed_change", "pitch_change", "volume_adjust",
    "fill_blanks", "time_shift",
}
BATCHED = ACTIONS - {"deepfilternet", "rnnoise"}
BANDS = {f"{b:g}" for b in BANDS_DB}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "actions.json"
    return run_bench(quick=True, out=out, real_av_dir=None), out


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_json_written_and_equal_to_the_returned_report(report: tuple[dict, Path]) -> None:
    data, path = report
    assert json.loads(path.read_text()) == data
    meta = data["meta"]
    assert meta["quick"] is True and meta["torch_threads"] == 1 and meta["sample_rate"] == 16000
    assert set(meta["input_si_sdr_db"]) == BANDS and meta["clips"]


def test_every_action_has_speed_quality_and_references(report: tuple[dict, Path]) -> None:
    actions = report[0]["actions"]
    assert set(actions) == ACTIONS
    for name, entry in actions.items():
        ours = entry["ours"]
        assert _finite(ours["single_ms"]) and _finite(ours["rtf"]), name
        if name in BATCHED:
            assert _finite(ours["batched_ms_per_clip"]), name
            assert _finite(ours["thread_speedup_1_to_2"]), name
            # the machine's own two-thread speed-up, measured at the same moments (numba installed)
            assert _finite(ours["machine_speedup_1_to_2"]) and ours["machine_speedup_1_to_2"] > 0.5, name
            # and what FFT vector work (SIMD units, caches, memory shared) got at those moments
            vector = ours["machine_vector_speedup_1_to_2"]
            assert _finite(vector) and vector > 0.5, name
        for ref_name, ref in entry["references"].items():
            assert _finite(ref["single_ms"]) and _finite(ref["time_ratio_ours_over_ref"]), ref_name
        if entry["kind"] in ("denoiser", "neural_denoiser"):
            assert set(ours["si_sdr_db"]) == BANDS and set(ours["si_sdr_gain_db"]) == BANDS
            assert all(_finite(v) for v in ours["si_sdr_db"].values()), name
            assert ours["length_kept"] and ours["finite"], name
    refs = {r for e in actions.values() for r in e["references"]}
    assert {"noisereduce", "scipy.signal.wiener", "librosa.effects.pitch_shift",
            "torchaudio.functional.speed", "pyloudnorm"} <= refs
    assert "torchaudio.functional.pitch_shift" not in refs  # ~10 s a call: full bench only
    assert _finite(actions["pitch_change"]["ours"]["pitch_error_pct"])
    assert _finite(actions["time_shift"]["ours"]["abs_offset_error_ms"])
    assert _finite(actions["volume_adjust"]["ours"]["meter_vs_pyloudnorm_lu_max"])


def test_targets_are_pass_fail_lines_and_the_table_prints(report: tuple[dict, Path]) -> None:
    data = report[0]
    targets = data["targets"]
    assert len(targets) >= 15
    assert all(isinstance(t["pass"], bool) and t["measured"] and t["target"] for t in targets)
    names = " ".join(t["target"] for t in targets)
    for key in ("noisereduce", "librosa", "scipy.signal.wiener", "pyloudnorm", "threads"):
        assert key in names, key
    assert "rnnoise" in names
    threads = next(t for t in targets if "threads" in t["target"])
    assert "compute only" in threads["measured"] and "FFT vector work" in threads["measured"]
    text = format_report(data)
    assert "targets:" in text and ("PASS" in text or "FAIL" in text)


def test_thread_speedup_is_the_median_of_its_paired_passes(report: tuple[dict, Path]) -> None:
    batching = report[0]["batching"]
    assert set(batching) == BATCHED
    for name, row in batching.items():
        passes = row["thread_speedup_passes"]
        assert len(passes) == row["thread_passes"] >= 1 and all(_finite(v) for v in passes), name
        assert row["thread_speedup_1_to_2"] == pytest.approx(statistics.median(passes), abs=1e-3)
        machine = row["machine_speedup_passes"]
        assert len(machine) == len(passes), name
        scaled = [p for p, m in zip(passes, machine) if m >= bench.SCALED_PASS]
        assert row["thread_speedup_scaled_passes"] == len(scaled), name
        assert _finite(row["batched_over_single"]) and row["calls_per_sample"] >= 1, name
        over_single = row["batched_over_single_passes"]
        assert len(over_single) == len(passes), name
        assert row["batched_over_single"] == pytest.approx(statistics.median(over_single), abs=1e-3)
        processes = row["process_speedup_passes"]
        assert len(processes) == len(passes) and all(_finite(v) and v > 0 for v in processes), name
        assert row["process_speedup_1_to_2"] == pytest.approx(statistics.median(processes), abs=1e-3)


def test_near_linear_line_shows_the_two_process_reference(report: tuple[dict, Path]) -> None:
    line = next(t for t in report[0]["targets"] if t["target"].startswith("batched 1 -> 2"))
    _, processes = line["measured"].split("split between two processes")
    for name, row in report[0]["batching"].items():
        assert f"{name} {row['process_speedup_1_to_2']:.2f}x" in processes


def test_the_process_pair_runs_both_halves_and_reports_a_worker_error() -> None:
    x = torch.zeros(5, 1, 1600)
    x[:, 0, ::7] = 0.25
    pair = bench._ProcessPair(x)
    try:
        assert pair.rows == (3, 2)  # seconds() checks that each worker ran its own rows
        assert 0 < pair.seconds("time_shift", 2) < 5.0
        with pytest.raises(RuntimeError, match="(?s)bench worker process failed.*no_such_action"):
            pair.seconds("no_such_action", 1)
    finally:
        pair.close()
    assert not any(worker.is_alive() for worker in pair._workers)


def test_one_failed_worker_stops_the_other_without_timed_calls() -> None:
    x = torch.zeros(4, 1, 1600)
    x[3, 0, 5] = float("nan")  # only the second half is rejected
    pair = bench._ProcessPair(x)
    try:
        with pytest.raises(RuntimeError, match="(?s)failed.*NaN"):
            pair.seconds("time_shift", 10_000)
    finally:
        start = time.perf_counter()
        pair.close()
    assert time.perf_counter() - start < 5.0  # the waiting worker took the stop, not a timeout
    assert not any(worker.is_alive() for worker in pair._workers)
    assert [worker.exitcode for worker in pair._workers] == [0, 0]


def test_paired_ratios_divide_each_pass_by_its_own_pair() -> None:
    assert _paired_ratios([2.0, 3.0, 1.0], [1.0, 2.0, 1.0]) == [2.0, 1.5, 1.0]
    with pytest.raises(ValueError):  # a pass without its pair is a bug, not a result
        _paired_ratios([2.0, 3.0], [1.0])


def test_cli_has_the_bench_command() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--out", "x.json"])
    assert args.quick and args.out == "x.json" and args.func.__name__ == "_cmd_bench"


def _row(all_passes: float, scaled: float | None, scaled_passes: int, passes: int = 9) -> dict:
    return {
        "batch": 16, "thread_passes": passes, "thread_passes_wanted": 9,
        "thread_speedup_1_to_2": all_passes, "thread_speedup_scaled_passes": scaled_passes,
        "thread_speedup_1_to_2_machine_scaled": scaled,
        "machine_speedup_1_to_2": 1.7, "machine_vector_speedup_1_to_2": 1.7,
    }


def test_near_linear_counts_the_passes_in_which_the_machine_scaled() -> None:
    line = _near_linear_line({"a": _row(1.45, 1.75, 9, 14), "b": _row(1.7, 1.68, 9)})
    assert line["pass"], line
    assert "a 9/14" in line["measured"] and "over all passes" in line["measured"]
    assert "a 1.45x" in line["measured"]  # the all-pass figure stays in the report
    slow = _near_linear_line({"a": _row(1.7, 1.55, 9), "b": _row(1.7, 1.68, 9)})
    assert not slow["pass"] and "below: a 1.55x" in slow["measured"]


def test_near_linear_fails_when_the_machine_rarely_had_two_threads() -> None:
    line = _near_linear_line({"a": _row(1.2, 1.9, 4, 18), "b": _row(1.7, 1.68, 9)})
    assert not line["pass"]
    assert "too few passes with two threads to give: a (4 passes)" in line["measured"]


def test_near_linear_reads_a_report_from_before_the_gate() -> None:
    old = {"a": {"batch": 16, "thread_passes": 9, "thread_speedup_1_to_2": 1.65},
           "b": {"batch": 16, "thread_passes": 9, "thread_speedup_1_to_2": 1.5}}
    line = _near_linear_line(old)
    assert not line["pass"] and "below: b 1.50x" in line["measured"]


def test_passes_go_on_until_enough_found_the_machine_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    # a host that gives no second thread for the first four passes' references, then does
    calls = {"machine": 0}

    def machine() -> object:
        def run(threads: int) -> float:
            calls["machine"] += 1
            host_busy = calls["machine"] <= 2 * 4 + 2  # the two warm-up calls, then 4 passes
            return 1.0 if threads == 1 or host_busy else 0.5
        return run

    monkeypatch.setattr(bench, "_machine_reference", machine)
    monkeypatch.setattr(bench, "_vector_reference", lambda: (lambda threads: 1.0))
    monkeypatch.setattr(bench, "_ours", lambda: {"copy": lambda x: x.clone()})
    monkeypatch.setattr(bench, "_ProcessPair", _SameSecondsPair)  # spawned workers see no patch
    _SameSecondsPair.made.clear()
    settings = bench.BenchSettings(True, 0.5, 1, 1, 2, 3, False, None)
    items = [{"noisy": np.zeros(8000, dtype=np.float32)}]
    row = bench._bench_batching(settings, items, lambda message: None)["copy"]
    assert row["thread_passes"] == 6 and row["thread_passes_wanted"] == 3  # capped at twice
    assert row["machine_speedup_passes"] == [1.0] * 4 + [2.0] * 2
    assert row["thread_speedup_scaled_passes"] == 2
    assert row["thread_speedup_1_to_2_machine_scaled"] == pytest.approx(
        statistics.median(row["thread_speedup_passes"][4:]), abs=1e-3
    )
    assert len(row["process_speedup_passes"]) == 6  # a process sample in every pass
    assert [pair.closed for pair in _SameSecondsPair.made] == [True]


class _SameSecondsPair:
    """Stands in for the two worker processes: every sample takes 1 ms."""

    made: list["_SameSecondsPair"] = []

    def __init__(self, x: torch.Tensor) -> None:
        self.closed = False
        self.made.append(self)

    def seconds(self, name: str, calls: int) -> float:
        return 1e-3

    def close(self) -> None:
        self.closed = True
