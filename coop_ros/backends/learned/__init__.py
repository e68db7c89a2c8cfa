"""Learned backend: Co-op's networks behind the slot interfaces of :mod:`coop_ros.backends.base`.

* :class:`CoarseNetMatcher` (:class:`~coop_ros.backends.base.CoarseMatcher`): ``prepare`` encodes
  the bank's templates once per object (``CoarseNet.encode``, cached); ``match`` encodes the
  query and decodes it against every template: per query patch the argmax class (a template
  patch or "no match"), the offset, the class probability, and the template scores
  (:func:`coop_ros.nets.template_scores`, weighted by the detection mask when one is given).
* :class:`RefinerFlowEstimator` (:class:`~coop_ros.backends.base.FlowEstimator`): RefinerNet
  (render, query) -> mu, b, certainty = sigmoid(logit), sensitivity.
* :class:`SelectionScorer` (:class:`~coop_ros.backends.base.HypothesisScorer`): sigmoid of the
  SelectionNet logit.

Registered backends:

* ``"coop"``: the networks; checkpoint paths from the config (attributes or keys
  ``coarse_ckpt``, ``refiner_ckpt``, ``selection_ckpt``, ``device``, ``precision``; a :class:`LearnedConfig`, a
  dict, or the pipeline's ``PoseConfig``), else from the environment variables
  ``COOP_ROS_COARSE_CKPT``, ``COOP_ROS_REFINER_CKPT``, ``COOP_ROS_SELECTION_CKPT``. A slot without
  a checkpoint uses the weight-free implementation (logged); no checkpoint at all, or a missing /
  corrupt / wrong-architecture file, raises :class:`~coop_ros.errors.InputError` naming the path.
* ``"auto"``: ``"coop"`` when at least one checkpoint is configured, else ``"weight-free"``; the
  choice is logged (logger ``coop_ros.backends``).

Images are normalised as in training (:mod:`coop_ros.nets.preprocess`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coop_ros.backends import register_backend
from coop_ros.backends.base import (NO_MATCH, Backend, CoarseMatcher, CoarseMatches, FlowEstimator,
                                    FlowField, HypothesisScorer, ImageCrop)
from coop_ros.nets.preprocess import precision_context, to_input
from coop_ros.errors import InputError

__all__ = ["LearnedConfig", "CoarseNetMatcher", "RefinerFlowEstimator", "SelectionScorer",
           "make_backend", "make_auto_backend", "checkpoint_paths", "ENV_VARS"]

log = logging.getLogger("coop_ros.backends")

#: slot -> environment variable holding its checkpoint path
ENV_VARS = {"coarse": "COOP_ROS_COARSE_CKPT", "refiner": "COOP_ROS_REFINER_CKPT",
            "selection": "COOP_ROS_SELECTION_CKPT"}


@dataclass
class LearnedConfig:
    """Checkpoint paths (None = that slot uses the weight-free implementation) and device."""

    coarse_ckpt: str | None = None
    refiner_ckpt: str | None = None
    selection_ckpt: str | None = None
    device: str = "cpu"
    threads: int | None = None
    precision: str = "fp32"


def _get(config: Any, key: str):
    if config is None:
        return None
    if isinstance(config, dict):
        return config.get(key)
    return getattr(config, key, None)


def checkpoint_paths(config: Any = None) -> dict[str, str | None]:
    """{slot: path or None} from the config (attributes / keys ``<slot>_ckpt``) or else the
    environment (:data:`ENV_VARS`)."""
    out = {}
    for slot, env in ENV_VARS.items():
        v = _get(config, f"{slot}_ckpt")
        if v in (None, ""):
            v = os.environ.get(env) or None
        out[slot] = None if v is None else str(v)
    return out


def _load(path: str, arch: str, device):
    from coop_ros.nets.checkpoint import load_checkpoint
    model = load_checkpoint(path, map_location="cpu", expected_arch=arch)
    return model.to(device).eval()


class CoarseNetMatcher(CoarseMatcher):
    """Co-op coarse network in the coarse-matcher slot (module docstring).

    Args:
        model: a :class:`coop_ros.nets.CoarseNet` (eval mode) or a checkpoint path.
        device: torch device; template_batch: templates decoded per forward pass.
        precision: "fp32" or "bf16" (autocast; outputs converted to float32).
    """

    def __init__(self, model, device="cpu", template_batch: int = 42, precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = precision
        precision_context(self.device.type, precision)   # validates
        self.model = _load(model, "coarse", self.device) if isinstance(model, (str, os.PathLike)) \
            else model.to(self.device).eval()
        self.template_batch = int(template_batch)

    @torch.no_grad()
    def prepare(self, bank) -> Any:
        """Encode the bank's T templates once: an :class:`coop_ros.nets.Encoding` (T, N, C)."""
        x = to_input(bank.rgb, self.device)
        with precision_context(self.device.type, self.precision):
            encs = [self.model.encode(x[i:i + self.template_batch])
                    for i in range(0, len(x), self.template_batch)]
        from coop_ros.nets.croco import Encoding
        return Encoding(torch.cat([e.tokens for e in encs]), torch.cat([e.pos for e in encs]),
                        encs[0].grid)

    @torch.no_grad()
    def match(self, query: ImageCrop, bank, prepared: Any = None) -> CoarseMatches:
        query.validate("query")
        S = query.size
        if S != bank.size:
            raise InputError(f"query crop is {S} px but the template bank is {bank.size} px")
        if prepared is None:
            prepared = self.prepare(bank)
        from coop_ros.nets.croco import Encoding
        from coop_ros.nets.heads import template_scores
        logits, offsets = [], []
        with precision_context(self.device.type, self.precision):
            qenc = self.model.encode(to_input(query.rgb, self.device))
            T = prepared.tokens.shape[0]
            for i in range(0, T, self.template_batch):
                tenc = Encoding(prepared.tokens[i:i + self.template_batch],
                                prepared.pos[i:i + self.template_batch], prepared.grid)
                out = self.model.forward_features(qenc, tenc)
                logits.append(out.logits.float())
                offsets.append(out.offsets.float())
        logits = torch.cat(logits)          # (T, N, K + 1)
        offsets = torch.cat(offsets)        # (T, N, 2)
        K = logits.shape[-1] - 1
        prob = torch.softmax(logits, -1)
        conf, cls = prob.max(-1)
        nomatch = cls == K
        weights = None
        if query.mask is not None:
            G = S // 16
            m = torch.as_tensor(np.asarray(query.mask, np.float32), device=self.device)
            weights = m.reshape(G, 16, G, 16).mean((1, 3)).reshape(1, -1) + 1e-3
        scores = template_scores(logits, weights)
        pi = torch.where(nomatch, torch.full_like(cls, NO_MATCH), cls)
        return CoarseMatches(
            patch_index=pi.cpu().numpy().astype(np.int64),
            offset=offsets.clamp(-0.5, 0.5).cpu().numpy().astype(np.float32),
            confidence=torch.where(nomatch, torch.zeros_like(conf), conf).cpu().numpy()
            .astype(np.float32),
            template_scores=scores.double().cpu().numpy(),
            info={"backend": "coop", "matched_per_template": (~nomatch).sum(1).cpu().numpy()})


