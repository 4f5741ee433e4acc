"""CPU chunking of batches: same result as one call, per-item params sliced, errors unchanged."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from avalign.actions import _checks
from avalign.actions import functional as AF
from avalign.actions._checks import cpu_chunked, one_torch_thread, parallel_map, per_item

from .conftest import SR, add_white_noise, speech_like


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checks, "CPU_CHUNK_SAMPLES", 2 * SR)  # two 1 s mono items per call


def _batch() -> torch.Tensor:
    return torch.stack([add_white_noise(speech_like(1.0, seed=s), 5.0, seed=s) for s in range(5)])


def test_chunked_equals_whole_batch(small_chunks: None) -> None:
    x = _batch()
    thresholds = [3.0, 6.0, 9.0, 6.0, 3.0]
    chunked = AF.spectral_gating(x, SR, threshold_db=thresholds)
    singles = torch.cat(
        [AF.spectral_gating(x[i : i + 1], SR, threshold_db=[t]) for i, t in enumerate(thresholds)]
    )
    assert torch.equal(chunked, singles)
    semis = torch.tensor([1.0, -2.0, 0.0, 3.0, 1.0])
    assert torch.equal(
        AF.pitch_change(x, SR, semis),
        torch.cat([AF.pitch_change(x[i : i + 1], SR, semis[i : i + 1]) for i in range(5)]),
    )


def test_bad_per_item_length_still_raises_the_functions_error(small_chunks: None) -> None:
    with pytest.raises(ValueError, match="over_subtraction has 2 values for a batch of 5"):
        AF.spectral_subtraction(_batch(), SR, over_subtraction=[1.0, 2.0])


def test_tuple_outputs_are_concatenated(small_chunks: None) -> None:
    calls: list[int] = []

    @cpu_chunked("gain")
    def scaled(x: torch.Tensor, sample_rate: int, gain: float | list[float] = 1.0):
        calls.append(x.shape[0])
        g = per_item(gain, x.shape[0], "gain")
        return x * torch.tensor(g).view(-1, 1, 1), [f"item x{v}" for v in g]

    x = torch.ones(5, 1, SR)
    y, report = scaled(x, SR, gain=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert calls == [2, 2, 1]
    assert y[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert report == ["item x1.0", "item x2.0", "item x3.0", "item x4.0", "item x5.0"]


def test_functions_with_out_write_each_chunk_into_the_result(small_chunks: None) -> None:
    calls: list[int] = []

    @cpu_chunked("gain")
    def scaled(x: torch.Tensor, sample_rate: int, gain: float | list[float] = 1.0, *, out=None):
        calls.append(x.shape[0])
        out = torch.empty_like(x) if out is None else out
        return torch.mul(x, torch.tensor(per_item(gain, x.shape[0], "gain")).view(-1, 1, 1), out=out)

    x = torch.ones(5, 1, SR)
    y = scaled(x, SR, gain=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert calls == [2, 2, 1] and y[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    given = torch.zeros_like(x)
    assert scaled(x, SR, gain=2.0, out=given) is given and bool((given == 2.0).all())


@pytest.mark.parametrize(
    ("name", "params"),
    [("speed_change", {"factor": [1.1, 0.9, 1.0, 1.05, 0.95]}),
     ("wiener_filter", {"alpha": [0.9, 0.8, 0.9, 0.95, 0.9]}),
     ("spectral_subtraction", {"floor": [0.02, 0.1, 0.02, 0.0, 0.5]}),
     ("spectral_gating", {"threshold_db": [6.0, 3.0, 6.0, 9.0, 6.0]})],
)
def test_actions_into_out_equal_a_fresh_result(small_chunks: None, name: str, params: dict) -> None:
    fn = getattr(AF, name)
    x = _batch()
    given = torch.full_like(x, 7.0)
    assert fn(x, SR, **params, out=given) is given
    assert torch.equal(given, fn(x, SR, **params))
    with pytest.raises(ValueError, match="out must be a contiguous tensor like x"):
        fn(x, SR, **params, out=torch.empty(5, 1, 10))
    wide = torch.empty(5, 1, 2 * x.shape[-1])[..., ::2]  # x's shape, not contiguous
    with pytest.raises(ValueError, match="out must be a contiguous tensor like x"):
        fn(x, SR, **params, out=wide)


def test_chunks_run_in_parallel_threads_with_the_same_result(small_chunks: None) -> None:
    x = _batch()
    serial = AF.wavelet_denoise(x, SR)  # parallel_items: one thread per chunk
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel = AF.wavelet_denoise(x, SR)
        assert torch.get_num_threads() == 2  # restored after the chunks ran on one thread each
        bad = x.clone()
        bad[3, 0, 5] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            AF.wavelet_denoise(bad, SR)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(parallel, serial)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("spectral_subtraction", {"over_subtraction": [1.0, 2.0, 3.0, 4.0, 2.0]}),
        ("wiener_filter", {"alpha": [0.9, 0.95, 0.98, 0.9, 0.95]}),
        ("spectral_gating", {"threshold_db": [3.0, 6.0, 9.0, 6.0, 3.0]}),
        ("speed_change", {"factor": [1.1, 0.9, 1.0, 1.05, 0.95]}),
        ("pitch_change", {"semitones": [2.0, -3.0, 0.0, 1.0, -1.0]}),
    ],
)
def test_items_on_two_threads_equal_single_clips_on_one(small_chunks: None, name: str, params: dict) -> None:
    x = _batch()
    fn = getattr(AF, name)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        singles = torch.cat(
            [fn(x[i : i + 1], SR, **{k: [v[i]] for k, v in params.items()}) for i in range(x.shape[0])]
        )
        torch.set_num_threads(2)
        parallel = fn(x, SR, **params)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(parallel, singles)


@pytest.mark.parametrize(
    "name",
    ["spectral_subtraction", "wiener_filter", "wavelet_denoise", "spectral_gating",
     "speed_change", "pitch_change", "volume_adjust"],
)
def test_thread_count_does_not_change_a_bit(name: str) -> None:
    """Default chunking (five 1 s clips fit one chunk): on 2 threads the batch is still cut
    into a chunk per thread and no op runs on two threads, so batch and single clip on 2 threads
    equal the 1-thread results exactly."""
    x = _batch()
    fn = getattr(AF, name)
    args = {"speed_change": (1.1,), "pitch_change": (2.0,), "volume_adjust": (-20.0,)}.get(name, ())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = fn(x, SR, *args)
        torch.set_num_threads(2)
        two = fn(x, SR, *args)
        single_two = fn(x[1:2], SR, *args)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(two, one)
    assert torch.equal(single_two, one[1:2])


@pytest.mark.parametrize(
    ("b", "most", "threads"), [(16, 4, 2), (3, 2, 2), (16, 4, 4), (5, 3, 2), (12, 2, 2), (7, 4, 2)]
)
def test_coarse_chunks_shrink_to_single_clips_at_the_end(b: int, most: int, threads: int) -> None:
    starts = _checks.guided_starts(b, most, threads)
    sizes = [stop - start for start, stop in zip(starts, [*starts[1:], b])]
    assert starts[0] == 0 and sum(sizes) == b
    assert all(1 <= size <= most for size in sizes)
    assert sizes == sorted(sizes, reverse=True)  # the long chunks first
    assert sizes[-1] == 1  # the last chunk taken is one clip: no thread waits on a long one
    assert len(sizes) >= threads


@pytest.mark.parametrize(("b", "most", "threads"), [(16, 2, 2), (16, 1, 2), (40, 4, 2), (33, 4, 2)])
def test_fine_enough_chunks_stay_equal(b: int, most: int, threads: int) -> None:
    """At least CHUNKS_PER_THREAD chunks per thread: a shrinking tail would only add chunks."""
    assert _checks.guided_starts(b, most, threads) == list(range(0, b, most))


def test_guided_chunks_slice_per_item_params_with_their_clips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seven 1 s clips on 2 threads go in chunks of 4, 2 and 1 clips: each chunk's thresholds are
    its own clips', so the batch equals the clips one at a time."""
    splits: list[list[int]] = []

    def recorded(b: int, most: int, threads: int) -> list[int]:
        splits.append(guided(b, most, threads))
        return splits[-1]

    guided = _checks.guided_starts
    monkeypatch.setattr(_checks, "guided_starts", recorded)
    x = torch.cat([_batch(), _batch()[:2]])
    scales = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 0.75]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batch = AF.wavelet_denoise(x, SR, threshold_scale=scales)
    finally:
        torch.set_num_threads(before)
    singles = torch.cat([AF.wavelet_denoise(x[i : i + 1], SR, threshold_scale=[scales[i]]) for i in range(7)])
    assert splits == [[0, 4, 6]]
    assert torch.equal(batch, singles)


