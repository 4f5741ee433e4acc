"""Baseline agents for the evaluation: the same loop, other planners.

- ``noop``: never edits (the untouched dataset);
- ``random``: 1-2 random actions with random in-bounds parameters (the paper's ablation);
- ``always_denoise``: the Wiener filter on every clip, whatever the evidence;
- ``rules``: the embedded rule planner; ``llm``: the Triton planner, when one is configured.
"""

from __future__ import annotations

import zlib

import numpy as np

from avalign.agent.planner import PlanDecision, PlanningContext, RulePlanner


class NoopPlanner:
    name = "noop"

    def plan(self, context: PlanningContext) -> PlanDecision:
        return PlanDecision([], ["baseline: never edit"], self.name)


class RandomPlanner:
    """Random actions and parameters, seeded by the clip's descriptions and the cycle."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def plan(self, context: PlanningContext) -> PlanDecision:
        from avalign.actions.schema import ACTION_SCHEMAS

        key = zlib.crc32(f"{context.audio_description}|{context.visual_description}|{context.cycle}".encode())
        rng = np.random.default_rng([self.seed, key])
        names = sorted(ACTION_SCHEMAS)
        plan = []
        for name in rng.choice(names, size=int(rng.integers(1, 3)), replace=False):
            params = {}
            for pname, spec in ACTION_SCHEMAS[str(name)].items():
                if spec.type is bool:
                    params[pname] = bool(rng.integers(2))
                elif spec.type is int:
                    params[pname] = int(rng.integers(int(spec.minimum), int(spec.maximum) + 1))
                else:
                    params[pname] = round(float(rng.uniform(spec.minimum, spec.maximum)), 3)
            plan.append({"action": str(name), "params": params})
        return PlanDecision(plan, ["baseline: random actions and parameters"], self.name)


class AlwaysDenoisePlanner:
    name = "always_denoise"

    def plan(self, context: PlanningContext) -> PlanDecision:
        return PlanDecision([{"action": "wiener_filter", "params": {}}], ["baseline: always denoise"], self.name)


def make_agent(name: str, client=None):
    if name == "noop":
        return NoopPlanner()
    if name == "random":
        return RandomPlanner()
    if name == "always_denoise":
        return AlwaysDenoisePlanner()
    if name == "rules":
        return RulePlanner()
    if name == "llm":
        from avalign.agent.llm_planner import LLMPlanner

        return LLMPlanner(client)
    raise ValueError(f"unknown agent {name!r}; choose from noop, random, always_denoise, rules, llm")
