"""Training pairs generated on the fly from BOP-format synthetic scenes (exact ground truth).

Every pair starts from one GT instance (scene, image, GT index) whose ``visib_fract`` is at least
``data.min_visib_fract``. Crops follow the pipeline exactly (:mod:`coop_ros.pipeline`): the query
crop of a detection is ``make_crop(box, S, margin=0.2)``; a refinement crop follows the pose,
``crop_around_projection(K, T, diameter, S, margin=0.1)``; renders are black-background
renderings of the object alone (:meth:`Renderer.render`).

coarse (query crop, template) -> per query patch (class in [0, K], offset):
    the query crop is cut around the (jittered) visible box; the object is re-rendered alone at
    its GT pose in the crop (xyz = the object point behind each pixel); a query patch centre
    ``(16c + 7.5, 16r + 7.5)`` lies between 4 pixels: it is "on the object" when those 4 are
    inside the rendered silhouette AND visible in the scene (``mask_visib``: occluders, the
    crop border); its object point is their mean xyz. The point is projected into the template
    with the template pose; it is visible there when it lands inside the template silhouette and
    its depth agrees with the template depth (``visib_depth_tol`` x diameter). Visible ->
    :func:`coop_ros.nets.patch_targets` (class + offset, its exact inverse is what the pipeline
    decodes); else class K ("no match": background, occluded, or hidden in the template).
    The template is one of the ``near_templates`` viewpoints nearest to the query's viewpoint
    (probability ``near_template_prob``) or any of the bank.

refiner (render at a perturbed pose, query crop) -> dense flow render -> query:
    T_init = T_gt perturbed (rotation about a random axis through the object origin, angle
    uniform in [0, refine_rot_deg]; translation Gaussian, std (xy, z) x diameter); the crop
    follows T_init; every rendered pixel's object point X projects with T_gt to ``uv_gt``:
    flow target ``uv_gt - uv``; certainty target 1 when ``uv_gt`` is inside the crop, visible in
    the query (``mask_visib``) and not self-occluded (|z_gt(X) - depth of the GT render at
    uv_gt| < tol). The pose loss uses the render's xyz, K of the crop, T_init and T_gt.

selection (query crop, render at a hypothesis) -> label:
    positive iff the symmetry-aware rotation error < ``pos_rot_deg`` and the translation error
    < ``pos_trans`` x diameter; half of the hypotheses are drawn inside that region, half outside
    it (up to ``neg_rot_deg`` / ``neg_trans``); the label is computed from the actual errors.

:class:`PairDataset` is a map-style ``torch.utils.data.Dataset``: item ``i`` of epoch ``e`` is a
deterministic function of (seed, e, i) (numpy Generator), so runs are reproducible, resumable and
shardable with ``DistributedSampler``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from coop_ros.nets.preprocess import to_input
from coop_ros.errors import InputError
from coop_ros.geometry.camera import crop_around_projection, make_crop, project_unchecked
from coop_ros.geometry.se3 import rotvec_to_matrix
from coop_ros.train.augment import augment_rgb
from coop_ros.train.config import AugmentConfig, DataConfig, PairConfig

__all__ = ["Instance", "SceneSource", "check_preset", "PairDataset", "coarse_pair",
           "refiner_pair", "selection_pair", "symmetric_errors", "PATCH"]

PATCH = 16


def check_preset(root, preset: str) -> None:
    """Raise InputError unless the BOP folder ``root`` was written by the synthetic generator with
    the scene preset ``preset`` (its ``dataset.json``; folders of older versions are
    ``default``)."""
    import json

    meta = Path(root) / "dataset.json"
    if not meta.is_file():
        raise InputError(f"data.preset is {preset!r} but {root} has no dataset.json (not written "
                         f"by coop-ros synth / coop-ros train shapes); make it with "
                         f"'coop-ros train shapes --preset {preset} --out {root} ...'")
    got = json.loads(meta.read_text()).get("config", {}).get("preset", "default")
    if got != preset:
        raise InputError(f"data.preset is {preset!r} but {root} holds {got!r} scenes; make it "
                         f"with 'coop-ros train shapes --preset {preset} --out {root} ...'")


@dataclass(frozen=True)
class Instance:
    """One GT instance: dataset index, scene, image, GT index, object id, visib_fract."""

    ds: int
    scene_id: int
    im_id: int
    gt_idx: int
    obj_id: int
    visib_fract: float


class SceneSource:
    """BOP folders -> instances, frames, objects, template banks and a renderer (all lazy).

    Args:
        roots: BOP dataset folders.
        cfg: :class:`DataConfig` (split, object filter via ``obj_ids``, crop size, visibility).
        obj_ids: only these object ids (empty = all).
        device: renderer device.
    """

    def __init__(self, roots, cfg: DataConfig, obj_ids=(), device: str = "cpu",
                 pose_points: int = 256):
        from coop_ros.bop.dataset import BopDataset

        self.cfg = cfg
        self.size = int(cfg.crop_size)
        self.device_name = device
        self.pose_points = int(pose_points)
        if getattr(cfg, "preset", None):
            for r in roots:
                check_preset(r, cfg.preset)
        self.datasets = [BopDataset(r, split=cfg.split) for r in roots]
        keep = {int(o) for o in obj_ids}
        self.instances: list[Instance] = []
        for d, ds in enumerate(self.datasets):
            for s in ds.scene_ids:
                cam, gt, info = ds._scene(s)
                for im in sorted(cam):
                    for g, entry in enumerate(gt.get(im, [])):
                        oid = int(entry["obj_id"])
                        vf = float(info[im][g].get("visib_fract", 1.0)) if info and im in info \
                            else 1.0
                        if (keep and oid not in keep) or vf < cfg.min_visib_fract:
                            continue
                        self.instances.append(Instance(d, s, im, g, oid, vf))
        if not self.instances:
            raise InputError(f"no training instance in {[str(r) for r in roots]} (split "
                             f"{cfg.split!r}, obj_ids {sorted(keep) or 'all'}, visib_fract >= "
                             f"{cfg.min_visib_fract})")
        self._renderer = None
        self._objects: dict = {}
        self._banks: dict = {}
        self._points: dict = {}
        self._syms: dict = {}
        self._frame_key = None
        self._frame = None

    # ------------------------------------------------------------------ lazy resources
    @property
    def renderer(self):
        if self._renderer is None:
            from coop_ros.render.renderer import Renderer
            self._renderer = Renderer(self.size, self.size, device=self.device_name)
        return self._renderer

    def release(self) -> None:
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None

    def __getstate__(self):  # DataLoader workers: each process opens its own GL context
        st = dict(self.__dict__)
        st["_renderer"] = None
        st["_frame"] = None
        st["_frame_key"] = None
        return st

    def object(self, ds: int, obj_id: int):
        """(ObjectModel, renderer key) of an object, uploaded once."""
        k = (ds, obj_id)
        if k not in self._objects:
            obj = self.datasets[ds].object(obj_id)
            key = f"train:{ds}:{obj_id}"
            self._objects[k] = (obj, key)
        obj, key = self._objects[k]
        if not self.renderer.has(key):
            self.renderer.add_object(key, obj)
        return obj, key

    def bank(self, ds: int, obj_id: int):
        """42-view template bank of an object (disk-cached under ``data.template_cache``)."""
        k = (ds, obj_id)
        if k not in self._banks:
            from coop_ros.render.templates import build_template_bank
            obj, _ = self.object(ds, obj_id)
            cache = self.cfg.template_cache or "out/train_cache/templates"
            self._banks[k] = build_template_bank(obj, self.renderer, n_views=42, size=self.size,
                                                 cache_dir=cache)
        return self._banks[k]

    def points(self, ds: int, obj_id: int) -> np.ndarray:
        """(P, 3) float32 model surface points [m] for the pose loss."""
        k = (ds, obj_id)
        if k not in self._points:
            obj, _ = self.object(ds, obj_id)
            self._points[k] = obj.sample_surface(self.pose_points, seed=0).astype(np.float32)
        return self._points[k]

    def symmetries(self, ds: int, obj_id: int) -> np.ndarray:
        k = (ds, obj_id)
        if k not in self._syms:
            obj, _ = self.object(ds, obj_id)
            self._syms[k] = obj.symmetry_transforms(0.02)
        return self._syms[k]

    def frame(self, inst: Instance):
        k = (inst.ds, inst.scene_id, inst.im_id)
        if self._frame_key != k:
            self._frame = self.datasets[inst.ds].frame(inst.scene_id, inst.im_id)
            self._frame_key = k
        return self._frame


# ==============================================================================================
# helpers
# ==============================================================================================
def _patch_centres(S: int) -> np.ndarray:
    G = S // PATCH
    r, c = np.divmod(np.arange(G * G), G)
    return np.stack([PATCH * (c + 0.5) - 0.5, PATCH * (r + 0.5) - 0.5], axis=1)


def _project(K, T, X):
    P = X @ T[:3, :3].T + T[:3, 3]
    return project_unchecked(K, P, min_z=1e-9), P[:, 2]


def _view_dir(T: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unit direction object centre -> camera, in the object frame."""
    cam = -T[:3, :3].T @ T[:3, 3]
    d = cam - center
    return d / max(np.linalg.norm(d), 1e-12)


