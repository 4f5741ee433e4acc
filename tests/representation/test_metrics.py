"""Metrics on hand-made embeddings, where the right answer is known without a model."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.representation import metrics as M


def test_identity_similarity_retrieves_every_pair_first():
    out = M.retrieval(np.eye(7))
    assert out["a2v_r1"] == out["v2a_r1"] == 1.0
    assert out["a2v_r5"] == out["v2a_r5"] == 1.0
    assert out["a2v_median_rank"] == 1.0


def test_retrieval_counts_ranks_per_direction():
    # audio 0 prefers video 1 (its own video 0 is second); every other pair is first.
    s = np.eye(4)
    s[0, 1] = 2.0
    out = M.retrieval(s, ks=(1, 2))
    assert out["a2v_r1"] == 0.75 and out["a2v_r2"] == 1.0
    # as a video query, video 1 now finds audio 0 above audio 1 as well
    assert out["v2a_r1"] == 0.75


def test_ties_do_not_count_as_a_hit():
    out = M.retrieval(np.ones((3, 3)))
    assert out["a2v_r1"] == 0.0 and out["v2a_r1"] == 0.0


def test_retrieval_rejects_non_square():
    with pytest.raises(ValueError):
        M.retrieval(np.zeros((2, 3)))


def test_probe_split_is_stratified_and_stable():
    labels = np.repeat(np.arange(4), 10)
    labels[-3:] = -1  # unknown category: never probed
    train, test = M.probe_split(labels, 0.5, seed=0)
    assert set(train).isdisjoint(test)
    assert not (labels[np.r_[train, test]] < 0).any()
    assert np.bincount(labels[test]).tolist() == [5, 5, 5, 4]
    again = M.probe_split(labels, 0.5, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_linear_probe_on_separable_and_on_random_features():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    centres = np.eye(3) * 10
    x = centres[y] + rng.normal(size=(90, 3))
    idx = rng.permutation(90)
    tr, te = idx[:45], idx[45:]
    good = M.linear_probe(x[tr], y[tr], x[te], y[te], 3)
    assert good["top1"] == 1.0
    assert np.trace(np.array(good["confusion"])) == 45
    noise = rng.normal(size=(90, 3))
    assert M.linear_probe(noise[tr], y[tr], noise[te], y[te], 3)["top1"] < 0.7


def test_sync_detection_perfect_and_chance():
    perfect = M.sync_detection(np.full(20, 0.9), np.full(20, 0.1))
    assert perfect["auroc"] == 1.0 and perfect["accuracy"] == 1.0
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    chance = M.sync_detection(a, b, calibrate=np.arange(2000) % 2 == 0)
    assert abs(chance["auroc"] - 0.5) < 0.05 and abs(chance["accuracy"] - 0.5) < 0.06


def test_mean_std_uses_sample_std():
    out = M.mean_std([1.0, 2.0, 3.0])
    assert out == {"mean": 2.0, "std": 1.0, "n": 3}
