"""AlignConfig: the pass rule of the loop and the gate."""

from __future__ import annotations

import pytest

from avalign.agent.config import AlignConfig
from avalign.errors import AvalignError


def test_both_scores_must_pass_when_sync_is_known() -> None:
    config = AlignConfig(alignment_threshold=0.75, sync_threshold=0.75)
    assert config.passes(0.8, 0.9)
    assert not config.passes(0.7, 0.9)
    assert not config.passes(0.8, 0.7)


def test_unknown_sync_is_judged_on_the_content_term() -> None:
    config = AlignConfig(alignment_threshold=0.75)
    # a "cannot tell" sync (0.5) halves the product: the content term decides instead
    assert config.passes(0.45, 0.5, sync_known=False, content=0.9)
    assert not config.passes(0.35, 0.5, sync_known=False, content=0.7)
    # scorers without a content term (the learned av_scorer) are judged on alignment
    assert config.passes(0.8, 0.5, sync_known=False)
    assert not config.passes(0.45, 0.5, sync_known=False)


def test_thresholds_outside_the_score_range_are_rejected() -> None:
    with pytest.raises(AvalignError, match="alignment_threshold"):
        AlignConfig(alignment_threshold=1.5)
