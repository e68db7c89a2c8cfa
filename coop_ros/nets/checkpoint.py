"""Checkpoint I/O: coop_ros's own format (rebuildable from the file alone) and CroCo v2 import.

Own format (``torch.save`` of a dict, read back with ``torch.load(weights_only=True)``)::

    {'format': 'coop_ros-1',
     'model': state_dict,
     'config': {'arch': 'coarse' | 'refiner' | 'selection' | 'croco', **constructor kwargs},
     'extra': {...}            # caller's metadata: epoch, metrics, ... (plain types / tensors)
     'torch_version': str}

``load_checkpoint`` rebuilds the model from ``config`` on the meta device (no random init, no
double memory) and assigns the stored tensors. Every problem (missing / unreadable / truncated
file, foreign format, unknown or unexpected architecture, missing / unexpected / mis-shaped
keys, non-finite weights) raises :class:`coop_ros.errors.InputError` naming the file.

CroCo import: public CroCo v2 checkpoints are ``{'model': state_dict, 'croco_kwargs': {...}}``
with the key names of :mod:`coop_ros.nets.croco`; :func:`load_croco_weights` loads them into the
backbone of any model here.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from coop_ros.errors import InputError
from coop_ros.nets.croco import CroCoConfig, CroCoNet
from coop_ros.nets.heads import CoarseNet, RefinerNet
from coop_ros.nets.selection import SelectionNet

__all__ = ["FORMAT", "ARCHS", "model_config", "build_model", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "load_croco_weights"]

FORMAT = "coop_ros-1"

#: Architecture name -> class; every class takes its ``get_config()`` dict as kwargs.
ARCHS: dict[str, type[nn.Module]] = {
    "croco": CroCoNet,
    "coarse": CoarseNet,
    "refiner": RefinerNet,
    "selection": SelectionNet,
}

_CROCO_ARCH_FIELDS = ("patch_size", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
                      "dec_depth", "dec_num_heads", "mlp_ratio", "pos_embed", "norm_im2_in_dec")


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{'arch': name, **constructor kwargs}`` of a model of :data:`ARCHS`."""
    arch = getattr(model, "arch", None)
    if arch not in ARCHS or not isinstance(model, ARCHS[arch]) or not hasattr(model, "get_config"):
        raise InputError(f"{type(model).__name__} is not a coop_ros network (known: {sorted(ARCHS)})")
    return {"arch": arch, **model.get_config()}


