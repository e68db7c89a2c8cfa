"""BOP19 evaluation of a pose estimator: AR_VSD, AR_MSSD, AR_MSPD and AR (``coop-ros eval``).

Every accuracy number of the project comes from here. The definitions follow the BOP toolkit's
``scripts/eval_bop19_pose.py`` (+ ``eval_calc_errors``, ``eval_calc_scores``, ``pose_matching``):

* Targets: ``test_targets_bop19.json`` (or every GT instance, see :meth:`BopDataset.targets`).
  For a target ``(scene, image, obj, inst_count)`` the ``inst_count`` most visible GT instances
  of ``obj`` (by ``visib_fract``; in file order when there is no scene_gt_info) are the valid GT
  poses, and only the ``inst_count`` estimates of ``obj`` in that image with the highest scores
  are considered (n_top = -1 in BOP).
* Errors: VSD (:mod:`coop_ros.bop.vsd`: delta = 15 mm, tau = 0.05..0.50 x diameter, cost 'step'),
  MSSD [m] and MSPD [px] (:mod:`coop_ros.bop.metrics`, symmetry-aware with
  ``ObjectModel.symmetry_transforms(max_sym_disc_step=0.01)``, on the mesh vertices), and ADD-S
  for information only. Diameters come from models_info.json when present.
* Matching, for every error type and every correctness threshold separately: estimates are taken
  in order of decreasing score, each is matched to the still unmatched valid GT instance with the
  lowest error below the threshold (``e < th``, strict). A GT instance without a matched estimate
  counts as wrong (a missing estimate has error +inf).
* Recalls: MSSD thresholds 0.05..0.50 x diameter; MSPD thresholds 5..50 px x (image width / 640);
  VSD: correctness threshold theta in 0.05..0.50 for each of the 10 values of tau, i.e. a 10 x 10
  grid (BOP19). AR_X is the mean recall over X's thresholds, AR = mean(AR_VSD, AR_MSSD, AR_MSPD).
  The older single-setting VSD (theta = 0.3) is reported too, as ``vsd_recall_theta03`` (mean over
  tau of the recall at theta = 0.3) -- for information; AR uses the BOP19 grid.
* VSD needs a depth image. When some target's image has no depth (an RGB-only dataset), AR_VSD is
  reported as n/a and AR is the mean of AR_MSSD and AR_MSPD -- stated in the report
  (``ar_definition``) and in the printed table.

An estimator is any callable ``estimate(frame: BopFrame, targets: list[Target]) -> list[Estimate]``
(see :data:`EstimatorFn`). Named estimators for the CLI live in the registry :data:`ESTIMATORS`;
see :func:`register_estimator` for how a module plugs one in (with its own CLI arguments).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from coop_ros.bop import coop_adapter, metrics
from coop_ros.bop.dataset import (BopDataset, BopFrame, Estimate, NoEstimate, Target,
                                  compute_gt_info, read_results_csv, valid_gt_indices,
                                  write_results_csv)
from coop_ros.bop.vsd import VSD_DELTA, VSD_TAUS, VSD_THETAS, vsd
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import check_pose

__all__ = [
    "Estimate", "Target", "EstimatorFn", "EstimatorSpec", "ESTIMATORS", "ESTIMATOR_PLUGINS",
    "register_estimator", "get_estimator", "load_estimator_plugins", "gt_estimator",
    "perturbed_estimator", "TargetResult", "EvalReport", "evaluate",
    "configure_parser", "run",
]

#: An estimator: (frame, the targets of this frame) -> estimates (any number, any objects).
EstimatorFn = Callable[[BopFrame, "list[Target]"], "list[Estimate]"]

#: Plug-in modules imported when the ``eval`` CLI is built (the built-in estimators need none);
#: each may call :func:`register_estimator`.
#: A module that does not exist is skipped silently. More can be given in the environment
#: variable ``COOP_ROS_EVAL_PLUGINS`` (comma-separated module names).
ESTIMATOR_PLUGINS: list[str] = []

_MSSD_TH = metrics.MSSD_THRESHOLDS     # fractions of the diameter
_THETA_03 = int(np.argmin(np.abs(VSD_THETAS - 0.3)))


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class EstimatorSpec:
    """A named estimator for ``coop-ros eval --estimator NAME``.

    factory: ``factory(args, dataset) -> EstimatorFn``; ``args`` is the parsed
        ``argparse.Namespace`` (with the options added by ``add_args``), ``dataset`` the
        :class:`BopDataset` being evaluated (for ``dataset.object(obj_id)`` etc.).
    add_args: optional ``add_args(group)`` adding the estimator's own options to an argparse
        argument group (the ``add_estimator_args`` hook); option names must not clash with the
        other estimators' (prefix them, e.g. ``--coop-mode``, or reuse a generic one).
    """
    name: str
    factory: Callable[[argparse.Namespace, BopDataset], EstimatorFn]
    help: str = ""
    add_args: Callable[[argparse._ArgumentGroup], None] | None = None


#: name -> EstimatorSpec. Built-ins: "gt", "perturbed", "coop" (:mod:`coop_ros.bop.coop_adapter`).
#: Add with :func:`register_estimator`.
ESTIMATORS: dict[str, EstimatorSpec] = {}
_PLUGIN_ERRORS: dict[str, str] = {}


def register_estimator(name: str, factory: Callable[[argparse.Namespace, BopDataset], EstimatorFn],
                       help: str = "", add_args: Callable | None = None,
                       replace: bool = False) -> EstimatorSpec:
    """Register a named estimator (see :class:`EstimatorSpec`). Typical plug-in module::

        from coop_ros.bop.evaluate import register_estimator

        def _add_args(group):
            group.add_argument("--mode", choices=["rgb", "rgbd"], default="rgbd")
            group.add_argument("--hypotheses", type=int, default=1)

        def _factory(args, dataset):
            est = PoseEstimator(...)              # objects from dataset.object(obj_id)
            def estimate(frame, targets):
                return [Estimate(frame.scene_id, frame.im_id, t.obj_id, score, T, time_s) ...]
            return estimate

        register_estimator("coop", _factory, "Co-op pipeline", add_args=_add_args)

    Raises InputError if ``name`` is taken (unless ``replace``).
    """
    if not name or not isinstance(name, str):
        raise InputError(f"estimator name must be a non-empty string, got {name!r}")
    if name in ESTIMATORS and not replace and ESTIMATORS[name].factory is not factory:
        raise InputError(f"estimator {name!r} is already registered")
    spec = EstimatorSpec(name, factory, help, add_args)
    ESTIMATORS[name] = spec
    return spec


def load_estimator_plugins() -> dict[str, str]:
    """Import :data:`ESTIMATOR_PLUGINS` and ``$COOP_ROS_EVAL_PLUGINS``; returns
    {module: error message} for the modules that exist but failed to import."""
    mods = list(ESTIMATOR_PLUGINS)
    mods += [m.strip() for m in os.environ.get("COOP_ROS_EVAL_PLUGINS", "").split(",") if m.strip()]
    for mod in mods:
        if mod in _PLUGIN_ERRORS:
            continue
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is not None and (mod == e.name or mod.startswith(e.name + ".")):
                continue  # the plug-in module itself is absent: nothing to register
            _PLUGIN_ERRORS[mod] = f"{type(e).__name__}: {e}"
        except Exception as e:  # a present but broken plug-in must not break `eval --estimator gt`
            _PLUGIN_ERRORS[mod] = f"{type(e).__name__}: {e}"
    return dict(_PLUGIN_ERRORS)


def get_estimator(name: str) -> EstimatorSpec:
    """The registered spec of ``name``, or, for ``"package.module:function"``, a spec whose factory
    is that function. Raises InputError listing the known names (and plug-in import errors)."""
    if name in ESTIMATORS:
        return ESTIMATORS[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot load estimator factory {name!r}: {e}") from None
        return EstimatorSpec(name, factory)
    msg = f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}"
    if _PLUGIN_ERRORS:
        msg += "; plug-in modules that failed to import: " + "; ".join(
            f"{m} ({e})" for m, e in _PLUGIN_ERRORS.items())
    raise InputError(msg)


# --------------------------------------------------------------------------- built-ins

def gt_estimator(frame: BopFrame, targets: list[Target]) -> list[Estimate]:
    """Returns the GT poses of the targets' valid instances (score 1): AR must be 1.0."""
    out = []
    for t in targets:
        for i in valid_gt_indices(frame, t):
            out.append(Estimate(frame.scene_id, frame.im_id, t.obj_id, 1.0,
                                frame.gt[i].T_cam_obj.copy()))
    return out


