"""Task heads on top of the video encoder's tokens.

Tokens are the encoder's output ``[N, T*L, D]`` (time-major: token (t, s) at index
``t * L + s``, CLS removed), T = time steps (tubelets), L = grid*grid spatial tokens.

- ``LinearProbe``: pool the tokens, standardise (affine-free batch norm, as MAE's linear
  probing), one linear layer -> ``[N, out]``.
- ``AttentiveProbe``: learned queries cross-attend to all tokens (attentive pooling),
  then a linear layer -> ``[N, out]``.
- Pooling of both probes (``POOLINGS``): ``mean`` (one vector per clip) or ``stats`` (one
  vector per time step, then their mean and standard deviation over time: statistics
  pooling, which keeps how much the picture changes over the clip, e.g. the LV's size
  change that EF is).
- ``RegressionHead``: wraps a probe so that it learns a standardised target and
  returns values in the target's own units (e.g. EF in %).
- ``LinearSegmentationProbe``: one linear map per token from its features to the class
  logits of every pixel of its tubelet (a linear probe for dense prediction).
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

from echofm.choices import POOLINGS


NORMS = ("batch", "layer")


class FeatureNorm(nn.BatchNorm1d):
    """Affine-free batch norm over feature vectors ``[..., D]`` (MAE's linear-probe norm).

    It standardises each feature with statistics of the training data (running averages at
    evaluation), so that features with little spread between videos still count: the
    probe stays linear in the features. Under ``torch.distributed`` the batch statistics are
    those of the global batch (all ranks), so N processes train as one process would; a
    training batch of one uses the running statistics instead of failing.
    """

    def __init__(self, dim: int):
        super().__init__(dim, eps=1e-6, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        flat = x.reshape(-1, shape[-1]).float()
        total = flat.shape[0]
        if self.training and _distributed():
            # Two passes over the global batch (sum, then squared deviations) as one process would.
            total = int(_all_reduce(flat.new_tensor(float(total))))
            mean = _all_reduce(flat.sum(dim=0)) / total
            var = _all_reduce(((flat - mean) ** 2).sum(dim=0)) / total
        elif self.training and total >= 2:
            mean, var = flat.mean(dim=0), flat.var(dim=0, unbiased=False)
        if not self.training or total < 2:
            # F.batch_norm(training=False) written out: the same arithmetic, and it exports
            # to ONNX with a dynamic batch (batch_norm needs a static channel count there).
            out = (flat - self.running_mean) / torch.sqrt(self.running_var + self.eps)
            return out.to(dtype).reshape(shape)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach(), alpha=m * total / (total - 1))
            self.num_batches_tracked.add_(1)
        out = (flat - mean) / torch.sqrt(var + self.eps)
        return out.to(dtype).reshape(shape)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable when ``t`` needs a gradient (full fine-tuning)."""
    import torch.distributed as dist

    if t.requires_grad:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    dist.all_reduce(t)
    return t


def per_step(tokens: torch.Tensor, tokens_per_step: int) -> torch.Tensor:
    """[N, T*L, D] -> [N, T, L, D] (the token order is time-major)."""
    N, S, D = tokens.shape
    if tokens_per_step < 1 or S % tokens_per_step:
        raise ValueError(f"{S} tokens do not split into time steps of {tokens_per_step}")
    return tokens.reshape(N, S // tokens_per_step, tokens_per_step, D)


def time_statistics(steps: torch.Tensor) -> torch.Tensor:
    """Per-step vectors [N, T, D] -> [N, 2D]: mean and standard deviation over time."""
    std = steps.float().var(dim=1, unbiased=False).add(1e-6).sqrt().to(steps.dtype)
    return torch.cat([steps.mean(dim=1), std], dim=-1)


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling


class LinearProbe(nn.Module):
    """Pooled tokens -> ``FeatureNorm`` -> Linear.

    forward(tokens [N, S, D]) -> [N, out_dim]. pooling ``mean``: the mean of all tokens;
    ``stats``: the mean token of each time step (``tokens_per_step`` tokens), then their
    mean and standard deviation over time (``[N, 2D]``). norm ``batch``: ``FeatureNorm``;
    ``layer``: an affine-free layer norm of each sample, which does not depend on the batch
    (for fine-tuning the encoder, as MAE's ``fc_norm``).
    """

    def __init__(self, embed_dim: int, out_dim: int, pooling: str = "mean", tokens_per_step: int = 1,
                 norm: str = "batch"):
        super().__init__()
        self.pooling, self.tokens_per_step = _check_pooling(pooling), tokens_per_step
        features = embed_dim * (2 if pooling == "stats" else 1)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = FeatureNorm(features) if norm == "batch" else nn.LayerNorm(features, elementwise_affine=False)
        self.linear = nn.Linear(features, out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pooling == "stats":
            return time_statistics(per_step(tokens, self.tokens_per_step).mean(dim=2))
        return tokens.mean(dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(self.pool(tokens)))


class AttentiveProbe(nn.Module):
    """Cross-attention pooling: ``num_queries`` learned queries attend to the tokens.

    forward(tokens [N, S, D]) -> [N, out_dim]. One cross-attention layer with a residual
    MLP on the queries, the queries averaged, then a linear classifier. pooling ``mean``:
    the queries attend to all tokens of the clip; ``stats``: to the tokens of each time step
    separately, and the per-step results enter the classifier as their mean and standard
    deviation over time.
    """

    def __init__(self, embed_dim: int, out_dim: int, num_heads: int = 4, num_queries: int = 1,
                 mlp_ratio: float = 4.0, pooling: str = "mean", tokens_per_step: int = 1):
        super().__init__()
        self.pooling, self.tokens_per_step = _check_pooling(pooling), tokens_per_step
        heads = num_heads if embed_dim % num_heads == 0 else 1
        self.queries = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.norm_kv = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(embed_dim)
        hidden = int(embed_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        self.norm_out = nn.LayerNorm(embed_dim)
        self.linear = nn.Linear(embed_dim * (2 if pooling == "stats" else 1), out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, S, D] -> [B, D]: the queries after attention and MLP, averaged."""
        kv = self.norm_kv(tokens)
        q = self.queries.expand(tokens.shape[0], -1, -1)
        x = q + self.attn(q, kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x.mean(dim=1))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, S, D] -> [N, D] (``mean``) or [N, 2D] (``stats``)."""
        if self.pooling == "stats":
            steps = per_step(tokens, self.tokens_per_step)
            N, T, L, D = steps.shape
            return time_statistics(self._attend(steps.reshape(N * T, L, D)).reshape(N, T, D))
        return self._attend(tokens)

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


class LinearSegmentationProbe(nn.Module):
    """A linear probe for dense prediction: each token's features -> its pixels' class logits.

    forward(clips [N, C, F, H, W], hidden: list of [N, T*L, D] (the chosen encoder depths))
    -> logits [N, num_classes, F, H, W]. The token features of the chosen depths are
    concatenated, standardised (``FeatureNorm``) and mapped by one linear layer to the
    logits of all ``t_patch_size x patch_size x patch_size`` pixels of the token's tubelet,
    as MAE's decoder predicts pixels; the clips themselves are not read, so everything the
    head knows about a pixel comes from the encoder.
    """

    def __init__(self, embed_dim: int, patch_size: int, t_patch_size: int, grid_size: int,
                 num_layers: int, num_classes: int = 4):
        super().__init__()
        if num_layers < 1:
            raise ValueError("linear segmentation probe needs at least one encoder layer")
        self.patch_size, self.t_patch_size, self.grid_size = patch_size, t_patch_size, grid_size
        self.num_layers, self.num_classes = num_layers, num_classes
        features = embed_dim * num_layers
        self.norm = FeatureNorm(features)
        self.linear = nn.Linear(features, num_classes * t_patch_size * patch_size * patch_size)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, clips: torch.Tensor, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(hidden) != self.num_layers:
            raise ValueError(f"linear segmentation probe expects {self.num_layers} hidden states, got {len(hidden)}")
        N, _, Fr, H, W = clips.shape
        g, p, u, K = self.grid_size, self.patch_size, self.t_patch_size, self.num_classes
        T = Fr // u
        x = self.linear(self.norm(torch.cat(list(hidden), dim=-1)))  # [N, T*g*g, K*u*p*p]
        x = x.reshape(N, T, g, g, K, u, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(N, K, T * u, g * p, g * p)


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
