"""The ``coop-ros`` command line: one sub-command per job, each in the module that owns the job.

A sub-command module defines ``configure_parser(parser)`` and ``run(args) -> int``; it is imported
only when its sub-command is named, so ``coop-ros --help`` imports none of them (no torch) and
each command checks its arguments before it imports anything heavy.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("coop_ros.bop.evaluate", "run an estimator over a BOP-format dataset and print AR_VSD, AR_MSSD, AR_MSPD, AR"),
    "templates": ("coop_ros.render.templates", "render and cache the template bank of a mesh"),
    "estimate": ("coop_ros.pipeline.cli", "estimate the pose of one object in an image"),
    "synth": ("coop_ros.synth.scenes",
              "generate a synthetic BOP-format dataset with exact ground truth"),
    "bag": ("coop_ros.ros.bag", "run the node's pipeline over a rosbag2: outputs to a new bag and a CSV"),
    "train": ("coop_ros.train.cli", "train Co-op's coarse, refiner or selection network"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: the command list only (no sub-command module is imported)."""
    parser = argparse.ArgumentParser(prog="coop-ros", description="Co-op 6D pose estimation of novel objects")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, description=help_, add_help=False)
    return parser


def _negative_values(argv: list[str]) -> list[str]:
    """``--opt -30,10,50,60`` -> ``--opt=-30,10,50,60``: no option of this CLI starts with a
    digit, so a word like ``-30,...`` or ``-0.5`` after an option is its value (argparse takes
    it for an option and stops with "expected one argument")."""
    out: list[str] = []
    for a in argv:
        if out and re.match(r"-\.?\d", a) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _negative_values(sys.argv[1:] if argv is None else list(argv))
    # build only the requested sub-command's parser (imports of the others are skipped)
    names = [a for a in argv if not a.startswith("-")]
    if names and names[0] in COMMANDS:
        parser = argparse.ArgumentParser(prog="coop-ros")
        sub = parser.add_subparsers(dest="command")
        module, help_ = COMMANDS[names[0]]
        p = sub.add_parser(names[0], help=help_, description=help_)
        importlib.import_module(module).configure_parser(p)
        p.set_defaults(_module=module)
    else:
        parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from coop_ros.errors import CoopError
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except CoopError as e:
        print(f"coop-ros {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
