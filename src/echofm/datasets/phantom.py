"""Phantom task datasets in memory: generated echo clips as a ``DatasetIndex`` with exact labels.

``phantom_task_dataset(n, config, seed=...)`` generates ``n`` phantom clips with
``echofm.phantom.generate_case`` and returns them as the ``DatasetIndex`` every task
reader returns, so ``echofm.tasks.finetune`` / ``evaluate`` use them like a public data
set, without writing files. Each sample carries:

- targets: ``ef`` (%), ``view`` (A4C/A2C/PLAX/PSAX), ``heart_rate`` (bpm), ``edv``/``esv``
  (mL), ``as_severity`` (none/mild/moderate/severe), ``aortic_regurgitation``
  (present/absent), ``lvh`` and ``reduced_ef`` (yes/no);
- label maps for segmentation: 0 background, 1 LV cavity, 2 LV myocardium, 3 LA (the
  phantom's other structures become background, as in CAMUS), or LV cavity only
  (``structures="lv"``), on the ED/ES frames (``labelled="ed_es"``, sparse as EchoNet
  tracings) or on every frame (``labelled="all"``, dense as CAMUS half sequences);
- meta: ``fps``, the first ``ed_frame`` / ``es_frame`` and all of them (``ed_frames`` /
  ``es_frames``), ``lv_volume`` per frame (mL), ``pixel_spacing_mm``, the case ``seed``.

Views cycle through ``config.views`` (case i is ``views[i % len(views)]``), so every
split holds every view in the same proportion. Case i is made from
``case_seed(seed, i)``: the same arguments give the same pixels and labels.

``read_prepared_phantoms`` is the on-disk counterpart: phantom files written by
``echofm synth`` and prepared by ``echofm prepare --keep-paths``, joined to their truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from echofm.datasets.base import SPLITS, DatasetError, DatasetIndex, Frames, Sample, read_csv_rows
from echofm.labels import AR_CLASSES, LEFT_ATRIUM, LV_CAVITY, YES_NO

STRUCTURE_SETS = ("chambers", "lv")
LABELLED = ("ed_es", "all")


class _InMemoryFrames:
    """Picklable frames loader holding generated uint8 frames ``[T, H, W]`` and their fps."""

    def __init__(self, frames: np.ndarray, fps: float):
        self.frames, self.fps = frames, fps

    def __call__(self) -> Frames:
        return self.frames, self.fps


class _InMemoryMasks:
    """Picklable masks loader: ``{frame: uint8 [H, W]}`` label maps, resized (nearest) on request."""

    def __init__(self, masks: dict[int, np.ndarray]):
        self.masks = masks

    def __call__(self, height: int, width: int) -> dict[int, np.ndarray]:
        out = {}
        for frame, m in self.masks.items():
            if m.shape != (height, width):
                rows = (np.arange(height) * m.shape[0] / height).astype(int)
                cols = (np.arange(width) * m.shape[1] / width).astype(int)
                m = m[rows][:, cols]
            out[frame] = m
        return out


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Items per split for ``n`` items and (train, val, test) ``fractions``.

    Shares are rounded so the counts add up to ``n``; when ``n`` allows it, every split
    with a positive fraction gets at least one item (a test split is never left empty).
    """
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise DatasetError(f"phantom splits: need three non-negative fractions (train, val, test), got {fractions}")
    share = np.asarray(fractions, float) / float(sum(fractions)) * n
    wanted = share > 0
    counts = np.floor(share).astype(int)
    if n >= wanted.sum():
        counts = np.maximum(counts, wanted.astype(int))
    while counts.sum() > n:  # take from the most over-served split that keeps one item
        over = np.where(counts > 1, counts - share, -np.inf)
        counts[int(np.argmax(over))] -= 1
    while counts.sum() < n:  # give to the most under-served split
        counts[int(np.argmax(share - counts))] += 1
    return counts.tolist()


def phantom_label_maps(labels: np.ndarray, structures: str = "chambers") -> np.ndarray:
    """Phantom label maps uint8 ``[..., H, W]`` (0-6) -> task classes: 1 LV cavity, 2 LV
    myocardium, 3 LA (``chambers``) or 1 LV cavity (``lv``); everything else 0."""
    if structures not in STRUCTURE_SETS:
        raise DatasetError(f"phantom structures must be one of {', '.join(STRUCTURE_SETS)}, got {structures!r}")
    # The phantom's values 0..3 are CAMUS's classes; its extra structures become background.
    highest = LV_CAVITY if structures == "lv" else LEFT_ATRIUM
    return np.where(labels <= highest, labels, 0).astype(np.uint8)


