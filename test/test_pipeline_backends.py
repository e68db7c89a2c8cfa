"""Slot interfaces (coop_ros.backends.base) and the weight-free implementations on small inputs."""
import numpy as np
import pytest

from coop_ros.backends import get_backend
from coop_ros.backends.base import (NO_MATCH, CoarseMatches, FlowField, encode_pixels,
                                    match_pixels, patch_centers)
from coop_ros.errors import InputError


def test_patch_encoding_roundtrip():
    rng = np.random.default_rng(0)
    uv = rng.uniform(-0.5, 223.49, size=(500, 2))
    idx, off = encode_pixels(uv, 224)
    assert idx.min() >= 0 and idx.max() < 196
    assert np.abs(off).max() <= 0.5
    back = match_pixels(idx, off, 224)
    np.testing.assert_allclose(back, uv, atol=1e-4)


def test_patch_encoding_no_match():
    idx, off = encode_pixels(np.array([[np.nan, 3.0], [-5.0, 10.0], [300.0, 1.0]]), 224)
    assert (idx == NO_MATCH).all()
    assert np.isnan(match_pixels(idx, off, 224)).all()


def test_patch_centers_grid():
    c = patch_centers(224)
    assert c.shape == (196, 2)
    np.testing.assert_allclose(c[0], [7.5, 7.5])
    np.testing.assert_allclose(c[15], [16 * 1.5 - 0.5, 16 * 1.5 - 0.5])


def test_coarse_matches_validate():
    T, P = 3, 196
    m = CoarseMatches(np.full((T, P), NO_MATCH), np.zeros((T, P, 2), np.float32),
                      np.zeros((T, P), np.float32), np.zeros(T))
    assert m.validate(T, P) is m
    bad = CoarseMatches(np.full((T, P), 500), m.offset, m.confidence, m.template_scores)
    with pytest.raises(InputError, match="patch_index"):
        bad.validate(T, P)
    with pytest.raises(InputError, match="offset"):
        CoarseMatches(m.patch_index, np.ones((T, P, 2)), m.confidence,
                      m.template_scores).validate(T, P)


def test_flow_confidence_formula():
    S = 8
    ff = FlowField(mu=np.zeros((S, S, 2), np.float32), b=np.full((S, S), 2.0, np.float32),
                   certainty=np.full((S, S), 0.5, np.float32),
                   sensitivity=np.full((S, S), 0.8, np.float32))
    W = ff.confidence(R=2.0)
    np.testing.assert_allclose(W, 0.5 * 0.8 * (1 - np.exp(-1.0)), rtol=1e-6)


def test_unknown_backend():
    with pytest.raises(InputError, match="weight-free"):
        get_backend("no-such-backend")


def test_weightfree_flow_recovers_a_shift():
    """DIS flow on a textured image shifted by (3, -2) px: mu ~ (3, -2) where certain."""
    import cv2

    from coop_ros.backends.base import ImageCrop
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (260, 260, 3)).astype(np.uint8), (0, 0), 2.0)
    render = base[20:244, 20:244].copy()
    query = base[22:246, 17:241].copy()     # content moves by (+3, -2) from render to query
    mask = np.zeros((224, 224), bool)
    mask[40:184, 40:184] = True
    K = np.array([[200.0, 0, 111.5], [0, 200.0, 111.5], [0, 0, 1]])
    be = get_backend("weight-free")
    ff = be.flow.flow(ImageCrop(render, K, mask=mask), ImageCrop(query, K))
    sel = ff.certainty > 0.5
    assert sel.sum() > 5000
    np.testing.assert_allclose(np.median(ff.mu[sel], axis=0), [3.0, -2.0], atol=0.3)
    assert (ff.b[sel] > 0).all() and ff.sensitivity.min() >= 0 and ff.certainty.max() <= 1
