"""Ejection fraction beat by beat from an LV area curve, as EchoNet-Dynamic reports it.

The LV cavity's area over the cine falls to a minimum at each end-systole and peaks at
each end-diastole. Every beat that shows both (ED before ES, within one cycle) gives one
EF from single-plane area-length volumes of its ED and ES masks; the clip's EF is their
mean, with their spread.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def lv_beats(lv: np.ndarray, cycle_frames: Optional[float] = None,
             pixel_spacing: Optional[tuple[float, float]] = None) -> dict:
    """Beats of LV cavity masks ``lv`` (bool [T, H, W]).

    ``cycle_frames``: the cycle length when known (``analysis.phase``); else ES minima are
    searched at least a third of the clip apart. Returns the area curve (pixels; ``mm²``
    with ``pixel_spacing``), ``beats`` (``ed``, ``es`` frames, areas, volumes, ``ef``),
    ``ef_mean``, ``ef_sd`` (over beats; 0 for one beat), ``n_beats``, ``ed_to_ed`` (the
    whole cardiac cycles seen: ``[ed, next ed]`` pairs, see ``ed_to_ed``); when no whole
    beat is visible, one EF from the largest and smallest areas with ``note`` saying so.
    """
    from echofm.analysis.phase import find_ed_es
    from echofm.tasks.ef import area_length_volume, ef_from_masks

    lv = np.asarray(lv, dtype=bool)
    T = len(lv)
    areas = lv.reshape(T, -1).sum(axis=1).astype(np.float64)
    out: dict = {"area_px": areas.astype(int).tolist()}
    if pixel_spacing is not None:
        out["area_mm2"] = (areas * pixel_spacing[0] * pixel_spacing[1]).round(3).tolist()
    if areas.max() <= 0:
        return {**out, "beats": [], "ef_mean": None, "ef_sd": None, "n_beats": 0, "ed_to_ed": [],
                "note": "no LV segmented"}
    from scipy.ndimage import uniform_filter1d

    curve = uniform_filter1d(areas, size=3, mode="nearest")  # one noisy frame must not make a beat
    cycle = cycle_frames if cycle_frames and cycle_frames >= 3 else max(3.0, T / 3.0)
    ed_frames, es_frames = find_ed_es(curve, cycle)
    out["ed_to_ed"] = ed_to_ed(ed_frames, cycle)
    beats = []
    for es in es_frames:
        earlier = [ed for ed in ed_frames if ed < es and es - ed <= cycle]
        if not earlier:
            continue
        ed = max(earlier)
        edv, esv = area_length_volume(lv[ed]), area_length_volume(lv[es])
        if edv <= 0:
            continue
        beats.append({"ed": int(ed), "es": int(es), "ed_area_px": int(areas[ed]), "es_area_px": int(areas[es]),
                      "ed_volume_px3": round(edv, 2), "es_volume_px3": round(esv, 2),
                      "ef": round(100.0 * (edv - esv) / edv, 3)})
    if not beats:
        whole = ef_from_masks(lv)
        return {**out, "beats": [], "ef_mean": whole["ef"], "ef_sd": None, "n_beats": 0,
                "ed_frames": [whole["ed_frame"]], "es_frames": [whole["es_frame"]],
                "note": "no whole beat (ED then ES) in the clip: EF from the largest and smallest areas"}
    efs = np.array([b["ef"] for b in beats])
    return {**out, "beats": beats, "ef_mean": round(float(efs.mean()), 3),
            "ef_sd": round(float(efs.std(ddof=1)) if len(efs) > 1 else 0.0, 3), "n_beats": len(beats),
            "ed_frames": [b["ed"] for b in beats], "es_frames": [b["es"] for b in beats]}


def ed_to_ed(ed_frames, cycle_frames: float) -> list[list[int]]:
    """Whole cardiac cycles: consecutive end-diastoles ``[ed, next ed]`` between half and
    one and a half cycle lengths apart (a gap outside that is a missed or a spurious ED,
    not one beat)."""
    eds = sorted(int(e) for e in ed_frames)
    return [[a, b] for a, b in zip(eds, eds[1:]) if 0.5 * cycle_frames <= b - a <= 1.5 * cycle_frames]