def phantom_task_dataset(n: int, config=None, *, seed: int = 0,
                         splits: Sequence[float] = (0.75, 0.125, 0.125),
                         structures: str = "chambers", labelled: str = "ed_es",
                         progress: bool = False) -> DatasetIndex:
    """``n`` generated phantom clips as a task ``DatasetIndex`` (see the module docstring).

    config: ``echofm.phantom.PhantomConfig`` (size, frames, fps, views, EF range ...).
    splits: shares of (train, val, test), applied within each view.
    structures: ``chambers`` (LV cavity, myocardium, LA) or ``lv`` (LV cavity only).
    labelled: frames with label maps, ``ed_es`` (every ED and ES frame in the clip) or ``all``.
    """
    from echofm.phantom import PhantomConfig, case_seed, generate_case

    if n < 1:
        raise DatasetError(f"phantom dataset: n must be at least 1, got {n}")
    if labelled not in LABELLED:
        raise DatasetError(f"phantom labelled frames must be one of {', '.join(LABELLED)}, got {labelled!r}")
    config = (config or PhantomConfig()).validate()
    views = list(config.views)
    by_view = {v: [i for i in range(n) if i % len(views) == k] for k, v in enumerate(views)}
    split_of: dict[int, str] = {}
    for members in by_view.values():
        bounds = np.cumsum([0] + split_counts(len(members), splits))
        for s, name in enumerate(SPLITS):
            for i in members[bounds[s]:bounds[s + 1]]:
                split_of[i] = name
    indices = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="phantom clips", unit="clip")
    samples = []
    for i in indices:
        view = views[i % len(views)]
        case = generate_case(case_seed(seed, i), config, view=view)
        truth, disease = case.truth, case.truth["disease"]
        T = case.frames.shape[0]
        frames_with_labels = range(T) if labelled == "all" else sorted(set(truth["ed_frames"]) | set(truth["es_frames"]))
        maps = phantom_label_maps(case.labels, structures)
        masks = {int(f): np.ascontiguousarray(maps[f]) for f in frames_with_labels}
        yes = lambda flag: YES_NO[bool(flag)]
        targets = {"ef": truth["ef"], "view": view, "heart_rate": truth["heart_rate"], "edv": truth["edv"],
                   "esv": truth["esv"], "as_severity": disease["as_severity"],
                   "aortic_regurgitation": AR_CLASSES[bool(disease["aortic_regurgitation"])],
                   "lvh": yes(disease["lvh"]), "reduced_ef": yes(disease["reduced_ef"])}
        meta = {"fps": truth["fps"], "pixel_spacing_mm": truth["pixel_spacing_mm"], "seed": truth["seed"],
                "ed_frame": truth["ed_frames"][0] if truth["ed_frames"] else None,
                "es_frame": truth["es_frames"][0] if truth["es_frames"] else None,
                "ed_frames": list(truth["ed_frames"]), "es_frames": list(truth["es_frames"]),
                "lv_volume": list(truth["lv_volume"])}
        sample_id = f"phantom_{i:05d}_{view}"
        samples.append(Sample(id=sample_id, path=Path("phantom") / sample_id, split=split_of[i], targets=targets,
                              frames_loader=_InMemoryFrames(case.frames, truth["fps"]),
                              masks_loader=_InMemoryMasks(masks) if masks else None, meta=meta))
    return DatasetIndex(name="phantom", root=Path(f"phantom-seed{seed}"), samples=samples)


# --- phantoms written to disk and prepared ---------------------------------------------------

TRUTH_FILE = "phantom_truth.jsonl"


def read_phantom_truth(folder: str | Path) -> dict[str, dict]:
    """The truth records of a phantom set written by ``echofm synth``, by item name."""
    import json

    path = Path(folder) / TRUTH_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: no phantom truth (not a folder written by echofm synth)")
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {rec["name"]: rec for rec in records}


def read_prepared_phantoms(sets: dict[str, tuple[str | Path, str | Path]]) -> DatasetIndex:
    """Prepared phantom clips with their truth as a ``DatasetIndex``.

    sets: split -> (phantom folder of ``echofm synth``, its cache from ``echofm prepare
    --keep-paths``). Clips are joined to their truth through the manifest's ``source``
    column; a clip whose frame count changed in preparation is left out (its per-frame
    truth would not line up). Samples: ``path`` the prepared ``.npy`` (uint8 ``[T, H, W]``),
    targets ``ef`` (%) and ``view``; meta ``lv_volume`` per frame (mL), ``ed_frames``,
    ``es_frames``, ``fps``, ``seed``.
    """
    samples, skipped, root = [], [], None
    for split, (phantoms, cache) in sets.items():
        cache = Path(cache)
        root = root or cache.parent
        truth = read_phantom_truth(phantoms)
        rows = read_csv_rows(cache / "manifest.csv", ("file", "source", "frames"))
        for row in sorted(rows, key=lambda r: r["source"]):
            name = Path(row["source"]).stem
            rec = truth.get(name)
            if rec is None:
                skipped.append((row["source"], "not a phantom of this set"))
                continue
            if int(row["frames"]) != rec["num_frames"]:
                skipped.append((row["source"], f"{row['frames']} frames prepared, {rec['num_frames']} generated"))
                continue
            samples.append(Sample(id=f"{split}/{name}", path=cache / row["file"], split=split,
                                  targets={"ef": rec["ef"], "view": rec["view"]},
                                  meta={"lv_volume": rec["lv_volume"], "ed_frames": rec["ed_frames"],
                                        "es_frames": rec["es_frames"], "fps": rec["fps"], "seed": rec["seed"]}))
    return DatasetIndex(name="phantom", root=root or Path("."), samples=samples, skipped=skipped)
