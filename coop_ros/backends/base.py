"""The three slots Co-op fills with networks, as small interfaces.

A backend is a :class:`Backend` bundle of one :class:`CoarseMatcher`, one :class:`FlowEstimator`
and one :class:`HypothesisScorer`. The pipeline (:mod:`coop_ros.pipeline`) only talks to these
interfaces, so the weight-free classical estimators (:mod:`coop_ros.backends.weightfree`) and the
learned CroCo-based networks (:mod:`coop_ros.backends.learned`) are interchangeable. The registry
of implementations (``get_backend``) is :mod:`coop_ros.backends`; this module imports neither.

Conventions: crops are square ``S x S`` images (S = 224 by default, patch 16 -> 14 x 14 = 196
patches), pixel centres at integers (OpenCV), depth in metres (0 = no measurement), ``xyz`` in
the object frame in metres, intrinsics of a crop ``K`` (3, 3) pixels (``Crop.intrinsics``).
Patch ``p`` of a crop covers rows ``16 (p // G) ... 16 (p // G) + 15`` and columns
``16 (p % G) ... 16 (p % G) + 15`` with ``G = S // 16``; its centre in pixels is
``16 * (col + 0.5) - 0.5`` (u) and ``16 * (row + 0.5) - 0.5`` (v).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coop_ros.errors import InputError

__all__ = ["NO_MATCH", "PATCH", "ImageCrop", "CoarseMatches", "FlowField", "CoarseMatcher",
           "FlowEstimator", "HypothesisScorer", "Backend", "patch_centers", "match_pixels",
           "encode_pixels"]

#: patch-class value meaning "no match / occluded" (Co-op's last class)
NO_MATCH = -1
#: patch side in pixels (CroCo / ViT-16)
PATCH = 16


@dataclass
class ImageCrop:
    """An ``S x S`` crop handed to a backend (query or rendering / template).

    rgb: (S, S, 3) uint8 RGB.
    K: (3, 3) float64 intrinsics of the crop, pixels.
    depth: (S, S) float32/64 metres (0 = none) or None (RGB mode).
    mask: (S, S) bool object mask (rendering / template: its silhouette; query: the detection's
        mask when one was given) or None.
    xyz: (S, S, 3) float32 object-frame coordinates [m] of each pixel (renderings / templates
        only; 0 on background) or None.
    box: (4,) float64 (u0, v0, u1, v1) extent of the detection box in crop pixels (query only),
        or None.
    """

    rgb: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    xyz: np.ndarray | None = None
    box: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.rgb.shape[0])

    def validate(self, name: str = "crop") -> "ImageCrop":
        """Check shapes and dtypes; raises InputError naming the bad field."""
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] != rgb.shape[1] \
                or rgb.dtype != np.uint8:
            raise InputError(f"{name}.rgb must be a square (S, S, 3) uint8 image, got "
                             f"{rgb.shape} {rgb.dtype}")
        S = rgb.shape[0]
        for key in ("depth", "mask"):
            v = getattr(self, key)
            if v is not None and np.asarray(v).shape != (S, S):
                raise InputError(f"{name}.{key} must be ({S}, {S}), got {np.asarray(v).shape}")
        if self.xyz is not None and np.asarray(self.xyz).shape != (S, S, 3):
            raise InputError(f"{name}.xyz must be ({S}, {S}, 3), got {np.asarray(self.xyz).shape}")
        if np.asarray(self.K).shape != (3, 3):
            raise InputError(f"{name}.K must be (3, 3), got {np.asarray(self.K).shape}")
        return self


@dataclass
class CoarseMatches:
    """Output of :meth:`CoarseMatcher.match` for one query crop against a bank of T templates.

    Co-op's hybrid representation: for every query patch p (P = G * G patches, row-major) and
    every template t, the index of the matching template patch or :data:`NO_MATCH`, plus an
    offset U in [-0.5, 0.5]^2 (units of one patch) inside that patch: the matched template pixel
    is ``16 * (patch_xy + 0.5 + U) - 0.5``. The query point is the query patch centre.

    patch_index: (T, P) int64 template patch index in [0, P) or NO_MATCH.
    offset: (T, P, 2) float32 (u, v) offsets in [-0.5, 0.5].
    confidence: (T, P) float32 in [0, 1], per-patch match confidence (0 where NO_MATCH).
    template_scores: (T,) float64, higher = the template is a better view of the query.
    info: free-form diagnostics of the backend (not used by the pipeline).
    """

    patch_index: np.ndarray
    offset: np.ndarray
    confidence: np.ndarray
    template_scores: np.ndarray
    info: dict = field(default_factory=dict)

    def validate(self, n_templates: int, n_patches: int) -> "CoarseMatches":
        T, P = n_templates, n_patches
        if np.shape(self.patch_index) != (T, P):
            raise InputError(f"patch_index must be ({T}, {P}), got {np.shape(self.patch_index)}")
        if np.shape(self.offset) != (T, P, 2):
            raise InputError(f"offset must be ({T}, {P}, 2), got {np.shape(self.offset)}")
        if np.shape(self.confidence) != (T, P):
            raise InputError(f"confidence must be ({T}, {P}), got {np.shape(self.confidence)}")
        if np.shape(self.template_scores) != (T,):
            raise InputError(f"template_scores must be ({T},), got "
                             f"{np.shape(self.template_scores)}")
        pi = np.asarray(self.patch_index)
        if np.any((pi != NO_MATCH) & ((pi < 0) | (pi >= P))):
            raise InputError(f"patch_index values must lie in [0, {P}) or be NO_MATCH")
        if np.any(np.abs(np.asarray(self.offset)) > 0.5 + 1e-6):
            raise InputError("offset values must lie in [-0.5, 0.5]")
        return self


@dataclass
class FlowField:
    """Output of :meth:`FlowEstimator.flow`: dense flow rendering -> query on the S x S crop.

    mu: (S, S, 2) float32 flow (du, dv) in pixels; rendering pixel x goes to query pixel x + mu.
    b: (S, S) float32 > 0, scale of the Laplace distribution of the flow error [px].
    certainty: (S, S) float32 in [0, 1], probability that the pixel is visible in the query
        (inside the rendered object, not occluded).
    sensitivity: (S, S) float32 >= 0, how informative the pixel is for the pose (texture, edges).
    """

    mu: np.ndarray
    b: np.ndarray
    certainty: np.ndarray
    sensitivity: np.ndarray

    def confidence(self, R: float) -> np.ndarray:
        """Co-op's W = certainty x sensitivity x P(|y - mu|_1 < R) with P = 1 - exp(-R / b);
        (S, S) float32."""
        return (self.certainty * self.sensitivity * (1.0 - np.exp(-R / self.b))).astype(np.float32)


class CoarseMatcher(abc.ABC):
    """Slot 1: query crop x template bank -> per-template semi-dense patch matches + scores."""

    @abc.abstractmethod
    def prepare(self, bank: Any) -> Any:
        """Per-object precomputation on a template bank (features, edge maps...); the result is
        passed back to :meth:`match` as ``prepared``. Called once per registered object."""

    @abc.abstractmethod
    def match(self, query: ImageCrop, bank: Any, prepared: Any = None) -> CoarseMatches:
        """Match a query crop against every template of ``bank`` (a
        :class:`coop_ros.render.templates.TemplateBank` with the crop size of ``query``)."""


class FlowEstimator(abc.ABC):
    """Slot 2: rendering at the current pose x query (same crop) -> probabilistic dense flow.

    ``default_iterations``: flow iterations per hypothesis when the configuration leaves them to
    the backend (``PoseConfig.refine_iterations`` / ``rgbd_refine_iterations`` None)."""

    default_iterations = {"rgb": 4, "rgbd": 2}

    @abc.abstractmethod
    def flow(self, render: ImageCrop, query: ImageCrop) -> FlowField:
        """Dense flow from ``render`` (with mask, depth, xyz) to ``query`` (same crop, same K)."""


class HypothesisScorer(abc.ABC):
    """Slot 3: query crop x rendering at a refined pose -> a score (higher = better).

    ``uses_evidence``: True when the scorer is the pipeline's image evidence itself
    (:mod:`coop_ros.evidence`); the selection stage then sorts by the evidence it already
    computed for every hypothesis instead of calling :meth:`score`."""

    uses_evidence = False

    @abc.abstractmethod
    def score(self, query: ImageCrop, render: ImageCrop) -> tuple[float, dict]:
        """Score in [0, 1] and a dict of the score's terms (diagnostics)."""


