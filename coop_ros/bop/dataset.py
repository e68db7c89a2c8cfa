"""Reader of BOP-format datasets and of BOP pose-results CSV files.

Units: everything returned here is in **metres** (poses, depth); the BOP files are in
millimetres and are converted exactly once, in this module. Poses are (4, 4) float64
``T_cam_obj`` (BOP ``cam_R_m2c`` / ``cam_t_m2c``), OpenCV camera axes. Images are
``(H, W, 3) uint8`` RGB.

Two layouts are read:

* ``"bop"`` -- the standard BOP layout (bop_toolkit ``docs/bop_datasets_format.md``)::

      ROOT/models/obj_000001.ply, models_info.json
      ROOT/test_targets_bop19.json                  (optional; else every GT instance is a target)
      ROOT/<split>/000048/scene_camera.json, scene_gt.json, scene_gt_info.json,
                          rgb/000001.png|jpg|tif, depth/000001.png|tif,
                          mask/000001_000000.png, mask_visib/000001_000000.png

  ``scene_gt_info.json``, depth and masks are optional (RGB-only datasets).
* ``"flat"`` -- a one-frame folder holding the per-scene json files directly next to ``rgb.png``
  (and optionally ``depth.png``), the meshes ``obj_XXXXXX.ply`` and ``test_targets*.json``
  (e.g. ``../shared/real/ycbv_s48_im1_masterchefcan``). The scene id is taken from the targets
  file (0 when there is none) and the image id from the single key of ``scene_camera.json``.

Results files follow the BOP19 CSV format: ``scene_id,im_id,obj_id,score,R,t,time`` with R the
9 entries of the rotation, row-major, space separated, t in **millimetres**, time in seconds
(-1 when unknown), see :func:`write_results_csv` / :func:`read_results_csv`.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import cv2
import numpy as np

from coop_ros.errors import InputError
from coop_ros.geometry.camera import check_intrinsics
from coop_ros.geometry.se3 import check_pose, make_pose

__all__ = [
    "Target", "GtPose", "GtInfo", "BopFrame", "BopDataset", "Estimate", "NoEstimate",
    "compute_gt_info", "valid_gt_indices",
    "write_results_csv", "read_results_csv", "RESULTS_HEADER",
]

#: largest |R R^T - I| (max abs entry) of a GT rotation that is re-orthonormalised on reading;
#: BOP's published LM-O GT reaches 9.6e-3 (96 dev images; median 2e-4). Beyond it: InputError.
GT_ROTATION_TOLERANCE = 2e-2


#: rotations this close to orthonormal are kept exactly as written (the pose checks' tolerance)
ORTHONORMAL_EXACT = 1e-4


class GtRotationWarning(UserWarning):
    """GT rotations of a scene file were re-orthonormalised (count and worst deviation)."""


RGB_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DEPTH_EXTS = (".png", ".tif", ".tiff")
RESULTS_HEADER = "scene_id,im_id,obj_id,score,R,t,time"
_MM = 1000.0  # millimetres per metre


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Target:
    """One BOP estimation target: ``inst_count`` instances of object ``obj_id`` in one image."""
    scene_id: int
    im_id: int
    obj_id: int
    inst_count: int = 1


class GtPose(NamedTuple):
    """A ground-truth instance: object id and (4, 4) float64 ``T_cam_obj`` in metres.

    A NamedTuple, so ``obj_id, T = frame.gt[i]`` works."""
    obj_id: int
    T_cam_obj: np.ndarray


@dataclass(frozen=True)
class GtInfo:
    """``scene_gt_info.json`` entry of one GT instance (pixels; -1 where the file lacks it).

    bbox_obj / bbox_visib: (4,) int64 BOP boxes ``(x, y, w, h)`` of the full / visible silhouette.
    visib_fract: visible fraction of the silhouette in [0, 1] (-1 if unknown).
    px_count_all / px_count_valid / px_count_visib: silhouette pixels / with valid depth / visible.
    """
    bbox_obj: np.ndarray
    bbox_visib: np.ndarray
    visib_fract: float
    px_count_all: int
    px_count_valid: int
    px_count_visib: int

    def detection_box(self, kind: str = "visib") -> tuple | None:
        """The GT box as a detection: ``(x, y, w + 1, h + 1)`` floats [px], or None when both
        boxes are empty (the instance is out of view).

        BOP boxes span their pixels' centres (``w = x_max - x_min``, bop_toolkit's
        ``calc_2d_bbox``); detections, like detectors' boxes, span the pixels themselves
        (``w = x_max - x_min + 1``: pixels x .. x + w - 1, :func:`coop_ros.geometry.camera.make_crop`),
        so the size of an object fills its box exactly. ``kind``: "visib" (``bbox_visib``, the
        visible part, BOP19's detections) or "obj" (``bbox_obj``, the full silhouette); an empty
        visible box (w or h <= 1) falls back to ``bbox_obj``."""
        if kind not in ("visib", "obj"):
            raise InputError(f"kind must be 'visib' or 'obj', got {kind!r}")
        b = self.bbox_visib if kind == "visib" else self.bbox_obj
        if b[2] <= 1 or b[3] <= 1:
            b = self.bbox_obj
        if b[2] <= 1 or b[3] <= 1:
            return None
        return (float(b[0]), float(b[1]), float(b[2]) + 1.0, float(b[3]) + 1.0)


@dataclass
class NoEstimate:
    """A target instance an estimator could not estimate, with the reason (e.g. the pipeline's
    failure reason, "no detection box"); reported by ``coop-ros eval`` instead of vanishing."""
    scene_id: int
    im_id: int
    obj_id: int
    reason: str


@dataclass
class Estimate:
    """One pose estimate (a row of a BOP results file), metres.

    T_cam_obj: (4, 4) float64 pose, translation in metres. score: confidence (higher = better).
    time_s: wall time in seconds spent on the whole image (BOP semantics), -1 if unknown.
    hypotheses: optional (N, 4, 4) poses [m] the estimator chose ``T_cam_obj`` from (the refined
        hypotheses, the chosen one among them): ``coop-ros eval`` scores the best of them as an
        oracle selection would. coarse_poses: optional (M, 4, 4) coarse poses [m] they were
        refined from (the oracle of the coarse stage). Neither is written to a results CSV.
    """
    scene_id: int
    im_id: int
    obj_id: int
    score: float
    T_cam_obj: np.ndarray
    time_s: float = -1.0
    hypotheses: np.ndarray | None = None
    coarse_poses: np.ndarray | None = None


@dataclass
class BopFrame:
    """One image of a BOP dataset with its ground truth.

    rgb: (H, W, 3) uint8 RGB. depth: (H, W) float32 metres (0 = no measurement) or None.
    K: (3, 3) float64 pixels. gt: list of :class:`GtPose` (metres), in ``scene_gt.json`` order.
    gt_info: list of :class:`GtInfo` (same order), empty when scene_gt_info.json is absent.
    mask_paths / mask_visib_paths: per GT instance, the mask file or None when absent.
    depth_scale: millimetres per raw depth unit, as in scene_camera.json.
    """
    scene_id: int
    im_id: int
    rgb: np.ndarray
    depth: np.ndarray | None
    K: np.ndarray
    gt: list[GtPose]
    gt_info: list[GtInfo]
    mask_paths: list[Path | None]
    mask_visib_paths: list[Path | None]
    rgb_path: Path
    depth_path: Path | None
    depth_scale: float = 1.0

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def gt_indices(self, obj_id: int) -> list[int]:
        """Indices into ``gt`` of the instances of ``obj_id``."""
        return [i for i, g in enumerate(self.gt) if g.obj_id == obj_id]

    def _mask(self, paths: list[Path | None], gt_idx: int, kind: str) -> np.ndarray:
        if not 0 <= gt_idx < len(self.gt):
            raise InputError(f"gt_idx {gt_idx} out of range: frame ({self.scene_id}, {self.im_id}) "
                             f"has {len(self.gt)} GT instances")
        path = paths[gt_idx] if gt_idx < len(paths) else None
        if path is None:
            raise InputError(f"no {kind} file for GT instance {gt_idx} of scene {self.scene_id} "
                             f"image {self.im_id}")
        m = _read_image(path, cv2.IMREAD_UNCHANGED)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (self.height, self.width):
            raise InputError(f"{path}: mask shape {m.shape} differs from the image "
                             f"({self.height}, {self.width})")
        return m > 0

    def mask(self, gt_idx: int) -> np.ndarray:
        """(H, W) bool full silhouette of GT instance ``gt_idx`` (``mask/``)."""
        return self._mask(self.mask_paths, gt_idx, "mask")

    def mask_visib(self, gt_idx: int) -> np.ndarray:
        """(H, W) bool visible silhouette of GT instance ``gt_idx`` (``mask_visib/``)."""
        return self._mask(self.mask_visib_paths, gt_idx, "mask_visib")


def valid_gt_indices(frame: BopFrame, target: Target) -> list[int]:
    """Indices (into ``frame.gt``) of the GT instances a target asks for: its ``inst_count`` most
    visible instances of ``target.obj_id`` (BOP19 with ``visib_gt_min = -1``), sorted.

    Raises InputError when the image has no GT instance of the object."""
    ids = frame.gt_indices(target.obj_id)
    if not ids:
        raise InputError(f"target {target} names object {target.obj_id}, which has no GT pose in "
                         f"scene {frame.scene_id} image {frame.im_id}")
    if frame.gt_info:
        ids = sorted(ids, key=lambda i: -frame.gt_info[i].visib_fract)  # stable: file order ties
    return sorted(ids[:max(0, target.inst_count)])


# --------------------------------------------------------------------------- file helpers

def _load_json(path: Path):
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def _read_image(path: Path, flags: int) -> np.ndarray:
    if not Path(path).is_file():
        raise InputError(f"missing file: {path}")
    im = cv2.imread(str(path), flags)
    if im is None:
        raise InputError(f"{path}: cannot be decoded as an image")
    return im


def _find_with_ext(stem: Path, exts: tuple[str, ...]) -> Path | None:
    for e in exts:
        p = stem.with_name(stem.name + e)
        if p.is_file():
            return p
    return None


def _int_keys(d: dict, path: Path) -> dict[int, object]:
    try:
        return {int(k): v for k, v in d.items()}
    except (ValueError, AttributeError):
        raise InputError(f"{path}: expected an object keyed by integer image ids") from None


def orthonormalise_rotation(R: np.ndarray, where: str,
                            tolerance: float = GT_ROTATION_TOLERANCE) -> tuple[np.ndarray, float]:
    """Nearest rotation (SVD) of a (3, 3) GT rotation written with limited precision.

    Returns (R', deviation) with deviation = max |R R^T - I| of the input. Real BOP datasets
    publish rotations orthonormal to ~1e-3 only; up to ``tolerance`` they are accepted and
    projected onto SO(3) (the pose moves by < tolerance rad); within :data:`ORTHONORMAL_EXACT`
    R is returned unchanged. Raises InputError naming ``where``
    beyond the tolerance, for a reflection (det < 0) or non-finite entries."""
    R = np.asarray(R, dtype=np.float64)
    if not np.all(np.isfinite(R)):
        raise InputError(f"{where}: cam_R_m2c contains non-finite values")
    dev = float(np.abs(R @ R.T - np.eye(3)).max())
    if dev > tolerance or np.linalg.det(R) <= 0:
        raise InputError(f"{where}: cam_R_m2c is not a rotation (|R R^T - I| = {dev:.2g} > "
                         f"{tolerance:g}, det {np.linalg.det(R):+.3f})")
    if dev <= ORTHONORMAL_EXACT:
        return R, dev
    U, _, Vt = np.linalg.svd(R)
    return U @ Vt, dev


def _pose_from_bop(entry: dict, where: str) -> tuple[np.ndarray, float]:
    """(T_cam_obj (4, 4) [m], rotation deviation before re-orthonormalisation)."""
    try:
        R = np.asarray(entry["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
        t = np.asarray(entry["cam_t_m2c"], dtype=np.float64).reshape(3) / _MM
    except KeyError as e:
        raise InputError(f"{where}: missing key {e}") from None
    except ValueError:
        raise InputError(f"{where}: cam_R_m2c must have 9 and cam_t_m2c 3 numbers") from None
    R, dev = orthonormalise_rotation(R, where)
    return check_pose(make_pose(R, t), where), dev


def _gt_info_from_bop(entry: dict) -> GtInfo:
    def box(k):
        return np.asarray(entry.get(k, [-1, -1, -1, -1]), dtype=np.int64).reshape(4)
    return GtInfo(bbox_obj=box("bbox_obj"), bbox_visib=box("bbox_visib"),
                  visib_fract=float(entry.get("visib_fract", -1.0)),
                  px_count_all=int(entry.get("px_count_all", -1)),
                  px_count_valid=int(entry.get("px_count_valid", -1)),
                  px_count_visib=int(entry.get("px_count_visib", -1)))


def _parse_targets(raw, path: Path) -> list[Target]:
    if not isinstance(raw, list):
        raise InputError(f"{path}: expected a list of targets")
    if path.name == "targets.json" and raw and isinstance(raw[0], dict) \
            and "scene_id" not in raw[0]:
        # a flat folder's targets.json: one entry per instance, the image is the folder's one
        counts: dict[int, int] = {}
        for i, t in enumerate(raw):
            try:
                counts[int(t["obj_id"])] = counts.get(int(t["obj_id"]), 0) + 1
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{path}: entry {i} needs an integer obj_id, got {t!r}") from None
        return [Target(-1, -1, o, n) for o, n in sorted(counts.items())]
    out = []
    for i, t in enumerate(raw):
        try:
            out.append(Target(int(t["scene_id"]), int(t["im_id"]), int(t["obj_id"]),
                              int(t.get("inst_count", 1))))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: target {i} needs integer scene_id, im_id, obj_id "
                             f"(and inst_count), got {t!r}") from None
    return out


# --------------------------------------------------------------------------- dataset

class BopDataset:
    """A BOP dataset split (or a flat one-frame folder), read lazily.

    Args:
        root: dataset folder (holding ``models/`` and ``<split>/``), or a flat one-frame folder
            (detected by ``scene_camera.json`` directly inside it).
        split: split folder name (``test``, ``test_primesense``, ``val``...). Ignored for flat.
        models_dir: folder with ``obj_XXXXXX.ply`` and ``models_info.json``; default
            ``root/models`` (flat: ``root``).
        targets_filename: targets file looked up in ``root`` (flat: any ``test_targets*.json``,
            else a ``targets.json`` list of ``{obj_id, inst, [units], [mesh]}`` entries).
        units: unit of the mesh files, "mm" (BOP) or "m"; None: "mm", unless a flat folder's
            ``targets.json`` names the units of its meshes.

    Raises:
        InputError naming the path when the root or the split folder is missing.
    """

    def __init__(self, root, split: str = "test", models_dir=None,
                 targets_filename: str = "test_targets_bop19.json", units: str | None = None):
        self.root = Path(root)
        if units not in (None, "mm", "m"):
            raise InputError(f"units must be 'mm' or 'm' (or None: per folder), got {units!r}")
        self.units = units
        if not self.root.is_dir():
            raise InputError(f"missing dataset folder: {self.root}")
        self.split = split
        self.targets_filename = targets_filename
        self._objects: dict = {}
        self._models_info: dict[int, dict] | None = None
        self._scene_cache: dict[int, tuple[dict, dict, dict | None]] = {}
        self._gt_poses: dict[int, dict[int, list[np.ndarray]]] = {}
        if (self.root / "scene_camera.json").is_file() and not (self.root / split).is_dir():
            self.layout = "flat"
            self.split_dir = self.root
            self.models_dir = Path(models_dir) if models_dir is not None else self.root
            cams = _int_keys(_load_json(self.root / "scene_camera.json"),
                             self.root / "scene_camera.json")
            if len(cams) != 1:
                raise InputError(f"{self.root / 'scene_camera.json'}: a flat one-frame folder "
                                 f"must hold exactly one image, found {len(cams)}")
            flat_targets = self._flat_targets_path()
            scene_id = 0
            if flat_targets is not None:
                ts = _parse_targets(_load_json(flat_targets), flat_targets)
                if ts and ts[0].scene_id >= 0:
                    scene_id = ts[0].scene_id
            self._scenes = {scene_id: self.root}
        else:
            self.layout = "bop"
            self.split_dir = self.root / split
            if not self.split_dir.is_dir():
                raise InputError(f"missing split folder: {self.split_dir}")
            self.models_dir = Path(models_dir) if models_dir is not None else self.root / "models"
            self._scenes = {int(p.name): p for p in sorted(self.split_dir.iterdir())
                            if p.is_dir() and p.name.isdigit()}
            if not self._scenes:
                raise InputError(f"no scene folders (000000, 000001, ...) in {self.split_dir}")

    # ---- listing
    def _flat_targets_path(self) -> Path | None:
        p = self.root / self.targets_filename
        if p.is_file():
            return p
        cands = sorted(self.root.glob("test_targets*.json"))
        if cands:
            return cands[0]
        p = self.root / "targets.json"
        return p if p.is_file() else None

    def _flat_target_entries(self) -> list[dict]:
        """Entries of a flat folder's ``targets.json`` (obj_id, inst, units, mesh), or []."""
        p = self.root / "targets.json"
        if self.layout != "flat" or not p.is_file():
            return []
        raw = _load_json(p)
        if not isinstance(raw, list) or not all(isinstance(e, dict) and "obj_id" in e
                                                for e in raw):
            raise InputError(f"{p}: expected a list of {{obj_id, inst, ...}} entries")
        return raw

    @property
    def scene_ids(self) -> list[int]:
        return sorted(self._scenes)

    def _scene(self, scene_id: int) -> tuple[dict, dict, dict | None]:
        if scene_id not in self._scenes:
            raise InputError(f"scene {scene_id} not in {self.split_dir} "
                             f"(scenes: {self.scene_ids[:10]}...)")
        if scene_id not in self._scene_cache:
            d = self._scenes[scene_id]
            cam = _int_keys(_load_json(d / "scene_camera.json"), d / "scene_camera.json")
            gt_path = d / "scene_gt.json"
            gt = _int_keys(_load_json(gt_path), gt_path) if gt_path.is_file() else {}
            info_path = d / "scene_gt_info.json"
            info = _int_keys(_load_json(info_path), info_path) if info_path.is_file() else None
            self._gt_poses[scene_id] = self._parse_gt(gt, gt_path)
            self._scene_cache[scene_id] = (cam, gt, info)
        return self._scene_cache[scene_id]

    @staticmethod
    def _parse_gt(gt: dict, gt_path: Path) -> dict[int, list[np.ndarray]]:
        """Every pose of a scene_gt.json, rotations re-orthonormalised (one warning per file with
        the count and the worst deviation; beyond :data:`GT_ROTATION_TOLERANCE` InputError)."""
        poses: dict[int, list[np.ndarray]] = {}
        n_fixed, worst = 0, 0.0
        for im_id, entries in gt.items():
            if not isinstance(entries, list):
                raise InputError(f"{gt_path}[{im_id}]: expected a list of GT instances")
            poses[im_id] = []
            for i, g in enumerate(entries):
                T, dev = _pose_from_bop(g, f"{gt_path}[{im_id}][{i}]")
                poses[im_id].append(T)
                if dev > ORTHONORMAL_EXACT:
                    n_fixed += 1
                    worst = max(worst, dev)
        if n_fixed:
            n = sum(len(v) for v in poses.values())
            warnings.warn(GtRotationWarning(
                f"{gt_path}: {n_fixed} of {n} GT rotations re-orthonormalised (worst |R R^T - I| "
                f"= {worst:.1e}, accepted up to {GT_ROTATION_TOLERANCE:g})"), stacklevel=3)
        return poses

    def image_ids(self, scene_id: int) -> list[int]:
        """Sorted image ids of a scene (keys of its scene_camera.json)."""
        return sorted(self._scene(scene_id)[0])

    def images(self) -> list[tuple[int, int]]:
        """All ``(scene_id, im_id)`` pairs, sorted."""
        return [(s, i) for s in self.scene_ids for i in self.image_ids(s)]

    def targets(self) -> list[Target]:
        """Estimation targets, sorted by (scene, image, object).

        From ``test_targets_bop19.json`` when present (flat layout: ``test_targets*.json``),
        else one target per (scene, image, object) present in scene_gt.json with
        ``inst_count`` = its number of GT instances.

        Raises:
            InputError when a target names a scene or image that is not in the dataset.
        """
        path = self._flat_targets_path() if self.layout == "flat" else \
            self.root / self.targets_filename
        if path is not None and path.is_file():
            ts = _parse_targets(_load_json(path), path)
            if self.layout == "flat":   # targets.json: the folder's one image
                (s0, i0), = self.images()
                ts = [Target(s0, i0, t.obj_id, t.inst_count) if t.scene_id < 0 else t
                      for t in ts]
            for t in ts:
                if t.im_id not in self._scene(t.scene_id)[0]:
                    raise InputError(f"{path}: target {t} names image {t.im_id}, which is not in "
                                     f"scene {t.scene_id} of {self.split_dir}")
        else:
            ts = []
            for s in self.scene_ids:
                gt = self._scene(s)[1]
                for im in self.image_ids(s):
                    counts: dict[int, int] = {}
                    for g in gt.get(im, []):
                        counts[int(g["obj_id"])] = counts.get(int(g["obj_id"]), 0) + 1
                    ts += [Target(s, im, o, n) for o, n in sorted(counts.items())]
        return sorted(ts, key=lambda t: (t.scene_id, t.im_id, t.obj_id))

    # ---- frames
    def _image_path(self, scene_id: int, im_id: int, kind: str, exts) -> Path | None:
        d = self._scenes[scene_id]
        if self.layout == "flat":
            return _find_with_ext(d / kind, exts)
        return _find_with_ext(d / kind / f"{im_id:06d}", exts)

    def frame(self, scene_id: int, im_id: int) -> BopFrame:
        """Load one image with its GT (see :class:`BopFrame`; depth in metres).

        Raises:
            InputError naming the missing / bad file (rgb image, json entry, depth).
        """
        cam_all, gt_all, info_all = self._scene(scene_id)
        d = self._scenes[scene_id]
        if im_id not in cam_all:
            raise InputError(f"image {im_id} not in {d / 'scene_camera.json'}")
        cam = cam_all[im_id]
        where = f"{d / 'scene_camera.json'}[{im_id}]"
        if "cam_K" not in cam:
            raise InputError(f"{where}: missing cam_K")
        try:
            k = np.asarray(cam["cam_K"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            k = None
        if k is None or k.size != 9:
            raise InputError(f"{where}: cam_K must be 9 numbers (row-major 3x3), got "
                             f"{cam['cam_K']!r:.80}")
        K = check_intrinsics(k.reshape(3, 3), name=f"{where} cam_K")
        ds = cam.get("depth_scale", 1.0)
        if isinstance(ds, bool) or not isinstance(ds, (int, float)) or not np.isfinite(ds) \
                or ds <= 0:
            raise InputError(f"{where}: depth_scale must be a finite number > 0 (mm per raw "
                             f"depth unit), got {ds!r}")
        depth_scale = float(ds)

        rgb_path = self._image_path(scene_id, im_id, "rgb", RGB_EXTS)
        if rgb_path is None:
            rgb_path = self._image_path(scene_id, im_id, "gray", RGB_EXTS)
        if rgb_path is None:
            stem = d / "rgb" if self.layout == "flat" else d / "rgb" / f"{im_id:06d}"
            raise InputError(f"missing file: {stem}.png (also tried {', '.join(RGB_EXTS[1:])})")
        im = _read_image(rgb_path, cv2.IMREAD_UNCHANGED)
        if im.dtype == np.uint16:  # 16-bit rgb (some tif): scale to 8 bit
            im = (im / 257.0).round().astype(np.uint8)
        if im.dtype != np.uint8:
            raise InputError(f"{rgb_path}: expected an 8-bit image, got {im.dtype}")
        if im.ndim == 2:
            rgb = np.repeat(im[..., None], 3, axis=2)
        elif im.shape[2] == 4:
            rgb = cv2.cvtColor(im, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
        H, W = rgb.shape[:2]

        depth_path = self._image_path(scene_id, im_id, "depth", DEPTH_EXTS)
        depth = None
        if depth_path is not None:
            raw = _read_image(depth_path, cv2.IMREAD_UNCHANGED)
            if raw.ndim != 2:
                raise InputError(f"{depth_path}: depth must be single-channel, got {raw.shape}")
            if raw.shape != (H, W):
                raise InputError(f"{depth_path}: depth shape {raw.shape} differs from rgb {(H, W)}")
            depth = (raw.astype(np.float64) * (depth_scale / _MM)).astype(np.float32)
            depth[~np.isfinite(depth)] = 0.0

        gt_where = f"{d / 'scene_gt.json'}[{im_id}]"
        gt = []
        for i, g in enumerate(gt_all.get(im_id, [])):
            if "obj_id" not in g:
                raise InputError(f"{gt_where}[{i}]: missing obj_id")
            gt.append(GtPose(int(g["obj_id"]), self._gt_poses[scene_id][im_id][i].copy()))
        gt_info = []
        if info_all is not None and im_id in info_all:
            gt_info = [_gt_info_from_bop(e) for e in info_all[im_id]]
            if len(gt_info) != len(gt):
                raise InputError(f"{d / 'scene_gt_info.json'}[{im_id}] has {len(gt_info)} entries "
                                 f"but scene_gt.json has {len(gt)}")

        def masks(kind: str) -> list[Path | None]:
            out: list[Path | None] = []
            for i, _g in enumerate(gt):
                if self.layout == "flat":
                    cands = [d / f"{kind}_{i:06d}.png", d / "derived" / f"{kind}_{i:06d}.png"]
                else:
                    cands = [d / kind / f"{im_id:06d}_{i:06d}.png"]
                out.append(next((c for c in cands if c.is_file()), None))
            return out

        return BopFrame(scene_id=scene_id, im_id=im_id, rgb=rgb, depth=depth, K=K, gt=gt,
                        gt_info=gt_info, mask_paths=masks("mask"),
                        mask_visib_paths=masks("mask_visib"), rgb_path=rgb_path,
                        depth_path=depth_path, depth_scale=depth_scale)

    # ---- objects
    def models_info(self) -> dict[int, dict]:
        """``models_info.json`` of the models folder (mm, int keys); {} when the file is absent."""
        if self._models_info is None:
            path = self.models_dir / "models_info.json"
            if path.is_file():
                from coop_ros.objects import load_models_info
                self._models_info = load_models_info(path)
            else:
                self._models_info = {}
        return self._models_info

    def model_path(self, obj_id: int) -> Path:
        """Path of the mesh of ``obj_id`` (``obj_XXXXXX.ply``, or ``.obj`` when there is no ply)."""
        stem = self.models_dir / f"obj_{obj_id:06d}"
        p = _find_with_ext(stem, (".ply", ".obj"))
        if p is None:
            raise InputError(f"missing file: {stem}.ply (model of object {obj_id})")
        return p

    def object(self, obj_id: int):
        """The :class:`coop_ros.objects.ObjectModel` of ``obj_id`` (metres), cached.

        The models_info.json entry (diameter, symmetries, in mm) is passed to the loader; the
        mesh's unit is :meth:`mesh_units`."""
        if obj_id not in self._objects:
            from coop_ros.objects import ObjectModel
            info = self.models_info().get(int(obj_id))
            self._objects[obj_id] = ObjectModel.load(self.model_path(obj_id),
                                                     units=self.mesh_units(obj_id),
                                                     name=f"obj_{obj_id:06d}", models_info=info)
        return self._objects[obj_id]

    def mesh_units(self, obj_id: int) -> str:
        """Unit of the mesh file of ``obj_id``: the dataset's ``units``, else the one a flat
        folder's ``targets.json`` gives for it, else "mm" (BOP)."""
        if self.units is not None:
            return self.units
        for e in self._flat_target_entries():
            if int(e["obj_id"]) == int(obj_id) and e.get("units") in ("mm", "m"):
                return str(e["units"])
        return "mm"

    def has_model(self, obj_id: int) -> bool:
        """True when the models folder holds a mesh of ``obj_id``."""
        return _find_with_ext(self.models_dir / f"obj_{obj_id:06d}", (".ply", ".obj")) is not None

    def diameter(self, obj_id: int) -> float:
        """Object diameter in metres: models_info.json's (the BOP definition) when present,
        else the mesh's."""
        info = self.models_info().get(int(obj_id))
        if info is not None and "diameter" in info:
            return float(info["diameter"]) / _MM
        return float(self.object(obj_id).diameter)

    def __repr__(self) -> str:
        return (f"BopDataset({str(self.root)!r}, split={self.split!r}, layout={self.layout!r}, "
                f"scenes={len(self._scenes)})")


# --------------------------------------------------------------------------- results CSV

def _fmt(x: float) -> str:
    return repr(float(x))


def write_results_csv(path, rows: Iterable[Estimate]) -> Path:
    """Write estimates as a BOP19 results CSV (``scene_id,im_id,obj_id,score,R,t,time``).

    R: 9 numbers, row-major, space separated. t: 3 numbers in **millimetres** (converted from
    the metres of ``Estimate.T_cam_obj``). time: seconds (-1 if unknown). Floats are written with
    Python's shortest round-trip repr, so reading back is exact up to the mm <-> m scaling.
    Returns the path. Raises InputError for a non-rigid pose (names the row).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [RESULTS_HEADER]
    for i, e in enumerate(rows):
        T = check_pose(e.T_cam_obj, f"results row {i} T_cam_obj")
        R = " ".join(_fmt(v) for v in T[:3, :3].reshape(-1))
        t = " ".join(_fmt(v * _MM) for v in T[:3, 3])
        lines.append(f"{int(e.scene_id)},{int(e.im_id)},{int(e.obj_id)},{_fmt(e.score)},"
                     f"{R},{t},{_fmt(e.time_s)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_results_csv(path) -> list[Estimate]:
    """Read a BOP19 results CSV into :class:`Estimate` records (t converted mm -> metres).

    The header line is optional. R is kept as written (not re-orthonormalised) and must be
    within 1e-4 of a rotation with det +1; otherwise InputError names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("scene_id"):
            continue
        parts = line.split(",")
        if len(parts) != 7:
            raise InputError(f"{path}:{n}: expected 7 comma-separated fields "
                             f"({RESULTS_HEADER}), got {len(parts)}")
        try:
            scene_id, im_id, obj_id = int(parts[0]), int(parts[1]), int(parts[2])
            score = float(parts[3])
            R = np.array([float(v) for v in parts[4].split()], dtype=np.float64)
            t = np.array([float(v) for v in parts[5].split()], dtype=np.float64)
            time_s = float(parts[6])
        except ValueError:
            raise InputError(f"{path}:{n}: non-numeric field in {line!r}") from None
        if R.size != 9 or t.size != 3:
            raise InputError(f"{path}:{n}: R needs 9 and t 3 numbers, got {R.size} and {t.size}")
        R = R.reshape(3, 3)
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t)) and math.isfinite(score)):
            raise InputError(f"{path}:{n}: non-finite value")
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
            raise InputError(f"{path}:{n}: R is not a rotation matrix")
        out.append(Estimate(scene_id, im_id, obj_id, score, make_pose(R, t / _MM), time_s))
    return out


# --------------------------------------------------------------------------- GT info

def compute_gt_info(frame: BopFrame, dataset: "BopDataset", renderer=None,
                    delta: float = 0.015) -> list[GtInfo]:
    """``scene_gt_info.json`` entries of a frame that has none, computed as the BOP toolkit does
    (``calc_gt_info``, visibility mode "bop19"): every GT instance with a mesh is rendered alone
    (full silhouette: ``bbox_obj``, ``px_count_all``, ``px_count_valid``) and all of them
    together (z-buffer: which instance is in front); a pixel of an instance is visible when it is
    in front of the other GT instances and the observed depth is missing or not nearer than the
    rendering by more than ``delta`` metres (without a depth image: in front of the others).
    Instances without a mesh get -1 entries (boxes -1, visib_fract -1).

    Args:
        frame: the :class:`BopFrame` (its ``gt_info`` is not modified).
        dataset: the :class:`BopDataset` the frame comes from (for the meshes).
        renderer: a :class:`coop_ros.render.renderer.Renderer` (None: one is made and released).
        delta: visibility tolerance [m] (BOP: 15 mm).
    Returns:
        list of :class:`GtInfo`, in ``frame.gt`` order.
    """
    from coop_ros.render.renderer import Renderer

    own = renderer is None
    if own:
        renderer = Renderer(frame.width, frame.height)
    none = np.full(4, -1, np.int64)
    try:
        items, idx = [], []
        for i, g in enumerate(frame.gt):
            if dataset.has_model(g.obj_id):
                key = f"gt_obj_{g.obj_id:06d}"
                if not renderer.has(key):
                    renderer.add_object(key, dataset.object(g.obj_id))
                items.append((key, g.T_cam_obj))
                idx.append(i)
        labels = None
        if items:
            labels = renderer.render_scene(items, frame.K, width=frame.width,
                                           height=frame.height).labels[0]
        out = []
        for i, g in enumerate(frame.gt):
            if i not in idx:
                out.append(GtInfo(none, none.copy(), -1.0, -1, -1, -1))
                continue
            j = idx.index(i)
            r = renderer.render(items[j][0], g.T_cam_obj, frame.K, width=frame.width,
                                height=frame.height, xyz=False)
            full, zr = r.mask[0], r.depth[0]
            vis = full & (labels == j)
            valid = full
            if frame.depth is not None:
                zo = frame.depth
                valid = full & (zo > 0)
                vis &= (zo <= 0) | (zr <= zo + delta)

            def box(m):
                rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
                if not len(rows):
                    return none.copy()
                return np.array([cols[0], rows[0], cols[-1] - cols[0], rows[-1] - rows[0]],
                                np.int64)
            n_all = int(full.sum())
            out.append(GtInfo(box(full), box(vis), float(vis.sum()) / max(n_all, 1), n_all,
                              int(valid.sum()), int(vis.sum())))
        return out
    finally:
        if own:
            renderer.release()
