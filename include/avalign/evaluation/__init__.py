"""Evaluation: benchmark grid with ground truth, baseline agents, the harness."""
