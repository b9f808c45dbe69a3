"""Task heads: output shapes, regression units, segmentation at input resolution."""

from __future__ import annotations

import pytest
import torch

from echofm import ModelConfig
from echofm.model.echofm import VideoEncoder
from echofm.model.heads import (AttentiveProbe, FeatureNorm, LinearProbe, LinearSegmentationProbe, RegressionHead,
                                SegmentationDecoder, default_layers, time_statistics)

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


def test_stats_pooling_is_mean_and_std_over_time_of_per_step_means():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3 * 4, 5)  # 3 time steps of 4 tokens
    probe = LinearProbe(5, 1, pooling="stats", tokens_per_step=4)
    steps = tokens.reshape(2, 3, 4, 5).mean(dim=2)
    expected = torch.cat([steps.mean(dim=1), steps.std(dim=1, unbiased=False)], dim=-1)
    assert torch.allclose(probe.pool(tokens), expected, atol=1e-3)
    # A clip that does not change over time has no spread; one that does, has.
    still = torch.randn(1, 1, 4, 5).expand(1, 3, 4, 5).reshape(1, 12, 5)
    assert probe.pool(still)[0, 5:].max() < 1e-2
    assert probe(tokens).shape == (2, 1)
    with pytest.raises(ValueError, match="time steps of 5"):
        LinearProbe(5, 1, pooling="stats", tokens_per_step=5).pool(tokens)
    with pytest.raises(ValueError, match="pooling"):
        LinearProbe(5, 1, pooling="max")


def test_attentive_stats_probe_pools_each_time_step_separately():
    torch.manual_seed(0)
    probe = AttentiveProbe(8, 2, num_heads=2, pooling="stats", tokens_per_step=4).eval()
    tokens = torch.randn(2, 3 * 4, 8)
    pooled = probe.pool(tokens)
    assert pooled.shape == (2, 16)
    # Shuffling tokens within a time step changes nothing; swapping time steps keeps the statistics.
    within = tokens.reshape(2, 3, 4, 8)[:, :, torch.randperm(4)].reshape(2, 12, 8)
    across = tokens.reshape(2, 3, 4, 8)[:, [2, 0, 1]].reshape(2, 12, 8)
    assert torch.allclose(probe.pool(within), pooled, atol=1e-5)
    assert torch.allclose(probe.pool(across), pooled, atol=1e-5)
    assert probe(tokens).shape == (2, 2)


def test_feature_norm_standardises_with_training_statistics():
    torch.manual_seed(0)
    norm = FeatureNorm(3)
    x = torch.randn(64, 3) * torch.tensor([0.01, 1.0, 100.0]) + torch.tensor([5.0, 0.0, -3.0])
    out = norm(x)  # training: batch statistics, whatever the features' scales
    assert torch.allclose(out.mean(dim=0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=0, unbiased=False), torch.ones(3), atol=1e-2)
    assert norm(x[:1]).shape == (1, 3)  # a training batch of one uses the running statistics
    for _ in range(300):  # running averages forget their initial (0, 1) at momentum 0.1
        norm(x)
    norm.eval()
    assert torch.allclose(norm(x).std(dim=0, unbiased=False), torch.ones(3), atol=0.05)


def test_linear_segmentation_probe_maps_each_token_to_its_own_pixels():
    torch.manual_seed(0)
    cfg = ModelConfig(**CFG)
    encoder = VideoEncoder(cfg).eval()
    clips = torch.rand(2, 3, 4, 32, 32)
    _, hidden = encoder(clips, return_layers=(1, 2))
    probe = LinearSegmentationProbe(cfg.embed_dim, cfg.patch_size, cfg.t_patch_size, cfg.grid_size,
                                    num_layers=2, num_classes=3).eval()
    logits = probe(clips, hidden)
    assert logits.shape == (2, 3, 4, 32, 32)
    # Change the features of one token (time step 1, grid row 2, column 3): only the pixels of
    # its tubelet (frames 2-3, rows 16-23, columns 24-31) change.
    changed = [h.clone() for h in hidden]
    changed[0][0, 1 * 16 + 2 * 4 + 3] += 5.0
    diff = (probe(clips, changed) - logits).abs().sum(dim=1)[0]  # [F, H, W]
    inside = torch.zeros_like(diff, dtype=torch.bool)
    inside[2:4, 16:24, 24:32] = True
    assert diff[inside].min() > 0 and diff[~inside].max() == 0
    with pytest.raises(ValueError, match="expects 2 hidden"):
        probe(clips, hidden[:1])
