"""The EchoFM model: video ViT encoder, per-time-step projector and MAE decoder.

Stages follow the algorithm, each a method with tensor shapes in its docstring:
``patchify`` -> ``mask_tokens`` -> ``encoder`` -> ``projector`` -> ``decoder`` ->
``reconstruction_loss`` / ``contrastive_loss``. Clips are float ``[N, 3, F, H, W]`` in
[0, 1]; tokens are time-major (token (t, s) at index t * L + s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn

from echofm.config import ModelConfig
from echofm.contract import untrained_contract
from echofm.model import masking as masking_lib
from echofm.model import periodic
from echofm.model.vit import Block, TubeletEmbed, run_blocks


def _trunc(shape: Sequence[int]) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(*shape))
    nn.init.trunc_normal_(p, std=0.02)
    return p


class PositionalEmbedding(nn.Module):
    """Separable (spatial + temporal [+ class]) or joint learned positional embeddings.

    ``full()`` returns [1, (1 if cls) + T*L, D] in token order with the class slot first.
    """

    def __init__(self, dim: int, t_steps: int, spatial: int, separable: bool, cls: bool):
        super().__init__()
        self.t_steps, self.spatial, self.separable, self.cls = t_steps, spatial, separable, cls
        if separable:
            self.spatial_embed = _trunc((1, spatial, dim))
            self.temporal_embed = _trunc((1, t_steps, dim))
            self.class_embed = _trunc((1, 1, dim)) if cls else None
        else:
            self.joint_embed = _trunc((1, t_steps * spatial + int(cls), dim))

    def full(self) -> torch.Tensor:
        if not self.separable:
            return self.joint_embed
        tokens = (self.spatial_embed.repeat(1, self.t_steps, 1)
                  + self.temporal_embed.repeat_interleave(self.spatial, dim=1))
        if self.cls:
            tokens = torch.cat([self.class_embed, tokens], dim=1)
        return tokens


class VideoEncoder(nn.Module):
    """Video ViT encoder that runs on the visible tokens only.

    forward(clips [N, C, F, H, W], ids_keep [N, K] or None) -> tokens [N, K, D] after the
    final norm, CLS removed (K = T*L when ids_keep is None).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = TubeletEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim,
                                        cfg.num_frames, cfg.t_patch_size)
        self.cls_token = _trunc((1, 1, cfg.embed_dim)) if cfg.cls_embed else None
        self.pos_embed = PositionalEmbedding(cfg.embed_dim, cfg.t_grid_size, cfg.num_spatial,
                                             cfg.sep_pos_embed, cfg.cls_embed)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps, r)
            for r in rates)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.activation_checkpointing = False

    def embed_tokens(self, clips: torch.Tensor, ids_keep: Optional[torch.Tensor]) -> torch.Tensor:
        """Tokens with positions added, CLS first: [N, (1) + K, D]."""
        x = self.patch_embed(clips).flatten(1, 2)  # [N, T*L, D]
        pos = self.pos_embed.full()
        cls_pos, pos = (pos[:, :1], pos[:, 1:]) if self.cfg.cls_embed else (None, pos)
        if ids_keep is None:
            x = x + pos
        else:
            index = ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])
            x = torch.gather(x, 1, index) + torch.gather(pos.expand(x.shape[0], -1, -1), 1, index)
        if self.cfg.cls_embed:
            x = torch.cat([(self.cls_token + cls_pos).expand(x.shape[0], -1, -1), x], dim=1)
        return x

    def forward(self, clips: torch.Tensor, ids_keep: Optional[torch.Tensor] = None,
                return_layers: Sequence[int] = ()) -> torch.Tensor | tuple[torch.Tensor, list]:
        """Encode; with ``return_layers`` also return those blocks' outputs (CLS removed)."""
        x = self.embed_tokens(clips, ids_keep)
        start = int(self.cfg.cls_embed)
        if return_layers:
            hidden = []
            for i, blk in enumerate(self.blocks):
                x = run_blocks(nn.ModuleList([blk]), x, self.activation_checkpointing)
                if i in return_layers:
                    hidden.append(x[:, start:])
            return self.norm(x)[:, start:], hidden
        x = run_blocks(self.blocks, x, self.activation_checkpointing)
        return self.norm(x)[:, start:]


