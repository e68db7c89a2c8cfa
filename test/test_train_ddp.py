"""Multi-process training: 2 processes under torchrun with the gloo backend on CPU
(DistributedDataParallel + DistributedSampler; rank 0 logs and writes checkpoints)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coop_ros.nets import read_checkpoint


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_torchrun_two_processes_gloo(tmp_path):
    from coop_ros.synth.scenes import generate_dataset
    generate_dataset(tmp_path / "ds", ["textured_box"], n_scenes=1, images_per_scene=2,
                     width=320, height=240, objects_per_image=(1, 2), distractors=(0, 0),
                     occlusion="none", progress=False, distance_m=(0.5, 0.7))
    cfg = {"task": "coarse", "model": {"backbone": "tiny", "key_dim": 32},
           "data": {"train": [str(tmp_path / "ds")], "val": [str(tmp_path / "ds")],
                    "crop_size": 64, "template_cache": str(tmp_path / "tpl")},
           "optim": {"lr": 1e-3, "final_lr": 1e-4, "warmup_steps": 1, "decay_at": 100},
           "steps": 3, "batch_size": 2, "val_batches": 1, "val_every": 3, "log_every": 1,
           "ckpt_every": 3, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m",
                        "coop_ros.train.cli", "coarse", "--config", str(tmp_path / "c.yaml"),
                        "--out", str(tmp_path / "out"), "--quiet"],
                       capture_output=True, text=True, timeout=240, env=env,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs if "train" in x] == [1, 2, 3]   # rank 0 only, no duplicates
    extra = read_checkpoint(tmp_path / "out" / "ckpt_final.pt")["extra"]
    assert extra["world_size"] == 2 and extra["step"] == 3