def perturbed_estimator(rot_deg: float, trans_m: float, seed: int = 0) -> EstimatorFn:
    """An estimator returning each valid GT pose rotated by exactly ``rot_deg`` about a random
    axis through the object origin and shifted by exactly ``trans_m`` metres in a random direction
    (:func:`coop_ros.geometry.se3.perturb_pose`), reproducibly: the random generator is seeded by
    ``(seed, scene_id, im_id, gt_idx)``. A pure translation (``rot_deg = 0``) gives MSSD =
    ``trans_m`` exactly (without symmetries)."""
    if not (math.isfinite(rot_deg) and math.isfinite(trans_m)) or rot_deg < 0 or trans_m < 0:
        raise InputError(f"rot_deg and trans_m must be finite and >= 0, got {rot_deg}, {trans_m}")

    def estimate(frame: BopFrame, targets: list[Target]) -> list[Estimate]:
        out = []
        for t in targets:
            for i in valid_gt_indices(frame, t):
                T = coop_adapter.perturbed_gt_pose(frame, i, rot_deg, trans_m, seed)
                out.append(Estimate(frame.scene_id, frame.im_id, t.obj_id, 1.0, T))
        return out

    return estimate


def _add_perturbed_args(group) -> None:
    group.add_argument("--rot-deg", type=float, default=5.0,
                       help="perturbed: rotation about a random axis [deg] (default 5)")
    group.add_argument("--trans-mm", type=float, default=10.0,
                       help="perturbed: translation in a random direction [mm] (default 10)")
    group.add_argument("--seed", type=int, default=0, help="perturbed: random seed (default 0)")


register_estimator("gt", lambda args, ds: gt_estimator,
                   "the ground-truth poses (sanity check: AR = 1.0)")
register_estimator("coop", coop_adapter.make_estimator,
                   "Co-op pipeline (PoseEstimator; GT boxes of the targets as detections)",
                   add_args=coop_adapter.add_args)
register_estimator("coop-refine", coop_adapter.make_refine_estimator,
                   "PoseEstimator.refine_pose from each target's GT pose (--start gt) or from "
                   "the perturbed estimator's pose (--start perturbed; --rot-deg, --trans-mm, "
                   "--seed); takes the coop options", add_args=coop_adapter.add_refine_args)
