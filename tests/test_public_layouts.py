"""Public-layout checkpoints with other settings than the shared fixture load as the same model.

The held-back reference uses joint positional embeddings, no normalised targets and other
sizes; these tests build such models, write them the way the public trainer and the
public release do, and check that `load_model` recovers the configuration and the function.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from echofm import load_model
from echofm.config import ModelConfig
from echofm.errors import EchoFMError
from echofm.model.echofm import EchoFM
from echofm.model.weights import to_public_state_dict

ARG_KEYS = ("num_frames", "t_patch_size", "pred_t_dim", "sep_pos_embed", "cls_embed", "norm_pix_loss",
            "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "decoder_embed_dim",
            "decoder_depth", "decoder_num_heads", "mlp_ratio")

SETTINGS = {
    "joint-cls-rawpix": dict(img_size=48, patch_size=8, num_frames=12, t_patch_size=3, pred_t_dim=12,
                             embed_dim=48, depth=3, num_heads=3, decoder_embed_dim=24, decoder_depth=2,
                             decoder_num_heads=2, mlp_ratio=2.0, sep_pos_embed=False, cls_embed=True,
                             norm_pix_loss=False),
    "joint-predt-lt-grid": dict(img_size=32, patch_size=16, num_frames=16, t_patch_size=4, pred_t_dim=8,
                                embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16, decoder_depth=1,
                                decoder_num_heads=1, mlp_ratio=4.0, sep_pos_embed=False, cls_embed=True,
                                norm_pix_loss=False),
    "separable-wide-heads": dict(img_size=64, patch_size=16, num_frames=8, t_patch_size=2, pred_t_dim=8,
                                 embed_dim=64, depth=2, num_heads=8, decoder_embed_dim=32, decoder_depth=1,
                                 decoder_num_heads=8, mlp_ratio=3.0, sep_pos_embed=True, cls_embed=True,
                                 norm_pix_loss=False),
}


def perturbed_model(settings: dict) -> EchoFM:
    torch.manual_seed(1)
    model = EchoFM(ModelConfig(**settings))
    with torch.no_grad():  # no parameter keeps its initial value (LayerNorm 1/0, zero biases)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def write_trainer_layout(model: EchoFM, path, args: dict):
    torch.save({"model": to_public_state_dict(model.state_dict()), "optimizer": {}, "epoch": 2, "scaler": {},
                "args": argparse.Namespace(model="custom", mask_ratio=0.75, **args)}, path)


def write_release_layout(model: EchoFM, path, args: dict):
    torch.save({"model": to_public_state_dict(model.state_dict()), "model_args": dict(args)}, path)


@pytest.mark.parametrize("layout", ["trainer", "release"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_other_settings_round_trip_through_public_layouts(name, layout, tmp_path):
    settings = SETTINGS[name]
    model = perturbed_model(settings)
    path = tmp_path / f"{name}.pth"
    args = {k: settings[k] for k in ARG_KEYS if k in settings} | {"in_chans": 3}
    (write_trainer_layout if layout == "trainer" else write_release_layout)(model, path, args)

    loaded = load_model(path)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    for key, value in settings.items():
        assert getattr(loaded.cfg, key) == value, key

    c = model.cfg
    torch.manual_seed(2)
    clips = torch.rand(2, 3, c.num_frames, c.img_size, c.img_size)
    noise = torch.rand(2, c.num_spatial)
    with torch.no_grad():
        a, b = model.embed(clips), loaded.embed(clips)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.frames, b.frames)
    out_a = model(clips, noise=noise)
    out_b = loaded(clips, noise=noise)
    assert torch.equal(out_a.mask, out_b.mask) and torch.equal(out_a.pred, out_b.pred)
    for part in ("loss", "recon", "triplet", "cycle"):
        assert torch.equal(getattr(out_a, part), getattr(out_b, part)), part
    out_a.loss.backward()
    out_b.loss.backward()
    grads_a = dict(model.named_parameters())
    for key, p in loaded.named_parameters():
        assert torch.equal(p.grad, grads_a[key].grad), key


def test_joint_embedding_split_needs_image_size_or_frame_count(tmp_path):
    settings = SETTINGS["joint-cls-rawpix"]
    model = perturbed_model(settings)
    # Without img_size the frame count alone splits the joint table.
    args = {k: settings[k] for k in ARG_KEYS if k in settings and k != "img_size"}
    write_release_layout(model, tmp_path / "frames_only.pth", args)
    cfg = load_model(tmp_path / "frames_only.pth").cfg
    assert (cfg.img_size, cfg.num_frames) == (48, 12)
    # Without either, the error names what is missing instead of guessing.
    args = {k: settings[k] for k in ARG_KEYS if k in settings and k not in ("img_size", "num_frames")}
    write_release_layout(model, tmp_path / "neither.pth", args)
    with pytest.raises(EchoFMError, match="img_size or num_frames"):
        load_model(tmp_path / "neither.pth")
