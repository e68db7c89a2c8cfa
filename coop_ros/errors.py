"""Exceptions of coop_ros. Every message names the bad input and what was expected."""


class CoopError(Exception):
    """Base class of all coop_ros errors."""


class InputError(CoopError, ValueError):
    """Bad input data: non-finite intrinsics, degenerate box, wrong shape, wrong units..."""


class BoxOutsideImageError(InputError):
    """A detection box that lies entirely outside its image."""


class EstimationError(CoopError, RuntimeError):
    """A solver could not produce a pose (too few correspondences, singular system, ...)."""


class RenderError(CoopError, RuntimeError):
    """The renderer could not be created or failed (missing EGL / Mesa, ...)."""