register_estimator("coop-track", coop_adapter.make_track_estimator,
                   "tracking (coop_ros.pipeline.track): each scene's images in im_id order as "
                   "one sequence; the first frame estimated, later ones tracked from the "
                   "previous poses, re-estimated when lost; takes the coop options",
                   add_args=coop_adapter.add_track_args)
register_estimator("perturbed",
                   lambda args, ds: perturbed_estimator(args.rot_deg, args.trans_mm / 1000.0,
                                                        args.seed),
                   "GT rotated by --rot-deg and shifted by --trans-mm (checks the metrics)",
                   add_args=_add_perturbed_args)


# --------------------------------------------------------------------------- records

@dataclass
class TargetResult:
    """Evaluation of one valid GT instance (one per instance of each target).

    Errors are those of the estimate assigned to this instance by score-greedy matching on MSSD
    with no threshold (for inst_count = 1: the highest-scoring estimate of the object); +inf when
    there is none. ``vsd`` is (len(taus),) or None when the image has no depth.
    ``recall_*``: fraction of the metric's thresholds at which this instance was matched by the
    thresholded BOP matching (these average to AR_*). ``reason``: why there is no estimate (the
    estimator's :class:`NoEstimate` reason, or "no estimate returned"); None when there is one.
    ``visib_fract``: the instance's visible fraction (scene_gt_info; None when unknown).
    Oracles (None when the estimate carried no :attr:`Estimate.hypotheses` / ``coarse_poses``;
    0 for an instance without estimate): ``oracle_recall_*`` the recalls of the best of the
    estimate's hypotheses, chosen per metric (the lowest MSSD for MSSD, the lowest MSPD for MSPD,
    the lowest VSD per tau for VSD), i.e. what a perfect selection among them would score;
    ``coarse_recall_mssd`` the MSSD recall of the best of its coarse poses.
    """
    scene_id: int
    im_id: int
    obj_id: int
    gt_idx: int
    diameter_m: float
    image_width: int
    has_estimate: bool
    score: float | None
    time_s: float
    mssd_m: float
    mspd_px: float
    adds_m: float
    vsd: list[float] | None
    recall_vsd: float | None
    recall_mssd: float
    recall_mspd: float
    reason: str | None = None
    visib_fract: float | None = None
    oracle_recall_vsd: float | None = None
    oracle_recall_mssd: float | None = None
    oracle_recall_mspd: float | None = None
    coarse_recall_mssd: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("mssd_m", "mspd_px", "adds_m"):
            if not math.isfinite(d[k]):
                d[k] = None
        return d