class RefinerFlowEstimator(FlowEstimator):
    """Co-op refiner network in the flow slot: (render, query) -> FlowField."""

    def __init__(self, model, device="cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = precision
        precision_context(self.device.type, precision)   # validates
        self.model = _load(model, "refiner", self.device) if isinstance(model, (str, os.PathLike)) \
            else model.to(self.device).eval()

    @torch.no_grad()
    def flow(self, render: ImageCrop, query: ImageCrop) -> FlowField:
        render.validate("render")
        query.validate("query")
        if render.size != query.size:
            raise InputError(f"render ({render.size} px) and query ({query.size} px) crops differ")
        with precision_context(self.device.type, self.precision):
            out = self.model(to_input(render.rgb, self.device), to_input(query.rgb, self.device))
        return FlowField(mu=out.flow[0].float().cpu().numpy().astype(np.float32),
                         b=out.scale[0].float().cpu().numpy().astype(np.float32),
                         certainty=torch.sigmoid(out.certainty_logit[0]).float().cpu().numpy()
                         .astype(np.float32),
                         sensitivity=out.sensitivity[0].float().cpu().numpy().astype(np.float32))


class SelectionScorer(HypothesisScorer):
    """Co-op selection network in the scorer slot: score = sigmoid(logit) in [0, 1]."""

    def __init__(self, model, device="cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = precision
        precision_context(self.device.type, precision)   # validates
        self.model = _load(model, "selection", self.device) \
            if isinstance(model, (str, os.PathLike)) else model.to(self.device).eval()

    @torch.no_grad()
    def score(self, query: ImageCrop, render: ImageCrop) -> tuple[float, dict]:
        query.validate("query")
        render.validate("render")
        with precision_context(self.device.type, self.precision):
            logit = float(self.model(to_input(query.rgb, self.device),
                                     to_input(render.rgb, self.device))[0])
        return float(1.0 / (1.0 + np.exp(-logit))), {"logit": logit}


def make_backend(config: Any = None) -> Backend:
    """The ``"coop"`` backend (module docstring)."""
    paths = checkpoint_paths(config)
    if not any(paths.values()):
        raise InputError("backend 'coop' needs at least one checkpoint: set coarse_ckpt / "
                         "refiner_ckpt / selection_ckpt in the config or the environment "
                         f"variables {', '.join(ENV_VARS.values())}")
    device = _get(config, "device") or "cpu"
    precision = _get(config, "precision") or "fp32"
    threads = _get(config, "threads")
    if threads:
        torch.set_num_threads(int(threads))
    wf = None

    def weightfree():
        nonlocal wf
        if wf is None:
            from coop_ros.backends.weightfree import make_backend as mk
            wf = mk(None)
        return wf

    slots = {}
    for slot, cls, wf_attr in (("coarse", CoarseNetMatcher, "matcher"),
                               ("refiner", RefinerFlowEstimator, "flow"),
                               ("selection", SelectionScorer, "scorer")):
        if paths[slot]:
            slots[slot] = cls(paths[slot], device=device, precision=precision)
            log.info("backend coop: %s network from %s", slot, paths[slot])
        else:
            slots[slot] = getattr(weightfree(), wf_attr)
            log.warning("backend coop: no %s checkpoint, using the weight-free %s", slot,
                        type(slots[slot]).__name__)
    return Backend(name="coop", matcher=slots["coarse"], flow=slots["refiner"],
                   scorer=slots["selection"])


def _setting(slot: str) -> str:
    """Where a checkpoint path is set, for the messages of :mod:`coop_ros.backends.policy`."""
    if not slot:
        return f"coarse_ckpt / refiner_ckpt / selection_ckpt (or {', '.join(ENV_VARS.values())})"
    return f"{slot}_ckpt / {ENV_VARS[slot]}"


def make_auto_backend(config: Any = None) -> Backend:
    """``"auto"``: the networks when a checkpoint is configured and passes the checks of
    :func:`coop_ros.backends.policy.check_checkpoints`, else weight-free (the choice is logged;
    the node's start-up uses the same policy)."""
    from coop_ros.backends.policy import choose_backend
    ch = choose_backend("auto", checkpoint_paths(config), _setting)
    if ch.name == "coop":
        log.info("backend auto -> coop (checkpoints: %s)",
                 ", ".join(f"{k}={v}" for k, v in ch.checkpoints.items()))
        return make_backend(config)
    from coop_ros.backends.weightfree import make_backend as mk
    if ch.why == "checkpoint_failed":
        log.warning("backend auto -> weight-free (%s)", ch.detail)
    else:
        log.info("backend auto -> weight-free (no checkpoint configured)")
    return mk(config)


register_backend("coop", make_backend)
register_backend("auto", make_auto_backend)
