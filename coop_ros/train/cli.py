"""``coop-ros train coarse|refiner|selection --config FILE.yaml [--resume CKPT] [--out DIR]``
and ``coop-ros train shapes --out DIR ...`` (training / held-out synthetic sets).

Also runnable as a module, which is what ``torchrun`` needs::

    torchrun --nproc_per_node 2 -m coop_ros.train.cli coarse --config config/train_coarse_tiny.yaml
"""
from __future__ import annotations

import argparse
import json
import sys

from coop_ros.errors import InputError

__all__ = ["configure_parser", "run", "main"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=("coarse", "refiner", "selection", "shapes"),
                   help="network to train, or 'shapes' to write a synthetic training set")
    p.add_argument("--config", default=None, help="training YAML (config/train_*.yaml); "
                   "optional with --resume (the checkpoint's own config is used)")
    p.add_argument("--resume", default=None, help="checkpoint to continue (step, optimizer)")
    p.add_argument("--out", default=None, help="output folder (log.jsonl, checkpoints)")
    p.add_argument("--steps", type=int, default=None, help="override the number of steps")
    p.add_argument("--device", default=None, help="override the device (cpu, cuda)")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                   help="override the precision of the forward pass")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="override the wall-clock budget: stop (with a final checkpoint) after it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, dotted keys for sections "
                   "(--set model.backbone=tiny --set data.workers=0); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--eval", default=None, metavar="CKPT",
                   help="evaluate CKPT ('untrained': the initial network) instead of training; "
                   "prints the metrics as JSON")
    p.add_argument("--eval-split", default="val", choices=("val", "train"),
                   help="pairs for --eval: held-out (val) or training folders")
    p.add_argument("--eval-batches", type=int, default=None, help="batches for --eval")
    # shapes
    g = p.add_argument_group("shapes (task 'shapes' only)")
    g.add_argument("--names", default="textured_box,can,mug",
                   help="comma-separated built-in objects ('' for none)")
    g.add_argument("--primitives", type=int, default=8, help="random primitive shapes")
    g.add_argument("--shape-seed", type=int, default=1,
                   help="seed of the primitives and of the mesh draw / textures")
    g.add_argument("--object-seed", type=int, default=0, help="texture seed of built-in objects")
    g.add_argument("--scenes", type=int, default=1, help="scene folders")
    g.add_argument("--images", type=int, default=20, help="images per scene")
    g.add_argument("--seed", type=int, default=0, help="scene seed")
    g.add_argument("--width", type=int, default=640)
    g.add_argument("--height", type=int, default=480)
    g.add_argument("--occlusion", default="mild", choices=("none", "mild", "heavy"))
    g.add_argument("--mesh-glob", default=None,
                   help="mesh files to add as objects (glob, e.g. 'random_urdfs/*/*.obj')")
    g.add_argument("--meshes", type=int, default=10, help="files drawn from --mesh-glob")
    g.add_argument("--preset", default="default", choices=("default", "realistic"),
                   help="scene preset (realistic: coop_ros.synth.realistic; train with "
                        "data.preset: realistic)")


def run(args: argparse.Namespace) -> int:
    if args.task == "shapes":
        if not args.out:
            raise InputError("coop-ros train shapes needs --out DIR")
        from coop_ros.train.shapes import run as run_shapes
        args.device = args.device or "cpu"
        return run_shapes(args)
    from coop_ros.train.config import TrainConfig, apply_overrides, load_config, parse_set
    from coop_ros.train.loop import train

    overrides = {"task": args.task, "steps": args.steps, "device": args.device,
                 "precision": args.precision, "max_minutes": args.max_minutes,
                 **parse_set(args.set)}
    if args.config:
        cfg = load_config(args.config, overrides)
    elif args.resume:
        from coop_ros.nets.checkpoint import read_checkpoint
        tc = (read_checkpoint(args.resume).get("extra") or {}).get("train_config")
        if not tc:
            raise InputError(f"checkpoint {args.resume} carries no train config: give --config")
        cfg = TrainConfig.from_dict(apply_overrides(dict(tc), overrides),
                                    where=f"train config of {args.resume}")
    else:
        raise InputError("coop-ros train needs --config FILE.yaml (or --resume CKPT)")
    if args.eval:
        from coop_ros.train.loop import evaluate_checkpoint
        ck = None if args.eval == "untrained" else args.eval
        m = evaluate_checkpoint(cfg, ck, args.eval_split, args.eval_batches)
        print(json.dumps({"checkpoint": args.eval, "split": args.eval_split, **m}, indent=1))
        return 0
    summary = train(cfg, out=args.out, resume=args.resume, progress=not args.quiet)
    if summary.get("checkpoint"):
        print(json.dumps({k: summary[k] for k in summary if k != "train"}, indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="coop-ros train")
    configure_parser(p)
    args = p.parse_args(argv)
    from coop_ros.errors import CoopError
    try:
        return run(args)
    except CoopError as e:
        print(f"coop-ros train: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