@dataclass
class EvalReport:
    """Result of :func:`evaluate`. Recalls in [0, 1]; times in seconds (None when unknown).

    n_targets: number of valid GT instances (the recall denominator); n_images: images evaluated.
    ar_vsd is None when VSD could not be computed (no depth); ``ar_definition`` says what AR
    averages. ``recalls``: per-threshold recall lists (``vsd`` is 10 x 10, tau-major).
    ``ar_best_of_hypotheses``: AR (same definition) when each target's pose is the best of its
    estimate's hypotheses per metric (an oracle selection); ``ar_mssd_best_coarse``: AR_MSSD of
    the best coarse pose per target. Both None when the estimator returned no hypotheses /
    coarse poses (see :class:`TargetResult`).
    """
    dataset: str
    split: str
    estimator: str
    n_targets: int
    n_images: int
    n_estimates: int
    ar_vsd: float | None
    ar_mssd: float
    ar_mspd: float
    ar: float
    ar_definition: str
    vsd_recall_theta03: float | None
    adds_recall_01d: float
    mean_time_per_image: float | None
    mean_time_per_target: float | None
    ar_best_of_hypotheses: float | None = None
    ar_mssd_best_coarse: float | None = None
    recalls: dict = field(default_factory=dict)
    targets: list[TargetResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def per_object(self) -> dict[int, dict]:
        """{obj_id: {"n", "ar_vsd", "ar_mssd", "ar_mspd", "ar", "no_estimate"}} over the
        object's target instances (AR as the report's ``ar_definition``)."""
        out: dict[int, dict] = {}
        for oid in sorted({t.obj_id for t in self.targets}):
            ts = [t for t in self.targets if t.obj_id == oid]
            ms = float(np.mean([t.recall_mssd for t in ts]))
            mp = float(np.mean([t.recall_mspd for t in ts]))
            vs = None if self.ar_vsd is None else float(np.mean([t.recall_vsd for t in ts]))
            ar = (ms + mp) / 2.0 if vs is None else (vs + ms + mp) / 3.0
            out[oid] = {"n": len(ts), "ar_vsd": vs, "ar_mssd": ms, "ar_mspd": mp, "ar": ar,
                        "no_estimate": sum(not t.has_estimate for t in ts)}
        return out

    def by_visibility(self) -> list[dict]:
        """AR and the oracles per visibility bin (:data:`VISIBILITY_BINS`, on
        ``visib_fract``): [{"bin", "lo", "hi", "n", "ar", "ar_mssd", "ar_mspd", "ar_vsd",
        "ar_best_of_hypotheses", "ar_mssd_best_coarse"}]; a bin without targets has n 0 and
        None figures; targets of unknown visibility are in no bin."""
        out = []
        for lo, hi in VISIBILITY_BINS:
            ts = [t for t in self.targets if t.visib_fract is not None
                  and lo <= t.visib_fract < hi]
            row = {"bin": _bin_name(lo, hi), "lo": lo, "hi": hi, "n": len(ts)}
            row.update(_ar_of(ts, self.ar_vsd is not None))
            out.append(row)
        return out

    def summary(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "dataset", "split", "estimator", "n_targets", "n_images", "n_estimates", "ar_vsd",
            "ar_mssd", "ar_mspd", "ar", "ar_definition", "vsd_recall_theta03", "adds_recall_01d",
            "mean_time_per_image", "mean_time_per_target", "ar_best_of_hypotheses",
            "ar_mssd_best_coarse")}
        d["by_visibility"] = self.by_visibility()
        return d

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "recalls": self.recalls, "notes": self.notes,
                "skipped": self.skipped,
                "per_object": {str(k): v for k, v in self.per_object().items()},
                "settings": {"vsd_delta_m": VSD_DELTA, "vsd_taus": VSD_TAUS.tolist(),
                             "vsd_thetas": VSD_THETAS.tolist(),
                             "mssd_thresholds_diameter": _MSSD_TH.tolist(),
                             "mspd_thresholds_px_at_640": metrics.MSPD_THRESHOLDS_PX.tolist()},
                "targets": [t.to_dict() for t in self.targets]}

    def save_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def markdown(self, per_object: bool = False) -> str:
        """A markdown table of the summary, with footnotes stating the definitions; then the
        per-object table (``per_object``), the targets skipped (no mesh) and every target
        instance without an estimate with its reason."""
        def f(x, nd=3):
            return "n/a" if x is None else f"{x:.{nd}f}"

        def ft(x):
            return "n/a" if x is None else f"{x:.4g}"
        ar_col = "AR" if self.ar_vsd is not None else "AR*"
        lines = [
            f"| dataset | estimator | targets | images | AR_VSD | AR_MSSD | AR_MSPD | {ar_col} "
            "| time/image [s] | time/target [s] |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.dataset} ({self.split}) | {self.estimator} | {self.n_targets} "
            f"| {self.n_images} | {f(self.ar_vsd)} | {f(self.ar_mssd)} | {f(self.ar_mspd)} "
            f"| {f(self.ar)} | {ft(self.mean_time_per_image)} | {ft(self.mean_time_per_target)} |",
            "",
            "BOP19 definitions: VSD with delta = 15 mm, tau = 5..50 % of the object diameter "
            "(step 5 %), correctness threshold theta = 0.05..0.50 (step 0.05): AR_VSD = mean "
            "recall over the 10 x 10 (tau, theta) grid"
            + (f" (recall at theta = 0.3 alone, mean over tau: {f(self.vsd_recall_theta03)})"
               if self.vsd_recall_theta03 is not None else "")
            + "; MSSD thresholds 5..50 % of the diameter; MSPD thresholds 5..50 px x width/640; "
            "a target without estimate counts as wrong.",
            f"AR = {self.ar_definition}. ADD-S < 0.1 d (information): "
            f"{f(self.adds_recall_01d)}.",
        ]
        if self.ar_best_of_hypotheses is not None or self.ar_mssd_best_coarse is not None:
            lines.append(f"Oracles of the same run: best of the hypotheses {ar_col} "
                         f"{f(self.ar_best_of_hypotheses)} (per target the hypothesis with the "
                         "lowest error of each metric: a perfect selection); best coarse pose "
                         f"AR_MSSD {f(self.ar_mssd_best_coarse)}.")
        lines += self.notes
        bins = self.by_visibility()
        if any(b["n"] for b in bins):
            lines += ["", f"| visib_fract | targets | AR_MSSD | AR_MSPD | {ar_col} "
                      f"| best of hypotheses {ar_col} | best coarse AR_MSSD |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for b in bins:
                lines.append(f"| {b['bin']} | {b['n']} | {f(b['ar_mssd'])} | {f(b['ar_mspd'])} "
                             f"| {f(b['ar'])} | {f(b['ar_best_of_hypotheses'])} "
                             f"| {f(b['ar_mssd_best_coarse'])} |")
        if per_object:
            lines += ["", f"| object | targets | AR_VSD | AR_MSSD | AR_MSPD | {ar_col} "
                      "| without estimate |", "|---:|---:|---:|---:|---:|---:|---:|"]
            for oid, r in self.per_object().items():
                lines.append(f"| {oid} | {r['n']} | {f(r['ar_vsd'])} | {f(r['ar_mssd'])} "
                             f"| {f(r['ar_mspd'])} | {f(r['ar'])} | {r['no_estimate']} |")
        if self.skipped:
            lines += ["", f"Skipped ({len(self.skipped)}):"] + [f"- {x}" for x in self.skipped]
        missing = [t for t in self.targets if not t.has_estimate]
        if missing:
            lines += ["", f"Target instances without an estimate ({len(missing)} of "
                      f"{len(self.targets)}; each counts as wrong):"]
            lines += [f"- scene {t.scene_id} image {t.im_id} object {t.obj_id} (GT {t.gt_idx}): "
                      f"{t.reason}" for t in missing]
        return "\n".join(lines)


#: visibility bins of :meth:`EvalReport.by_visibility`: [lo, hi) of visib_fract
VISIBILITY_BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.01))


def _bin_name(lo: float, hi: float) -> str:
    if lo == 0.0:
        return f"< {hi:g}"
    if hi > 1.0:
        return f">= {lo:g}"
    return f"{lo:g}-{hi:g}"


