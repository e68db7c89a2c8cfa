"""Trainer of Co-op's three networks: AdamW, warm-up + step decay, gradient clipping,
checkpoints that carry their config, resume, tqdm + JSONL log, DistributedDataParallel.

Single process::

    from coop_ros.train import load_config, train
    summary = train(load_config("config/train_coarse_tiny.yaml"), out="out/coarse")

Several processes / GPUs (one process per GPU; on CPU the gloo backend)::

    torchrun --nproc_per_node 2 -m coop_ros.train.cli coarse --config FILE.yaml --out DIR

With ``WORLD_SIZE > 1`` in the environment (torchrun sets it) the process group is initialised
(``nccl`` on CUDA, ``gloo`` on CPU), the model is wrapped in ``DistributedDataParallel``, pairs are
sharded with ``DistributedSampler`` (each rank draws ``batch_size`` pairs per step, so the
effective batch is ``world_size x batch_size``), and only rank 0 logs, validates and writes
checkpoints.

``precision: bf16`` runs the forward passes under bfloat16 autocast (the losses and the refiner's
LM PnP in float32); ``max_minutes`` stops a run on a wall-clock budget with the same final
validation and checkpoint as a run that reached ``steps``.

Files in ``out``: ``log.jsonl`` (one JSON object per logged step: step, lr, train/val metrics,
seconds), ``ckpt_last.pt`` (model + ``extra = {optimizer, scheduler, step, train_config,
metrics}``, :func:`coop_ros.nets.checkpoint.save_checkpoint`; resume from it), ``ckpt_final.pt``
at the end (the same without the optimizer state: the file the ``coop`` backend loads).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from coop_ros.errors import InputError
from coop_ros.train.config import TrainConfig

__all__ = ["lr_at", "build_model_for", "train", "evaluate", "evaluate_checkpoint", "forward_loss",
           "make_source", "render_device_for", "repeats_for"]


def lr_at(step: int, o) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up to ``o.lr`` over ``o.warmup_steps``,
    ``o.final_lr`` from ``o.decay_at`` on."""
    if step >= o.decay_at > 0:
        return float(o.final_lr)
    if o.warmup_steps > 0 and step < o.warmup_steps:
        return float(o.lr) * (step + 1) / o.warmup_steps
    return float(o.lr)


def build_model_for(cfg: TrainConfig) -> torch.nn.Module:
    """A fresh network of ``cfg.task`` from ``cfg.model`` (+ CroCo weights when configured)."""
    from coop_ros.nets.checkpoint import build_model, load_croco_weights

    model = build_model({"arch": cfg.task, **cfg.model}, what="train config 'model'")
    if cfg.init_croco:
        load_croco_weights(model, cfg.init_croco)
    return model


def render_device_for(cfg: TrainConfig, local_rank: int = 0) -> str:
    """Renderer device of the pairs: ``data.render_device``, else the training device (under
    DDP on CUDA: ``cuda:<local rank>``, the EGL device of the same index)."""
    dev = cfg.data.render_device or cfg.device
    if dev == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = f"cuda:{local_rank}"
    return dev


def make_source(cfg: TrainConfig, which: str = "train", render_device: str | None = None):
    """The :class:`~coop_ros.train.pairs.SceneSource` of the ``train`` or ``val`` folders."""
    from coop_ros.train.pairs import SceneSource

    roots = cfg.data.train if which == "train" else cfg.data.val
    ids = cfg.data.obj_ids_train if which == "train" else cfg.data.obj_ids_val
    return SceneSource(roots, cfg.data, ids, device=render_device or render_device_for(cfg),
                       pose_points=cfg.loss.pose_points)


def repeats_for(n_instances: int) -> int:
    """Virtual copies of every instance per epoch (an epoch holds at least ~200 pairs)."""
    return max(1, math.ceil(200 / max(int(n_instances), 1)))


def evaluate_checkpoint(cfg: TrainConfig, checkpoint: str | None = None, split: str = "val",
                        batches: int | None = None) -> dict:
    """Metrics of a checkpoint (None: the untrained network ``train`` would start from, same
    seed) on deterministic, unaugmented pairs of ``split``: ``"val"`` (the held-out folders, the
    pairs of the in-training validation) or ``"train"`` (the training folders; with
    ``pairs.fixed`` exactly the pairs trained on, before augmentation)."""
    from coop_ros.nets.checkpoint import load_checkpoint
    from coop_ros.train.pairs import PairDataset

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    if checkpoint:
        model = load_checkpoint(checkpoint, expected_arch=cfg.task)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model_for(cfg)
    device = torch.device(cfg.device)
    model.to(device)
    src = make_source(cfg, split)
    if split == "train":
        ds = PairDataset(src, cfg.task, cfg.pairs, None, seed=cfg.seed,
                         repeats=cfg.data.repeats or repeats_for(len(src.instances)))
    else:
        ds = PairDataset(src, cfg.task, cfg.pairs, None, seed=cfg.seed + 9999, repeats=1)
    nb = cfg.val_batches if batches is None else int(batches)
    n = min(len(ds), max(nb, 1) * cfg.batch_size)
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int).tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx),
                                         batch_size=cfg.batch_size, shuffle=False)
    try:
        m = evaluate(model, loader, cfg, device)
    finally:
        src.release()
    m["pairs"] = float(n)
    return m


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _float32(out):
    """Network outputs (tensor or dataclass of tensors) as float32 (losses run in float32)."""
    if torch.is_tensor(out):
        return out.float()
    if dataclasses.is_dataclass(out):
        return dataclasses.replace(out, **{f.name: _float32(getattr(out, f.name))
                                           for f in dataclasses.fields(out)})
    return out


