"""Argument checks shared by the pure functions: clear ``ValueError``s that name the parameter.

The functions work on batches ``(B, C, T)`` with one parameter value per item. A parameter may
be given as a python number (same for every item), a sequence of B numbers or a tensor of
shape ``(B,)``; :func:`per_item` turns any of these into a list of B python floats, which is what
the data-dependent loops (grouping items that share a value) need.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor

ParamLike = float | int | Sequence[float] | Tensor
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")


def check_batch(x: Tensor, name: str = "x") -> Tensor:
    """Require a floating tensor of shape (B, C, T) with finite samples and T >= 1."""
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape (B, C, T), got {type(x).__name__}"
        )
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, C, T), got rank {x.dim()} {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float32), got {x.dtype}")
    if x.shape[-1] < 1 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    # min and max in one pass propagate NaN and show inf (10x faster than isfinite().all())
    low, high = torch.aminmax(x.detach())
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_out(out: Tensor | None, x: Tensor) -> Tensor:
    """``out`` checked to take a result like ``x`` (same shape, dtype and device, contiguous),
    or a new empty tensor like ``x`` when None."""
    if out is None:
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    if (out.shape, out.dtype, out.device) != (x.shape, x.dtype, x.device) or (
        not out.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous tensor like x ({tuple(x.shape)}, {x.dtype}, {x.device}), "
            f"got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    return out


def check_sample_rate(sample_rate: int | float) -> int:
    """Require a positive integer sample rate (Hz)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not math.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def per_item(
    value: ParamLike,
    batch: int,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> list[float]:
    """One finite python float per batch item, range-checked (ValueError naming ``name``)."""
    if isinstance(value, Tensor):
        if value.dim() == 0:
            values = [float(value)] * batch
        elif value.dim() == 1 and value.shape[0] == batch:
            values = [float(v) for v in value.detach().cpu().tolist()]
        else:
            raise ValueError(
                f"{name} must be a number or have shape ({batch},), got {tuple(value.shape)}"
            )
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got a bool")
    elif isinstance(value, (int, float)):
        values = [float(value)] * batch
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != batch:
            raise ValueError(f"{name} has {len(value)} values for a batch of {batch}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise ValueError(f"{name} must contain numbers only")
        values = [float(v) for v in value]
    else:
        raise ValueError(
            f"{name} must be a number, a sequence or a tensor, got {type(value).__name__}"
        )
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        if minimum is not None and (v <= minimum if exclusive_minimum else v < minimum):
            op = ">" if exclusive_minimum else ">="
            raise ValueError(f"{name} must be {op} {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return values


def as_column(values: list[float], like: Tensor) -> Tensor:
    """Per-item values as a (B, 1, 1) tensor on ``like``'s device and dtype, for broadcasting."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def groups(values: list[float]) -> dict[float, list[int]]:
    """Batch indices grouped by equal parameter value (items sharing a value run together)."""
    out: dict[float, list[int]] = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return out


CPU_CHUNK_SAMPLES = 160_000
"""Most samples (B * C * T) one CPU call works on at once: one 10 s clip at 16 kHz.

A spectral action on a 10 s clip holds ~10 MB of (frames x bins) temporaries; with more clips
per call they leave the 2 MB per-core cache between ops and every call faults fresh pages in.
Measured on one thread (B = 16 noisy 10 s clips, per-clip time relative to single-clip calls):
one clip per chunk 0.97-1.03x, two clips 1.16-1.41x (the first version of this note measured
25 ms per clip for subtraction in one batch of 16 against 7.3 ms alone). Short clips still share
a chunk (per-op overhead is paid once for many), so a CPU batch is never slower per clip than
single clips; each op still splits its rows over the torch threads. The actions with small
temporaries per clip take four clips per call (:data:`SHARED_CHUNK_SAMPLES`)."""


SHARED_CHUNK_SAMPLES = 4 * CPU_CHUNK_SAMPLES
"""Samples per CPU call for the actions whose temporaries per clip are small (the wavelet
transform, the loudness filter, the blank search): four 10 s clips.

Every torch op hands the GIL back and forth between the item threads, and on a VM waking the
waiting thread costs tens of microseconds, so a clip with ~100 short ops spends much of its
time in hand-offs. Four clips per call make four times fewer, longer ops. Measured on a 2-vCPU
VM (B = 16 noisy 10 s clips, per clip on 1 thread / speed-up 1 -> 2 threads), 1 clip per chunk
against 4: Wiener 2.62 ms / 1.38x against 1.94 ms / 1.51x, volume 2.21 / 1.22x against
1.97 / 1.44x, fill blanks 0.60 / 1.37x against 0.59 / 1.80x, wavelet 5.26 / 1.47x against
4.53 / 1.60x. The STFT denoisers with 75 % overlap and pitch got slower per clip from 2 clips up
(subtraction 5.15 -> 5.33 ms at 4, pitch 9.03 -> 10.09 ms) and keep one clip per call. Wiener
went back to one clip per call once its noise track and gain became one compiled call per
chunk (:func:`denoise._track_gain_fused`): few ops per clip, and its per-row scratch stays
in cache only when the chunk is one clip."""


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``; with n > 1 workers, n items at a time.

    ``workers`` defaults to the torch thread count. The items run on the calling thread and
    n - 1 threads of a kept pool (:func:`_drain_together`, :func:`_item_pool`), each taking the
    next item and doing single-threaded torch ops; torch, numpy, pywt,
    scipy and the numba kernels release the GIL while they compute. Splitting each op's rows over
    torch's intra-op threads instead scales poorly here: the ops of one 10 s clip are too short
    (FFTs of 1,250 frames, per-frame recursions) to amortise the hand-off. Measured on idle cores
    (a 16-core host, B = 16 noisy 10 s clips, per-clip time against 1 thread), 1 -> 2 threads,
    whole items vs split ops: Wiener 2.55x vs 1.38x, gating 2.41x vs 1.50x, wavelet 2.10x vs
    1.68x, pitch 1.80x vs 1.16x, speed 1.72x vs 1.22x, subtraction 1.51x vs 1.16x; loudness
    1.30x vs 1.33x. The time shift (0.95x vs 2.07x) splits its ops instead; fill blanks maps its
    per-item compiled search and concealment through here. The torch thread count is 1 while
    the items run (:func:`one_torch_thread`; a pool thread takes the process-wide value on its
    first op, which is always 1 here).
    """
    with one_torch_thread() as threads:
        workers = threads if workers is None else workers
        if workers <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        return _drain_together(fn, items, min(workers, len(items)))


def _drain_together(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(item) for item in items]`` on the calling thread and ``workers - 1`` pool threads,
    each taking the next item until none is left.

    Item by item: on a shared machine one thread may stall, and the others then take the rest
    (one bench run with contiguous halves per thread gave the spectral denoisers 1.11-1.45x on
    this 2-vCPU VM, one with a task per item 1.63-1.69x). The caller works instead of waiting
    on a future per item: every wake-up of a waiting thread is a GIL hand-off, and on a VM each
    costs tens of microseconds. B = 16, 1 -> 2 threads, 9 interleaved passes, a pool of 2 with
    the caller waiting against the caller and 1 pool thread: fill blanks 1.40x -> 1.72x, speed
    1.49x -> 1.67x, Wiener 1.54x -> 1.66x, volume 1.41x -> 1.53x (wavelet and gating within
    0.04x). The first error stops the taking of new items and is raised once all threads rest.
    A nested call, from inside an item, finishes on its caller's thread if no pool thread is free.
    """
    results: list[Any] = [None] * len(items)
    caller = threading.current_thread()
    taken = iter(range(len(items)))  # next() on it is atomic under the GIL
    failed: list[BaseException] = []

    def drain() -> None:
        if threading.current_thread() is not caller:
            _one_thread_here()
        for i in taken:
            if failed:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as error:
                failed.append(error)
                return

    helpers = [_item_pool(workers - 1).submit(drain) for _ in range(workers - 1)]
    drain()
    for helper in helpers:
        # a helper that has not started has nothing left to take: cancelled, not waited for
        # (a nested call from a pool thread would otherwise wait on a task queued behind itself)
        if not helper.cancel():
            helper.result()
    if failed:
        raise failed[0]
    return results


@contextmanager
def one_torch_thread() -> Iterator[int]:
    """Run the block on one torch thread; yields the thread count the caller had (restored after).

    Why: a batch whose items run on :func:`parallel_map` must not run any op on several torch
    threads around them either (a clone of the input, the copy of each part into the result).
    After every OpenMP region its worker threads spin for ~7 ms before they sleep (libgomp's
    default wait policy; measured here: a 0.4 ms clone at 2 threads followed by a 10 ms sleep
    cost 7.7 ms of CPU, 0.45 ms with ``OMP_WAIT_POLICY=passive``), and on a 2-vCPU machine that
    spinner takes a core from the items: per-clip CPU time of a B = 16 call doubled at 2
    threads (fill blanks 0.55 -> 1.06 ms, volume 0.91 -> 1.86 ms).
    """
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield threads
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def _one_thread_here() -> None:
    """Give this pool thread's own OpenMP and MKL settings one thread.

    Why: torch's thread count is process-wide, but OpenMP's and MKL's are per thread, and a
    new thread starts with the machine's count. torch sets a thread's own values on its first
    ``parallel_for``; an MKL FFT is not one. So on a new pool thread, ``torch.fft`` calls ran on
    an OpenMP team of all the cores while ``torch.get_num_threads()`` read 1, until the thread's
    first other op: measured here, an rfft + irfft of a 10 s clip's frames took 0.58 ms of wall
    time and 1.14 ms of CPU on such a thread (1.00 / 1.00 ms on the caller). The actions run an
    elementwise op early in every item, so on the bench they measured the same with and without
    this call (9 interleaved passes, B = 16); an item of FFTs only (the bench's vector
    reference on its first pass) did not. The call runs while the caller is inside
    :func:`parallel_map`, which holds the process-wide count at 1 until every started item
    thread is done, so setting 1 here changes only this thread's values.
    """
    torch.set_num_threads(1)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _item_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, kept between calls.

    Starting the threads on every call cost ~0.04 ms per item (0.6 ms per batch of 16), against
    0.013 ms with a kept pool. A forked child starts with no pools (the parent's threads do not
    exist there).
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avalign-items")
        return pool


def _forget_pools() -> None:
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def cpu_chunked(
    *per_item_params: str, parallel_items: bool = False, chunk_samples: int | None = None
) -> Callable[[F], F]:
    """Run a ``fn(x, sample_rate, ...)`` on a CPU batch in chunks of whole items.

    ``per_item_params`` name the arguments that may hold one value per item (a sequence or a
    (B,) tensor); they are sliced with the batch, anything else is passed as is. Items never
    interact in the actions, so the result equals one call on the whole batch (batch == single
    still holds exactly). Outputs: a tensor (concatenated) or a (tensor, list) pair. CUDA
    batches and arguments that do not fit the batch (left to ``fn`` to reject) go through whole.
    When ``fn`` takes an ``out`` tensor (the shape of ``x``), each chunk is written into its
    rows of it (allocated here unless the caller passed one) instead of being copied there.
    With ``parallel_items`` several torch threads run several chunks at a time, one each
    (:func:`parallel_map`: scales better for the denoisers, speed and pitch), and a batch on n
    threads is cut into at least n chunks, so that no op ever runs on several threads: the
    result is then bit-identical whatever the thread count (a conv1d split over 2 threads was
    1 ulp off the 1-thread result). When equal chunks would be fewer than
    :data:`CHUNKS_PER_THREAD` per thread, they shrink towards the end of the batch instead
    (:func:`guided_starts`), so the threads finish together. Otherwise each op splits its rows
    over the threads.
    ``chunk_samples`` overrides :data:`CPU_CHUNK_SAMPLES` for a function whose temporaries are
    small enough to share a chunk.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            x = bound.arguments.get("x")
            if not isinstance(x, Tensor) or x.dim() != 3 or x.device.type != "cpu":
                return fn(*args, **kwargs)
            b = x.shape[0]
            limit = CPU_CHUNK_SAMPLES if chunk_samples is None else chunk_samples
            per_call = max(1, limit // max(1, x.shape[1] * x.shape[2]))
            threads = torch.get_num_threads()
            if parallel_items and threads > 1:
                per_call = min(per_call, -(-b // threads))  # a chunk per thread at least
            if b <= per_call:
                if parallel_items and threads > 1:  # one item: still on one thread
                    with one_torch_thread():
                        return fn(*args, **kwargs)
                return fn(*args, **kwargs)
            for name in per_item_params:
                value = bound.arguments.get(name)
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] != b:
                    return fn(*args, **kwargs)
                if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                    if len(value) != b:
                        return fn(*args, **kwargs)
            if parallel_items and threads > 1:
                starts = guided_starts(b, per_call, threads)
            else:
                starts = list(range(0, b, per_call))
            # an ``fn`` with an ``out`` argument writes each chunk straight into its rows of the
            # result (speed_change: the copy of every part into the result was ~5 % of its time)
            out: Tensor | None = None
            if "out" in signature.parameters:
                out = bound.arguments.get("out")
                if out is None:
                    out = x.new_empty(x.shape)
            chunks = []
            for start, stop in zip(starts, [*starts[1:], b], strict=True):
                chunk = dict(bound.arguments)
                chunk["x"] = x[start:stop]
                if out is not None:
                    chunk["out"] = out[start:stop]
                for name in per_item_params:
                    value = chunk.get(name)
                    if isinstance(value, Tensor) and value.dim() > 0:
                        chunk[name] = value[start:stop]
                    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                        chunk[name] = list(value)[start:stop]
                chunks.append(chunk)
            if not parallel_items:
                parts = (fn(**chunk) for chunk in chunks)  # lazily: each part freed once copied
                return _assemble(b, starts, parts, out)
            # the items on several threads, each op on one (see one_torch_thread); each part is
            # copied into the result by the thread that made it (on the caller alone, the copy of
            # a 16-clip batch was 1.3 ms in which the other thread idled: ~6 % of a Wiener batch)
            with one_torch_thread() as threads:
                if out is not None:  # the parts wrote their rows already
                    parts_list = parallel_map(lambda chunk: fn(**chunk), chunks, workers=threads)
                    return _assemble(b, starts, parts_list, out)
                result: list[Tensor] = []
                allocating = threading.Lock()

                def made_and_placed(job: tuple[int, dict[str, Any]]) -> Any:
                    start, chunk = job
                    part = fn(**chunk)
                    tensor = part[0] if isinstance(part, tuple) else part
                    with allocating:
                        if not result:
                            result.append(tensor.new_empty((b, *tensor.shape[1:])))
                    result[0].narrow(0, start, tensor.shape[0]).copy_(tensor)
                    return (None, part[1]) if isinstance(part, tuple) else None

                jobs = list(zip(starts, chunks, strict=True))
                placed = parallel_map(made_and_placed, jobs, workers=threads)
                return _assemble(b, starts, placed, result[0])

        return wrapper  # type: ignore[return-value]

    return decorate


def guided_starts(b: int, most: int, threads: int) -> list[int]:
    """First item of each chunk of a ``b``-item batch on ``threads`` item threads, at most
    ``most`` items a chunk: equal chunks when that makes at least :data:`CHUNKS_PER_THREAD` per
    thread, else chunks that shrink towards the end (guided self-scheduling: at most the
    remaining items over the thread count, so the last chunks are single clips).

    Why: the threads take chunks as they free up, so the last chunk decides when the batch
    ends, and with two coarse chunks per thread one thread idled while the other finished a long
    one. Loudness on the bench's B = 16 in four-clip chunks (two loud clips went through the
    limiter, 3.8 and 7.7 ms against ~1.4 ms for the others): chunks of 8.1, 11.9, 5.5 and 6.3 ms
    on one thread, so two threads could not end before 18.2 ms of the 31.8 ms. Measured at 2
    threads (the thread that finished first idle for this share of the call, medians of 12
    calls, two runs): loudness 25-27 % -> 3 %, wavelet 12-29 % -> 6-8 %, fill blanks 5-28 % ->
    3-6 % with chunks of 4, 4, 4, 2, 1 and 1 clips. Speed change's B = 16 (eight two-clip
    chunks, four per thread at 2 threads) lost 3 % at 2 threads with a shrinking tail (one
    more, slower single-clip chunk), so four chunks per thread keep equal chunks. Items never
    interact, so the result does not depend on the chunking.
    """
    if -(-b // most) >= CHUNKS_PER_THREAD * threads:
        return list(range(0, b, most))
    starts: list[int] = []
    start = 0
    while start < b:
        starts.append(start)
        start += max(1, min(most, -(-(b - start) // threads)))
    return starts


CHUNKS_PER_THREAD = 4
"""Equal chunks at least this many per item thread need no shrinking tail (see
:func:`guided_starts`)."""


def _assemble(b: int, starts: list[int], parts: Iterable[Any], out: Tensor | None) -> Any:
    """The parts of a chunked call as one result (and the concatenated reports, if any).

    Each part goes into one preallocated output as soon as it exists, rather than all parts
    kept alive and concatenated (a second copy of the batch into fresh memory: measured 4 ms
    for 16 clips, a third of speed_change's batched time). ``out`` given: the parts wrote their
    rows there already.
    """
    written = out is not None
    reports: list[Any] = []
    pairs = False
    for start, part in zip(starts, parts, strict=True):
        if isinstance(part, tuple):
            pairs = True
            part, report = part
            reports.extend(report)
        if written:
            continue
        if out is None:
            out = part.new_empty((b, *part.shape[1:]))
        out[start : start + part.shape[0]] = part
    return (out, reports) if pairs else out
