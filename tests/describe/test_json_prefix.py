"""The JSON prefix checker accepts every prefix of valid JSON and calls 'done' only on valid JSON."""

from __future__ import annotations

import json
import random

import pytest

from avalign.describe.json_prefix import JsonPrefix, is_json_prefix

PLAN = '[{"action": "time_shift", "params": {"shift_ms": -240.5e0}}, {"action": "fill_blanks", "params": {}}]'


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["num", "str", "lit"] + (["list", "obj"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "num":
        return rng.choice([0, -3, 12.5, -0.25, 1e-3, 123456])
    if kind == "str":
        return rng.choice(["", "a b", 'q"uote', "back\\slash", "tab\t", "é ü", "\u2603"])
    if kind == "lit":
        return rng.choice([True, False, None])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 3))}


def test_every_prefix_of_a_plan_is_accepted_and_the_end_is_done():
    checker = JsonPrefix()
    for i, ch in enumerate(PLAN):
        assert checker.feed(ch), PLAN[: i + 1]
        assert checker.done == (i == len(PLAN) - 1)


@pytest.mark.parametrize("seed", range(5))
def test_random_valid_json_lists_are_accepted(seed):
    rng = random.Random(seed)
    for _ in range(40):
        value = [_random_value(rng) for _ in range(rng.randint(0, 4))]
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        checker = JsonPrefix(objects_in_top=False)
        assert checker.feed(text) and checker.done, text


@pytest.mark.parametrize("seed", range(5))
def test_done_only_on_text_json_accepts(seed):
    """Mutated JSON: whenever the checker says 'done', json.loads agrees (soundness)."""
    rng = random.Random(seed)
    alphabet = '[]{}",:0123456789.eE+- tfnrulase\\'
    for _ in range(300):
        text = list(json.dumps([_random_value(rng) for _ in range(rng.randint(1, 3))]))
        for _ in range(rng.randint(1, 3)):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        text = "".join(text)
        checker = JsonPrefix(objects_in_top=False, max_string=10_000, max_depth=50)
        if checker.feed(text) and checker.done:
            assert isinstance(json.loads(text), list), text


@pytest.mark.parametrize("text", [
    "{", "x", '[{"a": 1}]]', "[1]", '[{"a" 1}]', '[{"a": 01}]', '[{"a": 1.}]', '[{"a": -}]', '[{"a": tru}',
    '[{"a": "x\ny"}]', '[{"a": "\\x"}]', '[{"a": 1,}]', "[,]", '[{"a": [1,]}]', '[{"a": 1e}]', '[{"a": "\\u12g4"}]',
])
def test_invalid_text_is_rejected(text):
    checker = JsonPrefix()
    assert not (checker.feed(text) and checker.done)
    if text in ("{", "x", "[1]", '[{"a": 1}]]', '[{"a" 1}]', '[{"a": "x\ny"}]', "[,]"):
        assert not JsonPrefix().feed(text)


def test_top_level_list_must_hold_objects_for_a_plan():
    assert not is_json_prefix("[1")
    assert is_json_prefix("[1", objects_in_top=False)
    assert is_json_prefix('[{"a": [1, 2]')  # nested lists may hold anything


def test_bounds_stop_runaway_values():
    assert not is_json_prefix('[{"' + "a" * 65)
    assert not is_json_prefix('[{"a": ' + "9" * 25)
    assert not is_json_prefix("[" * 7)
    assert not is_json_prefix("[" + " " * 9)
    assert is_json_prefix("[" + " " * 8 + "{")


def test_copy_is_independent():
    a = JsonPrefix()
    a.feed('[{"a": ')
    b = a.copy()
    assert b.feed("1}]") and b.done
    assert not a.done and a.accepts('"x"}]') and not a.done