@dataclass
class Backend:
    """A complete set of slot implementations."""

    name: str
    matcher: CoarseMatcher
    flow: FlowEstimator
    scorer: HypothesisScorer


# --------------------------------------------------------------------------- helpers

def patch_centers(size: int) -> np.ndarray:
    """(P, 2) float64 pixel centres (u, v) of the 16-px patches of an S x S crop, row-major."""
    G = size // PATCH
    r, c = np.divmod(np.arange(G * G), G)
    return np.stack([PATCH * (c + 0.5) - 0.5, PATCH * (r + 0.5) - 0.5], axis=1)


def match_pixels(patch_index: np.ndarray, offset: np.ndarray, size: int) -> np.ndarray:
    """Template pixels (..., 2) (u, v) encoded by patch indices (...) and offsets (..., 2);
    NO_MATCH entries give NaN."""
    G = size // PATCH
    pi = np.asarray(patch_index)
    r, c = np.divmod(np.where(pi == NO_MATCH, 0, pi), G)
    uv = np.stack([PATCH * (c + 0.5 + offset[..., 0]) - 0.5,
                   PATCH * (r + 0.5 + offset[..., 1]) - 0.5], axis=-1).astype(np.float64)
    uv[pi == NO_MATCH] = np.nan
    return uv


def encode_pixels(uv: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`match_pixels`: (..., 2) template pixels -> (patch index (...), offset
    (..., 2)); NaN or out-of-crop pixels give NO_MATCH."""
    G = size // PATCH
    uv = np.asarray(uv, dtype=np.float64)
    g = (uv + 0.5) / PATCH
    ok = np.all(np.isfinite(g), axis=-1) & np.all((g >= 0) & (g < G), axis=-1)
    gi = np.where(ok[..., None], np.floor(np.nan_to_num(g)), 0).astype(np.int64)
    idx = np.where(ok, gi[..., 1] * G + gi[..., 0], NO_MATCH)
    off = np.where(ok[..., None], np.clip(np.nan_to_num(g) - gi - 0.5, -0.5, 0.5), 0.0)
    return idx.astype(np.int64), off.astype(np.float32)
