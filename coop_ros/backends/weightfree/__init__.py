"""Weight-free backend: classical estimators in the slots where Co-op has networks.

* coarse matcher: :class:`~coop_ros.backends.weightfree.matcher.WeightFreeMatcher` (SIFT +
  oriented-edge alignment with in-plane rotation search -> per-patch matches + template scores);
* flow estimator: :class:`~coop_ros.backends.weightfree.flow.DisFlowEstimator` (OpenCV DIS,
  forward-backward consistency -> Laplace scale, certainty, sensitivity);
* hypothesis scorer: :class:`~coop_ros.backends.weightfree.scorer.RenderCompareScorer`
  (the image evidence of :mod:`coop_ros.evidence`: region statistics, contour, appearance,
  + depth agreement in RGB-D).

Registered as ``"weight-free"`` in :func:`coop_ros.backends.get_backend`.
"""
from coop_ros.backends import register_backend
from coop_ros.backends.base import Backend
from coop_ros.backends.weightfree.flow import DisFlowEstimator
from coop_ros.backends.weightfree.matcher import WeightFreeMatcher
from coop_ros.backends.weightfree.scorer import RenderCompareScorer

__all__ = ["DisFlowEstimator", "WeightFreeMatcher", "RenderCompareScorer", "make_backend"]


def make_backend(config=None) -> Backend:
    """The weight-free :class:`~coop_ros.backends.base.Backend` (config is not needed)."""
    return Backend(name="weight-free", matcher=WeightFreeMatcher(), flow=DisFlowEstimator(),
                   scorer=RenderCompareScorer())


register_backend("weight-free", make_backend)
