"""Off-screen events: isolated sounds the picture does not explain, and what the scorer makes of them."""

from __future__ import annotations

import numpy as np

from avalign.describe.offscreen import motion_ratio, offscreen_events, offscreen_seconds

EVENT = {"start_s": 1.0, "end_s": 2.0, "share": 0.5, "bins": 30, "low_hz": 500.0, "high_hz": 2000.0, "attack_s": 0.02}


def _visual(values, rate=10.0):
    return {"motion_energy": {"rate_hz": rate, "values": list(values)}}


def test_motion_ratio_compares_the_event_with_the_rest():
    values = np.ones(40)
    values[10:20] = 3.0
    assert motion_ratio(_visual(values), 1.0, 2.0) == 3.0
    assert motion_ratio(_visual(values), 0.0, 10.0) is None  # nothing outside
    assert motion_ratio({}, 1.0, 2.0) is None
    only_then = np.zeros(40)
    only_then[10:20] = 1.0
    assert motion_ratio(_visual(only_then), 1.0, 2.0) == float("inf")  # moves only with the sound
    assert motion_ratio(_visual(np.zeros(40)), 1.0, 2.0) is None
    audio = {"isolated_events": [EVENT], "speech_s": 0.0, "duration_s": 4.0}
    assert offscreen_events(audio, _visual(only_then)) == []  # explained


def test_only_unexplained_events_on_clips_without_speech_count():
    still, moving = _visual(np.ones(40)), _visual([1.0] * 10 + [2.0] * 10 + [1.0] * 20)
    audio = {"isolated_events": [EVENT], "speech_s": 0.0, "duration_s": 4.0}
    [event] = offscreen_events(audio, still)
    assert event["motion_ratio"] == 1.0 and offscreen_seconds(audio, still) == 1.0
    assert offscreen_events(audio, moving) == []  # something on screen changes with it
    assert offscreen_events({**audio, "speech_s": 3.0}, still) == []  # speech is content
    assert offscreen_seconds({"speech_s": 0.0}, still) == 0.0
    swelling = {**audio, "isolated_events": [{**EVENT, "attack_s": 0.4}]}
    assert offscreen_events(swelling, still) == []  # it swells in: a passing car, part of the scene
    assert offscreen_events({**audio, "duration_s": 2.4}, still) == []  # too short to tell


def test_a_known_offset_moves_the_lookup_to_picture_time():
    picture = _visual([1.0] * 18 + [3.0] * 10 + [1.0] * 12)  # motion at 1.8-2.8 s
    audio = {"isolated_events": [EVENT], "speech_s": 0.0, "duration_s": 4.0}  # heard at 1.0-2.0 s
    assert offscreen_events(audio, picture, offset_ms=-800.0) == []  # audio 800 ms early: explained
    [event] = offscreen_events(audio, picture)
    assert event["motion_ratio"] < 1.5
