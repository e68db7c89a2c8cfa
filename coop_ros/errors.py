"""Exceptions of coop_ros and the failure reasons they carry. Every message names the bad input
and what was expected.

An error that becomes a failed :class:`~coop_ros.pipeline.results.PoseResult` carries a
:class:`Reason` and a detail; ``str(error)`` is ``"<reason>: <detail>"`` (the text published in
``ObjectPoseEstimate.reason``), without a reason just the detail. Nothing takes that text apart
again: code that needs the kind of failure reads ``error.reason``.
"""
from __future__ import annotations

from enum import Enum

__all__ = ["Reason", "reason_text", "CoopError", "InputError", "BoxOutsideImageError",
           "EstimationError", "RenderError"]


class Reason(str, Enum):
    """Why a detection got no pose (``PoseResult.reason_code``), or why a hypothesis kept its
    coarse pose (``Hypothesis.reason_code``).

    A ``str`` subclass whose value is the word published at the start of the reason text; it
    compares, hashes, prints and formats as that word (``Enum`` alone would hash and print by
    member name: ``"stale_input" in {Reason.STALE_INPUT: 1}`` must hold). Written for Python 3.10
    (ROS 2 Humble), which has no ``enum.StrEnum``.
    """

    UNKNOWN_OBJECT = "unknown_object"
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    BAD_INPUT = "bad_input"
    EMPTY_DEPTH = "empty_depth"
    NO_TEMPLATE_MATCHED = "no_template_matched"
    TOO_FEW_CORRESPONDENCES = "too_few_correspondences"
    PNP_FAILED = "pnp_failed"
    REGISTRATION_FAILED = "registration_failed"
    REFINEMENT_FAILED = "refinement_failed"
    LOW_SCORE = "low_score"
    NUMERICAL_ERROR = "numerical_error"
    # the pose contradicts the measurements (coop_ros.pipeline.gate: behind / too near / too far,
    # projected box vs detection box, rendered vs observed depth); the detail has the numbers
    IMPLAUSIBLE_POSE = "implausible_pose"
    # an unexpected error while estimating one detection (a bug or an unforeseen input): that
    # detection fails with the exception named, the rest of the frame is answered
    INTERNAL_ERROR = "internal_error"
    # status "skipped" (work not done on purpose, see PoseEstimator.estimate)
    BUDGET_EXHAUSTED = "budget_exhausted"   # the frame's time budget was spent before it
    CANCELLED = "cancelled"                 # should_stop() said stop (node shutting down)
    MAX_DETECTIONS = "max_detections"       # ranked below the node's max_detections
    STALE_INPUT = "stale_input"             # the frame was older than discard_older_than_ms
    # an ok hypothesis that the time budget left unrefined (Hypothesis.reason_code; T = T_coarse)
    NOT_REFINED = "not_refined"
    # a tracked object whose track ended (coop_ros.pipeline.track: left the view, the image
    # evidence fell, the detection disagrees, ...): no pose; the detail names the cause
    TRACK_LOST = "track_lost"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:
        return hash(self.value)


def reason_text(reason: Reason | None, detail: str) -> str:
    """The published reason text: ``"<reason>: <detail>"`` (just ``detail`` without a reason);
    the one place it is composed."""
    return f"{reason}: {detail}" if reason is not None else str(detail)


class CoopError(Exception):
    """Base class of all coop_ros errors.

    ``CoopError(detail)`` or ``CoopError(reason, detail)``: ``reason`` (:class:`Reason` or None)
    says what kind of failure it is, ``detail`` (str) names the input and the problem.
    """

    def __init__(self, *args):
        if args and isinstance(args[0], Reason):
            if len(args) != 2:
                raise TypeError(f"{type(self).__name__}(reason, detail) takes a Reason and one "
                                f"detail text, got {len(args)} arguments")
            self.reason, self.detail = args[0], str(args[1])
        else:
            self.reason = None
            self.detail = " ".join(map(str, args))
        super().__init__(reason_text(self.reason, self.detail))

    def __reduce__(self):   # survives pickling (process pools) with its reason
        return (type(self), (self.detail,) if self.reason is None else (self.reason, self.detail))


class InputError(CoopError, ValueError):
    """Bad input data: non-finite intrinsics, degenerate box, wrong shape, wrong units..."""


class BoxOutsideImageError(InputError):
    """A detection box that lies entirely outside its image."""


class EstimationError(CoopError, RuntimeError):
    """A solver could not produce a pose (too few correspondences, singular system, ...)."""


class RenderError(CoopError, RuntimeError):
    """The renderer could not be created or failed (missing EGL / Mesa, ...)."""