def _random_axis(rng) -> np.ndarray:
    a = rng.normal(size=3)
    return a / np.linalg.norm(a)


def _rotate(T: np.ndarray, angle_deg: float, rng) -> np.ndarray:
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = rotvec_to_matrix(_random_axis(rng) * math.radians(angle_deg)) @ out[:3, :3]
    return out


def symmetric_errors(T_est: np.ndarray, T_gt: np.ndarray, syms: np.ndarray
                     ) -> tuple[float, float]:
    """(rotation error [deg], translation error [m]) minimised over the object's symmetries
    (``T_gt @ S`` for every S of ``ObjectModel.symmetry_transforms``)."""
    Rg = T_gt[:3, :3] @ syms[:, :3, :3]                # (S, 3, 3)
    tg = syms[:, :3, 3] @ T_gt[:3, :3].T + T_gt[:3, 3]
    c = (np.einsum("ij,sij->s", T_est[:3, :3], Rg) - 1.0) / 2.0
    rot = np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))
    tr = np.linalg.norm(tg - T_est[:3, 3], axis=1)
    i = int(np.argmin(rot))
    return float(rot[i]), float(tr[i])


def _query_box(frame, inst: Instance, rng, jitter: float) -> np.ndarray:
    info = frame.gt_info[inst.gt_idx] if inst.gt_idx < len(frame.gt_info) else None
    if info is None:
        raise InputError("no scene_gt_info entry")
    box = np.asarray(info.bbox_visib, dtype=np.float64)
    if box[2] <= 1 or box[3] <= 1:
        box = np.asarray(info.bbox_obj, dtype=np.float64)
    if jitter > 0:
        x, y, w, h = box
        cx, cy = x + w / 2 + rng.uniform(-jitter, jitter) * w, y + h / 2 + \
            rng.uniform(-jitter, jitter) * h
        w, h = w * math.exp(rng.uniform(-jitter, jitter)), h * math.exp(rng.uniform(-jitter, jitter))
        box = np.array([cx - w / 2, cy - h / 2, w, h])
    return box