def test_parallel_map_keeps_order_and_restores_threads() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []

        def square(v: int) -> int:
            seen.append(torch.get_num_threads())
            return v * v

        assert parallel_map(square, list(range(7))) == [v * v for v in range(7)]
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert parallel_map(lambda v: v + 1, [1, 2]) == [2, 3]  # one thread: a plain loop


def test_pool_threads_run_their_openmp_and_mkl_work_on_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a new thread's OpenMP team has every core; an MKL FFT on it used them all while
    # torch.get_num_threads() read 1 (torch sets a thread's own count on its first parallel_for)
    import ctypes
    import os

    gomp_path = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    if not os.path.exists(gomp_path) or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torch's bundled libgomp and two cores")
    gomp = ctypes.CDLL(gomp_path)
    monkeypatch.setattr(_checks, "_POOLS", {})  # fresh threads, none has run a torch op yet
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def team(_: int) -> tuple[int, str]:
            time.sleep(0.01)  # both threads take items
            return gomp.omp_get_max_threads(), threading.current_thread().name

        seen = parallel_map(team, list(range(6)))
    finally:
        torch.set_num_threads(before)
    assert {name.startswith("avalign-items") for _, name in seen} == {True, False}
    assert {threads for threads, _ in seen} == {1}


def test_parallel_map_raises_the_first_error_once_every_thread_rests() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    done: list[int] = []

    def item(v: int) -> int:
        if v == 3:
            raise ValueError("item 3 is bad")
        time.sleep(0.01)
        done.append(v)
        return v

    try:
        with pytest.raises(ValueError, match="item 3 is bad"):
            parallel_map(item, list(range(40)))
        settled = len(done)
        time.sleep(0.05)
        assert len(done) == settled  # nothing still running after the raise
        assert settled < 39  # the error stopped the taking of new items
        # uneven item times: results still in item order
        uneven = parallel_map(lambda v: time.sleep(0.002 * (v % 3)) or v, list(range(9)))
        assert uneven == list(range(9))
    finally:
        torch.set_num_threads(before)


