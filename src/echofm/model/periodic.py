"""Periodic-driven contrastive learning: cycle prior, triplet mining and cycle distillation.

Frames at the same cardiac phase in different beats are positives; frames half a cycle
apart are negatives. Two variants:

* ``cycle`` (the newer public code): a pixel-space cycle prior (static anatomy removed)
  decides positive/negative sets; the hardest positive and negative are mined in
  embedding space for a cosine triplet with margin; a KL "cycle distillation" pulls the
  embedding similarity distribution of every time step toward the prior's.
* ``paper`` (as first published): anchor = time step 0; positives are steps whose
  embedding similarity to the anchor is above that row's mean; one random positive and
  negative; L2 triplet with margin 1.0.

All similarity maps are [N, T, T] over the T time steps (tubelets) of a clip.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


def cosine_self_similarity(z: torch.Tensor) -> torch.Tensor:
    """[N, T, D] -> [N, T, T] cosine similarity between time steps."""
    z = F.normalize(z, p=2, dim=-1)
    return torch.bmm(z, z.transpose(1, 2))


@torch.no_grad()
def pixel_cycle_prior(clips: torch.Tensor, t_steps: int, center_alpha: float = 1.0,
                      pool: int = 32) -> torch.Tensor:
    """Cycle-similarity prior computed from pixels.

    clips: [N, C, F, H, W] in [0, 1] with F divisible by ``t_steps``. Each time step is the
    grayscale mean of its frames, pooled to ``pool x pool``; each step's spatial mean is
    removed, then ``center_alpha`` x the temporal mean image (the static anatomy), so what
    remains is the motion component whose repetition marks the cardiac phase.
    Returns the cosine similarity [N, T, T] between time steps.
    """
    N, _, Fr, H, W = clips.shape
    x = clips.float().mean(dim=1)  # [N, F, H, W]
    x = x.view(N, t_steps, Fr // t_steps, H, W).mean(dim=2)
    x = F.adaptive_avg_pool2d(x, (pool, pool)).flatten(2)  # [N, T, pool*pool]
    x = x - x.mean(dim=-1, keepdim=True)
    if center_alpha:
        x = x - center_alpha * x.mean(dim=1, keepdim=True)
    return cosine_self_similarity(x)


class TripletChoice(NamedTuple):
    pos_idx: torch.Tensor  # [N, T]
    neg_idx: torch.Tensor  # [N, T]
    valid: torch.Tensor  # [N, T] bool: anchor has a positive and a negative


def mine_triplets(prior_sim: torch.Tensor, embed_sim: torch.Tensor) -> TripletChoice:
    """Positive/negative sets from the prior, hardest members mined in embedding space.

    Positives of anchor i: steps j != i whose prior similarity is above row i's mean
    (self excluded from the mean). Negatives: the rest, minus self and the two neighbours
    (adjacent steps are too close in time to be a different phase). Hardest positive =
    lowest embedding similarity; hardest negative = highest.
    """
    N, T, _ = prior_sim.shape
    idx = torch.arange(T, device=prior_sim.device)
    eye = torch.eye(T, dtype=torch.bool, device=prior_sim.device)
    near = (idx[None, :] - idx[:, None]).abs() <= 1
    row_mean = prior_sim.masked_fill(eye, 0).sum(dim=-1, keepdim=True) / (T - 1)
    above = prior_sim > row_mean
    pos = above & ~eye
    neg = ~above & ~near
    pos_idx = embed_sim.masked_fill(~pos, float("inf")).argmin(dim=-1)
    neg_idx = embed_sim.masked_fill(~neg, float("-inf")).argmax(dim=-1)
    return TripletChoice(pos_idx, neg_idx, pos.any(-1) & neg.any(-1))


def cycle_triplet_loss(embed_sim: torch.Tensor, prior_sim: torch.Tensor,
                       margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard-mined cosine triplet: mean over valid anchors of relu(s_an - s_ap + margin).

    Returns (loss, fraction of valid anchors with a non-zero loss).
    """
    choice = mine_triplets(prior_sim, embed_sim)
    if not bool(choice.valid.any()):
        # Keep the embeddings in the graph so distributed gradient reduction sees them.
        return embed_sim.sum() * 0.0, embed_sim.new_zeros(())
    s_ap = embed_sim.gather(-1, choice.pos_idx.unsqueeze(-1)).squeeze(-1)
    s_an = embed_sim.gather(-1, choice.neg_idx.unsqueeze(-1)).squeeze(-1)
    per_anchor = F.relu(s_an - s_ap + margin)[choice.valid]
    return per_anchor.mean(), (per_anchor > 0).float().mean().detach()


def cycle_distillation_loss(embed_sim: torch.Tensor, prior_sim: torch.Tensor,
                            tau: float) -> torch.Tensor:
    """KL(prior || embedding) between the rows' softmax distributions at temperature tau.

    Each anchor's distribution over the other time steps (self excluded) is
    softmax(sim / tau); the KL divergence is summed over steps and averaged over anchors.
    """
    T = embed_sim.shape[-1]
    eye = torch.eye(T, dtype=torch.bool, device=embed_sim.device)
    target = F.softmax((prior_sim / tau).masked_fill(eye, float("-inf")), dim=-1)
    log_q = F.log_softmax((embed_sim / tau).masked_fill(eye, float("-inf")), dim=-1)
    log_p = torch.log(target.clamp_min(1e-12))
    kl = (target * (log_p - log_q)).masked_fill(eye, 0.0).sum(-1)
    return kl.mean()


def paper_triplet_loss(frames: torch.Tensor, margin: float = 1.0,
                       generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The triplet as first published: anchor = step 0, positives above the row mean.

    frames: [N, T, D] projector embeddings. For each clip, positives are steps j > 0 whose
    cosine similarity to step 0 exceeds the mean of that row (self excluded), negatives the
    other steps > 0; one random positive and one random negative; L2 triplet margin loss.
    Returns (loss, fraction of clips with a non-zero loss).
    """
    N, T, _ = frames.shape
    sim = cosine_self_similarity(frames).detach()[:, 0, 1:]  # [N, T-1]
    above = sim > sim.mean(dim=-1, keepdim=True)
    rand = torch.rand(N, T - 1, device=frames.device, generator=generator)
    valid = above.any(-1) & (~above).any(-1)
    if not bool(valid.any()):
        return frames.sum() * 0.0, frames.new_zeros(())
    pos = 1 + rand.masked_fill(~above, -1.0).argmax(-1)
    neg = 1 + rand.masked_fill(above, -1.0).argmax(-1)
    rows = torch.arange(N, device=frames.device)
    anchor, positive, negative = frames[rows, 0], frames[rows, pos], frames[rows, neg]
    per_clip = F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=2,
                                     reduction="none")[valid]
    return per_clip.mean(), (per_clip > 0).float().mean().detach()