def _forward(model, a: torch.Tensor, b: torch.Tensor, cfg: TrainConfig):
    """``model(a, b)`` in ``cfg.precision`` (bf16: autocast); float32 out."""
    from coop_ros.nets.preprocess import precision_context

    with precision_context(a.device.type, cfg.precision):
        out = model(a, b)
    return _float32(out) if cfg.precision != "fp32" else out


def forward_loss(model, batch: dict, cfg: TrainConfig, step: int = 0, with_pose: bool = True):
    """(loss, metrics) of one batch for ``cfg.task``; the forward in ``cfg.precision``, the
    losses (and the refiner's differentiable LM PnP) in float32."""
    from coop_ros.train.losses import coarse_loss, refiner_loss, selection_loss

    if cfg.task == "coarse":
        out = _forward(model, batch["query"], batch["template"], cfg)
        return coarse_loss(out, batch["cls"], batch["offset"], cfg.loss)
    if cfg.task == "refiner":
        out = _forward(model, batch["render"], batch["query"], cfg)
        wp = with_pose and step >= cfg.loss.pose_start_step
        return refiner_loss(out, batch, cfg.loss, cfg.pairs.pose_stride, with_pose=wp)
    logits = _forward(model, batch["query"], batch["render"], cfg)
    return selection_loss(logits, batch["label"], cfg.loss)


@torch.no_grad()
def evaluate(model, loader, cfg: TrainConfig, device, max_batches: int | None = None) -> dict:
    """Mean metrics of ``model`` over the batches of ``loader`` (eval mode, no gradient)."""
    was = model.training
    model.eval()
    acc: dict[str, list] = {}
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        _, m = forward_loss(model, _to(batch, device), cfg, step=1 << 30)
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
    model.train(was)
    return {k: float(np.mean(v)) for k, v in acc.items()}


