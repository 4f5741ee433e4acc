"""Fault tests reuse the agent's small procedural clips (late = 240 ms offset, clean, noisy)."""

from tests.agent.conftest import agent_clips  # noqa: F401  (a fixture, registered by import)
