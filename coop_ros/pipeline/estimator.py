"""PoseEstimator: the Co-op pipeline end to end.

    est = PoseEstimator(PoseConfig(backend="weight-free"))
    est.add_object(1, "obj_000001.ply", units="mm")           # builds / loads the template bank
    results = est.estimate(rgb, K, [Detection(1, (x, y, w, h))], depth=depth_m, mode="rgbd",
                           num_hypotheses=5)
    r = results[0]; r.status, r.T_cam_obj, r.covariance, r.hypotheses, r.timings

Flow of one detection: query crop from the box (``make_crop``, margin 0.2, 224 px) -> coarse
matcher (per-template patch matches + template scores) -> top-N templates -> EPnP + RANSAC (RGB) /
MAGSAC++ Kabsch (RGB-D) -> each hypothesis refined by render and compare (weighted LM PnP; RGB-D:
3D-3D MAGSAC++ + point-to-plane ICP with silhouette terms) -> every refined hypothesis scored by
render and compare in the query crop -> the best is returned with its covariance, all hypotheses
kept. Deterministic: the same input and config give the same result in every process.

Every failure gives a ``PoseResult`` with ``status="failed"``, its
:class:`~coop_ros.errors.Reason` in ``reason_code`` and the text "<reason>: <detail>" in
``reason``; no identity pose is ever returned.

``coop-ros eval --estimator coop`` runs it through :mod:`coop_ros.bop.coop_adapter`.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import cv2
import numpy as np

from coop_ros.backends import get_backend
from coop_ros.pipeline.budget import Budget, StageTimes
from coop_ros.errors import BoxOutsideImageError, EstimationError, InputError, reason_text
from coop_ros.geometry.camera import check_intrinsics, make_crop
from coop_ros.pipeline.coarse import (coarse_hypotheses, depth_hypotheses, observed_points,
                                     similarity_hypotheses)
from coop_ros.pipeline.gate import apply_gate, hull_points
from coop_ros.pipeline.refine import (ROTATION_VARIANCE_UNDETERMINED, RefineSettings, Refiner,
                                     continue_search, evidence_covariance)
from coop_ros.pipeline.search import evidence_search
from coop_ros.pipeline.views import QueryImage, RenderTarget
from coop_ros.pipeline.results import (STATUS_OK, Detection, Hypothesis,
                                       PoseConfig, PoseResult, Reason)
from coop_ros.pipeline.select import rival, score_hypotheses
from coop_ros.evidence import POLISH_WEIGHTS, Evidence

__all__ = ["PoseEstimator", "Detection", "PoseConfig", "PoseResult", "Hypothesis"]

#: covariance inflation: the refined pose's covariance is the evidence search's curvature
#: (Laplace approximation, refine.evidence_covariance) times this factor, so that the median
#: NEES is the chi-square(6) median 5.35. RGB: calibrated on real LM-O dev (bench/eval_real.py,
#: 5 hypotheses, 691 targets; raw median NEES 0.025 with 50). RGB-D: on the synthetic seed-7 set
#: (bench/eval_synthetic.py, 1 hypothesis, 60 targets; raw median NEES 0.00058 with 7.5): the
#: two real RGB-D frames are too few to calibrate on, and gave NEES 0.2-1.2e-3 with 7.5, the
#: same scale.
DEFAULT_INFLATION = {"rgb": 0.24, "rgbd": 0.00081}
#: RGB: coarse candidates are ranked by their evidence + this x their template's matcher score
#: (relative to the best template's): the two judge a view 10-20 deg off in different ways
#: (real LM-O dev, every 4th image: a candidate within 20 deg among the 5 best in 42 % of the
#: targets by evidence alone, 43 % together)
MATCHER_PRIOR = 0.2
#: RGB: templates whose matcher alignment, fitted to the detection box, is a coarse candidate
SIMILARITY_TEMPLATES = 24


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous value (None: leave
    it). The pipeline's tensors are small (<= a few thousand correspondences); on a loaded
    2-core machine intra-op threads made one LM solve ~5x slower than one thread."""
    if n is None:
        yield
        return
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _Registered:
    def __init__(self, obj, bank, prepared, key, proxy_key, alternates, seconds):
        self.obj, self.bank, self.prepared, self.key, self.seconds = obj, bank, prepared, key, seconds
        self.proxy_key = proxy_key
        self.alternates = alternates   # (M, 4, 4) near-symmetries of the shape (objects.py)
        self.refiners: dict = {}       # mode -> Refiner (PoseEstimator._refiner)
        # surface samples [m] and declared symmetries: is a hypothesis another pose (select.rival)
        self.points = obj.sample_surface(500)
        self.syms = obj.symmetry_transforms(0.05)
        self.hull = hull_points(obj)   # bounds its silhouette: the plausibility gate's box check


