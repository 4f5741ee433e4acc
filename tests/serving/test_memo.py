"""MemoizingClient: identical inputs are answered once, different inputs are not confused."""

from __future__ import annotations

import numpy as np

from avalign.serving.memo import MemoizingClient


class CountingClient:
    def __init__(self) -> None:
        self.calls = 0

    def describe_audio(self, audio):
        self.calls += 1
        return float(np.sum(audio))

    def score(self, audio, frames, fps, evidence):
        self.calls += 1
        return (float(audio.sum()), float(frames.mean()), fps, evidence["k"])

    def model_version(self, model):
        self.calls += 1
        return "1"


def test_repeated_calls_are_answered_from_memory_and_inputs_are_not_confused():
    inner = CountingClient()
    client = MemoizingClient(inner)
    audio = np.linspace(0, 1, 1000, dtype=np.float32)
    frames = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    assert client.describe_audio(audio) == client.describe_audio(audio.copy())
    assert client.score(audio, frames, 25.0, {"k": 1}) == client.score(audio, frames, 25.0, {"k": 1})
    assert inner.calls == 2 and client.hits == 2
    other = audio.copy()
    other[500] += 1e-3  # one sample differs
    assert client.describe_audio(other) != client.describe_audio(audio)
    assert client.score(audio, frames, 25.0, {"k": 2})[3] == 2  # evidence is part of the key
    assert client.score(audio, frames, 30.0, {"k": 1})[2] == 30.0
    client.describe_audio(audio.astype(np.float64))  # another dtype is another input
    assert inner.calls == 6
    client.model_version("x"), client.model_version("x")  # not memoised
    assert inner.calls == 8


def test_wrappers_of_other_connections_share_one_memory_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    first, second = CountingClient(), CountingClient()
    client = MemoizingClient(first)
    twin = client.sharing(second)
    clips = [np.full(100, i, dtype=np.float32) for i in range(20)]
    assert [client.describe_audio(c) for c in clips] == [100.0 * i for i in range(20)]
    with ThreadPoolExecutor(4) as pool:  # the twin finds every answer the first one stored
        answers = list(pool.map(twin.describe_audio, clips * 3))
    assert answers == [100.0 * i for i in range(20)] * 3
    assert second.calls == 0 and first.calls == 20
    assert client.hits == twin.hits == 60 and client.misses == 20
    assert twin.describe_audio(np.ones(3, dtype=np.float32)) == 3.0 and second.calls == 1