def test_nested_parallel_map_finishes_when_every_pool_thread_is_busy() -> None:
    """An item that maps its own items on the same pool (workers given) must not wait on a task
    queued behind itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)

    def outer(v: int) -> list[int]:
        time.sleep(0.01)  # both threads hold an outer item when the inner maps start
        return parallel_map(lambda u: u * v, [1, 2, 3], workers=2)

    try:
        assert parallel_map(outer, [1, 2]) == [[1, 2, 3], [2, 4, 6]]
    finally:
        torch.set_num_threads(before)


def test_one_torch_thread_yields_the_callers_count_and_restores_it() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="boom"), one_torch_thread() as threads:
            assert threads == 2 and torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        # workers given: that many items at a time, whatever the (now 1) thread count
        with one_torch_thread() as threads:
            # items that take a while: the pool thread starts before the caller has taken all
            names = parallel_map(
                lambda _: time.sleep(0.01) or threading.current_thread().name,
                list(range(6)),
                workers=threads,
            )
            assert torch.get_num_threads() == 1
        assert any(n.startswith("avalign-items") for n in names)
        assert parallel_map(lambda _: threading.current_thread().name, [0, 1], workers=1) == [
            threading.current_thread().name
        ] * 2
    finally:
        torch.set_num_threads(before)


def test_no_op_around_parallel_items_runs_on_several_threads(
    small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's own ops (allocating the result, copying each part, fill_blanks' copy of its
    input) run on one torch thread: an OpenMP region on two would leave a spinning thread."""
    x = _batch()
    x[:, :, 4000:5600] = 0.0  # a dropout per item for fill_blanks
    calls: list[int] = []
    real_assemble = _checks._assemble

    def assemble(*args: object) -> object:
        calls.append(torch.get_num_threads())
        return real_assemble(*args)

    monkeypatch.setattr(_checks, "_assemble", assemble)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = (AF.wavelet_denoise(x, SR), AF.fill_blanks(x, SR))
        torch.set_num_threads(2)
        seen: list[int] = []
        real_copy = torch.Tensor.copy_

        def copy_(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return real_copy(self, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.Tensor, "copy_", copy_)
            got = (AF.wavelet_denoise(x, SR), AF.fill_blanks(x, SR))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert calls and set(calls) == {1}
    assert seen and set(seen) == {1}
    assert torch.equal(got[0], expected[0])
    assert torch.equal(got[1][0], expected[1][0]) and got[1][1] == expected[1][1]
    assert all(got[1][1])  # every item had its dropout filled


def test_suppress_event_chunked_on_two_threads_keeps_items_and_reports(small_chunks: None) -> None:
    x = _batch()
    starts, ends = [0.2, 0.3, 0.1, 0.4, 0.25], [0.5, 0.6, 0.45, 0.7, 0.5]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        singles = [AF.suppress_event(x[i : i + 1], SR, starts[i], ends[i]) for i in range(5)]
        torch.set_num_threads(2)
        batch, reports = AF.suppress_event(x, SR, starts, ends)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(batch, torch.cat([y for y, _ in singles]))
    assert reports == [rep for _, [rep] in singles]


def test_parallel_map_keeps_its_pool_and_works_in_a_forked_child() -> None:
    import multiprocessing
    import threading

    from avalign.actions import _checks

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        caller = threading.current_thread().name
        names = parallel_map(lambda _: threading.current_thread().name, list(range(6)))
        again = parallel_map(lambda _: threading.current_thread().name, list(range(6)))
        # the caller and one kept pool thread, not new ones per call
        assert all(n == caller or n.startswith("avalign-items") for n in names + again)
        assert len(set(names + again) - {caller}) <= 1
        assert 1 in _checks._POOLS
        # the parent's pool threads do not exist in a forked child: it must start its own
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.apply(_squares_in_child, (5,)) == [v * v for v in range(5)]
    finally:
        torch.set_num_threads(before)


def _squares_in_child(n: int) -> list[int]:
    from avalign.actions import _checks

    assert not _checks._POOLS  # forgotten at the fork
    torch.set_num_threads(2)
    return parallel_map(lambda v: v * v, list(range(n)))
