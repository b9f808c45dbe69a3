"""Task heads on top of the video encoder's tokens.

Tokens are the encoder's output ``[N, T*L, D]`` (time-major: token (t, s) at index
``t * L + s``, CLS removed), T = time steps (tubelets), L = grid*grid spatial tokens.

- ``LinearProbe``: mean-pool the tokens, normalise, one linear layer -> ``[N, out]``.
- ``AttentiveProbe``: learned queries cross-attend to all tokens (attentive pooling),
  then a linear layer -> ``[N, out]``.
- ``RegressionHead``: wraps a probe so that it learns a standardised target and
  returns values in the target's own units (e.g. EF in %).
- ``SegmentationDecoder``: UNETR-like progressive upsampling from the token maps of
  several encoder depths (plus a small stem on the input frames for fine edges) to
  per-frame logits ``[N, classes, F, H, W]`` at input resolution.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class LinearProbe(nn.Module):
    """Mean-pooled tokens -> parameter-free LayerNorm -> Linear.

    forward(tokens [N, S, D]) -> [N, out_dim]. The norm has no affine part, so the probe
    stays linear in the (standardised) features; LayerNorm rather than BatchNorm keeps it
    well defined for a batch of one.
    """

    def __init__(self, embed_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, elementwise_affine=False)
        self.linear = nn.Linear(embed_dim, out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(tokens.mean(dim=1)))


class AttentiveProbe(nn.Module):
    """Cross-attention pooling: ``num_queries`` learned queries attend to the tokens.

    forward(tokens [N, S, D]) -> [N, out_dim]. One cross-attention layer with a residual
    MLP on the queries, the queries averaged, then a linear classifier.
    """

    def __init__(self, embed_dim: int, out_dim: int, num_heads: int = 4, num_queries: int = 1,
                 mlp_ratio: float = 4.0):
        super().__init__()
        heads = num_heads if embed_dim % num_heads == 0 else 1
        self.queries = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.norm_kv = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(embed_dim)
        hidden = int(embed_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        self.norm_out = nn.LayerNorm(embed_dim)
        self.linear = nn.Linear(embed_dim, out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, S, D] -> [N, D] (queries after attention and MLP, averaged)."""
        kv = self.norm_kv(tokens)
        q = self.queries.expand(tokens.shape[0], -1, -1)
        x = q + self.attn(q, kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x.mean(dim=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(tokens))


class RegressionHead(nn.Module):
    """A probe that predicts ``(y - mean) / std`` and reports ``y`` in its own units.

    forward(tokens [N, S, D]) -> [N] in target units; ``standardised(tokens)`` -> [N]
    (what the loss compares with the standardised target).
    """

    def __init__(self, probe: nn.Module, target_mean: float = 0.0, target_std: float = 1.0):
        super().__init__()
        self.probe = probe
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(max(target_std, 1e-6))))

    def standardised(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.probe(tokens).squeeze(-1)

    def standardise(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.standardised(tokens) * self.target_std + self.target_mean


def default_layers(depth: int, count: int = 4) -> tuple[int, ...]:
    """Evenly spaced block indices ending at the last block (UNETR: 3, 6, 9, 12 of 12)."""
    count = max(1, min(count, depth))
    return tuple(sorted({depth * (i + 1) // count - 1 for i in range(count)}))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(_groups(cout), cout),
                         nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(_groups(cout), cout), nn.GELU())


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class _UpProject(nn.Module):
    """Token map [B, D, g, g] -> [B, C, g*2^k, g*2^k] by k stride-2 transposed convs (UNETR skip)."""

    def __init__(self, dim: int, channels: int, steps: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(dim, channels, 1)]
        for _ in range(steps):
            layers += [nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.GroupNorm(_groups(channels), channels),
                       nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SegmentationDecoder(nn.Module):
    """UNETR-like decoder: tokens of several depths -> per-frame class logits.

    forward(clips [N, C, F, H, W], hidden: list of [N, T*L, D] (one per ``layers``,
    shallow to deep)) -> logits [N, num_classes, F, H, W].

    The deepest map is upsampled stage by stage (x2 each, log2(patch) stages); at each
    stage the next shallower token map, brought to that resolution by transposed convs,
    is concatenated. Token maps live per time step (one tubelet = ``t_patch_size``
    frames); before the last stage they are repeated to every frame of their tubelet and
    fused with a stem computed on the input frames themselves, which restores edges finer
    than a patch.
    """

    def __init__(self, embed_dim: int, patch_size: int, t_patch_size: int, grid_size: int,
                 num_layers: int, num_classes: int = 4, in_chans: int = 3, channels: int = 64):
        super().__init__()
        stages = int(round(math.log2(patch_size)))
        if 2 ** stages != patch_size or stages < 1:
            raise ValueError(f"segmentation decoder needs a power-of-two patch size, got {patch_size}")
        if num_layers < 1:
            raise ValueError("segmentation decoder needs at least one encoder layer")
        self.patch_size, self.t_patch_size, self.grid_size = patch_size, t_patch_size, grid_size
        self.num_layers, self.num_classes, self.stages = num_layers, num_classes, stages
        # Channel width shrinks as resolution grows: c, c, c/2, c/4 ... (never below 16).
        widths = [max(16, channels // (2 ** max(0, s - 1))) for s in range(stages + 1)]
        # Block outputs are pre-norm residual streams whose scale grows with depth: normalise each.
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(num_layers))
        self.bottleneck = nn.Sequential(nn.Conv2d(embed_dim, widths[0], 1), nn.GELU())
        # Skip i (i = 0 .. num_layers-2, deep to shallow) joins at stage i+1 (resolution g * 2^(i+1)).
        self.skips = nn.ModuleList(
            _UpProject(embed_dim, widths[i + 1], i + 1) for i in range(min(num_layers - 1, stages - 1)))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[s], widths[s], 2, stride=2) for s in range(stages))
        self.fuse = nn.ModuleList()
        for s in range(stages):
            skip_ch = widths[s + 1] if s < len(self.skips) else 0
            if s == stages - 1:
                skip_ch += widths[-1]  # the frame stem at full resolution
            self.fuse.append(_conv_block(widths[s] + skip_ch, widths[s + 1]))
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[-1], 3, padding=1), nn.GELU(),
                                  nn.Conv2d(widths[-1], widths[-1], 3, padding=1), nn.GELU())
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def _token_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, T*L, D] -> [N*T, D, g, g]."""
        N, S, D = tokens.shape
        g = self.grid_size
        T = S // (g * g)
        return tokens.reshape(N, T, g, g, D).permute(0, 1, 4, 2, 3).reshape(N * T, D, g, g)

    def forward(self, clips: torch.Tensor, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(hidden) != self.num_layers:
            raise ValueError(f"segmentation decoder expects {self.num_layers} hidden states, got {len(hidden)}")
        N, C, Fr, H, W = clips.shape
        maps = [self._token_map(norm(h)) for norm, h in zip(self.norms, hidden)]  # shallow .. deep, [N*T, D, g, g]
        deep_to_shallow = maps[::-1]
        x = self.bottleneck(deep_to_shallow[0])
        T = x.shape[0] // N
        for s in range(self.stages):
            x = self.ups[s](x)
            parts = [x]
            if s < len(self.skips):
                parts.append(self.skips[s](deep_to_shallow[s + 1]))
            if s == self.stages - 1:
                # Per time step -> per frame: each tubelet's map serves its t_patch_size frames.
                rep = Fr // T
                parts = [p.reshape(N, T, *p.shape[1:]).repeat_interleave(rep, dim=1).flatten(0, 1) for p in parts]
                frames = clips.permute(0, 2, 1, 3, 4).reshape(N * Fr, C, H, W)
                parts.append(self.stem(frames))
            x = self.fuse[s](torch.cat(parts, dim=1))
        logits = self.classifier(x)  # [N*F, K, H, W]
        return logits.reshape(N, Fr, self.num_classes, H, W).permute(0, 2, 1, 3, 4)
