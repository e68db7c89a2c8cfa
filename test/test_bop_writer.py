"""BOP-format writing (coop_ros.bop.writer): the BOP toolkit's box and visibility rules on
hand-made depth images, and PLY files that load back with their geometry, uv, texture and
colours. The generator's files are checked against re-renders in test_synth_scenes.py."""
from __future__ import annotations

import numpy as np
import pytest

from coop_ros.bop.writer import (calc_2d_bbox, depth_to_dist, dumps_bop_json, gt_info_bop,
                                 write_bop_json, write_ply)
from coop_ros.errors import InputError
from coop_ros.objects import ObjectModel
from coop_ros.synth import procedural as P


def test_ply_round_trip_keeps_geometry_uv_texture_and_colours(tmp_path):
    box = P.textured_box(seed=1)
    from PIL import Image
    Image.fromarray(box.texture).save(tmp_path / "box.png")
    write_ply(tmp_path / "box.ply", box, "box.png")
    back = ObjectModel.load(tmp_path / "box.ply", units="mm")
    assert back.faces.shape == box.faces.shape and np.array_equal(back.faces, box.faces)
    assert np.abs(back.vertices - box.vertices).max() < 1e-7              # float32 mm
    assert np.abs(back.uv - box.uv).max() == 0.0
    np.testing.assert_array_equal(back.texture, box.texture)
    mug = P.mug(seed=1)
    write_ply(tmp_path / "mug.ply", mug)
    back = ObjectModel.load(tmp_path / "mug.ply", units="mm")
    assert back.texture is None and np.abs(back.vertex_colors - mug.vertex_colors).max() <= 0.5 / 255
    with pytest.raises(InputError, match="texture_name"):
        write_ply(tmp_path / "x.ply", box)


def test_bop_bbox_and_visibility_helpers():
    # BOP calc_2d_bbox: w = x_max - x_min (not the pixel count), no clipping
    assert calc_2d_bbox(np.array([3, 5, -2]), np.array([7, 9, 8])) == [-2, 7, 7, 2]
    assert calc_2d_bbox(np.array([]), np.array([])) == [-1, -1, -1, -1]
    K = np.array([[100.0, 0, 2], [0, 100.0, 1], [0, 0, 1]])
    d = np.full((3, 5), 1000.0)
    dist = depth_to_dist(d, K)
    assert dist[1, 2] == 1000.0 and dist[0, 0] == pytest.approx(1000 * np.sqrt(1 + 0.02 ** 2 + 0.01 ** 2))
    gt = np.zeros((3, 5))
    gt[:, 1:4] = 800.0                                        # object 9 px at 0.8 m
    scene = np.full((3, 5), 800.0)
    scene[0, 1:4] = 700.0                                     # occluder 10 cm in front: row 0
    scene[1, 1] = 810.0                                       # within delta: visible
    scene[2, 3] = 0.0                                         # no measurement: visible (bop19)
    info, visib = gt_info_bop(gt, scene, K, 15.0)
    assert visib.sum() == 6 and not visib[0].any()
    assert info["px_count_all"] == 9 and info["px_count_visib"] == 6
    assert info["px_count_valid"] == 8 and info["visib_fract"] == pytest.approx(6 / 9)
    assert info["bbox_obj"] == [1, 0, 2, 2] and info["bbox_visib"] == [1, 1, 2, 1]
    info, _ = gt_info_bop(gt, scene, K, 15.0, px_count_all=18, bbox_obj=[-3, 0, 5, 2])
    assert info["visib_fract"] == pytest.approx(6 / 18) and info["bbox_obj"] == [-3, 0, 5, 2]
    info, _ = gt_info_bop(gt, np.full((3, 5), 100.0), K, 15.0)   # fully occluded
    assert info["px_count_visib"] == 0 and info["bbox_obj"] == [-1, -1, -1, -1]


def test_bop_json_layout_one_line_per_entry(tmp_path):
    """BOP toolkit's save_json layout: one line per top-level key / list element."""
    data = {"1": [{"obj_id": 1, "cam_t_m2c": [0.0, 1.5, 600.0]}, {"obj_id": 2}], "2": []}
    text = dumps_bop_json(data)
    assert text.splitlines() == ['{', '  "1": [', '    {"obj_id": 1, "cam_t_m2c": [0.0, 1.5, 600.0]},',
                                 '    {"obj_id": 2}],', '  "2": []', '}']
    write_bop_json(tmp_path / "a" / "b.json", data)
    import json
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == data
