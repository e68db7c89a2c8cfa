"""Training / held-out synthetic sets with disjoint shapes (``coop-ros train shapes``).

A BOP-format folder from :func:`coop_ros.synth.scenes.generate_dataset` whose targets are a set of
procedural objects: built-in ones (:data:`coop_ros.synth.procedural.PROCEDURAL`, texture seed
``object_seed``) and ``n_primitives`` random primitives (:func:`random_primitive`, drawn from
``shape_seed``). Two calls with different ``shape_seed`` (and different built-in names) give
disjoint shape sets: the training split and the held-out split of TRAINING-DATA.md.

Default splits used by ``config/train_*.yaml``::

    train: textured_box, can, mug (texture seed 0) + 8 primitives of shape seed 1
    held-out: industrial_part (never trained on) + textured_box with another texture (seed 7)
              + 4 primitives of shape seed 2

Mesh pools add shapes: ``--mesh-glob 'pybullet_data/random_urdfs/*/*.obj' --meshes 12`` draws 12
files (seeded by ``--shape-seed``), each scaled to 6-16 cm and textured at random
(:func:`coop_ros.synth.procedural.textured_mesh`; ``scripts/gpu/fetch.sh`` extracts the 1000
pybullet shapes).
"""
from __future__ import annotations


import numpy as np

from coop_ros.errors import InputError

__all__ = ["make_objects", "make_shapes_dataset", "pick_meshes", "run"]


def pick_meshes(pattern: str, n: int, seed: int) -> list:
    """``n`` mesh files drawn without replacement (seeded) from the glob ``pattern``
    (e.g. ``'pybullet_data/random_urdfs/*/*.obj'``), sorted; InputError when fewer match."""
    import glob

    files = sorted(glob.glob(str(pattern)))
    if len(files) < n:
        raise InputError(f"--mesh-glob {pattern!r} matches {len(files)} file(s), {n} requested")
    rng = np.random.default_rng([int(seed), 78])
    return sorted(files[i] for i in rng.choice(len(files), size=int(n), replace=False))


def make_objects(names=("textured_box", "can", "mug"), n_primitives: int = 8, shape_seed: int = 1,
                 object_seed: int = 0, meshes=()) -> dict:
    """{obj_id: ObjectModel}: built-in ``names`` (ids 1..), then random primitives, then the
    mesh files ``meshes`` (:func:`~coop_ros.synth.procedural.textured_mesh`, random size and
    texture from ``shape_seed``)."""
    from coop_ros.synth.procedural import PROCEDURAL, make_object, random_primitive, textured_mesh

    out = {}
    for name in names:
        if name not in PROCEDURAL:
            raise InputError(f"unknown built-in object {name!r}; known: {sorted(PROCEDURAL)}")
        out[len(out) + 1] = make_object(name, seed=object_seed)
    rng = np.random.default_rng([int(shape_seed), 77])
    for k in range(int(n_primitives)):
        out[len(out) + 1] = random_primitive(rng, name=f"prim_s{shape_seed}_{k}",
                                             size_range=(0.06, 0.16))
    mrng = np.random.default_rng([int(shape_seed), 79])
    for path in meshes:
        out[len(out) + 1] = textured_mesh(path, mrng, size_range=(0.06, 0.16))
    if not out:
        raise InputError("no objects: give built-in names, n_primitives > 0 or meshes")
    return out


def make_shapes_dataset(out_dir, names=("textured_box", "can", "mug"), n_primitives: int = 8,
                        shape_seed: int = 1, object_seed: int = 0, scenes: int = 1,
                        images: int = 20, seed: int = 0, width: int = 640, height: int = 480,
                        occlusion: str = "mild", progress: bool = True, device: str = "cpu",
                        meshes=(), preset: str = "default"):
    """Write the dataset (see the module docstring); returns the SynthSummary. ``preset``
    ``realistic``: table-top scenes of 3-6 targets among 10-18 distractors
    (:mod:`coop_ros.synth.realistic`; for ``data.preset: realistic``)."""
    from coop_ros.synth.scenes import generate_dataset

    objs = make_objects(names, n_primitives, shape_seed, object_seed, meshes)
    realistic = preset == "realistic"
    return generate_dataset(out_dir, objs, n_scenes=scenes, images_per_scene=images, seed=seed,
                            width=width, height=height,
                            objects_per_image=(3, 6) if realistic else (1, 3),
                            distractors=None if realistic else (0, 2), occlusion=occlusion,
                            progress=progress, device=device, preset=preset)


def run(args) -> int:
    """``coop-ros train shapes`` (arguments: :func:`coop_ros.train.cli.configure_parser`)."""
    names = tuple(s.strip() for s in args.names.split(",") if s.strip())
    meshes = pick_meshes(args.mesh_glob, args.meshes, args.shape_seed) if args.mesh_glob else ()
    s = make_shapes_dataset(args.out, names, args.primitives, args.shape_seed, args.object_seed,
                            args.scenes, args.images, args.seed, args.width, args.height,
                            args.occlusion, progress=not args.quiet, device=args.device,
                            meshes=meshes, preset=args.preset)
    print(f"wrote {s.out_dir}: {s.n_images} images, {s.n_instances} instances, objects "
          f"{s.obj_ids}")
    return 0
