"""Tests of coop_ros.nets: shapes, parameter counts, RoPE, CroCo key compatibility, checkpoints, heads.

Only the ``tiny`` configuration runs real forwards; ``large`` / ``selection`` are checked on the
meta device (shapes) and by parameter counting.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from coop_ros.errors import InputError
from coop_ros.nets import (CONFIGS, CoarseNet, CroCoConfig, CroCoNet, RefinerNet, RoPE2D,
                           SelectionNet, confidence_weights, dpt_hooks, load_checkpoint,
                           load_croco_weights, logits_to_correspondences, patch_targets,
                           query_patch_centres, read_checkpoint, save_checkpoint, template_scores)
from coop_ros.nets.blocks import Attention, CrossAttention
from coop_ros.nets.rope import grid_positions

SMALL_DPT = dict(layer_dims=(16, 32, 64, 128), feature_dim=32, last_dim=16)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU extra OpenMP threads make
    every small op wait for a descheduled thread. Restored after this module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _imgs(b=2, h=224, w=224):
    return torch.randn(b, 3, h, w), torch.randn(b, 3, h, w)


# ----------------------------------------------------------------------------------- configs
def test_registry_configurations():
    L, S, T = CONFIGS["large"], CONFIGS["selection"], CONFIGS["tiny"]
    assert (L.enc_embed_dim, L.enc_depth, L.enc_num_heads) == (1024, 24, 16)
    assert (L.dec_embed_dim, L.dec_depth, L.dec_num_heads) == (768, 12, 12)
    assert (S.enc_embed_dim, S.enc_depth, S.enc_num_heads) == (768, 12, 12)
    assert (S.dec_embed_dim, S.dec_depth, S.dec_num_heads) == (512, 8, 16)
    assert (T.enc_embed_dim, T.enc_depth, T.enc_num_heads) == (192, 4, 3)
    assert (T.dec_embed_dim, T.dec_depth, T.dec_num_heads) == (128, 4, 4)
    for c in (L, S, T):
        assert c.img_size == (224, 224) and c.patch_size == 16 and c.grid == (14, 14)
        assert c.num_patches == 196 and c.mlp_ratio == 4.0 and c.norm_eps == 1e-6
        assert c.rope_freq == 100.0
        assert CroCoConfig(**c.to_dict()) == c


def test_bad_config_and_image_size_raise():
    with pytest.raises(InputError, match="enc_embed_dim"):
        CroCoConfig(enc_embed_dim=100, enc_num_heads=3)
    with pytest.raises(InputError, match="img_size"):
        CroCoConfig(img_size=230)
    with pytest.raises(InputError, match="pos_embed"):
        CroCoConfig(pos_embed="cosine")
    with pytest.raises(InputError, match="unknown CroCo configuration"):
        CroCoNet("huge")
    net = CroCoNet("tiny")
    with pytest.raises(InputError, match=r"100x224 is not a positive multiple of the patch size 16"):
        net.encode(torch.zeros(1, 3, 100, 224))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        net.encode(torch.zeros(1, 4, 224, 224))


# ------------------------------------------------------------------------- parameter counts
def _vit_block_params(d, mlp=4):
    h = mlp * d
    return (d * 3 * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d) + 4 * d


def _dec_block_params(d, mlp=4):
    return _vit_block_params(d, mlp) + 4 * (d * d + d) + 4 * d  # cross-attn (q,k,v,proj), norm3, norm_y


def _enc_count(model):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(("patch_embed", "enc_")))


def _dec_count(model):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(("decoder_embed", "dec_")))


def test_parameter_counts_large_and_selection():
    with torch.device("meta"):
        large, sel = CroCoNet("large"), CroCoNet("selection")
    enc_l = 3 * 16 * 16 * 1024 + 1024 + 24 * _vit_block_params(1024) + 2 * 1024
    assert enc_l == 303_098_880
    assert _enc_count(large) == enc_l
    assert abs(_enc_count(large) / 303e6 - 1) < 0.01  # ViT-L/16 without cls token / pos embed
    dec_l = 1024 * 768 + 768 + 12 * _dec_block_params(768) + 2 * 768
    assert _dec_count(large) == dec_l == 114_228_480
    assert _enc_count(sel) == 3 * 256 * 768 + 768 + 12 * _vit_block_params(768) + 2 * 768 == 85_646_592
    assert _dec_count(sel) == 768 * 512 + 512 + 8 * _dec_block_params(512) + 2 * 512 == 34_035_200
    assert sum(p.numel() for p in large.parameters()) == enc_l + dec_l


# --------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", ["large", "selection"])
def test_shapes_meta(name):
    cfg = CONFIGS[name]
    with torch.device("meta"):
        img1, img2 = torch.empty(2, 3, 224, 224), torch.empty(2, 3, 224, 224)
        coarse_net = CoarseNet(name)
        seen = []                           # the backbone's output inside the coarse forward
        coarse_net.backbone.register_forward_hook(lambda m, args, out: seen.append(out))
        coarse = coarse_net(img1, img2)
        out, = seen
        refine = RefinerNet(name)(img1[:1], img2[:1])
        score = SelectionNet(name)(img1, img2)
    assert out.enc1.tokens.shape == (2, 196, cfg.enc_embed_dim) and out.enc1.grid == (14, 14)
    assert out.dec.shape == (2, 196, cfg.dec_embed_dim) and len(out.dec_all) == cfg.dec_depth
    assert coarse.logits.shape == (2, 196, 197) and coarse.offsets.shape == (2, 196, 2)
    assert refine.flow.shape == (1, 224, 224, 2)
    assert refine.scale.shape == refine.certainty_logit.shape == refine.sensitivity.shape == (1, 224, 224)
    assert score.shape == (2,)


def test_tiny_forward_real_shapes_and_ranges():
    q, t = _imgs()
    coarse = CoarseNet("tiny")
    out = coarse(q, t)
    assert out.logits.shape == (2, 196, 197) and out.offsets.shape == (2, 196, 2)
    assert torch.isfinite(out.logits).all()
    lin = CoarseNet("tiny", classifier="linear")(q, t)
    assert lin.logits.shape == (2, 196, 197)
    # non-square crop: 64 x 96 -> 4 x 6 grid, 24 template patches + no match
    q2, t2 = _imgs(1, 64, 96)
    assert coarse(q2, t2).logits.shape == (1, 24, 25)
    ref = RefinerNet("tiny", **SMALL_DPT)(q2, t2)
    assert ref.flow.shape == (1, 64, 96, 2) and ref.scale.shape == (1, 64, 96)
    assert float(ref.scale.detach().min()) > 0.01 - 1e-7 and float(ref.sensitivity.detach().min()) >= 0.0
    assert SelectionNet("tiny")(q, t).shape == (2,)


def test_coarse_offsets_within_half_patch():
    net = CoarseNet("tiny")
    with torch.no_grad():
        net.head.offset.weight.mul_(1e3)  # drive tanh into saturation
    with torch.no_grad():
        off = net(*_imgs()).offsets
    assert float(off.abs().max()) <= 0.5
    assert float(off.abs().max()) > 0.49  # the bound is reached, not just respected by small values


def test_cached_encodings_match_forward_and_broadcast():
    net = CoarseNet("tiny").eval()
    q = torch.randn(1, 3, 224, 224)
    tmpl = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        eq, et = net.encode(q), net.encode(tmpl)
        batched = net.forward_features(eq, et)  # query broadcast against 3 templates
        for i in range(3):
            single = net(q, tmpl[i:i + 1])
            assert (batched.logits[i] - single.logits[0]).abs().max() < 1e-4
            assert (batched.offsets[i] - single.offsets[0]).abs().max() < 1e-5
    assert batched.logits.shape == (3, 196, 197)


# ----------------------------------------------------------------------------------- RoPE
def _croco_rope_reference(tokens, positions, base=100.0):
    """CroCo v2 RoPE2D (cos / sin tables looked up by integer position), written out."""
    D = tokens.shape[-1] // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2).float() / D))
    t = torch.arange(int(positions.max()) + 1, dtype=inv_freq.dtype)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    freqs = torch.cat((freqs, freqs), dim=-1)
    cos, sin = freqs.cos(), freqs.sin()

    def rot(x):
        x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def r1d(tok, p1):
        c = F.embedding(p1, cos)[:, None]
        s = F.embedding(p1, sin)[:, None]
        return tok * c + rot(tok) * s

    y, x = tokens.chunk(2, dim=-1)
    return torch.cat((r1d(y, positions[:, :, 0]), r1d(x, positions[:, :, 1])), dim=-1)


def test_rope_matches_croco_formula_and_splits_y_then_x():
    rope = RoPE2D(100.0)
    tok = torch.randn(2, 4, 196, 32)
    pos = grid_positions(2, 14, 14)
    assert (rope(tok, pos) - _croco_rope_reference(tok, pos)).abs().max() < 1e-5
    # first half rotated by y only, second half by x only
    shifted_x = pos + torch.tensor([0, 3])
    a, b = rope(tok, pos), rope(tok, shifted_x)
    assert (a[..., :16] - b[..., :16]).abs().max() == 0
    assert (a[..., 16:] - b[..., 16:]).abs().max() > 0.1


def test_rope_attention_logits_are_relative():
    rope = RoPE2D(100.0)
    q, k = torch.randn(1, 2, 196, 32), torch.randn(1, 2, 196, 32)
    pos = grid_positions(1, 14, 14)
    shift = torch.tensor([3, -5])

    def logits(pq, pk):
        return rope(q, pq) @ rope(k, pk).transpose(-2, -1)

    base = logits(pos, pos)
    assert (logits(pos + shift, pos + shift) - base).abs().max() < 1e-5
    assert (logits(pos, pos + shift) - base).abs().max() > 0.5
    # the same through the attention modules (qkv projections included)
    attn = Attention(64, num_heads=2, rope=rope)
    x = torch.randn(1, 196, 64)
    a0 = attn.attention_logits(x, pos)
    assert (attn.attention_logits(x, pos + shift) - a0).abs().max() < 1e-5
    assert (attn(x, pos + shift) - attn(x, pos)).abs().max() < 1e-5
    cross = CrossAttention(64, num_heads=2, rope=rope)
    y = torch.randn(1, 196, 64)
    c0 = cross.attention_logits(x, y, pos, pos)
    assert (cross.attention_logits(x, y, pos + shift, pos + shift) - c0).abs().max() < 1e-5
    assert (cross.attention_logits(x, y, pos, pos + shift) - c0).abs().max() > 0.5


def test_attention_equals_explicit_softmax_reference():
    attn = Attention(64, num_heads=4, rope=RoPE2D())
    x, pos = torch.randn(2, 49, 64), grid_positions(2, 7, 7)
    B, N, C = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, 4, C // 4).transpose(1, 3)
    q, k, v = [qkv[:, :, i] for i in range(3)]
    q, k = attn.rope(q, pos), attn.rope(k, pos)
    w = ((q @ k.transpose(-2, -1)) * (C // 4) ** -0.5).softmax(-1)
    ref = attn.proj((w @ v).transpose(1, 2).reshape(B, N, C))
    assert (attn(x, pos) - ref).abs().max() < 1e-5


# --------------------------------------------------------------------------- CroCo import
def _documented_croco_state(cfg: CroCoConfig):
    """A state_dict built from the DOCUMENTED CroCo v2 key names and shapes (not from our model)."""
    E, D, p, m = cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.patch_size, int(cfg.mlp_ratio)
    s = {"patch_embed.proj.weight": (E, 3, p, p), "patch_embed.proj.bias": (E,)}

    def vit(prefix, d):
        return {f"{prefix}.norm1.weight": (d,), f"{prefix}.norm1.bias": (d,),
                f"{prefix}.attn.qkv.weight": (3 * d, d), f"{prefix}.attn.qkv.bias": (3 * d,),
                f"{prefix}.attn.proj.weight": (d, d), f"{prefix}.attn.proj.bias": (d,),
                f"{prefix}.norm2.weight": (d,), f"{prefix}.norm2.bias": (d,),
                f"{prefix}.mlp.fc1.weight": (m * d, d), f"{prefix}.mlp.fc1.bias": (m * d,),
                f"{prefix}.mlp.fc2.weight": (d, m * d), f"{prefix}.mlp.fc2.bias": (d,)}

    for i in range(cfg.enc_depth):
        s.update(vit(f"enc_blocks.{i}", E))
    s.update({"enc_norm.weight": (E,), "enc_norm.bias": (E,),
              "decoder_embed.weight": (D, E), "decoder_embed.bias": (D,),
              "dec_norm.weight": (D,), "dec_norm.bias": (D,)})
    for i in range(cfg.dec_depth):
        pre = f"dec_blocks.{i}"
        s.update(vit(pre, D))
        for n in ("projq", "projk", "projv", "proj"):
            s[f"{pre}.cross_attn.{n}.weight"] = (D, D)
            s[f"{pre}.cross_attn.{n}.bias"] = (D,)
        for n in ("norm3", "norm_y"):
            s[f"{pre}.{n}.weight"] = (D,)
            s[f"{pre}.{n}.bias"] = (D,)
    return {k: torch.randn(v) for k, v in s.items()}


CROCO_EXTRAS = {"mask_token": (1, 1, 128), "prediction_head.weight": (768, 128),
                "prediction_head.bias": (768,), "prediction_head.proj.weight": (768, 128)}


def test_croco_state_loads_by_name_with_extras_unexpected(tmp_path):
    cfg = CONFIGS["tiny"]
    state = _documented_croco_state(cfg)
    n_documented = len(state)
    state.update({k: torch.randn(v) for k, v in CROCO_EXTRAS.items()})
    model = CoarseNet("tiny")
    assert n_documented == len(model.backbone.state_dict())
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    ckpt = {"model": state, "croco_kwargs": {**cfg.to_dict(), "mask_ratio": 0.9, "img_size": 224}}
    missing, unexpected = load_croco_weights(model, ckpt)
    assert missing == []
    assert unexpected == sorted(CROCO_EXTRAS)
    sd = model.backbone.state_dict()
    for k in ("patch_embed.proj.weight", "enc_blocks.3.attn.qkv.weight", "dec_blocks.2.norm_y.weight",
              "dec_blocks.0.cross_attn.projk.bias", "decoder_embed.weight", "dec_norm.bias"):
        assert torch.equal(sd[k], state[k])
    assert all(torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    # from a file, into a bare CroCoNet; a partial state reports the missing keys
    path = tmp_path / "croco.pth"
    partial = {k: v for k, v in state.items() if not k.startswith("dec_blocks.3.")}
    torch.save({"model": partial, "croco_kwargs": cfg.to_dict()}, path)
    missing, unexpected = load_croco_weights(CroCoNet("tiny"), str(path))
    assert len(missing) == 24 and all(k.startswith("dec_blocks.3.") for k in missing)
    assert unexpected == sorted(CROCO_EXTRAS)


def test_croco_import_rejects_other_architectures():
    cfg = CONFIGS["tiny"]
    state = _documented_croco_state(cfg)
    with pytest.raises(InputError, match="enc_depth=6"):
        load_croco_weights(CroCoNet("tiny"), {"model": state, "croco_kwargs": {**cfg.to_dict(), "enc_depth": 6}})
    with pytest.raises(InputError, match="cosine"):
        load_croco_weights(CroCoNet("tiny"), {"model": state, "croco_kwargs": {**cfg.to_dict(), "pos_embed": "cosine"}})
    bad = dict(state, **{"decoder_embed.weight": torch.randn(64, 192)})
    with pytest.raises(InputError, match=r"decoder_embed.weight \(64, 192\) vs \(128, 192\)"):
        load_croco_weights(CroCoNet("tiny"), bad)
    with pytest.raises(InputError, match="no CroCo encoder"):
        load_croco_weights(CroCoNet("tiny"), {"backbone.x": torch.zeros(1)})


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("make", [
    lambda: CoarseNet("tiny"),
    lambda: RefinerNet("tiny", **SMALL_DPT),
    lambda: SelectionNet("tiny"),
    lambda: CroCoNet("tiny"),
])
def test_save_load_identical_outputs(tmp_path, make):
    model = make().eval()
    q, t = _imgs(1, 64, 64)
    path = save_checkpoint(tmp_path / "m.pt", model, extra={"epoch": 7, "lr": 2e-5})
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    with torch.inference_mode():
        a, b = model(q, t), loaded(q, t)
    if isinstance(a, torch.Tensor):
        assert (a - b).abs().max() == 0
    else:
        for name in ("logits", "offsets", "flow", "scale", "certainty_logit", "sensitivity", "dec"):
            if hasattr(a, name):
                assert (getattr(a, name) - getattr(b, name)).abs().max() == 0
    payload = read_checkpoint(path)
    assert payload["format"] == "coop_ros-1" and payload["extra"] == {"epoch": 7, "lr": 2e-5}
    assert payload["config"]["arch"] == model.arch
    assert all(p.requires_grad for p in loaded.parameters())


def test_bad_checkpoints_raise_input_error(tmp_path):
    model = CoarseNet("tiny")
    path = save_checkpoint(tmp_path / "coarse.pt", model)
    data = path.read_bytes()
    trunc = tmp_path / "truncated.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated\.pt is corrupt or truncated"):
        load_checkpoint(trunc)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(InputError, match=r"junk\.pt is corrupt or truncated"):
        load_checkpoint(junk)
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(InputError, match=r"coarse\.pt holds a 'coarse' model, expected 'refiner'"):
        load_checkpoint(path, expected_arch="refiner")
    payload = torch.load(path, weights_only=True)
    del payload["model"]["head.offset.weight"]
    torch.save(payload, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing keys \[head\.offset\.weight\]"):
        load_checkpoint(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"]["dec_depth"] = 3  # config of another architecture than the weights
    torch.save(payload, tmp_path / "otherarch.pt")
    with pytest.raises(InputError, match=r"otherarch\.pt does not match its 'coarse' config: missing keys \[\], unexpected keys \[backbone\.dec_blocks\.3\."):
        load_checkpoint(tmp_path / "otherarch.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"]["head.offset.bias"][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="head.offset.bias has non-finite"):
        load_checkpoint(tmp_path / "nan.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"]["enc_num_heads"] = 5  # 192 / 5: not a valid architecture
    torch.save(payload, tmp_path / "badcfg.pt")
    with pytest.raises(InputError, match=r"badcfg\.pt: bad constructor arguments for 'coarse'.*enc_embed_dim"):
        load_checkpoint(tmp_path / "badcfg.pt")
    torch.save({"model": {}, "croco_kwargs": {}}, tmp_path / "croco.pth")
    with pytest.raises(InputError, match="is a CroCo checkpoint"):
        load_checkpoint(tmp_path / "croco.pth")
    with pytest.raises(InputError, match=r"extra\['ids'\]: set cannot be stored"):
        save_checkpoint(tmp_path / "x.pt", model, extra={"ids": {1, 2}})
    with pytest.raises(InputError, match="does not describe this model"):
        save_checkpoint(tmp_path / "x.pt", model, config={"arch": "coarse", "backbone": "selection"})


# ------------------------------------------------------------------------------ coarse maths
def test_logits_to_correspondences_exact_pixels():
    K, gw = 196, 14
    logits = torch.zeros(K, K + 1)
    logits[:, K] = 10.0  # every query patch: "no match"
    offsets = torch.zeros(K, 2)
    r, c, r2, c2 = 3, 5, 7, 2
    n, j = r * gw + c, r2 * gw + c2
    logits[n] = 0.0
    logits[n, j] = 10.0
    offsets[n] = torch.tensor([0.25, -0.375])
    corr = logits_to_correspondences(logits, offsets, patch=16, grid=14)
    assert corr.query_uv.tolist() == [[87.5, 55.5]]  # (16c + 7.5, 16r + 7.5)
    assert corr.template_uv.tolist() == [[43.5, 113.5]]  # ((2 + .5 + .25) 16 - .5, (7 + .5 - .375) 16 - .5)
    p = math.exp(10.0) / (math.exp(10.0) + K)
    assert corr.confidence.shape == (1,) and abs(float(corr.confidence[0]) - p) < 1e-6
    assert len(logits_to_correspondences(logits, offsets, min_prob=p + 1e-4).confidence) == 0
    # U = 0 -> template patch centre; U = -0.5 / +0.5 -> its outer pixel edges
    for u, expect in ((0.0, 39.5), (-0.5, 31.5), (0.5, 47.5)):
        offsets[n] = torch.tensor([u, 0.0])
        assert float(logits_to_correspondences(logits, offsets).template_uv[0, 0]) == expect
    with pytest.raises(InputError, match=r"\(196, 197\)"):
        logits_to_correspondences(logits[:, :-1], offsets)


def test_patch_targets_invert_correspondences():
    gen = torch.Generator().manual_seed(1)
    uv = torch.rand(196, 2, generator=gen) * 224 - 0.5  # anywhere in [-0.5, 223.5)
    valid = torch.ones(196, dtype=torch.bool)
    valid[::7] = False
    cls, off = patch_targets(uv, valid)
    assert int((cls == 196).sum()) == 28 and float(off.abs().max()) <= 0.5
    logits = F.one_hot(cls, 197).float() * 20.0
    corr = logits_to_correspondences(logits, off)
    assert len(corr.template_uv) == 168
    assert (corr.template_uv - uv[valid]).abs().max() < 1e-4
    assert (corr.query_uv - query_patch_centres(14)[valid]).abs().max() == 0
    outside = patch_targets(torch.tensor([[-1.0, 5.0], [224.0, 5.0]]), torch.ones(2, dtype=torch.bool))[0]
    assert outside.tolist() == [196, 196]


def test_template_scores_rank_by_confidence():
    K = 196
    full = torch.zeros(1, K, K + 1)
    full[0, torch.arange(K), torch.arange(K)] = 10.0  # every patch matched confidently
    half = full.clone()
    half[0, K // 2:, :] = 0.0
    half[0, K // 2:, K] = 10.0  # half of the patches "no match"
    s = template_scores(torch.cat((full, half)))
    p = math.exp(10.0) / (math.exp(10.0) + K)
    q = 1.0 / (math.exp(10.0) + K)
    assert abs(float(s[0]) - p) < 1e-6
    assert abs(float(s[1]) - (p + q) / 2) < 1e-6
    w = torch.zeros(2, K)
    w[:, : K // 2] = 1.0  # scoring only the first half: both templates explain it alike
    sw = template_scores(torch.cat((full, half)), w)
    assert abs(float(sw[0]) - p) < 1e-6 and abs(float(sw[1]) - p) < 1e-6


# ---------------------------------------------------------------------------- refiner maths
def test_confidence_weights_range_and_monotone():
    gen = torch.Generator().manual_seed(2)
    c = torch.randn(4, 8, 8, generator=gen) * 3
    s = F.softplus(torch.randn(4, 8, 8, generator=gen))
    b = F.softplus(torch.randn(4, 8, 8, generator=gen)) + 1e-2
    prev = torch.zeros_like(s)
    for R in (0.0, 0.5, 1.0, 2.0, 4.0, 16.0):
        w = confidence_weights(c, s, b, R)
        assert (w >= 0).all() and (w <= s).all() and (w >= prev).all()
        prev = w
    far = confidence_weights(c, s, b, 1e3)  # R >> b: P_R -> 1, W -> sigmoid(c) * s
    assert float((far - torch.sigmoid(c) * s).abs().max()) < 1e-6
    one = confidence_weights(torch.tensor(0.0), torch.tensor(2.0), torch.tensor(1.0), math.log(2.0))
    assert abs(float(one) - 0.5) < 1e-6  # 0.5 * 2 * (1 - 1/2)
    with pytest.raises(InputError, match="R must be >= 0"):
        confidence_weights(c, s, b, -1.0)


def test_dpt_hooks():
    assert dpt_hooks(12) == [4, 8, 12]
    assert dpt_hooks(8) == [3, 5, 8]
    assert dpt_hooks(4) == [1, 3, 4]
    with pytest.raises(InputError, match="at least 3"):
        dpt_hooks(2)
    with torch.device("meta"):
        assert RefinerNet("large").hooks == [4, 8, 12]
