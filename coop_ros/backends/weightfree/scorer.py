"""Weight-free hypothesis scorer: the image evidence of :mod:`coop_ros.evidence`.

In the pipeline the evidence of every hypothesis is computed once per detection, in its evidence
crop (``uses_evidence``: :mod:`coop_ros.pipeline.select` sorts by it). ``score`` computes the same
terms for a crop pair handed in directly (the query crop is then the evaluation area).
"""
from __future__ import annotations

import numpy as np

from coop_ros.backends.base import HypothesisScorer, ImageCrop
from coop_ros.evidence import Evidence, EvidenceWeights

__all__ = ["RenderCompareScorer"]


class RenderCompareScorer(HypothesisScorer):
    """Classical implementation of :class:`coop_ros.backends.base.HypothesisScorer`: the image
    evidence (region statistics, contour, appearance, depth) of a rendering in the query crop.

    Args:
        weights: :class:`coop_ros.evidence.EvidenceWeights` (None: the defaults).
    """

    uses_evidence = True

    def __init__(self, weights: EvidenceWeights | None = None):
        self.weights = weights

    def score(self, query: ImageCrop, render: ImageCrop) -> tuple[float, dict]:
        S = query.size
        if render.size != S:
            raise ValueError(f"rendering is {render.size} px, query {S} px")
        ev = Evidence(query.rgb, query.K, (0.0, 0.0, float(S), float(S)), depth=query.depth,
                      size=S, margin=0.0, weights=self.weights)
        depth = None if render.depth is None else np.asarray(render.depth)[None]
        t = ev.terms(np.asarray(render.rgb)[None], np.asarray(render.mask, bool)[None], depth)
        return float(ev.scores(t)[0]), Evidence.as_dict(t[0])
