"""Shared fixtures. Tests that read ../shared (real frames) skip cleanly when it is absent."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_real() -> Path:
    """../shared/real (BOP-convention real frames, mm); skips the test when absent."""
    path = SHARED / "real"
    if not path.is_dir():
        pytest.skip("../shared/real is not present")
    return path


# ----------------------------------------------------------------------------- node tests
def synth_box_scene(root: Path) -> Path:
    """One synthetic RGB-D frame with one textured box (obj 1) under ``root / 'scene'``, and a
    node parameter file ``root / 'node.yaml'`` for it (template cache under ``root``)."""
    from coop_ros.bop.synth import generate_dataset
    if not (root / "scene" / "dataset.json").is_file():
        generate_dataset(root / "scene", objects=["textured_box"], n_scenes=1,
                         images_per_scene=1, seed=3, objects_per_image=(1, 1),
                         distractors=(0, 0), progress=False)
    return root / "scene"


def node_params_file(root: Path, **overrides) -> Path:
    """A coop_node parameter file for the box scene of :func:`synth_box_scene`."""
    import yaml
    params = {"objects": {"names": ["box"], "box": {
        "class_id": "1", "mesh": str(root / "scene" / "models" / "obj_000001.ply")}},
        "template_cache_dir": str(root / "templates"), "num_hypotheses": 1,
        "rgbd_refine_iterations": 1, "diagnostics_period": 0.2}
    for k, v in overrides.items():
        params[k] = v
    path = root / f"node_{abs(hash(tuple(sorted(map(str, overrides.items()))))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path
