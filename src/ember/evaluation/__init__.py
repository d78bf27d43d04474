"""Evaluation: metrics computed from predictions, and the plots a run report shows."""
