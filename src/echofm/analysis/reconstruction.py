"""Masked reconstruction of a clip: what the model fills in, and how well (masked PSNR); of a study
end to end (``reconstruct_study``, what ``echofm reconstruct`` runs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Reconstruction:
    """Grayscale [T', H, W] arrays in [0, 1] at the model's target frames, plus quality."""

    original: np.ndarray
    masked: np.ndarray
    recon: np.ndarray
    psnr_masked: float
    mask_ratio: float
    psnr_baseline: float  # same PSNR for the trivial prediction (patch mean, or the clip mean)


@torch.inference_mode()
def reconstruct(model, clip: torch.Tensor, mask_ratio: float = 0.75, seed: int = 0, precision: str = "fp32",
                device: str | torch.device = "cpu") -> Reconstruction:
    """Run one masked pass on clip [1, 3, F, H, W] and paste predictions into masked patches.

    With per-patch normalised targets the prediction is mapped back to pixels with each
    true patch's mean and spread (the visualisation MAE uses); PSNR is over masked pixels.
    The model is expected on ``device``; the mask is drawn on the CPU, so it is the same
    on every device.
    """
    from echofm.precision import autocast

    c = model.cfg
    g = torch.Generator().manual_seed(seed)
    L = c.num_spatial
    noise = torch.rand(1, L if c.masking == "consistent" else c.num_patches, generator=g).to(device)
    clip = clip.to(device)
    with autocast(precision, device):
        out = model(clip, mask_ratio=mask_ratio, noise=noise)
    target = model.patchify(model.target_frames(clip)).float().cpu()  # [1, N, P]
    pred = out.pred.float().cpu()
    if c.norm_pix_loss:
        # The true patch statistics are borrowed, so compare with the baseline that
        # predicts exactly those statistics' mean (a flat patch) to judge the model.
        mean = target.mean(-1, keepdim=True)
        std = (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
        baseline = mean.expand_as(target)
    else:
        baseline = target.mean().expand_as(target)
    pred = pred.clamp(0, 1)
    m = out.mask.float().cpu().unsqueeze(-1)
    filled = target * (1 - m) + pred * m
    masked_in = target * (1 - m)
    to_img = lambda x: model.unpatchify(x)[0].mean(0).numpy()  # noqa: E731  [T', H, W]

    def masked_psnr(estimate: torch.Tensor) -> float:
        mse = (((estimate - target) ** 2) * m).sum() / (m.sum() * target.shape[-1])
        return float(10 * torch.log10(1.0 / mse.clamp_min(1e-12)))

    return Reconstruction(to_img(target), to_img(masked_in), to_img(filled), masked_psnr(pred), mask_ratio,
                          masked_psnr(baseline))


def reconstruct_study(source, out, model, mask_ratio: float = 0.75, seed: int = 0, frame_step=None,
                      mask_sector=None, precision: str = "auto", device: str = "cpu") -> dict:
    """Masked reconstruction of the middle window of one study, written to ``out``
    (``reconstruction.png``, ``.gif``, ``.json``); returns the JSON payload. What ``echofm
    reconstruct`` runs.

    model: an ``EchoFM`` on ``device``; the study is read as its input contract asks (frame
    step from the source's rate, sector masking), ``frame_step`` and ``mask_sector`` override.
    """
    from echofm.analysis.figures import reconstruction_figure, reconstruction_panels
    from echofm.contract import sector_masking
    from echofm.files import write_text_atomic
    from echofm.inference import load_study, model_windows
    from echofm.windows import window_clips

    src, out = Path(source), Path(out)
    masked = sector_masking(getattr(model, "contract", None), mask_sector)
    clip = load_study(src, model.cfg.img_size, mask_sector=masked)
    spec, windows = model_windows(model, clip.num_frames, clip.fps, frame_step, where=src.name)
    middle = windows[len(windows) // 2]
    rec = reconstruct(model, window_clips(clip.frames, middle[None], model.cfg.img_size), mask_ratio, seed,
                      precision=precision, device=device)
    out.mkdir(parents=True, exist_ok=True)
    strips = reconstruction_panels(rec.original, rec.masked, rec.recon)
    png, gif = reconstruction_figure(strips, out / "reconstruction.png", out / "reconstruction.gif", rec.psnr_masked,
                                     baseline_psnr=rec.psnr_baseline)
    result = {"source": src.name, "window_start": int(middle[0]), "frame_step": spec.frame_step,
              "mask_sector": masked, "mask_ratio": mask_ratio, "psnr_masked_db": round(rec.psnr_masked, 3),
              "psnr_flat_patch_baseline_db": round(rec.psnr_baseline, 3), "figure": png.name, "gif": gif.name}
    write_text_atomic(out / "reconstruction.json", json.dumps(result, indent=2))
    return result