def _ar_of(ts: list[TargetResult], with_vsd: bool) -> dict:
    """AR figures (and the oracles) averaged over target results ``ts`` (None when empty or,
    for an oracle, when no target carries it)."""
    keys = ("ar", "ar_mssd", "ar_mspd", "ar_vsd", "ar_best_of_hypotheses", "ar_mssd_best_coarse")
    if not ts:
        return dict.fromkeys(keys)

    def mean(vals):
        return float(np.mean(vals))

    ms, mp = mean([t.recall_mssd for t in ts]), mean([t.recall_mspd for t in ts])
    vs = mean([t.recall_vsd for t in ts]) if with_vsd else None
    out = {"ar_mssd": ms, "ar_mspd": mp, "ar_vsd": vs,
           "ar": (ms + mp) / 2.0 if vs is None else (vs + ms + mp) / 3.0}
    if any(t.oracle_recall_mssd is not None for t in ts):
        def o(t, k):   # an estimate without hypotheses: its own pose; none: 0
            v = getattr(t, "oracle_recall_" + k)
            return v if v is not None else getattr(t, "recall_" + k)
        oms, omp = mean([o(t, "mssd") for t in ts]), mean([o(t, "mspd") for t in ts])
        if with_vsd:
            out["ar_best_of_hypotheses"] = (mean([o(t, "vsd") for t in ts]) + oms + omp) / 3.0
        else:
            out["ar_best_of_hypotheses"] = (oms + omp) / 2.0
    else:
        out["ar_best_of_hypotheses"] = None
    out["ar_mssd_best_coarse"] = (mean([t.coarse_recall_mssd or 0.0 for t in ts])
                                  if any(t.coarse_recall_mssd is not None for t in ts) else None)
    return out


def _poses(x) -> np.ndarray | None:
    """Optional poses (list / array) -> (N, 4, 4) float64, or None when absent or empty."""
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64).reshape(-1, 4, 4)
    return a if len(a) else None


def _oracle_recalls(est: Estimate, frame: BopFrame, Tg: np.ndarray, ob: "_Obj", do_vsd: bool,
                    renderer, vsd_delta: float) -> dict:
    """The oracle fields of :class:`TargetResult` for estimate ``est`` of the GT pose Tg (4, 4)
    [m]: recalls of the best of its hypotheses per metric, and the MSSD recall of its best coarse
    pose (None where the estimate carries none)."""
    out: dict = {}
    Rg, tg = Tg[:3, :3], Tg[:3, 3]
    H = _poses(est.hypotheses)
    if H is not None:
        e_ms = np.array([metrics.mssd(T[:3, :3], T[:3, 3], Rg, tg, ob.pts, ob.syms) for T in H])
        e_mp = np.array([metrics.mspd(T[:3, :3], T[:3, 3], Rg, tg, frame.K, ob.pts, ob.syms)
                         if T[2, 3] > 0 else np.inf for T in H])
        out["oracle_recall_mssd"] = float(np.mean(e_ms.min() < _MSSD_TH * ob.diameter))
        out["oracle_recall_mspd"] = float(np.mean(e_mp.min()
                                                  < metrics.mspd_thresholds(frame.width)))
        if do_vsd:
            depth_gt = renderer.render(ob.key, Tg, frame.K, width=frame.width,
                                       height=frame.height).depth[0]
            e_v = np.stack([vsd(frame.depth, frame.K, T, Tg, renderer, ob.key, ob.diameter,
                                VSD_TAUS, vsd_delta, depth_gt=depth_gt) for T in H])  # (N, tau)
            best = e_v.min(0)                                                        # (tau,)
            out["oracle_recall_vsd"] = float(np.mean(best[:, None] < VSD_THETAS[None, :]))
    C = _poses(est.coarse_poses)
    if C is not None:
        e_c = min(metrics.mssd(T[:3, :3], T[:3, 3], Rg, tg, ob.pts, ob.syms) for T in C)
        out["coarse_recall_mssd"] = float(np.mean(e_c < _MSSD_TH * ob.diameter))
    return out


# --------------------------------------------------------------------------- matching

def _match(errors: np.ndarray, scores: np.ndarray, valid: np.ndarray, th: float) -> np.ndarray:
    """BOP ``pose_matching.match_poses`` for one threshold.

    errors: (E, G) errors of E estimates w.r.t. G GT instances; scores: (E,); valid: (G,) bool.
    Returns (G,) bool: matched GT instances."""
    matched = np.zeros(errors.shape[1], dtype=bool)
    for e in np.argsort(-scores, kind="stable"):
        cand = valid & ~matched & (errors[e] < th)
        if cand.any():
            g = int(np.argmin(np.where(cand, errors[e], np.inf)))
            matched[g] = True
    return matched


@dataclass
class _Obj:
    key: str
    pts: np.ndarray
    syms: np.ndarray
    diameter: float


# --------------------------------------------------------------------------- evaluation

