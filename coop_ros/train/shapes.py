"""Training / held-out synthetic sets with disjoint shapes (``coop-ros train shapes``).

A BOP-format folder from :func:`coop_ros.bop.synth.generate_dataset` whose targets are a set of
procedural objects: built-in ones (:data:`coop_ros.bop.procedural.PROCEDURAL`, texture seed
``object_seed``) and ``n_primitives`` random primitives (:func:`random_primitive`, drawn from
``shape_seed``). Two calls with different ``shape_seed`` (and different built-in names) give
disjoint shape sets: the training split and the held-out split of TRAINING-DATA.md.

Default splits used by ``config/train_*.yaml``::

    train: textured_box, can, mug (texture seed 0) + 8 primitives of shape seed 1
    held-out: industrial_part (never trained on) + textured_box with another texture (seed 7)
              + 4 primitives of shape seed 2
"""
from __future__ import annotations

import argparse

import numpy as np

from coop_ros.errors import InputError

__all__ = ["make_objects", "make_shapes_dataset", "configure_parser", "run"]


def make_objects(names=("textured_box", "can", "mug"), n_primitives: int = 8, shape_seed: int = 1,
                 object_seed: int = 0) -> dict:
    """{obj_id: ObjectModel}: built-in ``names`` (ids 1..) then random primitives."""
    from coop_ros.bop.procedural import PROCEDURAL, make_object, random_primitive

    out = {}
    for name in names:
        if name not in PROCEDURAL:
            raise InputError(f"unknown built-in object {name!r}; known: {sorted(PROCEDURAL)}")
        out[len(out) + 1] = make_object(name, seed=object_seed)
    rng = np.random.default_rng([int(shape_seed), 77])
    for k in range(int(n_primitives)):
        out[len(out) + 1] = random_primitive(rng, name=f"prim_s{shape_seed}_{k}",
                                             size_range=(0.06, 0.16))
    if not out:
        raise InputError("no objects: give built-in names or n_primitives > 0")
    return out


def make_shapes_dataset(out_dir, names=("textured_box", "can", "mug"), n_primitives: int = 8,
                        shape_seed: int = 1, object_seed: int = 0, scenes: int = 1,
                        images: int = 20, seed: int = 0, width: int = 640, height: int = 480,
                        occlusion: str = "mild", progress: bool = True, device: str = "cpu"):
    """Write the dataset (see the module docstring); returns the SynthSummary."""
    from coop_ros.bop.synth import generate_dataset

    objs = make_objects(names, n_primitives, shape_seed, object_seed)
    return generate_dataset(out_dir, objs, n_scenes=scenes, images_per_scene=images, seed=seed,
                            width=width, height=height, objects_per_image=(1, 3),
                            distractors=(0, 2), occlusion=occlusion, progress=progress,
                            device=device)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output BOP folder")
    p.add_argument("--names", default="textured_box,can,mug",
                   help="comma-separated built-in objects ('' for none)")
    p.add_argument("--primitives", type=int, default=8, help="random primitive shapes")
    p.add_argument("--shape-seed", type=int, default=1, help="seed of the primitive shapes")
    p.add_argument("--object-seed", type=int, default=0, help="texture seed of built-in objects")
    p.add_argument("--scenes", type=int, default=1)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--occlusion", default="mild", choices=("none", "mild", "heavy"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    names = tuple(s.strip() for s in args.names.split(",") if s.strip())
    s = make_shapes_dataset(args.out, names, args.primitives, args.shape_seed, args.object_seed,
                            args.scenes, args.images, args.seed, args.width, args.height,
                            args.occlusion, progress=not args.quiet, device=args.device)
    print(f"wrote {s.out_dir}: {s.n_images} images, {s.n_instances} instances, objects "
          f"{s.obj_ids}")
    return 0
