"""Video ViT building blocks: tubelet embedding, attention, MLP, pre-norm block, encoder.

Attention runs on ``torch.nn.functional.scaled_dot_product_attention`` with one fused
``qkv`` projection (one GEMM instead of three); the public layout's separate q/k/v
weights are converted in ``echofm.model.weights``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TubeletEmbed(nn.Module):
    """Conv3d tokeniser: clips [N, C, T, H, W] -> tokens [N, T', L, D] (T' = T / t, L = (H/p)^2)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int,
                 num_frames: int, t_patch_size: int):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.t_patch_size = t_patch_size
        self.grid_size = img_size // patch_size
        self.t_grid_size = num_frames // t_patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(t_patch_size, patch_size, patch_size),
                              stride=(t_patch_size, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [N, D, T', h, w]
        return x.flatten(3).permute(0, 2, 3, 1)  # [N, T', h*w, D]


class Attention(nn.Module):
    """Multi-head self-attention over [B, S, D] with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D]; attn_mask (bool, True = attend) broadcastable to [B, heads, S, S]."""
        B, S, D = x.shape
        # unbind, not qkv[0], qkv[1], qkv[2]: three selects would each allocate a zero
        # gradient of the whole qkv tensor in backward; unbind's backward stacks once.
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if _matmul_attention_is_faster(q):
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            out = scores.softmax(dim=-1).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(B, S, D))


# Above this many tokens the [S, S] score matrices of the matmul path cost too much memory.
_MATMUL_ATTENTION_MAX_TOKENS = 2048


def _matmul_attention_is_faster(q: torch.Tensor) -> bool:
    """True for bf16 on CPU: there the fused SDPA kernel runs bf16 no faster than fp32,
    while two batched bf16 matmuls reach about 1.5x its rate at ViT sequence lengths
    (measured on an AVX-512-BF16 CPU; embedding +15%, training step +18%). The result is
    the same function: softmax(q k^T / sqrt(d)) v."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.shape[-2] <= _MATMUL_ATTENTION_MAX_TOKENS


class Mlp(nn.Module):
    """fc2(GELU(fc1(x))). While training, the GELU's output is not kept for backward but
    recomputed there from fc1's output (``_MlpRecomputedGelu``): the same values and
    gradients, one hidden-size activation less per block held between forward and backward."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() and self.recompute_gelu and not torch.is_autocast_enabled(x.device.type)
                and x.requires_grad):
            return _MlpRecomputedGelu.apply(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        return self.fc2(self.act(self.fc1(x)))

    # Class-wide switch (benchmarks compare both ways).
    recompute_gelu = True


class _MlpRecomputedGelu(torch.autograd.Function):
    """fc2(gelu(fc1(x))) keeping x and fc1's output for backward, not the GELU's output:
    backward recomputes it (one elementwise pass) for fc2's weight gradient."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        h = F.linear(x, w1, b1)
        ctx.save_for_backward(x, h, w1, w2)
        return F.linear(F.gelu(h), w2, b2)

    @staticmethod
    def backward(ctx, grad):
        x, h, w1, w2 = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        a = F.gelu(h).reshape(-1, h.shape[-1])
        need = ctx.needs_input_grad
        grad_w2 = g2.t().mm(a) if need[3] else None
        grad_b2 = g2.sum(0) if need[4] else None
        del a
        grad_h = torch.ops.aten.gelu_backward(grad.matmul(w2), h)
        gh = grad_h.reshape(-1, grad_h.shape[-1])
        grad_w1 = gh.t().mm(x.reshape(-1, x.shape[-1])) if need[1] else None
        grad_b1 = gh.sum(0) if need[2] else None
        return grad_h.matmul(w1) if need[0] else None, grad_w1, grad_b1, grad_w2, grad_b2


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
    """Apply blocks in order, optionally with activation checkpointing (saves memory)."""
    for blk in blocks:
        if checkpointing and x.requires_grad:
            x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x