def evaluate(dataset: BopDataset, estimator: EstimatorFn | None = None, renderer=None,
             max_targets: int | None = None, progress: bool = True, *,
             estimates: Iterable[Estimate] | None = None, compute_vsd: bool = True,
             estimator_name: str | None = None, max_sym_disc_step: float = 0.01,
             vsd_delta: float = VSD_DELTA, device: str = "cpu",
             collect: list | None = None) -> EvalReport:
    """Run ``estimator`` over the dataset's targets (or score given ``estimates``) and compute the
    BOP19 errors and recalls (see the module docstring for every definition).

    Args:
        dataset: the :class:`BopDataset`.
        estimator: ``estimate(frame, targets) -> list[Estimate]``, called once per image with that
            image's targets. Estimates with ``time_s < 0`` get the measured wall time of the call.
            Exactly one of ``estimator`` / ``estimates`` must be given.
        renderer: a :class:`coop_ros.render.renderer.Renderer` for VSD; created (on ``device``)
            when needed and None.
        max_targets: evaluate only the first N targets (in (scene, image, object) order).
        progress: show a tqdm bar on stderr.
        estimates: precomputed estimates (e.g. :func:`read_results_csv`), metres.
        compute_vsd: False skips VSD (AR then averages MSSD and MSPD; stated in the report).
        estimator_name: name written in the report.
        max_sym_disc_step: discretisation of continuous symmetries (BOP: 0.01).
        vsd_delta: VSD visibility tolerance in metres (BOP: 0.015; ITODD 0.005).
        device: renderer device when one is created.
        collect: when a list, every estimate (with its time) is appended to it (for the CSV).
    Returns:
        :class:`EvalReport`.
    Raises:
        InputError for bad estimates (non-rigid pose, wrong image) or dataset problems.
    """
    if (estimator is None) == (estimates is None):
        raise InputError("evaluate needs exactly one of estimator / estimates")
    targets = dataset.targets()
    skipped = [f"scene {t.scene_id} image {t.im_id} object {t.obj_id}: no mesh "
               f"(obj_{t.obj_id:06d}.ply/.obj in {dataset.models_dir}), not evaluated"
               for t in targets if not dataset.has_model(t.obj_id)]
    targets = [t for t in targets if dataset.has_model(t.obj_id)]
    if skipped:
        print(f"coop-ros eval: skipping {len(skipped)} target(s) whose object has no mesh: "
              + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
    if max_targets is not None:
        if max_targets < 1:
            raise InputError(f"max_targets must be >= 1, got {max_targets}")
        targets = targets[:max_targets]
    if not targets:
        raise InputError(f"{dataset.root}: no targets to evaluate"
                         + (f" ({len(skipped)} skipped: no mesh)" if skipped else ""))
    by_image: dict[tuple[int, int], list[Target]] = {}
    for t in targets:
        by_image.setdefault((t.scene_id, t.im_id), []).append(t)
    given: dict[tuple[int, int], list[Estimate]] = {}
    if estimates is not None:
        for e in estimates:
            given.setdefault((int(e.scene_id), int(e.im_id)), []).append(e)
        if estimator_name is None:
            estimator_name = "results file"
    if estimator_name is None:
        estimator_name = getattr(estimator, "name", None) or getattr(estimator, "__name__",
                                                                     type(estimator).__name__)

    own_renderer = False
    objs: dict[int, _Obj] = {}
    results: list[TargetResult] = []
    rec_vsd, rec_mssd, rec_mspd, rec_adds = [], [], [], []
    image_times: list[float] = []
    n_estimates = 0
    n_no_depth = 0

    def get_obj(obj_id: int) -> _Obj:
        if obj_id not in objs:
            o = dataset.object(obj_id)
            objs[obj_id] = _Obj(f"obj_{obj_id:06d}", np.asarray(o.vertices, dtype=np.float64),
                                o.symmetry_transforms(max_sym_disc_step), dataset.diameter(obj_id))
        return objs[obj_id]

    items = list(by_image.items())
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(items), desc=f"eval {estimator_name}", unit="img", file=sys.stderr)
    try:
        for (scene_id, im_id), im_targets in items:
            frame = dataset.frame(scene_id, im_id)
            if frame.gt and not frame.gt_info:
                # no scene_gt_info.json: visible boxes / fractions from the GT renderings (and
                # the depth), as the BOP toolkit computes them
                if renderer is None:
                    from coop_ros.render.renderer import Renderer
                    renderer = Renderer(frame.width, frame.height, device=device)
                    own_renderer = True
                frame.gt_info = compute_gt_info(frame, dataset, renderer)
            no_est: list[NoEstimate] = []
            if estimator is not None:
                t0 = time.perf_counter()
                out = list(estimator(frame, im_targets))
                dt = time.perf_counter() - t0
                no_est = [e for e in out if isinstance(e, NoEstimate)]
                ests = [e for e in out if not isinstance(e, NoEstimate)]
                for e in ests:
                    if not isinstance(e, Estimate):
                        raise InputError(f"estimator returned {type(e).__name__}, "
                                         "expected Estimate")
                    if (int(e.scene_id), int(e.im_id)) != (scene_id, im_id):
                        raise InputError(f"estimator returned an estimate for scene {e.scene_id} "
                                         f"image {e.im_id} while given scene {scene_id} "
                                         f"image {im_id}")
                    if e.time_s is None or e.time_s < 0:
                        e.time_s = dt
            else:
                ests = given.get((scene_id, im_id), [])
            if collect is not None:
                collect.extend(ests)
            if estimator is not None:   # every estimate carries a time (measured if unknown)
                image_times.append(max([dt] if not ests else [float(e.time_s) for e in ests]))
            else:                       # BOP: one time per image, -1 = unknown
                times = [float(e.time_s) for e in ests]
                image_times.append(max(times) if times and min(times) >= 0 else -1.0)
            do_vsd = compute_vsd and frame.depth is not None

            for t in im_targets:
                gt_ids = valid_gt_indices(frame, t)
                ob = get_obj(t.obj_id)
                cand = sorted((e for e in ests if int(e.obj_id) == t.obj_id),
                              key=lambda e: -float(e.score))[:t.inst_count]
                n_estimates += len(cand)
                E, G = len(cand), len(gt_ids)
                e_mssd = np.full((E, G), np.inf)
                e_mspd = np.full((E, G), np.inf)
                e_adds = np.full((E, G), np.inf)
                e_vsd = np.full((E, G, len(VSD_TAUS)), np.inf)
                if do_vsd and E and renderer is None:
                    from coop_ros.render.renderer import Renderer
                    renderer = Renderer(frame.width, frame.height, device=device)
                    own_renderer = True
                if do_vsd and E and not renderer.has(ob.key):
                    renderer.add_object(ob.key, dataset.object(t.obj_id))
                for gi, g in enumerate(gt_ids):
                    Tg = frame.gt[g].T_cam_obj
                    depth_gt = None
                    for ei, e in enumerate(cand):
                        Te = check_pose(e.T_cam_obj, f"estimate of obj {e.obj_id} in scene "
                                                     f"{scene_id} image {im_id}")
                        Re, te, Rg, tg = Te[:3, :3], Te[:3, 3], Tg[:3, :3], Tg[:3, 3]
                        e_mssd[ei, gi] = metrics.mssd(Re, te, Rg, tg, ob.pts, ob.syms)
                        e_mspd[ei, gi] = metrics.mspd(Re, te, Rg, tg, frame.K, ob.pts, ob.syms) \
                            if te[2] > 0 else np.inf
                        e_adds[ei, gi] = metrics.adds(Re, te, Rg, tg, ob.pts)
                        if do_vsd:
                            if depth_gt is None:
                                depth_gt = renderer.render(ob.key, Tg, frame.K, width=frame.width,
                                                           height=frame.height).depth[0]
                            e_vsd[ei, gi] = vsd(frame.depth, frame.K, Te, Tg, renderer, ob.key,
                                                ob.diameter, VSD_TAUS, vsd_delta,
                                                depth_gt=depth_gt)
                scores = np.array([float(e.score) for e in cand])
                valid = np.ones(G, dtype=bool)
                m_mssd = np.stack([_match(e_mssd, scores, valid, th * ob.diameter)
                                   for th in _MSSD_TH], axis=1)                 # (G, 10)
                m_mspd = np.stack([_match(e_mspd, scores, valid, th)
                                   for th in metrics.mspd_thresholds(frame.width)], axis=1)
                m_adds = _match(e_adds, scores, valid, metrics.ADD_THRESHOLD * ob.diameter)
                if do_vsd:
                    m_vsd = np.stack([np.stack([_match(e_vsd[:, :, ti], scores, valid, th)
                                                for th in VSD_THETAS], axis=1)
                                      for ti in range(len(VSD_TAUS))], axis=1)  # (G, tau, theta)
                else:
                    n_no_depth += G
                # errors reported per GT: greedy by score on MSSD without threshold
                assigned = np.full(G, -1)
                taken = np.zeros(G, dtype=bool)
                for ei in np.argsort(-scores, kind="stable"):
                    if taken.all():
                        break
                    gi = int(np.argmin(np.where(taken, np.inf, e_mssd[ei])))
                    assigned[gi], taken[gi] = ei, True
                reasons = [e.reason for e in no_est if int(e.obj_id) == t.obj_id]
                for gi, g in enumerate(gt_ids):
                    ei = assigned[gi]
                    has = ei >= 0
                    reason = None if has else (reasons.pop(0) if reasons
                                               else "no estimate returned")
                    oracle = _oracle_recalls(cand[ei], frame, frame.gt[g].T_cam_obj, ob, do_vsd,
                                             renderer, vsd_delta) if has else {}
                    vf = frame.gt_info[g].visib_fract if g < len(frame.gt_info) else -1.0
                    results.append(TargetResult(
                        scene_id=scene_id, im_id=im_id, obj_id=t.obj_id, gt_idx=int(g),
                        diameter_m=ob.diameter, image_width=frame.width, has_estimate=bool(has),
                        score=float(scores[ei]) if has else None,
                        time_s=float(cand[ei].time_s) if has else -1.0,
                        mssd_m=float(e_mssd[ei, gi]) if has else math.inf,
                        mspd_px=float(e_mspd[ei, gi]) if has else math.inf,
                        adds_m=float(e_adds[ei, gi]) if has else math.inf,
                        vsd=(e_vsd[ei, gi].tolist() if has else [1.0] * len(VSD_TAUS))
                        if do_vsd else None,
                        recall_vsd=float(m_vsd[gi].mean()) if do_vsd else None,
                        recall_mssd=float(m_mssd[gi].mean()),
                        recall_mspd=float(m_mspd[gi].mean()), reason=reason,
                        visib_fract=float(vf) if vf >= 0 else None, **oracle))
                    rec_mssd.append(m_mssd[gi])
                    rec_mspd.append(m_mspd[gi])
                    rec_adds.append(m_adds[gi])
                    if do_vsd:
                        rec_vsd.append(m_vsd[gi])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own_renderer:
            renderer.release()

    n = len(results)
    mssd_r = np.mean(rec_mssd, axis=0)
    mspd_r = np.mean(rec_mspd, axis=0)
    ar_mssd, ar_mspd = float(mssd_r.mean()), float(mspd_r.mean())
    notes = []
    recalls = {"mssd": mssd_r.tolist(), "mspd": mspd_r.tolist()}
    if n_no_depth == 0:
        vsd_r = np.mean(rec_vsd, axis=0)                                       # (tau, theta)
        recalls["vsd"] = vsd_r.tolist()
        ar_vsd = float(vsd_r.mean())
        vsd03 = float(vsd_r[:, _THETA_03].mean())
        ar = (ar_vsd + ar_mssd + ar_mspd) / 3.0
        ar_def = "mean(AR_VSD, AR_MSSD, AR_MSPD) (BOP19)"
    else:
        ar_vsd = vsd03 = None
        ar = (ar_mssd + ar_mspd) / 2.0
        why = "VSD disabled" if not compute_vsd else \
            f"{n_no_depth} of {n} targets have no depth image, VSD n/a"
        ar_def = f"mean(AR_MSSD, AR_MSPD) only ({why}); not comparable to BOP's AR"
    oracles = _ar_of(results, n_no_depth == 0)
    known = [t for t in image_times if t >= 0]
    t_img = float(np.mean(known)) if known and len(known) == len(image_times) else None
    t_tgt = float(np.sum(known)) / n if t_img is not None else None
    return EvalReport(
        dataset=str(dataset.root.name), split=dataset.split if dataset.layout == "bop" else "flat",
        estimator=str(estimator_name), n_targets=n, n_images=len(items), n_estimates=n_estimates,
        ar_vsd=ar_vsd, ar_mssd=ar_mssd, ar_mspd=ar_mspd, ar=float(ar), ar_definition=ar_def,
        vsd_recall_theta03=vsd03, adds_recall_01d=float(np.mean(rec_adds)),
        mean_time_per_image=t_img, mean_time_per_target=t_tgt, recalls=recalls,
        targets=results, notes=notes, skipped=skipped,
        ar_best_of_hypotheses=oracles["ar_best_of_hypotheses"],
        ar_mssd_best_coarse=oracles["ar_mssd_best_coarse"])


