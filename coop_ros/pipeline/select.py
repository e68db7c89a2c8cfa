"""Selection stage: the best of the refined hypotheses.

Weight-free (the scorer slot's ``uses_evidence``): every hypothesis already carries the image
evidence of its pose (:mod:`coop_ros.evidence`, computed in the detection's evidence crop, so the
scores of all hypotheses are comparable; the refinement only ever raised it, so a refined pose
never loses to its own coarse pose); they are sorted by it. A learned scorer (Co-op's selection
network) scores each hypothesis rendered in the detection's query crop, as it was trained; the
evidence terms stay in ``score_terms``.

:func:`rival` then looks for a hypothesis that is another pose of the object and explains the
image nearly as well as the best (an end-over-end flip of a box or can, a mirrored view of a
flat part): the image does not decide between them, and the estimator says so in the result's
covariance (``PoseResult.ambiguous``).
"""
from __future__ import annotations

import numpy as np

from coop_ros.backends.base import Backend, ImageCrop
from coop_ros.pipeline.views import render_view
from coop_ros.pipeline.results import Hypothesis

__all__ = ["score_hypotheses", "rival", "RIVAL_MARGIN", "RIVAL_DISTANCE"]

#: a rival's evidence is within this of the best's (the evidence is in [0, 1])
RIVAL_MARGIN = 0.01
#: ... and it is another pose: maximum surface distance (declared symmetries aside) above this
#: fraction of the diameter. Both chosen on real LM-O dev (RGB, 5 hypotheses, every 4th image, 355
#: targets): 99 results have such a rival, 86 % of them are wrong by more than 0.3 diameter (69 %
#: of all), and widening their rotation covariance raises the Spearman correlation of predicted
#: and actual error from 0.34 to 0.39 (bench/eval_real.py prints the counts on all 691).
RIVAL_DISTANCE = 0.5


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


def rival(hyps: list[Hypothesis], points: np.ndarray, syms: np.ndarray, diameter: float
          ) -> Hypothesis | None:
    """The best-scoring rival of ``hyps[0]`` (sorted best first, evidence scores): a hypothesis
    whose score is within :data:`RIVAL_MARGIN` of the best's and whose pose differs from it by a
    maximum surface distance (MSSD, over ``points`` (N, 3) [m] and the declared symmetry
    transforms ``syms`` (S, 4, 4)) above :data:`RIVAL_DISTANCE` x ``diameter`` [m]; None when
    there is none."""
    from coop_ros.bop.metrics import mssd
    best = hyps[0]
    for h in hyps[1:]:
        if not (np.isfinite(h.score) and best.score - h.score < RIVAL_MARGIN):
            break                                   # sorted: no later one is closer
        if mssd(h.T[:3, :3], h.T[:3, 3], best.T[:3, :3], best.T[:3, 3], points,
                syms) > RIVAL_DISTANCE * diameter:
            return h
    return None
