"""Token masking for masked video modelling.

Tokens are time-major: token (t, s) of a clip with L spatial positions sits at t * L + s.
Every function returns ``ids_keep`` [N, K] (kept global indices, ascending), ``mask``
[N, T*L] (1 = masked, 0 = kept) and ``ids_restore`` [N, T*L], the permutation that puts
``[kept..., masked...]`` back into token order (what the MAE decoder needs).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class Masking(NamedTuple):
    ids_keep: torch.Tensor  # [N, K] long
    mask: torch.Tensor  # [N, T*L] float, 1 = masked
    ids_restore: torch.Tensor  # [N, T*L] long


def _from_keep(ids_keep: torch.Tensor, total: int) -> Masking:
    N = ids_keep.shape[0]
    mask = torch.ones(N, total, device=ids_keep.device)
    mask.scatter_(1, ids_keep, 0.0)
    # Kept positions first (ascending), then masked ones: stable sort of the 0/1 mask.
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return Masking(ids_keep, mask, ids_restore)


def consistent_masking(N: int, T: int, L: int, mask_ratio: float, device=None,
                       noise: Optional[torch.Tensor] = None,
                       generator: Optional[torch.Generator] = None) -> Masking:
    """Spatio-temporally consistent masking: one spatial mask per clip, shared by all T steps.

    noise: optional uniform noise [N, L]; the ``L * (1 - mask_ratio)`` positions with the
    smallest noise are kept (the same rule as the public code, so its masks reproduce).
    """
    len_keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(N, L, device=device, generator=generator)
    elif noise.shape != (N, L):
        raise ValueError(f"spatial noise must be [N, L] = [{N}, {L}], got {list(noise.shape)}")
    keep_spatial = torch.argsort(noise, dim=1)[:, :len_keep].sort(dim=1).values  # [N, K_s]
    offsets = torch.arange(T, device=noise.device).view(1, T, 1) * L
    ids_keep = (keep_spatial.unsqueeze(1) + offsets).reshape(N, T * len_keep)
    return _from_keep(ids_keep, T * L)


def random_masking(N: int, T: int, L: int, mask_ratio: float, device=None,
                   noise: Optional[torch.Tensor] = None,
                   generator: Optional[torch.Generator] = None) -> Masking:
    """Plain MAE-style random masking over all T*L tokens (the ablation baseline).

    noise: optional uniform noise [N, T*L]. Kept tokens are returned in ascending order,
    so each time step's visible tokens stay contiguous-in-time for the projector only when
    counts happen to match; the projector therefore needs consistent masking.
    """
    total = T * L
    len_keep = int(total * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(N, total, device=device, generator=generator)
    elif noise.shape != (N, total):
        raise ValueError(f"token noise must be [N, T*L] = [{N}, {total}], got {list(noise.shape)}")
    ids_keep = torch.argsort(noise, dim=1)[:, :len_keep].sort(dim=1).values
    return _from_keep(ids_keep, total)


def no_masking(N: int, T: int, L: int, device=None) -> Masking:
    ids_keep = torch.arange(T * L, device=device).unsqueeze(0).expand(N, -1)
    return _from_keep(ids_keep.contiguous(), T * L)