class _SkipSampler(torch.utils.data.Sampler):
    """The indices of ``sampler`` without the first ``skip`` (resume inside an epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, int(skip)

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self):
        return max(len(self.sampler) - self.skip, 0)


def _param_groups(model, wd: float):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def _past(deadline: float, world: int, device) -> bool:
    """Whether the wall-clock ``deadline`` has passed; under DDP rank 0's clock decides for all
    ranks (every rank must stop at the same step)."""
    flag = time.perf_counter() >= deadline
    if world > 1:
        import torch.distributed as dist
        t = torch.tensor([1 if flag else 0], device=device if device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        flag = bool(t.item())
    return flag


def _dist_setup(cfg: TrainConfig):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device(cfg.device)
        return 0, 1, 0, dev
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device.startswith("cuda"):
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return rank, world, local, dev


def train(cfg: TrainConfig, out: str | os.PathLike | None = None, resume: str | None = None,
          progress: bool = True) -> dict:
    """Train ``cfg.task`` (module docstring). Returns a summary dict: out, step, last train
    metrics, ``val_initial`` (before any step of this run when starting from scratch) and
    ``val_final`` metrics, checkpoint path, seconds."""
    from tqdm import tqdm

    from coop_ros.nets.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from coop_ros.train.pairs import PairDataset

    cfg.validate()
    out = Path(out or cfg.out)
    rank, world, local, device = _dist_setup(cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)

    # ---- model / optimiser / resume
    start = 0
    extra = {}
    if resume:
        payload = read_checkpoint(resume)
        extra = payload.get("extra") or {}
        if payload["config"]["arch"] != cfg.task:
            raise InputError(f"checkpoint {resume} holds a {payload['config']['arch']!r} model, "
                             f"this run trains {cfg.task!r}")
        model = load_checkpoint(resume, expected_arch=cfg.task)
        start = int(extra.get("step", 0))
    else:
        model = build_model_for(cfg)
    model.to(device).train()
    opt = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas))
    if resume and "optimizer" in extra:
        opt.load_state_dict(extra["optimizer"])
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[local] if device.type == "cuda" else None)

    # ---- data
    rdev = render_device_for(cfg, local)
    src = make_source(cfg, "train", rdev)
    acfg = cfg.augment if cfg.augment.enabled else None
    repeats = cfg.data.repeats or repeats_for(len(src.instances))
    ds = PairDataset(src, cfg.task, cfg.pairs, acfg, seed=cfg.seed, repeats=repeats)
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler
        base_sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
    else:
        base_sampler = None
    batches_per_epoch = max(1, (len(ds) // world) // cfg.batch_size)
    mp_context = None
    if cfg.data.workers > 0:
        mp_context = cfg.data.worker_start or "spawn"

    def loader_for(epoch: int, skip_batches: int = 0):
        ds.set_epoch(epoch)
        if base_sampler is not None:
            base_sampler.set_epoch(epoch)
            sampler = base_sampler
        else:
            g = torch.Generator().manual_seed(cfg.seed * 1000003 + epoch)
            sampler = torch.utils.data.RandomSampler(ds, generator=g)
        if skip_batches:
            sampler = _SkipSampler(sampler, skip_batches * cfg.batch_size)
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler,
                                           num_workers=cfg.data.workers, drop_last=True,
                                           persistent_workers=False,
                                           multiprocessing_context=mp_context)

    val_loader = None
    if rank == 0 and cfg.data.val and cfg.val_batches > 0:
        vsrc = make_source(cfg, "val", rdev)
        vds = PairDataset(vsrc, cfg.task, cfg.pairs, None, seed=cfg.seed + 9999, repeats=1)
        n = min(len(vds), cfg.val_batches * cfg.batch_size)
        idx = np.linspace(0, len(vds) - 1, n).round().astype(int).tolist()
        val_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(vds, idx),
                                                 batch_size=cfg.batch_size, shuffle=False)

    log_path = out / "log.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and log_path.exists():   # a fresh run starts a fresh log
            log_path.unlink()
    t_start = time.perf_counter()

    def log(rec: dict) -> None:
        if rank == 0:
            rec = {"time_s": round(time.perf_counter() - t_start, 2), **rec}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def checkpoint(step: int, metrics: dict, name: str = "ckpt_last.pt",
                   with_optimizer: bool = True) -> Path | None:
        if rank != 0:
            return None
        extra = {"scheduler": {"type": "warmup_step", "step": step, "lr": lr_at(step, cfg.optim)},
                 "step": step, "train_config": cfg.to_dict(), "metrics": dict(metrics),
                 "world_size": world}
        if with_optimizer:
            extra["optimizer"] = opt.state_dict()
        return save_checkpoint(out / name, model, extra=extra)

    summary: dict = {"out": str(out), "world_size": world}
    if val_loader is not None and start == 0:
        summary["val_initial"] = evaluate(model, val_loader, cfg, device)
        log({"step": 0, "val": summary["val_initial"]})

    # ---- loop
    step = start
    epoch, within = divmod(start, batches_per_epoch)
    it = iter(loader_for(epoch, within))
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.task}", unit="it",
               disable=not progress or rank != 0)
    run_m: dict[str, list] = {}
    last_m: dict = {}
    deadline = None if cfg.max_minutes is None else t_start + 60.0 * cfg.max_minutes
    stopped = "steps"
    while step < cfg.steps:
        if deadline is not None and _past(deadline, world, device):
            stopped = "time"
            break
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            it = iter(loader_for(epoch))
            continue
        lr = lr_at(step, cfg.optim)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, m = forward_loss(net, _to(batch, device), cfg, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            m["grad_norm"] = float(gn)
        opt.step()
        step += 1
        for k, v in m.items():
            run_m.setdefault(k, []).append(v)
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            last_m = {k: float(np.mean(v)) for k, v in run_m.items()}
            run_m = {}
            if world > 1:   # metrics averaged over the ranks (same keys on every rank)
                import torch.distributed as dist
                keys = sorted(last_m)
                vec = torch.tensor([last_m[k] for k in keys], dtype=torch.float64,
                                   device=device if device.type == "cuda" else "cpu")
                dist.all_reduce(vec)
                last_m = {k: float(v) / world for k, v in zip(keys, vec.tolist())}
            bar.set_postfix({k: f"{last_m[k]:.3g}" for k in list(last_m)[:4]})
            rec = {"step": step, "epoch": epoch, "lr": lr, "train": last_m}
            if val_loader is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                rec["val"] = evaluate(model, val_loader, cfg, device)
                summary["val_final"] = rec["val"]
            log(rec)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(step, last_m)
    bar.close()
    if stopped == "time":
        if run_m:   # the steps since the last log
            last_m = {k: float(np.mean(v)) for k, v in run_m.items()}
        rec = {"step": step, "epoch": epoch, "lr": lr_at(max(step - 1, 0), cfg.optim),
               "train": last_m, "stopped": "time"}
        if val_loader is not None:
            rec["val"] = summary["val_final"] = evaluate(model, val_loader, cfg, device)
        log(rec)
    if val_loader is not None and "val_final" not in summary:
        summary["val_final"] = evaluate(model, val_loader, cfg, device)
    final = checkpoint(step, last_m, "ckpt_final.pt", with_optimizer=False)
    if stopped == "time":   # resumable from where the budget ended
        checkpoint(step, last_m)
    summary.update({"step": step, "train": last_m, "checkpoint": str(final) if final else None,
                    "seconds": time.perf_counter() - t_start, "stopped": stopped})
    src.release()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return summary
