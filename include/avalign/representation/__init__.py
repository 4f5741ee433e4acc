"""AV representation learning on raw, aligned and clean audio, and its downstream evaluation.

Why: aligning data is only worth it if models trained on the aligned data are better. This package
trains the same contrastive audio-visual learner on each variant of one dataset and compares them
on a clean held-out split (docs/representation.md).
"""
