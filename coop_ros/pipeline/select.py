"""Selection stage: score every refined hypothesis by render and compare, keep the best.

All hypotheses are rendered in the SAME crop (the detection's query crop), so their scores are
comparable; the backend's :class:`~coop_ros.backends.base.HypothesisScorer` gives the score.
"""
from __future__ import annotations

import numpy as np

from coop_ros.backends.base import Backend, ImageCrop
from coop_ros.pipeline.refine import render_view
from coop_ros.pipeline.results import Hypothesis

__all__ = ["score_hypotheses"]


def score_hypotheses(hyps: list[Hypothesis], query_crop: ImageCrop, renderer, key: str,
                     backend: Backend) -> list[Hypothesis]:
    """Set ``score`` / ``score_terms`` of every hypothesis (rendered in ``query_crop``) and return
    them sorted best first (failed refinements keep their coarse pose and are scored too)."""
    S = query_crop.size
    for h in hyps:
        if h.T is None or h.T[2, 3] <= 0:
            h.score, h.score_terms = 0.0, {}
            continue
        rend = render_view(renderer, key, h.T, query_crop.K, S)
        h.score, h.score_terms = backend.scorer.score(query_crop, rend)
    return sorted(hyps, key=lambda h: -(h.score if np.isfinite(h.score) else -1.0))
