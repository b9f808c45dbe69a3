"""Behaviour of the EchoFM model: shapes, masking, objectives, saving and loading."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch

from echofm import EchoFM, ModelConfig, autocast, export_public, load_encoder, load_model, preset, save_model
from echofm.errors import EchoFMError
from echofm.model import masking
from echofm.model.periodic import mine_triplets, pixel_cycle_prior
from echofm.model.weights import to_public_state_dict
from tests.conftest import periodic_clips

TINY = dict(img_size=32, patch_size=16, num_frames=8, t_patch_size=2, embed_dim=32, depth=2, num_heads=2,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, pred_t_dim=4)


def tiny(**kw) -> EchoFM:
    torch.manual_seed(0)
    return EchoFM(ModelConfig(**{**TINY, **kw}))


def test_forward_shapes_and_loss_parts():
    model = tiny()
    clips = periodic_clips(2, 8, 32, periods=[4, 6])
    out = model(clips)
    L, T = 4, 4
    assert out.pred.shape == (2, T * L, 16 * 16 * 3)
    assert out.mask.shape == (2, T * L)
    assert out.frames.shape == (2, T, 32)
    parts = out.parts()
    assert parts["loss"] == pytest.approx(parts["recon"] + parts["triplet"] + parts["cycle"], rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_weights_are_applied():
    clips = periodic_clips(2, 8, 32, periods=[4])
    noise = torch.rand(2, 4)
    base = tiny()(clips, noise=noise)
    weighted = tiny(triplet_weight=0.0, cycle_weight=2.0, recon_weight=0.5)(clips, noise=noise)
    assert float(weighted.loss.detach()) == pytest.approx(0.5 * float(base.recon) + 2.0 * float(base.cycle), rel=1e-5)


def test_consistent_mask_is_shared_by_every_time_step():
    m = masking.consistent_masking(3, 4, 16, 0.75)
    grid = m.mask.view(3, 4, 16)
    assert torch.equal(grid, grid[:, :1].expand_as(grid))
    assert (grid.sum(-1) == 12).all()
    x = torch.arange(64.0).view(1, 64, 1).repeat(3, 1, 1)
    kept = torch.gather(x, 1, m.ids_keep.unsqueeze(-1))
    restored = torch.gather(torch.cat([kept, torch.full((3, 48, 1), -1.0)], 1), 1, m.ids_restore.unsqueeze(-1))
    assert torch.equal(restored[m.mask == 0], x[m.mask == 0])
    assert (restored[m.mask == 1] == -1).all()


def test_random_masking_differs_across_time_and_trains():
    model = tiny(masking="random")
    clips = periodic_clips(2, 8, 32, periods=[4])
    torch.manual_seed(3)
    out = model(clips, mask_ratio=0.5)
    grid = out.mask.view(2, 4, 4)
    assert not torch.equal(grid, grid[:, :1].expand_as(grid))
    assert out.frames.shape == (2, 4, 32)
    out.loss.backward()


def test_projector_padding_matches_unpadded_steps():
    """With random masking, padded steps give the same embedding as running each step alone."""
    model = tiny(masking="random").eval()
    tokens = torch.randn(1, 6, 32)
    time_index = torch.tensor([[0, 0, 1, 2, 3, 3]])
    padded = model.projector(tokens, time_index)
    step0 = model.projector.norm(model.projector.block(
        torch.cat([model.projector.cls_token, tokens[:, :2]], 1))[:, 0])
    step1 = model.projector.norm(model.projector.block(
        torch.cat([model.projector.cls_token, tokens[:, 2:3]], 1))[:, 0])
    assert torch.allclose(padded[0, 0], step0[0], atol=1e-5)
    assert torch.allclose(padded[0, 1], step1[0], atol=1e-5)


def test_pixel_prior_sees_the_cycle():
    clips = periodic_clips(2, 16, 32, periods=[4])  # 2 frames per step: step period 2
    prior = pixel_cycle_prior(clips, 8)
    assert (prior[:, 0, 2] > prior[:, 0, 1] + 0.5).all()
    assert (prior[:, 1, 3] > prior[:, 1, 2] + 0.5).all()


def test_triplet_mining_picks_prior_positives_and_hardest():
    T = 6
    prior = torch.eye(T).unsqueeze(0).clone()
    prior[0, 0, 3] = prior[0, 3, 0] = 0.9
    prior[0, 0, 4] = 0.8
    embed = torch.rand(1, T, T)
    choice = mine_triplets(prior, embed)
    assert choice.valid[0, 0]
    cands = torch.tensor([3, 4])
    assert choice.pos_idx[0, 0] == cands[embed[0, 0, cands].argmin()]
    for t in range(T):
        if choice.valid[0, t]:
            assert abs(int(choice.neg_idx[0, t]) - t) > 1
    flat = mine_triplets(torch.ones(1, T, T), embed)
    assert not flat.valid.any()


def test_paper_variant_and_none():
    clips = periodic_clips(2, 8, 32, periods=[4])
    out = tiny(contrastive="paper")(clips)
    assert float(out.cycle) == 0.0 and float(out.triplet) >= 0.0
    out.loss.backward()
    none = tiny(contrastive="none")(clips)
    assert float(none.loss) == pytest.approx(float(none.recon))


def test_norm_pix_loss_changes_the_target():
    clips = periodic_clips(1, 8, 32, periods=[4])
    noise = torch.rand(1, 4)
    a = tiny(norm_pix_loss=True)(clips, noise=noise).recon
    b = tiny(norm_pix_loss=False)(clips, noise=noise).recon
    assert float(a) != pytest.approx(float(b), rel=1e-3)


def test_patchify_round_trip():
    model = tiny(pred_t_dim=8)  # u = 2 frames per predicted patch
    clips = torch.rand(2, 3, 8, 32, 32)
    assert model.patchify(clips).shape == (2, 16, 2 * 16 * 16 * 3)
    assert torch.equal(model.unpatchify(model.patchify(clips)), clips)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 6, 32, 32), "8 frames"),
    (torch.rand(2, 3, 8, 48, 48), "32x32"),
    (torch.rand(2, 1, 8, 32, 32), "3 channels"),
    (torch.rand(3, 8, 32, 32), "5 dims"),
    (torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8), "float"),
])
def test_wrong_input_raises_clear_value_error(bad, message):
    model = tiny()
    with pytest.raises(ValueError, match=message):
        model(bad)
    with pytest.raises(ValueError, match=message):
        model.embed(bad)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ModelConfig(**{**TINY, "img_size": 40})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("echofm-huge")


def test_presets_build_and_embed():
    model = load_model("echofm-tiny")
    c = model.cfg
    clips = torch.rand(1, 3, c.num_frames, c.img_size, c.img_size)
    with torch.no_grad():
        emb = model.embed(clips)
    assert emb.tokens.shape == (1, c.num_patches, c.embed_dim)
    assert emb.frames.shape == (1, c.t_grid_size, c.embed_dim)
    assert emb.video.shape == (1, c.embed_dim)
    large = preset("echofm-large")
    assert (large.embed_dim, large.depth, large.num_heads, large.num_frames, large.t_patch_size) == (1024, 24, 16, 32, 4)


def test_save_and_load_round_trip(tmp_path):
    model = tiny(norm_pix_loss=False).eval()
    save_model(model, tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "config.json").exists()
    loaded = load_model(tmp_path / "run").eval()
    assert loaded.cfg == model.cfg
    clips = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.embed(clips).tokens, model.embed(clips).tokens)
    single = tmp_path / "m.safetensors"
    save_model(model, single)
    assert load_model(single).cfg == model.cfg


def test_export_to_public_layout_and_back(tmp_path):
    model = tiny(sep_pos_embed=False).eval()
    path = export_public(model, tmp_path / "public.pth")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "model_args"}
    assert "blocks.0.attn.q.weight" in raw["model"] and "pos_embed" in raw["model"]
    back = load_model(path).eval()
    assert back.cfg.sep_pos_embed is False
    clips = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back.embed(clips).frames, model.embed(clips).frames, atol=1e-6)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = tiny()
    public = to_public_state_dict(model.state_dict())
    del public["decoder_pred.weight"]
    torch.save({"model": public, "model_args": {"num_frames": 8}}, tmp_path / "partial.pth")
    with pytest.raises(EchoFMError, match="decoder_pred.weight|decoder.pred.weight"):
        load_model(tmp_path / "partial.pth")
    public = to_public_state_dict(model.state_dict())
    public["head.weight"] = torch.zeros(2)
    torch.save({"model": public, "model_args": {}}, tmp_path / "extra.pth")
    with pytest.raises(EchoFMError, match="head.weight"):
        load_model(tmp_path / "extra.pth")


def test_encoder_only_loading(tmp_path):
    model = tiny()
    public = {k: v for k, v in to_public_state_dict(model.state_dict()).items()
              if not k.startswith(("decoder", "mask_token", "prj_norm"))}
    torch.save({"model": public, "model_args": {"num_frames": 8, "num_heads": 2}}, tmp_path / "enc.pth")
    with pytest.raises(EchoFMError, match="missing keys: .*decoder"):
        load_model(tmp_path / "enc.pth")
    partial = load_model(tmp_path / "enc.pth", encoder_only=True)
    assert partial.load_report.missing == [] and partial.load_report.unexpected == []
    clips = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(partial.encoder(clips), model.encoder(clips), atol=1e-6)
    save_model(model, tmp_path / "full")
    encoder = load_encoder(tmp_path / "full")
    with torch.no_grad():
        assert torch.equal(encoder(clips), model.encoder(clips))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_untrusted_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"x": _Payload(str(marker))}}, tmp_path / "evil.pth")
    with pytest.raises(EchoFMError, match="evil.pth"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EchoFMError, match="broken.pth"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope")


def test_bf16_embeddings_stay_close_to_fp32():
    model = load_model("echofm-tiny").eval()
    c = model.cfg
    clips = periodic_clips(2, c.num_frames, c.img_size, periods=[5, 7])
    with torch.no_grad():
        ref = model.embed(clips)
        with autocast("bf16"):
            low = model.embed(clips)
    cos_frames = torch.nn.functional.cosine_similarity(low.frames.float(), ref.frames, dim=-1)
    cos_video = torch.nn.functional.cosine_similarity(low.video.float(), ref.video, dim=-1)
    # Stated bound (README): bf16 embeddings keep cosine similarity >= 0.99 to fp32.
    assert cos_frames.min() >= 0.99 and cos_video.min() >= 0.99


def test_cpu_bf16_matmul_attention_matches_fp32_sdpa_with_and_without_mask():
    from echofm.model.vit import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 10, 32)
    keep = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    keep[1, ..., 7:] = False  # the last three keys of clip 1 are padding
    for mask in (None, keep):
        ref = attn(x, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = attn(x, mask)
        assert low.dtype == torch.bfloat16
        assert torch.allclose(low.float(), ref, atol=3e-2, rtol=3e-2)
    # Padding really is ignored: changing the padded tokens changes nothing for the others.
    y = x.clone()
    y[1, 7:] = torch.randn(3, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(attn(x, keep)[1, :7], attn(y, keep)[1, :7])


def test_mlp_recomputed_gelu_same_gradients_less_saved():
    """The MLP's recomputed GELU gives autograd's values and gradients exactly, and keeps one
    hidden-size tensor less for backward."""
    from echofm.model.vit import Mlp

    torch.manual_seed(0)
    mlp = Mlp(16, 64)
    x = torch.randn(2, 5, 16, requires_grad=True)
    weights = torch.randn(16)

    def run(recompute: bool):
        Mlp.recompute_gelu = recompute
        saved = []
        for p in [x, *mlp.parameters()]:
            p.grad = None
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            y = mlp(x)
        (y * weights).sum().backward()
        return y.detach(), [p.grad.clone() for p in [x, *mlp.parameters()]], sum(saved)

    try:
        y1, g1, saved1 = run(True)
        y0, g0, saved0 = run(False)
    finally:
        Mlp.recompute_gelu = True
    assert torch.equal(y1, y0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert saved0 - saved1 >= 2 * 5 * 64  # the GELU output [2, 5, 64] is no longer kept


def test_embedding_centering_gives_the_periodic_losses_a_gradient_at_collapse():
    # Step embeddings that share one dominant vector (as at random init) plus a small
    # phase-dependent part: uncentred, every cosine is ~1, the triplet sits at its margin and
    # the gradient is tiny; centred over time (embed_center_alpha=1), the phase part decides.
    clips = periodic_clips(2, 8, 32, periods=[4])
    T = tiny().cfg.t_grid_size
    phase = torch.randn(2, T, 8) * 0.01
    common = torch.zeros(2, 1, 8)
    common[..., 0] = 10.0
    grads = {}
    for alpha in (0.0, 1.0):
        model = tiny(embed_center_alpha=alpha)
        frames = (common + phase).clone().requires_grad_(True)
        triplet, cycle, _ = model.contrastive_loss(clips, frames)
        (triplet + cycle).backward()
        grads[alpha] = (float(triplet), float(frames.grad.norm()))
    assert abs(grads[0.0][0] - model.cfg.triplet_margin) < 1e-3  # collapsed: triplet = margin
    assert abs(grads[1.0][0] - model.cfg.triplet_margin) > 0.05  # centred: the phase part decides
    assert grads[1.0][1] > 100 * grads[0.0][1]
    with pytest.raises(ValueError, match="embed_center_alpha"):
        ModelConfig(embed_center_alpha=2.0)