class TimeStepProjector(nn.Module):
    """Per-time-step embedding: its own CLS token + one transformer block + its own norm.

    forward(tokens [N, T*K, D], time_index [N, T*K] or None) -> [N, T, D]. With consistent
    masking every step has K tokens and all N*T steps run in one batched call; with random
    masking steps are padded and padding is hidden from attention.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.t_steps = cfg.t_grid_size
        self.cls_token = _trunc((1, 1, cfg.embed_dim))
        self.block = Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

    def forward(self, tokens: torch.Tensor, time_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        N, S, D = tokens.shape
        T = self.t_steps
        if time_index is None:
            if S % T:
                raise ValueError(f"token count {S} is not a multiple of {T} time steps")
            x = tokens.reshape(N * T, S // T, D)
            x = torch.cat([self.cls_token.expand(N * T, -1, -1), x], dim=1)
            return self.norm(self.block(x)[:, 0]).view(N, T, D)
        # Uneven steps (random masking): scatter tokens into padded per-step slots.
        counts = torch.zeros(N, T, dtype=torch.long, device=tokens.device)
        counts.scatter_add_(1, time_index, torch.ones_like(time_index))
        width = int(counts.max())
        order = torch.argsort(time_index, dim=1, stable=True)
        sorted_t = time_index.gather(1, order)
        start = torch.cumsum(counts, 1) - counts
        slot = torch.arange(S, device=tokens.device).unsqueeze(0) - start.gather(1, sorted_t)
        x = tokens.new_zeros(N, T, width, D)
        x[torch.arange(N, device=tokens.device).unsqueeze(1), sorted_t, slot] = tokens.gather(
            1, order.unsqueeze(-1).expand(-1, -1, D))
        valid = torch.arange(width, device=tokens.device).view(1, 1, -1) < counts.unsqueeze(-1)
        keep = torch.cat([valid.new_ones(N, T, 1), valid], dim=-1).view(N * T, 1, 1, width + 1)
        x = torch.cat([self.cls_token.expand(N * T, -1, -1), x.view(N * T, width, D)], dim=1)
        return self.norm(self.block(x, attn_mask=keep)[:, 0]).view(N, T, D)


class MaeDecoder(nn.Module):
    """MAE decoder: visible tokens + mask tokens -> per-token pixel predictions.

    forward(tokens [N, K, D], ids_restore [N, T*L]) -> pred [N, T*L, u*p*p*C].
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.decoder_embed_dim
        self.embed = nn.Linear(cfg.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.cls_token = _trunc((1, 1, d)) if cfg.cls_embed else None
        self.pos_embed = PositionalEmbedding(d, cfg.t_grid_size, cfg.num_spatial, cfg.sep_pos_embed,
                                             cfg.cls_embed)
        self.blocks = nn.ModuleList(
            Block(d, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps)
            for _ in range(cfg.decoder_depth))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.pred = nn.Linear(d, cfg.t_pred_patch_size * cfg.patch_size**2 * cfg.in_chans)
        self.activation_checkpointing = False

    def forward(self, tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        N, K, d = x.shape
        total = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(N, total - K, -1)], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        if self.cfg.cls_embed:
            x = torch.cat([self.cls_token.expand(N, -1, -1), x], dim=1)
        x = x + self.pos_embed.full()
        x = run_blocks(self.blocks, x, self.activation_checkpointing)
        x = self.pred(self.norm(x))
        return x[:, 1:] if self.cfg.cls_embed else x


@dataclass
class PretrainOutput:
    """Result of one masked pretraining pass; every loss part separately.

    loss = recon_weight*recon + triplet_weight*triplet + cycle_weight*cycle (all scalars);
    pred [N, T*L, u*p*p*C]; mask [N, T*L] (1 = masked); frames [N, T, D] projector output.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    triplet: torch.Tensor
    cycle: torch.Tensor
    triplet_active: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    frames: torch.Tensor

    def parts(self) -> dict[str, float]:
        """Loss parts as Python floats (for logging)."""
        return {k: float(getattr(self, k).detach()) for k in
                ("loss", "recon", "triplet", "cycle", "triplet_active")}


@dataclass
class Embedding:
    """Unmasked embeddings: tokens [N, T*L, D] (time-major, no CLS), frames [N, T, D]
    (per-time-step projector embeddings), video [N, D] (mean of tokens)."""

    tokens: torch.Tensor
    frames: torch.Tensor
    video: torch.Tensor


class EchoFM(nn.Module):
    """EchoFM pretraining model (encoder + time-step projector + MAE decoder).

    ``contract``: how its input clips are made (``echofm.contract.InputContract``); a new
    model has seen no data (every frame, no stated rate); loading and pretraining set it.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.contract = untrained_contract(cfg)
        self.encoder = VideoEncoder(cfg)
        self.projector = TimeStepProjector(cfg)
        self.decoder = MaeDecoder(cfg)
        self._init_weights()

    # -- initialisation ----------------------------------------------------------------
    def _init_weights(self) -> None:
        w = self.encoder.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        self.encoder.activation_checkpointing = enabled
        self.decoder.activation_checkpointing = enabled

    # -- input -------------------------------------------------------------------------
    def check_clips(self, clips: torch.Tensor) -> None:
        """Raise ValueError unless clips are float [N, C, F, H, W] of this model's size."""
        c = self.cfg
        want = f"[N, {c.in_chans}, {c.num_frames}, {c.img_size}, {c.img_size}]"
        if not isinstance(clips, torch.Tensor):
            raise ValueError(f"clips must be a torch.Tensor {want}, got {type(clips).__name__}")
        if clips.ndim != 5:
            raise ValueError(f"clips must have 5 dims {want}, got shape {list(clips.shape)}")
        if not clips.is_floating_point():
            raise ValueError(f"clips must be float in [0, 1], got dtype {clips.dtype}")
        _, ch, fr, h, w = clips.shape
        if ch != c.in_chans:
            raise ValueError(f"clips must have {c.in_chans} channels {want}, got {ch} (shape {list(clips.shape)})")
        if fr != c.num_frames:
            raise ValueError(f"clips must have {c.num_frames} frames {want}, got {fr} (shape {list(clips.shape)})")
        if (h, w) != (c.img_size, c.img_size):
            raise ValueError(f"clips must be {c.img_size}x{c.img_size} {want}, got {h}x{w}")

    # -- stages ------------------------------------------------------------------------
    def patchify(self, clips: torch.Tensor) -> torch.Tensor:
        """[N, C, F', H, W] (F' = pred_t_dim) -> [N, t*h*w, u*p*p*C], t = F'/u, time-major."""
        N, C, Fr, H, W = clips.shape
        p, u = self.cfg.patch_size, self.cfg.t_pred_patch_size
        t, h, w = Fr // u, H // p, W // p
        x = clips.reshape(N, C, t, u, h, p, w, p)
        return torch.einsum("nctuhpwq->nthwupqc", x).reshape(N, t * h * w, u * p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``patchify``: [N, t*h*w, u*p*p*C] -> [N, C, t*u, H, W]."""
        c = self.cfg
        p, u, C = c.patch_size, c.t_pred_patch_size, c.in_chans
        h = w = c.grid_size
        t = c.t_grid_size
        N = x.shape[0]
        x = x.reshape(N, t, h, w, u, p, p, C)
        return torch.einsum("nthwupqc->nctuhpwq", x).reshape(N, C, t * u, h * p, w * p)

    def mask_tokens(self, N: int, device, mask_ratio: float,
                    noise: Optional[torch.Tensor] = None) -> masking_lib.Masking:
        """Choose visible tokens: consistent (shared spatial mask) or random masking."""
        c = self.cfg
        if mask_ratio <= 0.0 and noise is None:
            return masking_lib.no_masking(N, c.t_grid_size, c.num_spatial, device)
        fn = masking_lib.consistent_masking if c.masking == "consistent" else masking_lib.random_masking
        return fn(N, c.t_grid_size, c.num_spatial, mask_ratio, device=device, noise=noise)

    def target_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """The pred_t_dim frames at linspace(0, F-1, pred_t_dim): [N, C, pred_t_dim, H, W]."""
        idx = torch.linspace(0, clips.shape[2] - 1, self.cfg.pred_t_dim).long().to(clips.device)
        return clips.index_select(2, idx)

    def reconstruction_loss(self, clips: torch.Tensor, pred: torch.Tensor,
                            mask: torch.Tensor) -> torch.Tensor:
        """MSE on masked patches only (optionally per-patch normalised targets)."""
        target = self.patchify(self.target_frames(clips))
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def contrastive_loss(self, clips: torch.Tensor, frames: torch.Tensor):
        """(triplet, cycle, triplet_active) for projector embeddings frames [N, T, D]."""
        c = self.cfg
        zero = frames.sum() * 0.0
        if c.contrastive == "none":
            return zero, zero, zero.detach()
        if c.contrastive == "paper":
            triplet, active = periodic.paper_triplet_loss(frames.float(), c.paper_margin)
            return triplet, zero, active
        steps = frames.float()
        if c.embed_center_alpha:
            steps = steps - c.embed_center_alpha * steps.mean(dim=1, keepdim=True)
        embed_sim = periodic.cosine_self_similarity(steps)
        if c.phase_prior == "pixel":
            prior = periodic.pixel_cycle_prior(clips, c.t_grid_size, c.prior_center_alpha)
        else:
            prior = embed_sim.detach()
        triplet, active = periodic.cycle_triplet_loss(embed_sim, prior, c.triplet_margin)
        cycle = periodic.cycle_distillation_loss(embed_sim, prior, c.cycle_tau) if c.cycle_weight else zero
        return triplet, cycle, active

    # -- public entry points -----------------------------------------------------------
    def forward(self, clips: torch.Tensor, mask_ratio: Optional[float] = None,
                noise: Optional[torch.Tensor] = None) -> PretrainOutput:
        """One masked pretraining pass.

        clips: float [N, C, F, H, W] in [0, 1]. mask_ratio defaults to the config's (0.75).
        noise: optional masking noise ([N, L] for consistent masking, [N, T*L] for random).
        """
        self.check_clips(clips)
        c = self.cfg
        ratio = c.mask_ratio if mask_ratio is None else mask_ratio
        m = self.mask_tokens(clips.shape[0], clips.device, ratio, noise)
        latent = self.encoder(clips, m.ids_keep)
        time_index = None if c.masking == "consistent" else m.ids_keep // c.num_spatial
        frames = self.projector(latent, time_index)
        triplet, cycle, active = self.contrastive_loss(clips, frames)
        pred = self.decoder(latent, m.ids_restore)
        recon = self.reconstruction_loss(clips, pred, m.mask)
        loss = c.recon_weight * recon + c.triplet_weight * triplet + c.cycle_weight * cycle
        return PretrainOutput(loss, recon, triplet, cycle, active, pred, m.mask, frames)

    def embed(self, clips: torch.Tensor) -> Embedding:
        """Unmasked embeddings of clips [N, C, F, H, W] in [0, 1]."""
        self.check_clips(clips)
        tokens = self.encoder(clips)
        return Embedding(tokens=tokens, frames=self.projector(tokens), video=tokens.mean(dim=1))

    def pixel_prior(self, clips: torch.Tensor) -> torch.Tensor:
        """The pixel-space cycle prior [N, T, T] used by the ``cycle`` objective."""
        self.check_clips(clips)
        return periodic.pixel_cycle_prior(clips, self.cfg.t_grid_size, self.cfg.prior_center_alpha)
