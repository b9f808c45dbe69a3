"""Typed model configuration and the named presets (echofm-tiny ... echofm-large)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Everything that defines an EchoFM model (architecture and pretraining objective).

    Field names follow the public EchoFM arguments where one exists, so a public
    checkpoint's ``args``/``model_args`` map onto this class directly.
    """

    # Input and tokenisation: clips [N, in_chans, num_frames, img_size, img_size].
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_frames: int = 16
    t_patch_size: int = 2
    # Encoder.
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    sep_pos_embed: bool = True
    cls_embed: bool = True
    # MAE decoder.
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    pred_t_dim: int = 8
    norm_pix_loss: bool = True
    # Masking: "consistent" (one spatial mask shared by all time steps) or "random".
    masking: str = "consistent"
    mask_ratio: float = 0.75
    # Periodic-driven contrastive learning: "cycle" (newer public code), "paper" (as first
    # published) or "none".
    contrastive: str = "cycle"
    recon_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float = 0.2
    phase_prior: str = "pixel"  # "pixel" or "embedding" (the model's own detached sims)
    cycle_weight: float = 1.0
    cycle_tau: float = 0.1
    prior_center_alpha: float = 1.0
    # Removes this times each clip's temporal mean step embedding before the cycle variant's
    # cosine similarities, as the pixel prior removes the static anatomy. 0 is the public
    # code. Why: at random init the steps' projector outputs share one dominant vector
    # (cosine ~0.998 between steps), where the cosine has almost no gradient, so the periodic
    # losses can stay at their collapsed values (triplet = margin) for a whole short run.
    embed_center_alpha: float = 0.0
    paper_margin: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"invalid model config: {msg}")

        need(self.img_size % self.patch_size == 0,
             f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        need(self.num_frames % self.t_patch_size == 0,
             f"num_frames {self.num_frames} is not a multiple of t_patch_size {self.t_patch_size}")
        need(self.embed_dim % self.num_heads == 0,
             f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        need(self.decoder_embed_dim % self.decoder_num_heads == 0,
             f"decoder_embed_dim {self.decoder_embed_dim} is not divisible by decoder_num_heads "
             f"{self.decoder_num_heads}")
        need((self.t_patch_size * self.pred_t_dim) % self.num_frames == 0
             and self.t_patch_size * self.pred_t_dim >= self.num_frames,
             f"pred_t_dim {self.pred_t_dim} must make t_patch_size*pred_t_dim/num_frames a "
             f"positive integer (t_patch_size {self.t_patch_size}, num_frames {self.num_frames})")
        need(self.masking in ("consistent", "random"), f"masking {self.masking!r} not in consistent/random")
        need(self.contrastive in ("cycle", "paper", "none"),
             f"contrastive {self.contrastive!r} not in cycle/paper/none")
        need(self.phase_prior in ("pixel", "embedding"), f"phase_prior {self.phase_prior!r} not in pixel/embedding")
        need(0.0 <= self.mask_ratio < 1.0, f"mask_ratio {self.mask_ratio} not in [0, 1)")
        need(0.0 <= self.embed_center_alpha <= 1.0, f"embed_center_alpha {self.embed_center_alpha} not in [0, 1]")
        need(self.cycle_tau > 0, f"cycle_tau {self.cycle_tau} must be > 0")

    # Derived sizes -------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Spatial tokens per side."""
        return self.img_size // self.patch_size

    @property
    def t_grid_size(self) -> int:
        """Time steps (tubelets) per clip."""
        return self.num_frames // self.t_patch_size

    @property
    def num_spatial(self) -> int:
        return self.grid_size**2

    @property
    def num_patches(self) -> int:
        return self.t_grid_size * self.num_spatial

    @property
    def t_pred_patch_size(self) -> int:
        """Frames per predicted patch: t_patch_size * pred_t_dim / num_frames."""
        return self.t_patch_size * self.pred_t_dim // self.num_frames

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True) -> "ModelConfig":
        """Build from a dict; public EchoFM argument names are accepted too."""
        values = normalise_public_names(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **normalise_public_names(changes))


def normalise_public_names(values: dict[str, Any]) -> dict[str, Any]:
    """Map public EchoFM argument names onto ours (``norm_layer_eps`` -> ``norm_eps``...)."""
    out = dict(values)
    if "norm_layer_eps" in out:
        out["norm_eps"] = out.pop("norm_layer_eps")
    if "no_qkv_bias" in out:
        out["qkv_bias"] = not out.pop("no_qkv_bias")
    return out


def _preset(**kw: Any) -> ModelConfig:
    return ModelConfig(**kw)


PRESETS: dict[str, ModelConfig] = {
    # Pretrains on a 2-core CPU in minutes: 112 px, 16 frames, ViT with 192 channels.
    "echofm-tiny": _preset(img_size=112, num_frames=16, t_patch_size=2, embed_dim=192, depth=4,
                           num_heads=3, decoder_embed_dim=128, decoder_depth=2,
                           decoder_num_heads=4, pred_t_dim=8),
    # ViT-S/16 on 16 frames of 112 px (the configuration of the speed comparison).
    "echofm-small": _preset(img_size=112, num_frames=16, t_patch_size=2, embed_dim=384, depth=12,
                            num_heads=6, decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8, pred_t_dim=8),
    # ViT-B/16 on 16 frames of 224 px.
    "echofm-base": _preset(img_size=224, num_frames=16, t_patch_size=2, embed_dim=768, depth=12,
                           num_heads=12, decoder_embed_dim=384, decoder_depth=4,
                           decoder_num_heads=12, pred_t_dim=8),
    # The released EchoFM configuration: ViT-L/16, 32 frames of 224 px, tubelet 4.
    "echofm-large": _preset(img_size=224, num_frames=32, t_patch_size=4, embed_dim=1024, depth=24,
                            num_heads=16, decoder_embed_dim=512, decoder_depth=8,
                            decoder_num_heads=16, pred_t_dim=8),
}


def preset(name: str) -> ModelConfig:
    """A fresh copy of a named preset (``echofm-tiny``, ``-small``, ``-base``, ``-large``)."""
    key = name if name.startswith("echofm-") else f"echofm-{name}"
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[key])
