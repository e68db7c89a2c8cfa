"""Learned backend ("coop", "auto"): the networks behind the slot interfaces.

Tiny randomly initialised networks saved as checkpoints; a fake 42-view bank (random images) for
the adapter contracts, and one real end-to-end pipeline run on a small synthetic scene."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from coop_ros.backends import get_backend
from coop_ros.backends.base import NO_MATCH, CoarseMatches, FlowField, ImageCrop
from coop_ros.errors import InputError
from coop_ros.nets import CoarseNet, RefinerNet, SelectionNet, save_checkpoint

torch.set_num_threads(1)
S = 64


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {}
    for name, m in (("coarse", CoarseNet("tiny", key_dim=64)),
                    ("refiner", RefinerNet("tiny", layer_dims=(16, 32, 64, 128), feature_dim=32,
                                           last_dim=16)),
                    ("selection", SelectionNet("tiny", hidden_dim=32))):
        paths[name] = str(save_checkpoint(d / f"{name}.pt", m))
    return paths


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for v in ("COOP_ROS_COARSE_CKPT", "COOP_ROS_REFINER_CKPT", "COOP_ROS_SELECTION_CKPT"):
        monkeypatch.delenv(v, raising=False)


def _crop(seed, with_mask=False):
    rng = np.random.default_rng(seed)
    K = np.array([[100.0, 0, (S - 1) / 2], [0, 100.0, (S - 1) / 2], [0, 0, 1]])
    mask = np.zeros((S, S), bool)
    mask[16:48, 16:48] = True
    return ImageCrop(rgb=rng.integers(0, 255, (S, S, 3), dtype=np.uint8), K=K,
                     mask=mask if with_mask else None)


def _bank(n=42):
    rng = np.random.default_rng(1)
    return SimpleNamespace(rgb=rng.integers(0, 255, (n, S, S, 3), dtype=np.uint8), size=S)


def test_coop_backend_slots(ckpts):
    be = get_backend("coop", {"coarse_ckpt": ckpts["coarse"], "refiner_ckpt": ckpts["refiner"],
                              "selection_ckpt": ckpts["selection"], "device": "cpu"})
    assert be.name == "coop"
    bank = _bank()
    prep = be.matcher.prepare(bank)
    assert prep.tokens.shape[0] == 42            # templates encoded once, cached
    q = _crop(2, with_mask=True)
    m = be.matcher.match(q, bank, prep)
    assert isinstance(m, CoarseMatches)
    P = (S // 16) ** 2
    m.validate(42, P)
    assert np.all((m.patch_index == NO_MATCH) == (m.confidence == 0))
    assert np.all((m.template_scores >= 0) & (m.template_scores <= 1))
    m2 = be.matcher.match(q, bank, None)         # without the cache: same result
    np.testing.assert_array_equal(m.patch_index, m2.patch_index)
    np.testing.assert_allclose(m.template_scores, m2.template_scores, atol=1e-6)

    f = be.flow.flow(_crop(3), _crop(4))
    assert isinstance(f, FlowField)
    assert f.mu.shape == (S, S, 2) and f.b.shape == (S, S)
    assert (f.b > 0).all() and (f.certainty >= 0).all() and (f.certainty <= 1).all()
    assert (f.sensitivity >= 0).all()
    assert f.confidence(2.0).shape == (S, S)

    s, info = be.scorer.score(_crop(5), _crop(6))
    assert 0.0 <= s <= 1.0 and "logit" in info
    assert s == pytest.approx(1 / (1 + np.exp(-info["logit"])))


def test_missing_and_corrupt_checkpoints(ckpts, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(InputError, match=str(missing)):
        get_backend("coop", {"coarse_ckpt": str(missing)})
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(InputError, match=str(bad)):
        get_backend("coop", {"refiner_ckpt": str(bad)})
    # a checkpoint of another network in a slot
    with pytest.raises(InputError, match="expected 'coarse'"):
        get_backend("coop", {"coarse_ckpt": ckpts["selection"]})
    with pytest.raises(InputError, match="at least one checkpoint"):
        get_backend("coop", {})


def test_partial_checkpoints_use_weightfree_slots(ckpts):
    be = get_backend("coop", {"selection_ckpt": ckpts["selection"]})
    assert type(be.scorer).__name__ == "SelectionScorer"
    assert type(be.matcher).__name__ == "WeightFreeMatcher"
    assert type(be.flow).__name__ == "DisFlowEstimator"


def test_auto_backend_choice_is_logged(ckpts, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="coop_ros.backends"):
        be = get_backend("auto", SimpleNamespace(device="cpu"))
    assert be.name == "weight-free"
    assert "auto -> weight-free" in caplog.text
    caplog.clear()
    monkeypatch.setenv("COOP_ROS_COARSE_CKPT", ckpts["coarse"])
    with caplog.at_level(logging.INFO, logger="coop_ros.backends"):
        be = get_backend("auto", SimpleNamespace(device="cpu"))
    assert be.name == "coop" and type(be.matcher).__name__ == "CoarseNetMatcher"
    assert "auto -> coop" in caplog.text


def test_auto_backend_falls_back_on_a_bad_checkpoint(ckpts, tmp_path, caplog, monkeypatch):
    """get_backend("auto") and the node decide alike (backends/policy.py): a configured
    checkpoint that fails its checks gives weight-free with a warning naming the file and where
    it was set; "coop" with the same file raises."""
    from coop_ros.errors import InputError
    bad = tmp_path / "coarse.pt"
    bad.write_bytes(b"not a checkpoint" * 8)
    monkeypatch.setenv("COOP_ROS_COARSE_CKPT", str(bad))
    with caplog.at_level(logging.WARNING, logger="coop_ros.backends"):
        be = get_backend("auto", SimpleNamespace(device="cpu"))
    assert be.name == "weight-free"
    assert f"corrupt or unreadable checkpoint {bad}" in caplog.text
    assert "COOP_ROS_COARSE_CKPT" in caplog.text
    monkeypatch.setenv("COOP_ROS_COARSE_CKPT", ckpts["selection"])      # wrong architecture
    with caplog.at_level(logging.WARNING, logger="coop_ros.backends"):
        assert get_backend("auto", SimpleNamespace(device="cpu")).name == "weight-free"
    assert "holds a 'selection' network, expected 'coarse'" in caplog.text
    with pytest.raises(InputError, match="corrupt or unreadable"):
        from coop_ros.backends.policy import choose_backend
        choose_backend("coop", {"coarse": str(bad)}, lambda k: k or "all")


def test_pipeline_end_to_end_with_coop_backend(ckpts, tmp_path, monkeypatch):
    """PoseEstimator(backend='coop') on a synthetic image: runs, returns a result record."""
    from coop_ros.bop.dataset import BopDataset
    from coop_ros.synth.scenes import generate_dataset
    from coop_ros.pipeline.estimator import PoseEstimator
    from coop_ros.pipeline.results import Detection, PoseConfig

    generate_dataset(tmp_path / "ds", ["textured_box"], n_scenes=1, images_per_scene=1,
                     width=320, height=240, objects_per_image=(1, 1), distractors=(0, 0),
                     occlusion="none", progress=False, distance_m=(0.5, 0.6))
    ds = BopDataset(tmp_path / "ds")
    fr = ds.frame(0, 0)
    for k, v in ckpts.items():
        monkeypatch.setenv(f"COOP_ROS_{k.upper()}_CKPT", v)
    est = PoseEstimator(PoseConfig(backend="coop", crop_size=64, refine_iterations=1,
                                   num_hypotheses=1, template_cache_dir=str(tmp_path / "tpl")))
    try:
        assert est.backend.name == "coop"
        est.add_object(1, ds.object(1))
        res = est.estimate(fr.rgb, fr.K, [Detection(1, fr.gt_info[0].bbox_visib)], mode="rgb",
                           num_hypotheses=1)
    finally:
        est.release()
    assert len(res) == 1
    r = res[0]
    assert r.status in ("ok", "failed")
    assert (r.T_cam_obj is not None) == r.ok


def test_bf16_precision_matches_fp32(ckpts):
    """precision 'bf16' (autocast): float32 outputs, within bf16 accuracy of fp32 ones."""
    paths = {f"{k}_ckpt": v for k, v in ckpts.items()}
    b32 = get_backend("coop", {**paths, "precision": "fp32"})
    b16 = get_backend("coop", {**paths, "precision": "bf16"})
    bank, q = _bank(), _crop(2, with_mask=True)
    m32 = b32.matcher.match(q, bank, b32.matcher.prepare(bank))
    m16 = b16.matcher.match(q, bank, b16.matcher.prepare(bank))
    assert m16.offset.dtype == np.float32 and m16.template_scores.dtype == np.float64
    np.testing.assert_allclose(m16.template_scores, m32.template_scores, atol=0.02)
    assert np.mean(m16.patch_index == m32.patch_index) > 0.9
    f32, f16 = b32.flow.flow(_crop(3), _crop(4)), b16.flow.flow(_crop(3), _crop(4))
    assert f16.mu.dtype == np.float32
    scale = np.abs(f32.mu).max()
    assert np.abs(f16.mu - f32.mu).max() < 0.05 * scale
    np.testing.assert_allclose(f16.b, f32.b, rtol=0.05)
    s32, _ = b32.scorer.score(_crop(5), _crop(6))
    s16, _ = b16.scorer.score(_crop(5), _crop(6))
    assert abs(s16 - s32) < 0.02
    with pytest.raises(InputError, match="precision"):
        get_backend("coop", {**paths, "precision": "fp16"})