class PoseEstimator:
    """Co-op pose estimator (see the module docstring).

    Args:
        config: :class:`PoseConfig` (validated here) or None for the defaults.
        renderer: an existing :class:`coop_ros.render.renderer.Renderer` to share (None: one is
            created on ``config.device``).
    """

    def __init__(self, config: PoseConfig | None = None, renderer=None):
        self.config = (config or PoseConfig()).validate()
        self.backend = get_backend(self.config.backend, self.config)
        if renderer is None:
            from coop_ros.render.renderer import Renderer
            renderer = Renderer(self.config.crop_size, self.config.crop_size,
                                device=self.config.device)
        self.renderer = renderer
        self._objects: dict = {}
        self.inflation = dict(DEFAULT_INFLATION)
        #: running mean + deviation of the stage times: predicts what still fits in a time budget
        self.stage_times = StageTimes()

    # ------------------------------------------------------------------ objects
    def add_object(self, obj_id, obj, units: str = "mm", symmetries: dict | None = None,
                   name: str | None = None) -> float:
        """Register an object once: builds (or loads from the disk cache) its template bank and
        the backend's per-object features.

        Args:
            obj_id: id used in detections (int or str).
            obj: :class:`coop_ros.objects.ObjectModel` or a mesh path (.ply / .obj).
            units: unit of the mesh file's coordinates ("mm" or "m"); ignored for an ObjectModel.
            symmetries: optional BOP models_info entry (``symmetries_discrete`` /
                ``symmetries_continuous``, mm) -- stored on the model.
            name: object name for a mesh path (default: the file stem).

        Returns:
            seconds spent (templates + features).
        """
        from coop_ros.objects import (ObjectModel, near_symmetries, parse_bop_symmetries,
                                      simplified)
        from coop_ros.render.templates import build_template_bank
        t0 = time.perf_counter()
        if isinstance(obj, (str, Path)):
            obj = ObjectModel.load(obj, units=units, name=name, models_info=symmetries)
        elif not isinstance(obj, ObjectModel):
            raise InputError(f"obj must be an ObjectModel or a mesh path, got {type(obj).__name__}")
        elif symmetries is not None:
            obj.symmetries_discrete, obj.symmetries_continuous = parse_bop_symmetries(symmetries)
        cfg = self.config
        bank = build_template_bank(obj, self.renderer, n_views=cfg.n_templates,
                                   size=cfg.crop_size, cache_dir=cfg.template_cache_dir,
                                   use_cache=cfg.template_cache_dir is not None)
        prepared = self.backend.matcher.prepare(bank)
        key = f"coop:{obj_id}:{obj.content_hash()[:12]}"
        self.renderer.add_object(key, obj)
        proxy = simplified(obj, cfg.proxy_faces)
        proxy_key = key if proxy is obj else key + ":proxy"
        if proxy is not obj:
            self.renderer.add_object(proxy_key, proxy)
        alternates = near_symmetries(obj)
        dt = time.perf_counter() - t0
        self._objects[obj_id] = _Registered(obj, bank, prepared, key, proxy_key, alternates, dt)
        return dt

    def has_object(self, obj_id) -> bool:
        return obj_id in self._objects

    def render_key(self, obj_id) -> str:
        """Key of a registered object's mesh in :attr:`renderer` (for overlays drawn with the same
        renderer, without uploading the mesh again). Raises InputError for an unknown id."""
        if obj_id not in self._objects:
            raise InputError(f"unknown object id {obj_id!r}; registered: {sorted(map(str, self._objects))}")
        return self._objects[obj_id].key

    def evidence_key(self, obj_id) -> str:
        """Key in :attr:`renderer` of the mesh the image evidence renders for a registered object
        (its simplified proxy, or the mesh itself when small). Raises InputError for an unknown
        id."""
        self.render_key(obj_id)
        return self._objects[obj_id].proxy_key

    def object_model(self, obj_id):
        """The :class:`coop_ros.objects.ObjectModel` registered as ``obj_id`` (metres). Raises
        InputError for an unknown id."""
        self.render_key(obj_id)
        return self._objects[obj_id].obj

    # ------------------------------------------------------------------ estimation
    def estimate(self, rgb, K, detections, depth=None, mode: str = "rgb",
                 num_hypotheses: int | None = None, coarse_only: bool = False,
                 should_stop=None, deadline: float | None = None) -> list[PoseResult]:
        """Estimate the pose of every detection.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            K: (3, 3) intrinsics of the image, pixels.
            detections: list of :class:`Detection` (or (obj_id, box_xywh) tuples).
            depth: (H, W) float depth in metres (0 = none); required for mode "rgbd".
            mode: "rgb" or "rgbd".
            num_hypotheses: coarse hypotheses refined per detection (default: config's).
            coarse_only: skip refinement (the coarse pose of the best template is returned).
            should_stop: callable checked between detections, stages and hypotheses; True stops
                the call: the detections not finished get status "skipped", reason "cancelled".
            deadline: ``time.monotonic()`` value [s]. A detection whose coarse stage + selection
                no longer fit (predicted from the measured stage times) is skipped
                ("budget_exhausted"); refinement stops when the next hypothesis no longer fits
                and the best of the hypotheses scored so far is returned (``best_so_far``).

        Returns:
            one :class:`PoseResult` per detection, in order.

        Raises:
            InputError for a bad image / K / depth / mode (per-detection problems do not raise:
            they give failed results).
        """
        rgb, K, depth = self._check_inputs(rgb, K, depth, mode)
        n = self.config.num_hypotheses if num_hypotheses is None else int(num_hypotheses)
        if not 1 <= n <= 64:
            raise InputError(f"num_hypotheses must lie in [1, 64], got {num_hypotheses}")
        out = []
        budget = Budget(deadline, should_stop, self.stage_times)
        with torch_threads(self.config.torch_threads):
            for det in detections:
                if not isinstance(det, Detection):
                    det = Detection(*det)
                why = budget.stop_reason("coarse", "selection")
                if why:
                    out.append(PoseResult.skipped(det.obj_id, *why, mode=mode, box_xywh=None if
                                                  det.box_xywh is None else
                                                  np.asarray(det.box_xywh, float).reshape(-1)))
                    continue
                out.append(self._estimate_isolated(rgb, K, depth, det, mode, n, coarse_only,
                                                   budget))
        return out

    def _estimate_isolated(self, rgb, K, depth, det: Detection, mode: str, n: int,
                           coarse_only: bool, budget: Budget) -> PoseResult:
        """:meth:`_estimate_one`, with whatever it raises turned into this detection's failed
        result (an error carrying a reason keeps it, InputError is ``bad_input``, anything else
        ``internal_error`` naming the exception and where it was raised): one bad detection
        never costs the frame its other answers."""
        try:
            return self._estimate_one(rgb, K, depth, det, mode, n, coarse_only, budget)
        except Exception as e:  # noqa: BLE001 -- isolation is the point
            import traceback
            box = None
            with contextlib.suppress(Exception):
                box = np.asarray(det.box_xywh, float).reshape(-1)
            reason = getattr(e, "reason", None)
            if isinstance(e, InputError):
                reason, detail = reason or Reason.BAD_INPUT, e.detail
            elif reason is not None:
                detail = e.detail
            else:
                tb = traceback.extract_tb(e.__traceback__)
                at = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
                reason, detail = Reason.INTERNAL_ERROR, f"{type(e).__name__}: {e}{at}"
            return PoseResult.failed(det.obj_id, reason, detail, mode=mode, box_xywh=box)

    @staticmethod
    def _check_inputs(rgb, K, depth, mode: str):
        """(rgb, K, depth float32 metres or None) checked; InputError naming the problem."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"rgb must be an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        H, W = rgb.shape[:2]
        K = check_intrinsics(K, image_size=(W, H))
        if mode not in ("rgb", "rgbd"):
            raise InputError(f"mode must be 'rgb' or 'rgbd', got {mode!r}")
        if mode == "rgbd":
            if depth is None:
                raise InputError("mode 'rgbd' needs a depth image (metres)")
            depth = np.asarray(depth)
            if depth.shape != (H, W):
                raise InputError(f"depth must be ({H}, {W}) like the image, got {depth.shape}")
            if not np.issubdtype(depth.dtype, np.floating):
                raise InputError(f"depth must be float metres, got {depth.dtype} (raw units? "
                                 "multiply by the depth scale)")
            depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            depth[depth < 0] = 0.0
        else:
            depth = None
        return rgb, K, depth

    def _estimate_one(self, rgb, K, depth, det: Detection, mode: str, n: int,
                      coarse_only: bool, budget: Budget | None = None) -> PoseResult:
        cfg = self.config
        t_start = time.perf_counter()
        timings = {"templates": 0.0}
        box = np.asarray(det.box_xywh, dtype=np.float64).reshape(-1) \
            if det.box_xywh is not None else None
        base = dict(mode=mode, box_xywh=box)

        def fail(reason: Reason | None, detail: str, **kw):
            timings["total"] = time.perf_counter() - t_start
            return PoseResult.failed(det.obj_id, reason, detail, timings=timings, **base, **kw)

        budget = budget or Budget()

        reg = self._objects.get(det.obj_id)
        if reg is None:
            return fail(Reason.UNKNOWN_OBJECT, f"object id {det.obj_id!r} is not registered "
                        f"(known: {sorted(map(str, self._objects))})")
        H, W = rgb.shape[:2]
        t0 = time.perf_counter()
        try:
            crop = make_crop(box, size=cfg.crop_size, margin=cfg.crop_margin, image_size=(W, H))
        except BoxOutsideImageError as e:
            return fail(Reason.BOX_OUTSIDE_IMAGE, f"detection box: {e.detail}")
        except InputError as e:
            return fail(Reason.BAD_INPUT, f"detection box: {e.detail}")
        mask = None
        if det.mask is not None:
            mask = np.asarray(det.mask).astype(bool)
            if mask.shape != (H, W):
                return fail(Reason.BAD_INPUT, f"detection mask is {mask.shape}, image is {(H, W)}")
            if not mask.any():
                return fail(Reason.BAD_INPUT, "detection mask is empty")
        query = QueryImage(rgb=rgb, K=K, depth=depth, mask=mask, box=box)
        qcrop = query.view(crop)
        if mode == "rgbd":
            x, y, w, h = box
            x0, y0 = int(max(np.floor(x), 0)), int(max(np.floor(y), 0))
            x1, y1 = int(min(np.ceil(x + w), W)), int(min(np.ceil(y + h), H))
            region = depth[y0:y1, x0:x1]
            if mask is not None:
                region = region[mask[y0:y1, x0:x1]]
            nvalid = int((region > 0).sum())
            if nvalid < max(cfg.min_correspondences, 0.05 * region.size):
                return fail(Reason.EMPTY_DEPTH, f"only {nvalid} of {region.size} pixels in the "
                            "detection box have a depth measurement")
        timings["crop"] = time.perf_counter() - t0

        # ---- coarse: candidate poses from the best templates, ranked by the image evidence
        t0 = time.perf_counter()
        evidence = Evidence(rgb, K, box, depth=depth if mode == "rgbd" else None,
                                box_sigma=self.config.box_sigma)
        try:
            matches = self.backend.matcher.match(qcrop, reg.bank, reg.prepared)
            matches.validate(len(reg.bank), (cfg.crop_size // 16) ** 2)
            no_template = None
            try:
                coarse, _fails = coarse_hypotheses(
                    matches, reg.bank, qcrop, mode, max(cfg.coarse_candidates, n),
                    reg.obj.diameter, reproj_px=cfg.pnp_reproj_px,
                    min_correspondences=cfg.min_correspondences, seed=cfg.seed,
                    center_obj=reg.obj.center)
            except EstimationError as e:
                if mode != "rgbd" or cfg.depth_hypotheses == 0:
                    raise
                coarse, no_template = [], e
            if mode == "rgb":
                coarse += similarity_hypotheses(matches, reg.bank, qcrop, box, K,
                                                reg.obj.hull_points, reg.obj.center,
                                                SIMILARITY_TEMPLATES)
            if mode == "rgbd" and cfg.depth_hypotheses > 0:
                # the shape in the depth, next to the template matches (occlusion or a photo
                # unlike the rendering can mislead the matcher, not the depth)
                pts = observed_points(depth, K, box, reg.obj.diameter, mask, seed=cfg.seed)
                coarse += depth_hypotheses(reg.bank, pts, reg.obj.diameter,
                                           cfg.depth_hypotheses, seed=cfg.seed)
                if not coarse:
                    raise no_template
            ev_scores, ev_terms = evidence.evaluate(self.renderer, reg.proxy_key,
                                                    np.stack([c.T for c in coarse]))
        except EstimationError as e:
            timings["coarse"] = time.perf_counter() - t0
            return fail(e.reason, e.detail)
        except (np.linalg.LinAlgError, cv2.error) as e:   # numerical breakdown on odd input
            timings["coarse"] = time.perf_counter() - t0
            return fail(Reason.NUMERICAL_ERROR, f"coarse stage: {type(e).__name__}: {e}")
        rank = ev_scores
        if mode == "rgb":
            top = max(float(np.max(matches.template_scores)), 1e-9)
            rank = ev_scores + MATCHER_PRIOR * np.clip(
                np.array([c.template_score for c in coarse]) / top, 0.0, 1.0)
        order = np.argsort(-rank, kind="stable")[:n]
        timings["coarse"] = time.perf_counter() - t0
        budget.record("coarse", timings["coarse"])

        # ---- refine: every step judged by the evidence, then the evidence search
        hyps: list[Hypothesis] = []
        t0 = time.perf_counter()
        # the evidence search runs its first (coarsest) level on every hypothesis, its finer
        # levels only on the best ceil(n / 2) after that (the others rarely catch up: on every
        # 8th LM-O dev image, also searching the 4th best of 5 changed no AR)
        search = None if cfg.search_levels == 0 else {"levels": 1}
        cut = False
        for j in order:
            ch = coarse[j]
            h = Hypothesis(T_coarse=ch.T, T=ch.T.copy(), template_index=ch.template_index,
                           template_score=ch.template_score,
                           num_correspondences=ch.num_correspondences,
                           score=float(ev_scores[j]), score_terms=Evidence.as_dict(ev_terms[j]),
                           score_coarse=float(ev_scores[j]))
            why = None if coarse_only else budget.stop_reason("refine", "selection")
            if why and budget.cancelled():
                timings["total"] = time.perf_counter() - t_start
                return PoseResult.skipped(det.obj_id, *why, timings=timings, **base)
            if why:   # time budget spent: keep the coarse pose, scored with the others
                h.set_reason(Reason.NOT_REFINED, reason_text(*why))
                cut = True
            if not coarse_only and not why:
                t_h = time.perf_counter()
                self._refine(h, query, reg, evidence, mode, search, timings)
                budget.record("refine", time.perf_counter() - t_h)
            hyps.append(h)
        if not coarse_only and cfg.search_levels > 1:
            keep = sorted(hyps, key=lambda h: -h.score)[:(len(hyps) + 1) // 2]
            for h in keep:
                if h.reason_code is Reason.NOT_REFINED:
                    continue
                why = budget.stop_reason("selection")
                if why:   # budget spent: the hypotheses keep their first-level search
                    cut = True
                    break
                self._search_finer(h, reg, evidence, mode)
        timings["refine"] = time.perf_counter() - t0

        # ---- select
        t0 = time.perf_counter()
        hyps = score_hypotheses(hyps, qcrop, self.renderer, reg.key, self.backend)
        timings["selection"] = time.perf_counter() - t0
        budget.record("selection", timings["selection"])
        ok = [h for h in hyps if h.status == STATUS_OK]
        if not ok:
            # (hypotheses do not fail: a refinement that raised keeps the coarse pose)
            return fail(Reason.REFINEMENT_FAILED, "no hypothesis", hypotheses=hyps)
        best = ok[0]
        if not coarse_only and best.reason_code is not Reason.NOT_REFINED:
            # the selected pose, near the truth when its view is right, polished on the box fit
            # that pins its distance (RGB: the weak direction)
            t0 = time.perf_counter()
            self._polish(best, reg, evidence, mode)
            timings["polish"] = time.perf_counter() - t0
        hyps = [best] + [h for h in hyps if h is not best]
        if best.score < cfg.min_score:
            return fail(Reason.LOW_SCORE, f"best score {best.score:.3f} < min_score "
                        f"{cfg.min_score}", hypotheses=hyps)
        cov = best.covariance
        if cov is not None:
            # the least-squares covariance only sees the local fit; a pose that the render-and-
            # compare score finds doubtful (a flip, a wrong view that still fits locally) is
            # widened: x ((1 - score) / 0.1)^2, 1 at score 0.9, 25 at score 0.5
            cov = cov * (max(1.0 - best.score, 0.02) / 0.1) ** 2
        # another pose of the object explains the image nearly as well (evidence scores only):
        # the orientation is not determined, and the covariance says so
        ambiguous = (getattr(self.backend.scorer, "uses_evidence", False)
                     and rival(ok, reg.points, reg.syms, reg.obj.diameter) is not None)
        if ambiguous and cov is not None:
            cov = cov.copy()
            r3 = np.arange(3, 6)
            cov[r3, r3] = np.maximum(cov[r3, r3], ROTATION_VARIANCE_UNDETERMINED)
        timings["total"] = time.perf_counter() - t_start
        res = PoseResult(obj_id=det.obj_id, status=STATUS_OK, T_cam_obj=best.T.copy(),
                         covariance=None if cov is None else cov.copy(), score=best.score,
                         hypotheses=hyps, timings=timings, best_so_far=cut,
                         ambiguous=bool(ambiguous), **base)
        # the plausibility gate (pipeline/gate.py): a pose the measurements contradict fails
        return apply_gate(res, reg.hull, K, (W, H), reg.obj.diameter,
                          evidence if mode == "rgbd" else None, self.renderer, reg.proxy_key)

    def _refine(self, h: Hypothesis, query: QueryImage, reg, evidence, mode: str,
                search: dict | None, timings: dict) -> None:
        """Refine hypothesis ``h`` from its coarse pose in place (flow / ICP steps judged by the
        evidence, then the evidence search as ``search`` says); a refinement that raises keeps
        the coarse pose and says why in ``h.reason``."""
        refiner = self._refiner(reg, mode)
        try:
            refine = refiner.rgb if mode == "rgb" else refiner.rgbd
            r = refine(h.T_coarse, query, evidence=evidence, search=search)
            h.T, h.covariance, h.num_correspondences = r.T, r.covariance, r.num_correspondences
            h.score, h.score_terms = r.score, Evidence.as_dict(r.terms)
            for k, dt in enumerate(r.iteration_times):
                timings[f"refine_iter_{k}"] = timings.get(f"refine_iter_{k}", 0.0) + dt
        except (EstimationError, InputError) as e:
            # the coarse pose stays the hypothesis (and a candidate in selection)
            h.set_reason(e.reason, f"{e.detail} (coarse pose kept)")
        except (np.linalg.LinAlgError, cv2.error) as e:
            h.set_reason(Reason.REFINEMENT_FAILED, f"{type(e).__name__}: {e} (coarse pose kept)")

    def _refiner(self, reg, mode: str) -> Refiner:
        """The :class:`Refiner` of registered object ``reg`` in ``mode`` under the current config
        (built once per object and mode, again when the config's refinement settings change:
        the node changes them at run time)."""
        cfg = self.config
        settings = RefineSettings(
            iterations=self._flow_iterations(mode), lm_iterations=cfg.lm_iterations,
            radius_px=cfg.flow_radius_px, min_correspondences=cfg.min_correspondences,
            icp_iterations=cfg.icp_iterations, threshold_frac=cfg.magsac_threshold_frac,
            seed=cfg.seed, inflation=self.inflation[mode])
        ref = reg.refiners.get(mode)
        if ref is None or ref.settings != settings or ref.target.size != cfg.crop_size:
            ref = reg.refiners[mode] = Refiner(
                RenderTarget(self.renderer, reg.key, reg.obj, cfg.crop_size), self.backend,
                settings, evidence_key=reg.proxy_key)
        return ref

    def _search_finer(self, h: Hypothesis, reg, evidence, mode: str) -> None:
        """The evidence search's finer levels on hypothesis ``h`` (in place); an object whose
        shape nearly maps onto itself (a box turned end over end) also has its turned pose
        searched alike, and the image evidence decides between them."""
        cfg = self.config
        kw = dict(levels=cfg.search_levels, first_level=1, inflation=self.inflation[mode])
        r = continue_search(h.T, h.score, h.score_terms, evidence, self.renderer, reg.proxy_key,
                            reg.obj, **kw)
        for A in reg.alternates:
            Ta = h.T @ A
            sa, ta = evidence.evaluate(self.renderer, reg.proxy_key, Ta[None])
            ra = continue_search(Ta, float(sa[0]), ta[0], evidence, self.renderer,
                                 reg.proxy_key, reg.obj, **kw)
            if ra.score > r.score:
                r = ra
        h.T, h.score, h.score_terms = r.T, r.score, Evidence.as_dict(r.terms)
        h.covariance = r.covariance

    def _polish(self, h: Hypothesis, reg, evidence, mode: str) -> None:
        """Polish hypothesis ``h`` in place: the evidence search with the box fit
        (:data:`~coop_ros.evidence.POLISH_WEIGHTS`) over ``config.polish_levels``; a moved pose
        takes the (default-weight) evidence of its new pose as its score. Its covariance stays
        the refinement's (calibrated: the polish moves it by a step of 2 deg or less; on the
        synthetic seed-7 set the polish's own curvature gave RGB-D NEES 11.6 and a Spearman
        correlation of 0.39 where ICP's gives 7.7 and 0.69); a pose without one (RGB
        ``refine_pose``) takes the polish's curvature."""
        lo, hi = self.config.polish_levels
        if hi <= lo:
            return
        r = evidence_search(h.T, evidence.with_weights(POLISH_WEIGHTS), self.renderer,
                            reg.proxy_key, reg.obj.center, levels=hi, first_level=lo)
        if r.score > r.score0:
            s, t = evidence.evaluate(self.renderer, reg.proxy_key, r.T[None])
            h.T, h.score, h.score_terms = r.T.copy(), float(s[0]), Evidence.as_dict(t[0])
            if h.covariance is None:
                h.covariance = evidence_covariance(r, reg.obj.diameter, self.inflation[mode])

    def refine_pose(self, rgb, K, detection, T_init, depth=None, mode: str = "rgb"
                    ) -> PoseResult:
        """Refine a given pose of one detection that lies near the truth (a few degrees, a few
        per cent of its distance: a tracker's prediction, another estimator's output). RGB-D
        (or a backend with flow steps): as the pipeline refines a coarse hypothesis (judged flow /
        ICP steps, the full evidence search, near-symmetric alternatives), and also by the
        evidence search alone from the given pose, the higher evidence winning. Then, and in RGB
        only, the polish of the selected pose (``config.polish_levels``: the evidence search
        with the box fit from 2 deg steps down): in RGB the search's first levels (8 deg, 4 %
        of the distance) would leave a near pose for a spurious optimum of the colour evidence
        (real LM-O dev, every 8th image, from GT + 5 deg / 10 mm: AR* 0.73 with them, 0.88 with
        the polish alone). The result's single hypothesis has ``T_coarse = T_init`` and
        ``score_coarse`` its evidence.

        Args:
            rgb, K, depth, mode: as :meth:`estimate`.
            detection: :class:`Detection` (or (obj_id, box_xywh)) of the object.
            T_init: (4, 4) pose to start from [m].
        Returns:
            :class:`PoseResult` (failed with a reason for an unknown object or a bad box, or
            ``implausible_pose`` when the refined pose fails the plausibility gate).
        Raises:
            InputError for a bad image / K / depth / mode / T_init.
        """
        from coop_ros.geometry.se3 import check_pose, orthonormalized
        rgb, K, depth = self._check_inputs(rgb, K, depth, mode)
        det = detection if isinstance(detection, Detection) else Detection(*detection)
        T_init = orthonormalized(check_pose(T_init, "T_init"))
        box = np.asarray(det.box_xywh, dtype=np.float64).reshape(-1)
        reg = self._objects.get(det.obj_id)
        if reg is None:
            return PoseResult.failed(det.obj_id, Reason.UNKNOWN_OBJECT, f"object id "
                                     f"{det.obj_id!r} is not registered", mode=mode, box_xywh=box)
        try:
            evidence = Evidence(rgb, K, box, depth=depth if mode == "rgbd" else None,
                                box_sigma=self.config.box_sigma)
        except InputError as e:
            return PoseResult.failed(det.obj_id, Reason.BAD_INPUT, f"detection box: {e.detail}",
                                     mode=mode, box_xywh=box)
        t0 = time.perf_counter()
        timings: dict = {}
        with torch_threads(self.config.torch_threads):
            s0, t_0 = evidence.evaluate(self.renderer, reg.proxy_key, T_init[None])
            h = Hypothesis(T_coarse=T_init.copy(), T=T_init.copy(), template_index=-1,
                           template_score=float("nan"), score=float(s0[0]),
                           score_terms=Evidence.as_dict(t_0[0]), score_coarse=float(s0[0]))
            query = QueryImage(rgb=rgb, K=K, depth=depth, box=box)
            search = None if self.config.search_levels == 0 else {"levels": 1}
            steps = mode == "rgbd" or self._flow_iterations(mode) > 0   # else: the polish alone
            if steps:
                self._refine(h, query, reg, evidence, mode, search, timings)
                if self.config.search_levels > 1:
                    self._search_finer(h, reg, evidence, mode)
            if steps and self.config.search_levels > 0 and not np.array_equal(h.T, T_init):
                # the flow / ICP steps can raise the evidence on the way into another basin
                # (real YCB-V gelatin box, GT + 5 deg / 10 mm: 2 of 8 starts ended flipped or
                # 86 deg off); the search from the given pose alone is the other candidate
                r = continue_search(T_init, float(s0[0]), t_0[0], evidence, self.renderer,
                                    reg.proxy_key, reg.obj, levels=self.config.search_levels,
                                    first_level=0, inflation=self.inflation[mode])
                if r.score > h.score:
                    h.T, h.score, h.score_terms = r.T, r.score, Evidence.as_dict(r.terms)
                    h.covariance = r.covariance
            self._polish(h, reg, evidence, mode)
        timings["total"] = time.perf_counter() - t0
        res = PoseResult(obj_id=det.obj_id, status=STATUS_OK, T_cam_obj=h.T.copy(),
                         covariance=None if h.covariance is None else h.covariance.copy(),
                         score=h.score, hypotheses=[h], timings=timings, mode=mode,
                         box_xywh=box)
        return apply_gate(res, reg.hull, K, rgb.shape[1::-1], reg.obj.diameter,
                          evidence if mode == "rgbd" else None, self.renderer, reg.proxy_key)

    def _flow_iterations(self, mode: str) -> int:
        """Flow iterations per hypothesis: the config's, or the backend's default (None)."""
        v = self.config.refine_iterations if mode == "rgb" else self.config.rgbd_refine_iterations
        return int(self.backend.flow.default_iterations[mode]) if v is None else int(v)

    def release(self) -> None:
        """Free the renderer."""
        if self.renderer is not None:
            self.renderer.release()
