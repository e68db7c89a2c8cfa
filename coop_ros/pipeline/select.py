"""Selection stage: the best of the refined hypotheses.

Weight-free (the scorer slot's ``uses_evidence``): every hypothesis already carries the image
evidence of its pose (:mod:`coop_ros.evidence`, computed in the detection's evidence crop, so the
scores of all hypotheses are comparable; the refinement only ever raised it, so a refined pose
never loses to its own coarse pose); they are sorted by it. A learned scorer (Co-op's selection
network) scores each hypothesis rendered in the detection's query crop, as it was trained; the
evidence terms stay in ``score_terms``.
"""
from __future__ import annotations

import numpy as np

from coop_ros.backends.base import Backend, ImageCrop
from coop_ros.pipeline.views import render_view
from coop_ros.pipeline.results import Hypothesis

__all__ = ["score_hypotheses"]


def score_hypotheses(hyps: list[Hypothesis], query_crop: ImageCrop, renderer, key: str,
                     backend: Backend) -> list[Hypothesis]:
    """Score every hypothesis (see the module docstring) and return them sorted best first."""
    if not getattr(backend.scorer, "uses_evidence", False):
        S = query_crop.size
        for h in hyps:
            if h.T is None or h.T[2, 3] <= 0:
                h.score = 0.0
                continue
            rend = render_view(renderer, key, h.T, query_crop.K, S)
            h.score, terms = backend.scorer.score(query_crop, rend)
            h.score_terms = {**h.score_terms, **{f"selection_{k}": v for k, v in terms.items()}}
    return sorted(hyps, key=lambda h: -(h.score if np.isfinite(h.score) else -1.0))
