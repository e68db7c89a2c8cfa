"""Typed training configuration (``coop-ros train TASK --config FILE.yaml``), validated once.

A YAML file has the sections of :class:`TrainConfig`; every key is optional (defaults below),
unknown keys raise :class:`~coop_ros.errors.InputError` naming them::

    task: coarse                    # coarse | refiner | selection
    model: {backbone: tiny}         # constructor kwargs of CoarseNet / RefinerNet / SelectionNet
    data:
      train: [out/train_data/train] # BOP folders written by `coop-ros synth` / `coop-ros train shapes`
      val: [out/train_data/heldout] # held-out shapes (accuracy reported on it)
      crop_size: 224
    optim: {lr: 2.0e-5, final_lr: 2.0e-6, warmup_steps: 50, decay_at: 250, weight_decay: 0.05,
            grad_clip: 1.0}
    steps: 300
    batch_size: 8
    ...

Paper values (supplementary 1.1-1.3): AdamW, lr 2e-5 -> 2e-6 after 250 of 450 epochs, 50-epoch
warm-up, batch 64 (coarse) / 32 (refiner, gradient clipping 1e-2) / 16 (selection).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from coop_ros.errors import InputError

__all__ = ["TASKS", "PRECISIONS", "DataConfig", "OptimConfig", "PairConfig", "LossConfig", "AugmentConfig",
           "TrainConfig", "load_config", "apply_overrides", "parse_set"]

TASKS = ("coarse", "refiner", "selection")
PRECISIONS = ("fp32", "bf16")
_ARCH = {"coarse": "coarse", "refiner": "refiner", "selection": "selection"}


@dataclass
class DataConfig:
    """Where pairs come from.

    train / val: BOP dataset folders (split ``split``); val holds the held-out shapes.
    obj_ids_train / obj_ids_val: optional object-id filters (empty = all objects of the folder).
    crop_size: side of every crop [px] (multiple of 16; the pipeline uses 224).
    min_visib_fract: instances less visible than this are not sampled.
    template_cache: template-bank cache folder (None = ``out/train_cache/templates``).
    workers: DataLoader worker processes (0 = render in the training process).
    render_device: renderer of the pairs (templates, renders at perturbed poses): ``cpu``
        (Mesa llvmpipe) or ``cuda[:i]`` (the GPU's EGL); None = the training ``device``.
    worker_start: how DataLoader workers start: ``spawn`` (None, the default) or ``fork``.
        A worker forked from a process that already holds an EGL context (the training process
        renders the validation pairs) can hang before its first pair (seen with Mesa llvmpipe);
        spawned workers start clean and open their own renderer.
    repeats: pairs per instance and epoch (None: enough for ~200 pairs per epoch).
    preset: the scene preset the folders were generated with: ``default`` or ``realistic``
        (``coop-ros train shapes --preset realistic`` / ``coop-ros synth --preset realistic``:
        table-top scenes, camera and depth-sensor effects, scene colours that differ from the
        model's, so the pairs teach the networks the photo-vs-mesh gap); every folder's
        ``dataset.json`` is checked and a folder of another preset (or without one) is
        refused, naming it. None: any BOP folder.
    """

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    split: str = "test"
    obj_ids_train: list = field(default_factory=list)
    obj_ids_val: list = field(default_factory=list)
    crop_size: int = 224
    min_visib_fract: float = 0.3
    template_cache: str | None = None
    workers: int = 0
    repeats: int | None = None
    render_device: str | None = None
    worker_start: str | None = None
    preset: str | None = None


@dataclass
class PairConfig:
    """How pairs are sampled (units: degrees, fractions of the object diameter).

    coarse: the template is, with probability ``near_template_prob``, one of the
        ``near_templates`` views closest to the query's viewpoint, else any template;
        ``box_jitter``: relative jitter of the detection box (scale and shift).
    refiner: rotation perturbation uniform in [0, ``refine_rot_deg``] about a random axis,
        translation Gaussian with std ``refine_trans_xy`` (x, y) / ``refine_trans_z`` (z) times
        the diameter; the crop follows the perturbed pose (pipeline: margin 0.1);
        ``pose_stride``: render pixels on this stride enter the PnP of the pose loss.
    selection: positive = rotation error < ``pos_rot_deg`` and translation error <
        ``pos_trans`` x diameter (symmetry-aware); half of the pairs are drawn inside that
        region, half outside it up to ``neg_rot_deg`` / ``neg_trans``.
    visib_depth_tol: depth tolerance of visibility tests (fraction of the diameter).
    fixed: the same pairs every epoch (item i depends on (seed, i) only): a finite set to
        overfit; default False (new perturbations / templates / crops every epoch).
    """

    near_template_prob: float = 0.8
    near_templates: int = 3
    box_jitter: float = 0.1
    refine_rot_deg: float = 15.0
    refine_trans_xy: float = 0.05
    refine_trans_z: float = 0.10
    pose_stride: int = 4
    pos_rot_deg: float = 5.0
    pos_trans: float = 0.02
    neg_rot_deg: float = 45.0
    neg_trans: float = 0.15
    visib_depth_tol: float = 0.02
    fixed: bool = False


@dataclass
class LossConfig:
    """Loss weights. coarse: ``cls`` (cross-entropy) + ``offset`` (L1, matched patches).
    refiner: ``flow`` (Laplace NLL) + ``cert`` (BCE) + ``pose`` (disentangled point matching,
    mean L1 / diameter), ``radius_px`` = R of the flow probability, ``pose_points`` model
    points, ``pose_lm_iterations`` unrolled LM steps (+ a Gauss-Newton step),
    ``pose_start_step``: the pose term is off before this step (flow first).
    ``pose_weighting``: ``'W'`` (W = sigmoid(c) s P_R, the paper's weights) or ``'W_over_b2'``
    (W / (2 b^2), what coop_ros.pipeline.refine uses).
    selection: BCE with ``pos_weight``."""

    cls: float = 1.0
    offset: float = 1.0
    flow: float = 1.0
    cert: float = 1.0
    pose: float = 1.0
    radius_px: float = 2.0
    pose_points: int = 256
    pose_lm_iterations: int = 3
    pose_start_step: int = 0
    pose_weighting: str = "W"
    pos_weight: float = 1.0


@dataclass
class AugmentConfig:
    """MegaPose-style photometric augmentation of the query (Pillow); probabilities and factor
    ranges (see :mod:`coop_ros.train.augment`). ``enabled: false`` turns it off."""

    enabled: bool = True
    blur_p: float = 0.4
    blur_radius: tuple = (1.0, 3.0)
    sharpness_p: float = 0.3
    sharpness: tuple = (0.0, 50.0)
    contrast_p: float = 0.3
    contrast: tuple = (0.2, 50.0)
    brightness_p: float = 0.5
    brightness: tuple = (0.1, 6.0)
    color_p: float = 0.3
    color: tuple = (0.0, 20.0)


@dataclass
class OptimConfig:
    """AdamW, linear warm-up over ``warmup_steps`` to ``lr``, then ``final_lr`` from step
    ``decay_at`` on (step decay, paper: 2e-5 -> 2e-6); ``grad_clip``: max gradient norm
    (0 = off; paper refiner 1e-2)."""

    lr: float = 2e-5
    final_lr: float = 2e-6
    warmup_steps: int = 50
    decay_at: int = 250
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    """One training run (see the module docstring).

    precision: ``fp32``, or ``bf16`` (the networks' forward under ``torch.autocast`` in
        bfloat16; weights, optimiser state and losses stay float32, the refiner's LM PnP too).
    max_minutes: wall-clock budget of this run (None = none): no step starts after it (DDP:
        rank 0's clock decides for all ranks); the run then validates and writes
        ``ckpt_final.pt`` (and a resumable ``ckpt_last.pt``) as if ``steps`` were reached; the
        summary and the last log record say ``stopped: time``.
    """

    task: str = "coarse"
    model: dict = field(default_factory=lambda: {"backbone": "tiny"})
    init_croco: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 300
    batch_size: int = 8
    val_batches: int = 4
    val_every: int = 100
    log_every: int = 10
    ckpt_every: int = 100
    out: str = "out/train"
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    precision: str = "fp32"
    max_minutes: float | None = None

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        def bad(name, why, value):
            raise InputError(f"train config: {name} {why}, got {value!r}")

        if self.task not in TASKS:
            bad("task", f"must be one of {list(TASKS)}", self.task)
        if not isinstance(self.model, dict):
            bad("model", "must be a mapping of constructor kwargs", self.model)
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "val_every", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, "must be an integer >= 1", v)
        if isinstance(self.val_batches, bool) or not isinstance(self.val_batches, int) \
                or self.val_batches < 0:
            bad("val_batches", "must be an integer >= 0", self.val_batches)
        if not isinstance(self.device, str) or not (self.device == "cpu"
                                                    or self.device.startswith("cuda")):
            bad("device", "must be 'cpu', 'cuda' or 'cuda:N'", self.device)
        if self.precision not in PRECISIONS:
            bad("precision", f"must be one of {list(PRECISIONS)}", self.precision)
        if self.max_minutes is not None and (
                isinstance(self.max_minutes, bool)
                or not isinstance(self.max_minutes, (int, float))
                or not (math.isfinite(self.max_minutes) and self.max_minutes > 0)):
            bad("max_minutes", "must be null or a positive number", self.max_minutes)
        d = self.data
        if not isinstance(d.train, list) or not d.train:
            bad("data.train", "must be a non-empty list of BOP folders", d.train)
        if not isinstance(d.val, list):
            bad("data.val", "must be a list of BOP folders", d.val)
        if not isinstance(d.crop_size, int) or d.crop_size < 64 or d.crop_size % 16:
            bad("data.crop_size", "must be a multiple of 16, >= 64", d.crop_size)
        if not 0 <= d.min_visib_fract <= 1:
            bad("data.min_visib_fract", "must lie in [0, 1]", d.min_visib_fract)
        if d.repeats is not None and (not isinstance(d.repeats, int) or d.repeats < 1):
            bad("data.repeats", "must be null or an integer >= 1", d.repeats)
        if not isinstance(d.workers, int) or d.workers < 0:
            bad("data.workers", "must be an integer >= 0", d.workers)
        if d.render_device is not None and not (
                isinstance(d.render_device, str)
                and (d.render_device == "cpu" or d.render_device.startswith("cuda"))):
            bad("data.render_device", "must be null, 'cpu', 'cuda' or 'cuda:N'", d.render_device)
        if d.worker_start not in (None, "fork", "spawn"):
            bad("data.worker_start", "must be null, 'fork' or 'spawn'", d.worker_start)
        if d.preset not in (None, "default", "realistic"):
            bad("data.preset", "must be null, 'default' or 'realistic'", d.preset)
        p = self.pairs
        for name in ("near_template_prob",):
            if not 0 <= getattr(p, name) <= 1:
                bad(f"pairs.{name}", "must lie in [0, 1]", getattr(p, name))
        for name in ("refine_rot_deg", "refine_trans_xy", "refine_trans_z", "pos_rot_deg",
                     "pos_trans", "neg_rot_deg", "neg_trans", "visib_depth_tol", "box_jitter"):
            v = getattr(p, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(f"pairs.{name}", "must be a finite number >= 0", v)
        if p.neg_rot_deg <= p.pos_rot_deg:
            bad("pairs.neg_rot_deg", f"must exceed pairs.pos_rot_deg ({p.pos_rot_deg})",
                p.neg_rot_deg)
        if not isinstance(p.pose_stride, int) or p.pose_stride < 1:
            bad("pairs.pose_stride", "must be an integer >= 1", p.pose_stride)
        if not isinstance(p.near_templates, int) or p.near_templates < 1:
            bad("pairs.near_templates", "must be an integer >= 1", p.near_templates)
        lo = self.loss
        for name in ("cls", "offset", "flow", "cert", "pose", "radius_px", "pos_weight"):
            v = getattr(lo, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(f"loss.{name}", "must be a finite number >= 0", v)
        if lo.pose_weighting not in ("W", "W_over_b2"):
            bad("loss.pose_weighting", "must be 'W' or 'W_over_b2'", lo.pose_weighting)
        o = self.optim
        for name in ("lr", "final_lr"):
            v = getattr(o, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(f"optim.{name}", "must be a positive number", v)
        for name in ("warmup_steps", "decay_at"):
            v = getattr(o, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(f"optim.{name}", "must be an integer >= 0", v)
        if not (o.weight_decay >= 0 and o.grad_clip >= 0):
            bad("optim.weight_decay / grad_clip", "must be >= 0", (o.weight_decay, o.grad_clip))
        if len(tuple(o.betas)) != 2:
            bad("optim.betas", "must be 2 numbers", o.betas)
        return self

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict:
        """Plain types only (lists instead of tuples): storable in a checkpoint."""
        def plain(x):
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "train config") -> "TrainConfig":
        """Build from a plain mapping; unknown keys (any level) raise InputError naming them."""
        if not isinstance(d, Mapping):
            raise InputError(f"{where}: expected a mapping, got {type(d).__name__}")
        sections = {"data": DataConfig, "pairs": PairConfig, "loss": LossConfig,
                    "augment": AugmentConfig, "optim": OptimConfig}
        known = {f.name for f in fields(cls)}
        if "amp" in d:   # train configs stored in checkpoints before `precision` existed
            if d["amp"]:
                raise InputError(f"{where}: 'amp' was replaced by 'precision: bf16'")
            d = {k: v for k, v in d.items() if k != "amp"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        kw = {}
        for k, v in d.items():
            if k in sections:
                if v is None:
                    v = {}
                if not isinstance(v, Mapping):
                    raise InputError(f"{where}: '{k}' must be a mapping, got {type(v).__name__}")
                sk = {f.name for f in fields(sections[k])}
                bad = sorted(set(v) - sk)
                if bad:
                    raise InputError(f"{where}: unknown key(s) {[f'{k}.{b}' for b in bad]}; "
                                     f"known in '{k}': {sorted(sk)}")
                conv = {}
                for f in fields(sections[k]):
                    if f.name in v:
                        val = v[f.name]
                        default = f.default if f.default is not dataclasses.MISSING else None
                        if isinstance(default, tuple) and isinstance(val, list):
                            val = tuple(val)
                        if isinstance(default, float) and isinstance(val, int) \
                                and not isinstance(val, bool):
                            val = float(val)
                        conv[f.name] = val
                kw[k] = sections[k](**conv)
            else:
                kw[k] = v
        return cls(**kw).validate()


def apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> dict:
    """``raw`` with ``overrides`` applied: ``{"steps": 7, "model.backbone": "tiny"}`` (dotted
    keys reach into sections; None values are skipped)."""
    raw = dict(raw)
    for k, v in overrides.items():
        if v is None:
            continue
        head, _, rest = str(k).partition(".")
        if rest:
            sub = raw.get(head) or {}
            if not isinstance(sub, Mapping):
                raise InputError(f"train config: cannot set {k!r}: {head!r} is not a mapping")
            raw[head] = apply_overrides(dict(sub), {rest: v})
        else:
            raw[head] = v
    return raw


def parse_set(items) -> dict:
    """``["model.backbone=tiny", "batch_size=2"]`` -> ``{"model.backbone": "tiny", "batch_size":
    2}`` (values read as YAML: numbers, booleans, lists, null)."""
    import yaml

    out = {}
    for it in items or ():
        key, eq, val = str(it).partition("=")
        if not eq or not key.strip():
            raise InputError(f"--set expects KEY=VALUE (e.g. model.backbone=tiny), got {it!r}")
        out[key.strip()] = yaml.safe_load(val)
    return out


def load_config(path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file; ``overrides`` replace its values (top-level keys like ``task``, or
    dotted ones like ``model.backbone``, see :func:`apply_overrides`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"train config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"train config {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"train config {path}: top level must be a mapping")
    raw = apply_overrides(raw, overrides or {})
    return TrainConfig.from_dict(raw, where=f"train config {path}")