# ==============================================================================================
# pairs
# ==============================================================================================
def coarse_pair(src: SceneSource, inst: Instance, rng, pcfg: PairConfig,
                acfg: AugmentConfig | None = None) -> dict:
    """One coarse pair (module docstring). Returns tensors: query, template (3, S, S) float32,
    cls (N,) int64, offset (N, 2) float32, and the template index."""
    from coop_ros.nets.heads import patch_targets

    S = src.size
    frame = src.frame(inst)
    T_gt = frame.gt[inst.gt_idx].T_cam_obj
    obj, key = src.object(inst.ds, inst.obj_id)
    bank = src.bank(inst.ds, inst.obj_id)
    H, W = frame.rgb.shape[:2]
    crop = make_crop(_query_box(frame, inst, rng, pcfg.box_jitter), size=S, margin=0.2,
                     image_size=(W, H))
    Kc = crop.intrinsics(frame.K)
    ren = src.renderer.render(key, T_gt, Kc, width=S, height=S)
    visq = crop.warp(frame.mask_visib(inst.gt_idx), "nearest") & ren.mask[0]
    q = _patch_centres(S)
    c0 = np.floor(q).astype(int)                                 # (N, 2) u, v of top-left
    us = np.stack([c0[:, 0], c0[:, 0] + 1, c0[:, 0], c0[:, 0] + 1], 1)
    vs = np.stack([c0[:, 1], c0[:, 1], c0[:, 1] + 1, c0[:, 1] + 1], 1)
    on = visq[vs, us].all(1)
    X = ren.xyz[0][vs, us].astype(np.float64).mean(1)            # (N, 3)
    # template: nearest viewpoints or any
    d_q = _view_dir(T_gt, obj.center)
    d_t = np.stack([_view_dir(T, obj.center) for T in bank.poses])
    order = np.argsort(-(d_t @ d_q))
    if rng.random() < pcfg.near_template_prob:
        t = int(order[int(rng.integers(0, min(pcfg.near_templates, len(order))))])
    else:
        t = int(rng.integers(0, len(bank)))
    uv_t, z_t = _project(bank.K, bank.poses[t], X)
    ui, vi = np.rint(uv_t[:, 0]).astype(int), np.rint(uv_t[:, 1]).astype(int)
    inside = (ui >= 0) & (ui < S) & (vi >= 0) & (vi < S) & (z_t > 0)
    uic, vic = np.clip(ui, 0, S - 1), np.clip(vi, 0, S - 1)
    tol = pcfg.visib_depth_tol * obj.diameter
    vis_t = inside & bank.mask[t][vic, uic] & (np.abs(bank.depth[t][vic, uic] - z_t) < tol)
    valid = on & vis_t
    cls, off = patch_targets(torch.from_numpy(uv_t).float(), torch.from_numpy(valid),
                             patch=PATCH, grid=S // PATCH)
    qrgb = crop.warp(frame.rgb, "linear")
    if acfg is not None:
        qrgb = augment_rgb(qrgb, rng, acfg)
    return {"query": to_input(qrgb)[0], "template": to_input(bank.rgb[t])[0],
            "cls": cls, "offset": off.float(), "template_index": torch.tensor(t)}


def refiner_pair(src: SceneSource, inst: Instance, rng, pcfg: PairConfig,
                 acfg: AugmentConfig | None = None, max_tries: int = 8) -> dict:
    """One refiner pair (module docstring). Tensors: render, query (3, S, S); flow (S, S, 2)
    target [px]; cert (S, S) float target; flow_valid (S, S) bool (= cert target);
    render_mask (S, S) bool; xyz (S, S, 3) [m]; K (3, 3) crop intrinsics; T_init, T_gt (4, 4);
    points (P, 3) [m]; diameter ()."""
    S = src.size
    frame = src.frame(inst)
    T_gt = frame.gt[inst.gt_idx].T_cam_obj
    obj, key = src.object(inst.ds, inst.obj_id)
    D = obj.diameter
    H, W = frame.rgb.shape[:2]
    crop = None
    for k in range(max_tries):
        shrink = 0.5 ** k if k >= max_tries // 2 else 1.0
        T0 = _rotate(T_gt, rng.uniform(0, pcfg.refine_rot_deg) * shrink, rng)
        T0[:3, 3] += shrink * D * np.array([rng.normal() * pcfg.refine_trans_xy,
                                            rng.normal() * pcfg.refine_trans_xy,
                                            rng.normal() * pcfg.refine_trans_z])
        try:
            crop = crop_around_projection(frame.K, T0, D, S, margin=0.1, image_size=(W, H),
                                          center_obj=obj.center)
        except InputError:
            continue
        if T0[2, 3] > D:
            break
        crop = None
    if crop is None:
        raise InputError("no valid perturbed pose")
    Kc = crop.intrinsics(frame.K)
    out = src.renderer.render(key, np.stack([T0, T_gt]), Kc, width=S, height=S)
    rmask, xyz = out.mask[0], out.xyz[0]
    if rmask.sum() < 16:
        raise InputError("empty rendering")
    vr, ur = np.nonzero(rmask)
    uv_g, z_g = _project(Kc, T_gt, xyz[vr, ur].astype(np.float64))
    flow = np.zeros((S, S, 2), np.float32)
    flow[vr, ur] = uv_g - np.stack([ur, vr], 1)
    ui, vi = np.rint(uv_g[:, 0]).astype(int), np.rint(uv_g[:, 1]).astype(int)
    inside = (ui >= 0) & (ui < S) & (vi >= 0) & (vi < S)
    uic, vic = np.clip(ui, 0, S - 1), np.clip(vi, 0, S - 1)
    visq = crop.warp(frame.mask_visib(inst.gt_idx), "nearest") & out.mask[1]
    tol = pcfg.visib_depth_tol * D
    ok = inside & visq[vic, uic] & (np.abs(out.depth[1][vic, uic] - z_g) < tol)
    cert = np.zeros((S, S), np.float32)
    cert[vr, ur] = ok
    qrgb = crop.warp(frame.rgb, "linear")
    if acfg is not None:
        qrgb = augment_rgb(qrgb, rng, acfg)
    return {"render": to_input(out.rgb[0])[0], "query": to_input(qrgb)[0],
            "flow": torch.from_numpy(flow), "cert": torch.from_numpy(cert),
            "flow_valid": torch.from_numpy(cert > 0.5), "render_mask": torch.from_numpy(rmask),
            "xyz": torch.from_numpy(np.ascontiguousarray(xyz)),
            "K": torch.from_numpy(Kc), "T_init": torch.from_numpy(T0),
            "T_gt": torch.from_numpy(np.asarray(T_gt, np.float64)),
            "points": torch.from_numpy(src.points(inst.ds, inst.obj_id)),
            "diameter": torch.tensor(float(D))}


def selection_pair(src: SceneSource, inst: Instance, rng, pcfg: PairConfig,
                   acfg: AugmentConfig | None = None) -> dict:
    """One selection pair (module docstring). Tensors: query, render (3, S, S); label () float
    (1 = positive); rot_err [deg], trans_err [diameters]."""
    S = src.size
    frame = src.frame(inst)
    T_gt = frame.gt[inst.gt_idx].T_cam_obj
    obj, key = src.object(inst.ds, inst.obj_id)
    D = obj.diameter
    H, W = frame.rgb.shape[:2]
    crop = make_crop(_query_box(frame, inst, rng, 0.5 * pcfg.box_jitter), size=S, margin=0.2,
                     image_size=(W, H))
    Kc = crop.intrinsics(frame.K)
    pos = rng.random() < 0.5
    if pos:
        ang = rng.uniform(0, 0.9 * pcfg.pos_rot_deg)
        tr = rng.uniform(0, 0.9 * pcfg.pos_trans)
    elif rng.random() < 0.5:
        ang = rng.uniform(pcfg.pos_rot_deg, pcfg.neg_rot_deg)
        tr = rng.uniform(0, pcfg.neg_trans)
    else:
        ang = rng.uniform(0, pcfg.neg_rot_deg)
        tr = rng.uniform(pcfg.pos_trans, pcfg.neg_trans)
    T_h = _rotate(T_gt, ang, rng)
    T_h[:3, 3] += _random_axis(rng) * tr * D
    rot_err, tr_err = symmetric_errors(T_h, T_gt, src.symmetries(inst.ds, inst.obj_id))
    label = float(rot_err < pcfg.pos_rot_deg and tr_err < pcfg.pos_trans * D)
    ren = src.renderer.render(key, T_h, Kc, width=S, height=S)
    qrgb = crop.warp(frame.rgb, "linear")
    if acfg is not None:
        qrgb = augment_rgb(qrgb, rng, acfg)
    return {"query": to_input(qrgb)[0], "render": to_input(ren.rgb[0])[0],
            "label": torch.tensor(label), "rot_err": torch.tensor(rot_err),
            "trans_err": torch.tensor(tr_err / D)}


_PAIR_FNS = {"coarse": coarse_pair, "refiner": refiner_pair, "selection": selection_pair}


class PairDataset(torch.utils.data.Dataset):
    """Map-style dataset of pairs of one task (item ``i`` of epoch ``e`` is a deterministic
    function of ``(seed, e, i)``); ``len = instances x repeats``.

    Args:
        source: :class:`SceneSource`.
        task: "coarse" | "refiner" | "selection".
        pcfg: :class:`PairConfig`; acfg: :class:`AugmentConfig` or None (no augmentation).
        seed: base seed; repeats: virtual copies of every instance per epoch.
    """

    def __init__(self, source: SceneSource, task: str, pcfg: PairConfig,
                 acfg: AugmentConfig | None = None, seed: int = 0, repeats: int = 1):
        if task not in _PAIR_FNS:
            raise InputError(f"unknown task {task!r}; known: {sorted(_PAIR_FNS)}")
        self.source, self.task, self.pcfg, self.acfg = source, task, pcfg, acfg
        self.seed, self.repeats = int(seed), max(int(repeats), 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source.instances) * self.repeats

    def __getitem__(self, i: int) -> dict:
        n = len(self.source.instances)
        rng = np.random.default_rng([self.seed, int(i)] if self.pcfg.fixed
                                    else [self.seed, self.epoch, int(i)])
        fn = _PAIR_FNS[self.task]
        last = None
        for k in range(8):
            inst = self.source.instances[(int(i) + k * 7919) % n]
            try:
                return fn(self.source, inst, rng, self.pcfg, self.acfg)
            except InputError as e:   # crop outside the image, empty render...: next instance
                last = e
        raise InputError(f"could not build a {self.task} pair around item {i}: {last}")