# --------------------------------------------------------------------------- CLI

def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``coop-ros eval`` (plus every registered estimator's own options)."""
    plugin_errors = load_estimator_plugins()
    for mod, err in plugin_errors.items():
        print(f"coop-ros eval: warning: estimator plug-in {mod} failed to import: {err}",
              file=sys.stderr)
    parser.add_argument("--bop", required=True, help="BOP dataset folder (with models/ and the "
                        "split folder) or a flat one-frame folder")
    parser.add_argument("--split", default="test", help="split folder name (default: test)")
    parser.add_argument("--models-dir", default=None, help="models folder (default: BOP/models)")
    parser.add_argument("--targets-file", default="test_targets_bop19.json",
                        help="targets file inside --bop (default: test_targets_bop19.json; "
                        "absent -> every GT instance)")
    names = sorted(ESTIMATORS)
    parser.add_argument("--estimator", default="gt",
                        help=f"estimator: {', '.join(names)}, or package.module:factory "
                        "(factory(args, dataset) -> estimate(frame, targets)) (default: gt)")
    parser.add_argument("--results", default=None,
                        help="evaluate this BOP results CSV instead of running an estimator")
    parser.add_argument("--max-targets", type=int, default=None, help="evaluate the first N only")
    parser.add_argument("--out", default=None, help="write the estimates as a BOP results CSV")
    parser.add_argument("--report", default=None, help="write the JSON report here")
    parser.add_argument("--no-vsd", action="store_true", help="skip VSD (no rendering)")
    parser.add_argument("--vsd-delta-mm", type=float, default=VSD_DELTA * 1000.0,
                        help="VSD visibility tolerance [mm] (BOP: 15; ITODD 5)")
    parser.add_argument("--device", default="cpu", help="renderer device for VSD (cpu | cuda:i)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--per-object", action="store_true", help="print AR per object id")
    parser.add_argument("--units", choices=("mm", "m"), default=None,
                        help="unit of the mesh files (default: mm, or what a flat folder's "
                        "targets.json says)")
    for name in names:
        spec = ESTIMATORS[name]
        if spec.add_args is not None:
            spec.add_args(parser.add_argument_group(f"estimator '{name}'", spec.help or None))


def run(args: argparse.Namespace) -> int:
    """``coop-ros eval``: evaluate, write the CSV / JSON report, print the markdown table."""
    ds = BopDataset(args.bop, split=args.split, models_dir=args.models_dir,
                    targets_filename=args.targets_file, units=args.units)
    collected: list[Estimate] = []
    common = dict(max_targets=args.max_targets, progress=not args.quiet,
                  compute_vsd=not args.no_vsd, vsd_delta=args.vsd_delta_mm / 1000.0,
                  device=args.device, collect=collected)
    if args.results:
        report = evaluate(ds, estimates=read_results_csv(args.results),
                          estimator_name=Path(args.results).name, **common)
    else:
        spec = get_estimator(args.estimator)
        fn = spec.factory(args, ds)
        report = evaluate(ds, fn, estimator_name=spec.name, **common)
    if args.out:
        write_results_csv(args.out, collected)
        print(f"results: {args.out} ({len(collected)} estimates)", file=sys.stderr)
    if args.report:
        report.save_json(args.report)
        print(f"report: {args.report}", file=sys.stderr)
    print(report.markdown(per_object=args.per_object))
    return 0