def build_model(config: Mapping[str, Any], *, what: str = "config") -> nn.Module:
    """Model from ``{'arch': ..., **kwargs}`` (randomly initialised; use a meta-device context to skip init)."""
    if not isinstance(config, Mapping) or "arch" not in config:
        raise InputError(f"{what}: model config must be a dict with an 'arch' entry, got {config!r:.200}")
    arch = config["arch"]
    if arch not in ARCHS:
        raise InputError(f"{what}: unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    kwargs = {k: v for k, v in config.items() if k != "arch"}
    try:
        return ARCHS[arch](**kwargs)
    except (TypeError, InputError) as e:
        raise InputError(f"{what}: bad constructor arguments for {arch!r}: {e}") from None


def _check_plain(obj: Any, where: str) -> None:
    """Reject what ``torch.load(weights_only=True)`` could not read back."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise InputError(f"{where}: dict key {k!r} must be str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise InputError(f"{where}: {type(obj).__name__} cannot be stored in a checkpoint "
                     "(plain types, lists, dicts and tensors only)")


def _compare_state(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]):
    """(missing, unexpected, mis-shaped) keys of ``state`` against ``reference``."""
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    shapes = sorted(k for k in set(state) & set(reference)
                    if tuple(state[k].shape) != tuple(reference[k].shape))
    return missing, unexpected, shapes


def _few(keys, n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` in the ``coop_ros-1`` format (atomically: temp file + rename).

    Args:
        path: destination file (parent directories are created).
        model: a network of :data:`ARCHS`.
        config: ``{'arch', **kwargs}``; default :func:`model_config(model)`. A given config must
            rebuild exactly the model's keys and shapes, else InputError.
        extra: metadata stored under ``'extra'`` (plain types, lists, dicts, tensors).
    Returns:
        the path written.
    """
    path = Path(path)
    cfg = model_config(model) if config is None else dict(config)
    _check_plain(cfg, "config")
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if config is not None:
        with torch.device("meta"):
            ref = build_model(cfg).state_dict()
        missing, unexpected, shapes = _compare_state(state, ref)
        if missing or unexpected or shapes:
            raise InputError(f"config {cfg.get('arch')!r} does not describe this model: missing "
                             f"[{_few(missing)}], unexpected [{_few(unexpected)}], shapes [{_few(shapes)}]")
    payload = {"format": FORMAT, "model": state, "config": cfg, "extra": extra,
               "torch_version": str(torch.__version__)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _torch_load(path: Path, map_location, trusted: bool = False) -> Any:
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist or is not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            if trusted:
                return torch.load(path, map_location=map_location, weights_only=False)
            detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln), "")
            raise InputError(f"checkpoint {path} holds objects other than tensors and plain types "
                             f"({detail or 'weights-only load refused'}); pass trusted=True only if "
                             "you trust its origin") from None
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln),
                      str(e).splitlines()[0] if str(e) else "")
        raise InputError(f"checkpoint {path} is corrupt or truncated (UnpicklingError: {detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            AttributeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {msg})") from None


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and validate a ``coop_ros-1`` file without building the model.

    Returns the payload dict (``format``, ``model`` state_dict, ``config``, ``extra``).
    """
    path = Path(path)
    payload = _torch_load(path, map_location)
    if not isinstance(payload, dict):
        raise InputError(f"checkpoint {path} is not a coop_ros checkpoint (a {type(payload).__name__}, not a dict)")
    if payload.get("format") != FORMAT:
        if "croco_kwargs" in payload:
            raise InputError(f"checkpoint {path} is a CroCo checkpoint, not a {FORMAT} one: build the model "
                             "and use load_croco_weights")
        raise InputError(f"checkpoint {path} has format {payload.get('format')!r}, expected {FORMAT!r}")
    state = payload.get("model")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"checkpoint {path}: 'model' is not a state_dict of tensors")
    cfg = payload.get("config")
    if not isinstance(cfg, dict) or "arch" not in cfg:
        raise InputError(f"checkpoint {path}: 'config' with an 'arch' entry is missing")
    if cfg["arch"] not in ARCHS:
        raise InputError(f"checkpoint {path}: unknown architecture {cfg['arch']!r}; known: {sorted(ARCHS)}")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    expected_arch: str | None = None) -> nn.Module:
    """Rebuild a model from a ``coop_ros-1`` file alone.

    Args:
        path: checkpoint file.
        map_location: where the tensors go (``torch.load``'s argument), default CPU.
        expected_arch: if given (``'coarse'``, ``'refiner'``, ``'selection'``, ``'croco'``), a file of
            another architecture raises InputError.
    Returns:
        the model in eval mode, with the stored dtype.
    """
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    cfg, state = payload["config"], payload["model"]
    if expected_arch is not None and cfg["arch"] != expected_arch:
        raise InputError(f"checkpoint {path} holds a {cfg['arch']!r} model, expected {expected_arch!r}")
    with torch.device("meta"):
        model = build_model(cfg, what=f"checkpoint {path}")
    missing, unexpected, shapes = _compare_state(state, model.state_dict())
    if missing or unexpected or shapes:
        ref = model.state_dict()
        shape_txt = [f"{k} {tuple(state[k].shape)} vs {tuple(ref[k].shape)}" for k in shapes]
        raise InputError(f"checkpoint {path} does not match its {cfg['arch']!r} config: missing keys "
                         f"[{_few(missing)}], unexpected keys [{_few(unexpected)}], shape mismatches "
                         f"[{_few(shape_txt)}]")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise InputError(f"checkpoint {path}: tensor {k} has non-finite values")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _backbone(model: nn.Module) -> CroCoNet:
    if isinstance(model, CroCoNet):
        return model
    bb = getattr(model, "backbone", None)
    if not isinstance(bb, CroCoNet):
        raise InputError(f"{type(model).__name__} has no CroCo backbone to load weights into")
    return bb


def load_croco_weights(model: nn.Module, croco_ckpt_or_state: Any, map_location: Any = "cpu",
                       trusted: bool = False) -> tuple[list[str], list[str]]:
    """Load a public CroCo v2 checkpoint into the encoder and decoder of ``model``.

    Args:
        model: :class:`CroCoNet` or a network with a ``backbone`` CroCoNet (coarse, refiner,
            selection). Heads are left untouched.
        croco_ckpt_or_state: a file path, a ``{'model': state_dict, 'croco_kwargs': {...}}`` dict,
            or a bare state_dict.
        map_location: for a path, where tensors are loaded.
        trusted: for a path, allow full unpickling if the file holds more than tensors (only for
            files of trusted origin).
    Returns:
        ``(missing, unexpected)``: sorted backbone keys absent from the checkpoint, and checkpoint
        keys the backbone does not have (CroCo's ``prediction_head.*``, ``mask_token``,
        ``enc_pos_embed`` / ``dec_pos_embed`` ...). These are reported, not errors.
    Raises:
        InputError: unreadable file; ``croco_kwargs`` of another architecture (widths, depths,
            heads, patch size, non-RoPE / other-frequency position encoding); a shape mismatch;
            no CroCo key at all.
    """
    where = "CroCo state"
    kwargs = None
    obj = croco_ckpt_or_state
    if isinstance(obj, (str, os.PathLike)):
        where = f"CroCo checkpoint {obj}"
        obj = _torch_load(Path(obj), map_location, trusted=trusted)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        if obj.get("format") == FORMAT:
            raise InputError(f"{where} is a {FORMAT} checkpoint: use load_checkpoint")
        kwargs = obj.get("croco_kwargs")
        state = obj["model"]
    elif isinstance(obj, Mapping):
        state = obj
    else:
        raise InputError(f"{where}: expected a path, a checkpoint dict or a state_dict, got {type(obj).__name__}")
    if not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"{where}: the state_dict holds non-tensor values")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bb = _backbone(model)
    if kwargs is not None:
        if not isinstance(kwargs, Mapping):
            raise InputError(f"{where}: croco_kwargs is not a dict")
        try:
            ck = CroCoConfig.from_croco_kwargs(kwargs)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        diff = [f"{f}={getattr(ck, f)!r} (model {getattr(bb.config, f)!r})" for f in _CROCO_ARCH_FIELDS
                if (ck.rope_freq != bb.config.rope_freq if f == "pos_embed"
                    else getattr(ck, f) != getattr(bb.config, f))]
        if diff:
            raise InputError(f"{where} is another architecture: {', '.join(diff)}")
    own = bb.state_dict()
    missing, unexpected, shapes = _compare_state(state, own)
    if shapes:
        txt = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes]
        raise InputError(f"{where} does not fit the backbone: shape mismatches [{_few(txt)}]")
    matched = [k for k in state if k in own]
    if not matched:
        raise InputError(f"{where} has no CroCo encoder / decoder key (e.g. 'patch_embed.proj.weight')")
    bb.load_state_dict({k: state[k] for k in matched}, strict=False)
    return missing, unexpected
