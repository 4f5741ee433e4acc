"""The loop: edits apply to the original audio, the best cycle is kept only if it beats the
untouched clip, and the output keeps the exact duration."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.agent.config import AlignConfig
from avalign.agent.loop import align_decoded, decode_clip
from avalign.agent.planner import PlanDecision, RulePlanner
from avalign.errors import AvalignError
from tests.agent.fakes import MeasuringClient


class ScriptedPlanner:
    """Plans a fixed sequence of plans, one per cycle (unit-test double)."""

    name = "scripted"

    def __init__(self, plans):
        self.plans = list(plans)

    def plan(self, context):
        plan = self.plans[min(context.cycle - 1, len(self.plans) - 1)]
        return PlanDecision(plan=plan, rationale=["scripted"], planner=self.name)


def test_time_shift_repairs_a_late_clip(agent_clips):
    config = AlignConfig()
    clip = decode_clip(agent_clips["late"], config)
    run = align_decoded(clip, client=MeasuringClient(), planner=RulePlanner(), config=config)
    assert run.before["offset_ms"] == pytest.approx(240.0, abs=40.0)
    assert run.outcome == "improved"
    shift = run.best_plan[-1]
    assert shift["action"] == "time_shift" and shift["params"]["shift_ms"] == pytest.approx(-240.0, abs=40.0)
    assert run.after["sync"] > run.before["sync"]


def test_clean_clip_is_left_untouched(agent_clips):
    config = AlignConfig()
    run = align_decoded(decode_clip(agent_clips["clean"], config), client=MeasuringClient(),
                        planner=RulePlanner(), config=config)
    assert run.outcome == "kept_original" and run.best_plan == []
    assert run.reason.startswith("no_edit_planned")


def test_every_cycle_edits_the_original_audio(agent_clips):
    config = AlignConfig(max_cycles=3, alignment_threshold=1.0, sync_threshold=1.0)
    clip = decode_clip(agent_clips["clean"], config)
    gain = [{"action": "volume_adjust", "params": {"target_lufs": t, "peak_ceiling_db": -1.0}}
            for t in (-30.0, -20.0, -35.0)]
    client = MeasuringClient()
    run = align_decoded(clip, client=client, planner=ScriptedPlanner(gain), config=config)
    assert len(run.cycles) == 3
    # before + 3 cycles scored; each cycle's audio is the ORIGINAL with one gain, never stacked:
    originals = clip.audio_model
    for audio in client.scored_audio[1:]:
        ratio = np.dot(audio, originals) / np.dot(originals, originals)
        residual = audio - ratio * originals
        assert np.sqrt(np.mean(residual**2)) < 1e-3 * np.sqrt(np.mean(audio**2)) + 1e-6


def test_edit_that_does_not_beat_the_original_is_not_kept(agent_clips):
    config = AlignConfig(max_cycles=1)
    clip = decode_clip(agent_clips["clean"], config)
    harmful = [[{"action": "time_shift", "params": {"shift_ms": 400.0}}]]
    run = align_decoded(clip, client=MeasuringClient(), planner=ScriptedPlanner(harmful), config=config)
    assert run.outcome == "kept_original"
    assert run.reason.startswith("no_improvement")
    assert run.after == run.before


def test_invalid_plan_is_rejected_not_run(agent_clips):
    config = AlignConfig(max_cycles=1)
    clip = decode_clip(agent_clips["clean"], config)
    bad = [[{"action": "rm -rf /", "params": {}}]]
    run = align_decoded(clip, client=MeasuringClient(), planner=ScriptedPlanner(bad), config=config)
    assert run.outcome == "kept_original"
    assert "invalid plan" in (run.cycles[0].fallback_reason or "")


def test_config_rejects_unknown_and_out_of_range_settings():
    with pytest.raises(AvalignError, match="unknown AlignConfig settings"):
        AlignConfig.from_dict({"max_cycle": 3})
    with pytest.raises(AvalignError, match="max_cycles"):
        AlignConfig.from_dict({"max_cycles": 0})
    assert AlignConfig.from_dict({"max_cycles": "2", "planner": None}).max_cycles == 2
