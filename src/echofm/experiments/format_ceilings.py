"""What the label-efficiency study's clip format allows at best: model-free ceilings from the
phantoms' exact ground truth.

The study's clips are small (48 px) and slow (7.5 fps). Whether a supervised target (EF MAE
<= 5, ED/ES within 2 frames >= 0.9) is out of reach because of the format or because of the
model is answered here, with no model at all, on the held-out phantoms of both sets:

- ``ed_es`` from the *true* LV mask's area curve at the clip's size and frame rate (what a
  perfect segmentation gives, through the study's own event rule ``events_from_curve``), and
  from the phantom's true LV volume at the sampled frames;
- ``ef`` from the sampled true volume, ``(max - min) / max``: the floor the frame rate sets
  (the true EF comes from the continuous end-diastolic and end-systolic volumes, which
  7.5 fps frames may miss), and from the true mask areas, ``1 - (A_min / A_max)^1.5``,
  mapped to EF by a line fitted on clips of another seed (what a perfect segmentation plus a
  calibration gives).

``format_ceilings(LabelEfficiencyConfig(...), clips=96) -> dict``; ``benchmarks/
phantom_ceilings.py`` prints it as JSON.
"""

from __future__ import annotations

import numpy as np

from echofm.experiments.label_efficiency import (ED_ES_TOLERANCE, HELDOUT_SEED, SHIFTED_SEED, LabelEfficiencyConfig,
                                                 event_error, phantom_samples, within_share)

# Fitting clips of the EF calibration: another seed than any held-out set's.
CALIBRATION_SEED = 70_000


def _a4c_clips(config: LabelEfficiencyConfig, preset: str, seed: int, clips: int) -> list:
    """A4C phantom samples at the study's format, LV maps on every frame."""
    return phantom_samples(config, preset, clips, seed, ("A4C",), labelled="all")


def _curves(config: LabelEfficiencyConfig, samples: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip: (true LV mask area per frame in pixels, true LV volume per frame)."""
    out = []
    for sample in samples:
        masks = sample.load_masks(config.size, config.size)
        area = np.array([float((np.asarray(masks[f]) == 1).sum()) for f in sorted(masks)])
        out.append((area, np.asarray(sample.meta["lv_volume"], float)))
    return out


def _area_ef(area: np.ndarray) -> float:
    """EF-like figure (percent) of an LV area curve: a 2D area scales as volume^(2/3)."""
    return 100.0 * (1.0 - (area.min() / area.max()) ** 1.5)


def _events(curves: list, samples: list, which: int) -> dict:
    """ED/ES by the study's event rule from curve ``which`` (0: mask area, 1: volume), scored
    against the true events: mean frame error and the share within the tolerance."""
    from echofm.analysis.probe import events_from_curve, score_events

    errors, pairs = [], []
    for curve, sample in zip(curves, samples):
        num_frames = len(curve[which])
        ed, es = events_from_curve(curve[which])
        truth = {"ed": sample.meta["ed_frames"], "es": sample.meta["es_frames"]}
        errors.append(event_error(score_events({"ed": ed, "es": es}, truth, num_frames, ED_ES_TOLERANCE), num_frames))
        pairs.append([truth, {"ed": ed, "es": es}])
    return {"frame_error": round(float(np.nanmean(errors)), 3),
            f"within_{ED_ES_TOLERANCE}": round(within_share(pairs, len(curves[0][which])), 3)}


def format_ceilings(config: LabelEfficiencyConfig, clips: int = 96) -> dict:
    """The ceilings (module docstring) on ``clips`` A4C phantoms of each held-out set, seeded
    as the study's held-out sets; the EF line is fitted on ``clips`` default-preset phantoms
    of ``CALIBRATION_SEED``."""
    if clips < 8:
        raise ValueError(f"clips {clips}: need at least 8")
    fit_samples = _a4c_clips(config, "default", CALIBRATION_SEED, clips)
    fit = _curves(config, fit_samples)
    x = np.array([_area_ef(area) for area, _ in fit])
    y = np.array([float(s.targets["ef"]) for s in fit_samples])
    slope, intercept = np.polyfit(x, y, 1)
    out = {"size": config.size, "frames": config.frames, "fps": config.fps, "clips": clips,
           "ef_calibration": {"slope": round(float(slope), 4), "intercept": round(float(intercept), 3),
                              "fitted_on": f"{clips} default-preset phantoms, seed {CALIBRATION_SEED}"},
           "sets": {}}
    for name, preset, seed in (("heldout", "default", HELDOUT_SEED + 1), ("shifted", "shifted", SHIFTED_SEED + 1)):
        samples = _a4c_clips(config, preset, seed, clips)
        curves = _curves(config, samples)
        ef = np.array([float(s.targets["ef"]) for s in samples])
        sampled = np.array([100.0 * (v.max() - v.min()) / v.max() for _, v in curves])
        from_area = slope * np.array([_area_ef(a) for a, _ in curves]) + intercept
        out["sets"][name] = {
            "ed_es_from_true_mask_area": _events(curves, samples, 0),
            "ed_es_from_true_volume": _events(curves, samples, 1),
            "ef_mae_from_sampled_true_volume": round(float(np.abs(sampled - ef).mean()), 3),
            "ef_mae_from_true_mask_area_calibrated": round(float(np.abs(from_area - ef).mean()), 3),
            "ef_mae_of_the_mean": round(float(np.abs(ef - y.mean()).mean()), 3),
        }
    return out
