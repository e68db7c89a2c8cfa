"""A PNG grid to compare realistic synthetic scenes with real images by eye.

    .venv/bin/python bench/realism_grid.py [--real ../shared/real] [--out docs/realism_grid.png]
        [--data /tmp/coop_realistic/synth_s2_i6] [--rows 4] [--tile 288]

Left column: real LM-O dev images (``lmo_rgb_dev``, evenly spaced over the sequence); right
column: realistic synthetic images of the same 8 LM-O meshes (the set ``bench/eval_realistic.py``
generates; made here when missing, same arguments). Last row: depth, colour-mapped over
0.4-1.8 m, black = no measurement: the real Kinect frame of LINEMOD (``lm_s6_im0_cat_rgbd``)
beside the synthetic frame with the median share of valid depth. Prints the file size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _tile(img_bgr: np.ndarray, size: tuple[int, int], label: str) -> np.ndarray:
    t = cv2.resize(img_bgr, size, interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (size[0], 16), (0, 0, 0), -1)
    cv2.putText(t, label, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                cv2.LINE_AA)
    return t


def _depth_vis(depth_mm: np.ndarray) -> np.ndarray:
    v = np.clip((depth_mm - 400.0) / 1400.0 * 255.0, 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(v, cv2.COLORMAP_JET)
    out[depth_mm <= 0] = 0
    return out


def main(argv=None) -> int:
    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", default=str(here.parents[2] / "shared" / "real"))
    ap.add_argument("--out", default=str(here.parents[1] / "docs" / "realism_grid.png"))
    ap.add_argument("--data", default="/tmp/coop_realistic/synth_s2_i6")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tile", type=int, default=288, help="tile width [px] (4:3)")
    args = ap.parse_args(argv)
    real, data = Path(args.real), Path(args.data)
    if not (data / "test").is_dir():
        from eval_realistic import make_synth
        make_synth(real, data, 2, 6)
    size = (args.tile, args.tile * 3 // 4)
    lmo = sorted((real / "lmo_rgb_dev" / "test" / "000002" / "rgb").glob("*.png"))
    syn = sorted((data / "test").glob("*/rgb/*.png"))
    def pick(files, n):
        return [files[int(i)] for i in np.linspace(0, len(files) - 1, n).round()]
    rows = []
    for a, b in zip(pick(lmo, args.rows), pick(syn, args.rows)):
        rows.append(np.hstack([_tile(cv2.imread(str(a)), size, f"real LM-O dev {a.stem}"),
                               _tile(cv2.imread(str(b)), size,
                                     f"realistic synthetic {b.parent.parent.name}/{b.stem}")]))
    cat = real / "lm_s6_im0_cat_rgbd" / "depth.png"
    # the synthetic frame with the median share of valid depth (not an extreme one)
    deps = sorted((data / "test").glob("*/depth/*.png"))
    valid = [float((cv2.imread(str(d), cv2.IMREAD_UNCHANGED) > 0).mean()) for d in deps]
    dsyn = deps[int(np.argsort(valid)[len(valid) // 2])]
    import json
    scale = json.loads((dsyn.parents[1] / "scene_camera.json").read_text())["0"]["depth_scale"]
    rows.append(np.hstack([
        _tile(_depth_vis(cv2.imread(str(cat), cv2.IMREAD_UNCHANGED).astype(float)), size,
              "real Kinect depth (LINEMOD), 0.4-1.8 m"),
        _tile(_depth_vis(cv2.imread(str(dsyn), cv2.IMREAD_UNCHANGED).astype(float) * scale),
              size, f"synthetic structured-light depth {dsyn.parents[1].name}/{dsyn.stem}")]))
    grid = np.vstack(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out}: {grid.shape[1]} x {grid.shape[0]} px, {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
