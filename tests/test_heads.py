"""Task heads: output shapes, regression units, segmentation at input resolution."""

from __future__ import annotations

import pytest
import torch

from echofm import ModelConfig
from echofm.model.echofm import VideoEncoder
from echofm.model.heads import (AttentiveProbe, LinearProbe, RegressionHead, SegmentationDecoder,
                                default_layers)

CFG = dict(img_size=32, patch_size=8, num_frames=4, t_patch_size=2, embed_dim=24, depth=3, num_heads=2,
           decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, pred_t_dim=2)


def test_linear_and_attentive_probe_shapes():
    tokens = torch.randn(3, 2 * 16, 24)
    assert LinearProbe(24, 5)(tokens).shape == (3, 5)
    probe = AttentiveProbe(24, 5, num_heads=4, num_queries=2)
    assert probe(tokens).shape == (3, 5)
    assert probe.pool(tokens).shape == (3, 24)
    # A batch of one works (no batch statistics).
    assert LinearProbe(24, 2)(tokens[:1]).shape == (1, 2)


def test_regression_head_reports_target_units():
    head = RegressionHead(LinearProbe(8, 1), target_mean=55.0, target_std=10.0)
    tokens = torch.randn(4, 6, 8)
    std = head.standardised(tokens)
    assert std.shape == (4,)
    assert torch.allclose(head(tokens), std * 10.0 + 55.0)
    assert torch.allclose(head.standardise(torch.tensor([65.0])), torch.tensor([1.0]))


def test_default_layers_are_evenly_spaced_and_end_at_the_last_block():
    assert default_layers(12) == (2, 5, 8, 11)
    assert default_layers(24) == (5, 11, 17, 23)
    assert default_layers(2) == (0, 1)


@pytest.mark.parametrize("layers", [(0, 1, 2), (2,)])
def test_segmentation_decoder_gives_per_frame_logits_at_input_resolution(layers):
    torch.manual_seed(0)
    cfg = ModelConfig(**CFG)
    encoder = VideoEncoder(cfg)
    clips = torch.rand(2, 3, 4, 32, 32)
    _, hidden = encoder(clips, return_layers=layers)
    decoder = SegmentationDecoder(cfg.embed_dim, cfg.patch_size, cfg.t_patch_size, cfg.grid_size,
                                  num_layers=len(layers), num_classes=4)
    logits = decoder(clips, hidden)
    assert logits.shape == (2, 4, 4, 32, 32)
    logits.mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_segmentation_decoder_rejects_bad_inputs():
    with pytest.raises(ValueError, match="power-of-two"):
        SegmentationDecoder(24, 12, 2, 4, num_layers=2)
    dec = SegmentationDecoder(24, 8, 2, 4, num_layers=2)
    with pytest.raises(ValueError, match="expects 2 hidden"):
        dec(torch.rand(1, 3, 4, 32, 32), [torch.randn(1, 32, 24)])
