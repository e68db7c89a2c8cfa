"""Typed records of the pipeline: detections in, configuration, pose results out.

Poses are (4, 4) float64 ``T_cam_obj`` in metres (OpenCV camera axes); covariances are (6, 6)
float64 in the ROS ``PoseWithCovariance`` order (x, y, z, rot X, rot Y, rot Z) about the camera
frame's axes, [m^2, rad^2] (perturbation ``t <- t + dt, R <- exp([dw]x) R``, see
:mod:`coop_ros.geometry.pnp`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from coop_ros.errors import InputError, Reason, reason_text

__all__ = ["Detection", "PoseConfig", "Hypothesis", "PoseResult", "STATUS_OK", "STATUS_FAILED",
           "STATUS_SKIPPED", "Reason"]

STATUS_OK = "ok"
STATUS_FAILED = "failed"
#: not estimated on purpose (time budget spent, cancelled, over max_detections): no pose, no error
STATUS_SKIPPED = "skipped"


@dataclass
class Detection:
    """A 2D detection of one object instance.

    obj_id: id the object was registered under (int or str).
    box_xywh: (4,) BOP box (x, y, w, h) in image pixels.
    mask: optional (H, W) bool instance mask of the full image.
    score: detector confidence (informational).
    """

    obj_id: int | str
    box_xywh: tuple | np.ndarray
    mask: np.ndarray | None = None
    score: float = 1.0


@dataclass
class PoseConfig:
    """Configuration of :class:`coop_ros.pipeline.estimator.PoseEstimator` (validated once).

    backend: "weight-free" (classical estimators) or a registered learned backend ("coop").
    crop_size: side of the query / template / render crops [px] (multiple of 16; CroCo: 224).
    crop_margin: margin around the detection box for the query crop (fraction of the long side).
    n_templates: template views (12, 42, 162, 642; Co-op: 42).
    template_cache_dir: folder for disk-cached template banks (None: no cache).
    refine_iterations: Co-op's flow iterations per hypothesis (RGB: weighted LM PnP), each judged
        by the image evidence; None: the backend's default (``FlowEstimator.default_iterations``:
        4 for Co-op's refiner, 0 for the weight-free DIS flow, whose steps did not raise the
        evidence search's accuracy on real LM-O images and cost time).
    lm_iterations: LM steps inside one refine iteration (a final Gauss-Newton step follows).
    flow_radius_px: R of Co-op's P(|y - mu| < R) = 1 - exp(-R/b) [px].
    rgbd_refine_iterations: iterations of the RGB-D refinement (flow 3D-3D + MAGSAC++ Kabsch);
        None: the backend's default.
    icp_iterations: projective point-to-plane ICP steps on the observed depth (RGB-D only).
    magsac_threshold_frac: MAGSAC++ 3D threshold as a fraction of the object diameter.
    pnp_reproj_px: EPnP RANSAC inlier threshold in crop pixels.
    min_correspondences: fewer usable correspondences -> failure "too_few_correspondences".
    min_score: results whose best selection score is lower fail with "low_score" (0: never).
    num_hypotheses: default number of coarse hypotheses refined (paper: 1 or 5).
    device: "cpu" / "cuda" (renderer and torch).
    precision: "fp32", or "bf16": the learned backend's networks run under bfloat16 autocast
        (their outputs are returned as float32; the solvers always run in float32 / float64).
        No effect on the weight-free backend.
    torch_threads: torch intra-op threads while estimating (restored afterwards; None: leave
        torch's setting). 1 by default: the solves are small and threads only add overhead.
    seed: seed of the randomised robust estimators (MAGSAC++ of the RGB-D coarse and refinement
        stages, seeded per call; OpenCV's RANSACs seed themselves with a constant). The same
        input and config give bit-identical results in every process and on every call (checked
        on one machine; other BLAS / thread settings may change the last bits).
    search_levels: step halvings of the evidence search that ends every refinement
        (:mod:`coop_ros.pipeline.search`; 0: no search, the flow / ICP steps alone, still judged
        by the evidence).
    coarse_candidates: coarse poses computed (from the best-scored templates) and ranked by the
        image evidence; the best ``num_hypotheses`` of them are refined.
    depth_hypotheses: RGB-D: coarse poses from the observed depth geometry alone
        (:func:`coop_ros.pipeline.coarse.depth_hypotheses`), ranked by the image evidence with
        the template ones (0: off).
    box_sigma: how exactly the detection boxes fit the objects' visible parts: the side noise the
        image evidence's box_fit term allows, as a fraction of the box's long side
        (:data:`coop_ros.evidence.BOX_SIGMA`, 0.016, calibrated with BOP's visible GT boxes on
        real LM-O; with every box side moved by 3 % / 8 % of the long side at random it still
        beat sigma = 0.05 / 0.08: refine_pose from GT AR* 0.926 / 0.901 against 0.908 / 0.861).
    polish_levels: (first, end) levels of the evidence search that polishes the selected pose
        (and a pose given to ``refine_pose``) on the evidence with the box fit
        (:data:`coop_ros.evidence.POLISH_WEIGHTS`): level k moves by 8 / 2^k deg, 4 / 2^k crop
        px and 4 / 2^k % of the distance; (2, 4): 2 deg and 1 deg steps. (0, 0): no polish. A
        0.5 deg level (2, 5) gave the same accuracy on real LM-O dev (every 8th image: 5
        hypotheses AR* 0.366 vs 0.365; refine_pose from GT 0.946 vs 0.952, from GT + 5 deg /
        10 mm 0.890 vs 0.888) for ~30 % more polish time.
    proxy_faces: faces of the simplified mesh the evidence renders (a silhouette of a 30-200 px
        object needs no more; the full mesh renders the templates and the flow steps).
    coarse_ckpt / refiner_ckpt / selection_ckpt: checkpoint files of the learned backend
        ("coop"; "auto" uses it when any is set). A slot without a checkpoint keeps its
        weight-free implementation.
    """

    backend: str = "weight-free"
    crop_size: int = 224
    crop_margin: float = 0.2
    n_templates: int = 42
    template_cache_dir: str | None = None
    refine_iterations: int | None = None
    lm_iterations: int = 6
    flow_radius_px: float = 2.0
    rgbd_refine_iterations: int | None = None
    icp_iterations: int = 10
    magsac_threshold_frac: float = 0.03
    pnp_reproj_px: float = 4.0
    min_correspondences: int = 8
    min_score: float = 0.0
    num_hypotheses: int = 5
    device: str = "cpu"
    precision: str = "fp32"
    torch_threads: int | None = 1
    search_levels: int = 4
    coarse_candidates: int = 12
    depth_hypotheses: int = 4
    box_sigma: float = 0.016
    polish_levels: tuple = (2, 4)
    proxy_faces: int = 2000
    seed: int = 0
    coarse_ckpt: str | None = None
    refiner_ckpt: str | None = None
    selection_ckpt: str | None = None

    def validate(self) -> "PoseConfig":
        """Check every field; raises InputError naming the bad one. Returns self."""
        def bad(name, why):
            raise InputError(f"PoseConfig.{name} {why}, got {getattr(self, name)!r}")
        if not isinstance(self.backend, str) or not self.backend:
            bad("backend", "must be a backend name such as 'weight-free'")
        if not isinstance(self.crop_size, int) or self.crop_size < 64 or self.crop_size % 16:
            bad("crop_size", "must be an integer multiple of 16, >= 64")
        if not (math.isfinite(self.crop_margin) and 0 <= self.crop_margin <= 2):
            bad("crop_margin", "must lie in [0, 2]")
        if self.n_templates not in (12, 42, 162, 642):
            bad("n_templates", "must be one of 12, 42, 162, 642")
        for name in ("refine_iterations", "rgbd_refine_iterations", "icp_iterations"):
            v = getattr(self, name)
            if v is None and name != "icp_iterations":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 50:
                bad(name, "must be an integer in [0, 50]" + ("" if name == "icp_iterations"
                                                              else " or None"))
        if not isinstance(self.lm_iterations, int) or not 1 <= self.lm_iterations <= 100:
            bad("lm_iterations", "must be an integer in [1, 100]")
        for name in ("flow_radius_px", "pnp_reproj_px", "magsac_threshold_frac"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(name, "must be a positive number")
        if not isinstance(self.min_correspondences, int) or self.min_correspondences < 4:
            bad("min_correspondences", "must be an integer >= 4")
        if not (math.isfinite(self.min_score) and 0 <= self.min_score <= 1):
            bad("min_score", "must lie in [0, 1]")
        if not isinstance(self.num_hypotheses, int) or not 1 <= self.num_hypotheses <= 64:
            bad("num_hypotheses", "must be an integer in [1, 64]")
        if not isinstance(self.search_levels, int) or not 0 <= self.search_levels <= 8:
            bad("search_levels", "must be an integer in [0, 8]")
        if not isinstance(self.coarse_candidates, int) or not 1 <= self.coarse_candidates <= 64:
            bad("coarse_candidates", "must be an integer in [1, 64]")
        if not isinstance(self.depth_hypotheses, int) or not 0 <= self.depth_hypotheses <= 64:
            bad("depth_hypotheses", "must be an integer in [0, 64]")
        if not (isinstance(self.box_sigma, (int, float)) and math.isfinite(self.box_sigma)
                and 0.001 <= self.box_sigma <= 1.0):
            bad("box_sigma", "must be a fraction of the box size in [0.001, 1]")
        pl = self.polish_levels
        if not (isinstance(pl, (tuple, list)) and len(pl) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pl)
                and 0 <= pl[0] <= pl[1] <= 8):
            bad("polish_levels", "must be two integers (first, end) with 0 <= first <= end <= 8")
        if not isinstance(self.proxy_faces, int) or self.proxy_faces < 100:
            bad("proxy_faces", "must be an integer >= 100")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            bad("seed", "must be a non-negative integer")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int)
                                               or self.torch_threads < 1):
            bad("torch_threads", "must be a positive integer or None")
        if self.precision not in ("fp32", "bf16"):
            bad("precision", "must be 'fp32' or 'bf16'")
        if not isinstance(self.device, str) or not (self.device == "cpu"
                                                    or self.device.startswith("cuda")):
            bad("device", "must be 'cpu', 'cuda' or 'cuda:N'")
        for name in ("coarse_ckpt", "refiner_ckpt", "selection_ckpt"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                bad(name, "must be a checkpoint file path or None")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "PoseConfig":
        """Build from a plain dict (YAML / ROS parameters); unknown keys raise InputError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown PoseConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**d).validate()


@dataclass
class Hypothesis:
    """One refined hypothesis.

    T_coarse: (4, 4) pose after the coarse stage. T: (4, 4) pose after refinement.
    template_index: the template it came from (-1: not from a template -- a pose given to
        ``refine_pose``, or an RGB-D pose from the depth geometry); template_score: the coarse
        matcher's score (of a depth-geometry pose: its point-agreement score).
    score: selection score in [0, 1] (higher = better; weight-free: the image evidence of T,
    :mod:`coop_ros.evidence`); score_terms: its parts; score_coarse: the evidence of T_coarse
    (refinement never lowers it: score >= score_coarse).
    covariance: (6, 6) or None. status: "ok" (a refinement that raised keeps T = T_coarse and
    says why), or "failed" for an alternative of an ok result whose pose failed the plausibility
    gate (:mod:`coop_ros.pipeline.gate`; reason ``implausible_pose``: not published as an
    alternative). reason: "" or the text "<reason>: <detail>";
    reason_code: its :class:`~coop_ros.errors.Reason` (None when refinement ran): the
    refinement's error reason (the coarse pose kept), or ``Reason.NOT_REFINED`` for a hypothesis
    the time budget left unrefined (T = T_coarse).
    """

    T_coarse: np.ndarray
    T: np.ndarray
    template_index: int
    template_score: float
    score: float = float("nan")
    score_terms: dict = field(default_factory=dict)
    covariance: np.ndarray | None = None
    num_correspondences: int = 0
    score_coarse: float = float("nan")
    status: str = STATUS_OK
    reason: str = ""
    reason_code: Reason | None = None

    def set_reason(self, reason: Reason | None, detail: str) -> None:
        """Say why this hypothesis kept its coarse pose (text and code together)."""
        self.reason, self.reason_code = reason_text(reason, detail), reason


@dataclass
class PoseResult:
    """Result for one detection.

    obj_id: the detection's object id. status: "ok", "failed" or "skipped" (not attempted: time
    budget spent, cancelled); reason: empty when ok, else the text "<reason>: <detail>" (published
    in ``ObjectPoseEstimate.reason``); reason_code: that :class:`~coop_ros.errors.Reason` (None
    when ok). Never a silent identity pose: a failed / skipped result has ``T_cam_obj`` None.
    best_so_far: True when the time budget stopped refinement before every hypothesis was
    refined: the pose is the best of the hypotheses scored so far (see ``Hypothesis.reason``).
    ambiguous: True when another hypothesis, a different pose of the object (an end-over-end
    flip, a mirrored view), explains the image nearly as well
    (:func:`coop_ros.pipeline.select.rival`; weight-free selection only): the pose is the
    better of the two, and the covariance's rotation variances are at least (pi / 2)^2,
    "orientation not determined"; the rival is among ``hypotheses``.
    T_cam_obj: (4, 4) float64 best pose [m] or None. covariance: (6, 6) float64 ROS order, camera
    frame [m^2, rad^2] or None. score: selection score of the best hypothesis.
    hypotheses: every refined hypothesis (best first). best_index: index of the chosen one in
    ``hypotheses`` (0) or -1.
    timings: seconds per stage: "templates" (template bank built / loaded during this call; 0
    when the object was registered before -- ``PoseEstimator.add_object`` returns that time),
    "crop", "coarse", "refine" (all hypotheses), "refine_iter_<k>" (k-th refine iteration summed
    over hypotheses; RGB: the last one is the depth check, RGB-D: the last one is the ICP),
    "selection", "gate" (the plausibility gate, :mod:`coop_ros.pipeline.gate`; included in
    "total"), "total".
    mode: "rgb" or "rgbd".
    """

    obj_id: int | str
    status: str
    reason: str = ""
    T_cam_obj: np.ndarray | None = None
    covariance: np.ndarray | None = None
    score: float = float("nan")
    hypotheses: list[Hypothesis] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    mode: str = "rgb"
    box_xywh: np.ndarray | None = None
    best_so_far: bool = False
    ambiguous: bool = False
    reason_code: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @classmethod
    def failed(cls, obj_id, reason: Reason | None, detail: str, **kw) -> "PoseResult":
        """A failed result: no pose, ``reason`` says why (``detail`` names the problem)."""
        return cls(obj_id=obj_id, status=STATUS_FAILED, reason=reason_text(reason, detail),
                   reason_code=reason, **kw)

    @classmethod
    def skipped(cls, obj_id, reason: Reason, detail: str, **kw) -> "PoseResult":
        """A result not estimated on purpose (budget spent, cancelled, over max_detections)."""
        return cls(obj_id=obj_id, status=STATUS_SKIPPED, reason=reason_text(reason, detail),
                   reason_code=reason, **kw)

    def to_dict(self) -> dict:
        """JSON-ready dict (lists instead of arrays)."""
        def conv(x):
            if isinstance(x, np.ndarray):
                return x.tolist()
            if isinstance(x, (np.floating, np.integer)):
                return x.item()
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, list):
                return [conv(v) for v in x]
            if isinstance(x, float) and not math.isfinite(x):
                return None
            return x
        d = asdict(self)
        return conv(d)
