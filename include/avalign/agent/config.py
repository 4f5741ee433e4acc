"""Settings of one alignment rebuild, with the defaults a data engineer gets without asking."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from avalign.errors import AvalignError


@dataclass(frozen=True)
class AlignConfig:
    """Loop, gate and decoding settings. Thresholds are in score units ([0, 1])."""

    max_cycles: int = 3
    # Stop early once both scores pass. Calibrated on the evaluation benchmark (docs/architecture.md,
    # "Reflection scores"): at 0.75 half or more of the clean controls pass and almost no corrupted clip.
    alignment_threshold: float = 0.75
    sync_threshold: float = 0.75
    # An edit is kept only if its combined score beats the untouched clip's by this margin.
    min_improvement: float = 0.01
    # A cycle whose edit (volume aside) removes more than this much of the sound is rejected.
    max_energy_drop_db: float = 10.0
    planner: str = "rules"  # rules | llm
    # GX gate
    max_quarantined_share: float = 0.25
    min_improved_or_passed_share: float = 0.5
    duration_tolerance_s: float = 0.025
    # decoding / resources
    model_sample_rate: int = 16000
    frame_rate: float = 25.0
    frame_side: int = 160
    max_duration_s: float = 600.0
    write_outputs: bool = True
    # An exported learned av_scorer (avalign.representation.export): a partition task that starts
    # its own tritonserver serves it as av_scorer. "" = the default scorer. No effect with triton_url.
    scorer_repository: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.max_cycles <= 10:
            raise AvalignError(f"max_cycles must be in [1, 10], got {self.max_cycles}")
        for name in ("alignment_threshold", "sync_threshold", "max_quarantined_share",
                     "min_improved_or_passed_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.01:
                raise AvalignError(f"{name} must be in [0, 1], got {value}")
        if self.planner not in {"rules", "llm"}:
            raise AvalignError(f"planner must be 'rules' or 'llm', got {self.planner!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "AlignConfig":
        """Build from a dict (e.g. DAG params), ignoring None values; unknown keys are an error."""
        data = {k: v for k, v in (data or {}).items() if v is not None}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise AvalignError(f"unknown AlignConfig settings: {unknown}")
        coerced = {}
        for key, value in data.items():
            kind = type(getattr(cls(), key))
            coerced[key] = kind(value) if kind is not bool else (str(value).lower() in {"1", "true", "yes"})
        return cls(**coerced)

    def combined(self, alignment: float, sync: float) -> float:
        """The single number cycles are ranked by: the mean of both scores."""
        return 0.5 * (alignment + sync)

    def passes(self, alignment: float, sync: float, sync_known: bool = True,
               content: float | None = None) -> bool:
        """Both scores pass; a sync that cannot be measured ("cannot tell") does not block.

        The default scorer's alignment is its content term times sync, so when sync cannot be
        told the alignment is judged on ``content`` (the scorer's ``detail["content"]``) where given.
        """
        if not sync_known:
            return (alignment if content is None else content) >= self.alignment_threshold
        return alignment >= self.alignment_threshold and sync >= self.sync_threshold
