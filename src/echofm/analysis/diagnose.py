"""Periodicity diagnostics of an encoder: does its per-time-step embedding follow the heart cycle?

For each clip, windows as the model's input contract asks (``echofm.windows``: each clip's
frame rate brought to the model's, unless a frame step is given) go through the model; its projector gives one embedding per time step (``frames``). Two
numbers per clip, averaged over its windows:

* **phase contrast** (``analysis.periodicity.phase_contrast``): mean cosine similarity of
  same-phase step pairs minus that of opposite-phase pairs. A step's phase is the
  position of its frames in the cycle, ``(frame / period) mod 1``, from the true period
  when the data's table gives one, else the cycle length found in the pixels
  (``analysis.phase``). About 0: the embedding ignores the phase; up to 2 at most.
* **similarity correlation**: Pearson correlation between the off-diagonal entries of the
  embedding self-similarity map [T, T] and of the pixel self-similarity map (the motion
  prior the ``cycle`` objective distils, ``model.pixel_prior``). 1: the embedding
  reproduces the pixel motion structure.

The same contrast computed on the pixel map (``pixel_phase_contrast``) is the reference a
model can be compared against. ``run_diagnostics`` does a whole folder and writes JSON,
CSV, plots and an HTML page (a resumable batch job, ``echofm.batch``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from echofm.analysis.periodicity import phase_contrast
from echofm.batch import BatchOptions, BatchJob, BatchSummary, model_fingerprint, scan_sources
from echofm.errors import EchoFMError
from echofm.files import write_json_atomic

METRICS = ("phase_contrast", "pixel_phase_contrast", "similarity_correlation")
TOLERANCE = 0.125  # cycles: "same phase" within 1/8 cycle, "opposite" within 1/8 of half a cycle


# --- analysis on arrays (no model, no files) ---------------------------------------------

def cosine_similarity_maps(steps: np.ndarray) -> np.ndarray:
    """[N, T, D] -> [N, T, T] cosine similarity between time steps."""
    z = np.asarray(steps, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    return z @ np.swapaxes(z, -1, -2)


def off_diagonal_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the off-diagonal entries of two [T, T] maps (NaN when either
    is constant there: a map with no structure correlates with nothing)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two square maps of one shape, got {a.shape} and {b.shape}")
    keep = ~np.eye(a.shape[0], dtype=bool)
    x, y = a[keep], b[keep]
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 1e-12 else float("nan")


def map_phase_contrast(similarity: np.ndarray, phases: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Same-phase minus opposite-phase mean of similarity maps [N, T, T] (or [T, T]) whose
    steps have ``phases`` [N, T] (cycles) — ``phase_contrast`` for a map given directly."""
    sim = np.asarray(similarity, np.float64)
    ph = np.mod(np.asarray(phases, np.float64), 1.0)
    if sim.ndim == 2:
        sim, ph = sim[None], ph.reshape(1, -1)
    gap = np.abs(ph[:, :, None] - ph[:, None, :])
    gap = np.minimum(gap, 1.0 - gap)
    off = ~np.eye(sim.shape[-1], dtype=bool)[None]
    same, opposite = (gap <= tolerance) & off, (gap >= 0.5 - tolerance) & off
    scores = [s[m].mean() - s[o].mean() for s, m, o in zip(sim, same, opposite) if m.any() and o.any()]
    return float(np.mean(scores)) if scores else float("nan")


def step_phases(indices: np.ndarray, t_patch: int, period_frames: float) -> np.ndarray:
    """Phase (cycles, in [0, 1)) of each time step of windows with frame ``indices`` [W, F].

    A step holds ``t_patch`` consecutive window frames; its phase is the circular mean of
    their phases ``(frame / period) mod 1``. Frame indices are the real ones (a window that
    wraps around a short clip keeps each frame's own phase).
    """
    idx = np.asarray(indices, np.float64)
    W, F = idx.shape
    angle = 2 * np.pi * idx.reshape(W, F // t_patch, t_patch) / float(period_frames)
    mean = np.arctan2(np.sin(angle).mean(-1), np.cos(angle).mean(-1))
    return np.mod(mean / (2 * np.pi), 1.0)


def diagnose_embeddings(step_embeddings: np.ndarray, pixel_similarity: np.ndarray,
                        phases: Optional[np.ndarray] = None, tolerance: float = TOLERANCE) -> dict:
    """The clip's numbers from per-step embeddings [W, T, D], the pixel self-similarity
    maps [W, T, T] of the same windows, and the step phases [W, T] (None: no period known,
    so the two contrasts are NaN). Each number is a mean over the W windows."""
    z = np.asarray(step_embeddings, np.float64)
    pix = np.asarray(pixel_similarity, np.float64)
    if z.ndim != 3 or pix.shape != (z.shape[0], z.shape[1], z.shape[1]):
        raise ValueError(f"need embeddings [W, T, D] and pixel maps [W, T, T], got {z.shape} and {pix.shape}")
    emb_sim = cosine_similarity_maps(z)
    corr = [off_diagonal_correlation(e, p) for e, p in zip(emb_sim, pix)]
    corr = [c for c in corr if np.isfinite(c)]
    out = {"similarity_correlation": float(np.mean(corr)) if corr else float("nan"),
           "phase_contrast": float("nan"), "pixel_phase_contrast": float("nan")}
    if phases is not None:
        out["phase_contrast"] = phase_contrast(z, phases=phases, tolerance=tolerance)
        out["pixel_phase_contrast"] = map_phase_contrast(pix, phases, tolerance)
    return out


def summarize(rows: Sequence[dict], metrics: Sequence[str] = METRICS) -> dict:
    """mean / median / min / max / n over the finite values of each metric."""
    summary = {}
    for name in metrics:
        values = np.array([r[name] for r in rows if r.get(name) is not None and np.isfinite(r[name])], np.float64)
        summary[name] = ({"mean": float(values.mean()), "median": float(np.median(values)),
                          "min": float(values.min()), "max": float(values.max()), "n": int(len(values))}
                         if len(values) else {"mean": None, "median": None, "min": None, "max": None, "n": 0})
    summary["clips"] = len(rows)
    return summary


# --- one clip through a model ------------------------------------------------------------

@dataclass
class ClipDiagnosis:
    """Numbers of one clip and the maps of its first window (for the figures)."""

    phase_contrast: float
    pixel_phase_contrast: float
    similarity_correlation: float
    period_frames: Optional[float]
    period_source: str  # truth | pixels | none
    windows: int
    embedding_map: np.ndarray = field(repr=False)
    pixel_map: np.ndarray = field(repr=False)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("embedding_map"), d.pop("pixel_map")
        return d


def diagnose_clip(model, frames: np.ndarray, period_frames: Optional[float] = None, fps: Optional[float] = None,
                  frame_step: Optional[int] = None, max_windows: int = 4, batch_size: int = 4, device: str = "cpu",
                  precision: str = "fp32", window_step: Optional[int] = None, where: str = "a clip") -> ClipDiagnosis:
    """Diagnose one preprocessed clip (uint8 [T, S, S(, 3)] at the model's side) with an
    ``EchoFM`` model. ``period_frames``: the true cycle length; None estimates it from the
    pixels (``phase_from_pixels``). frame_step: None takes the model contract's step for
    ``fps``; window_step / max_windows: window placement (back to back, evenly spread)."""
    from echofm.analysis.phase import phase_from_pixels
    from echofm.inference import model_windows
    from echofm.windows import run_windows

    c = model.cfg
    source = "truth"
    if period_frames is None:
        period_frames = phase_from_pixels(frames, fps).cycle_frames if len(frames) >= 6 else None
        source = "pixels" if period_frames else "none"
    _, indices = model_windows(model, len(frames), fps, frame_step, window_step, max_windows, where)

    def run(clips):
        steps = model.embed(clips).frames
        with torch.autocast(clips.device.type, enabled=False):  # the pixel prior is the fp32 reference
            prior = model.pixel_prior(clips.float())
        return {"steps": steps, "prior": prior}

    out = run_windows(run, frames, indices, batch_size, device, precision, size=c.img_size)
    steps_np, prior_np = out["steps"].numpy(), out["prior"].numpy()
    phases = step_phases(indices, c.t_patch_size, period_frames) if period_frames else None
    numbers = diagnose_embeddings(steps_np, prior_np, phases)
    return ClipDiagnosis(period_frames=float(period_frames) if period_frames else None, period_source=source,
                         windows=len(indices), embedding_map=cosine_similarity_maps(steps_np[:1])[0],
                         pixel_map=prior_np[0], **numbers)


# --- a folder of studies -----------------------------------------------------------------

@dataclass
class DiagnoseConfig:
    """frame_step: take every Nth frame into a window (None: what the model's input contract
    asks for each clip's frame rate); window_step: frames between window starts (None: back
    to back); max_windows: windows per clip (evenly spread); examples: clips with a map figure;
    mask_sector: blank and crop to the ultrasound sector (None: as the model's input contract
    says, ``contract.sector_masking``)."""

    frame_step: Optional[int] = None
    window_step: Optional[int] = None
    max_windows: int = 4
    batch_size: int = 4
    examples: int = 4
    device: str = "cpu"
    precision: str = "fp32"
    mask_sector: Optional[bool] = None

    def __post_init__(self) -> None:
        for name in ("frame_step", "window_step", "max_windows", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


TABLE_NAMES = ("manifest.csv", "labels.csv")
PATH_COLUMNS = ("path", "filename", "file")


def read_clip_table(data: Path) -> dict[Path, dict]:
    """Per-file facts from the data folder: fps and the true cycle length in frames.

    Read from ``manifest.csv`` / ``labels.csv`` (a path column among path, filename, file,
    relative to the folder; a ``cycle_frames`` or ``period_frames`` column, or
    ``heart_rate`` with ``fps``) and from ``phantom_truth.jsonl`` (rows matched by file
    stem). Keys are resolved file paths; values may hold ``fps`` and ``period_frames``.
    """
    facts: dict[Path, dict] = {}
    for name in TABLE_NAMES:
        table = data / name
        if not table.is_file():
            continue
        with open(table, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                path_col = next((c for c in PATH_COLUMNS if row.get(c)), None)
                if path_col is None:
                    continue
                facts[(data / row[path_col]).resolve()] = _facts(row)
    truth = data / "phantom_truth.jsonl"
    if truth.is_file():
        by_stem = {}
        for line in truth.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                by_stem[str(item.get("name"))] = _facts(item)
        for path in data.rglob("*"):
            if path.stem in by_stem and path.is_file():
                facts.setdefault(path.resolve(), {}).update(
                    {k: v for k, v in by_stem[path.stem].items() if v is not None})
    return facts


def _number(value) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _facts(row: dict) -> dict:
    fps = _number(row.get("fps"))
    period = _number(row.get("cycle_frames")) or _number(row.get("period_frames"))
    hr = _number(row.get("heart_rate"))
    if period is None and hr and fps:
        period = 60.0 * fps / hr
    return {"fps": fps, "period_frames": period}


def _clean(value):
    """NaN/inf -> None so the JSON is valid everywhere."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass
class DiagnoseRun:
    """What ``run_diagnostics`` wrote: ``report`` (the content of diagnose.json) and the
    batch ``summary`` (counts, failures.csv, exit status)."""

    report: dict
    summary: BatchSummary


def run_diagnostics(model_source, data: str | Path, out_dir: str | Path, config: Optional[DiagnoseConfig] = None,
                    options: Optional[BatchOptions] = None) -> DiagnoseRun:
    """Diagnose ``model_source`` (anything ``load_model`` reads, or an ``EchoFM``) on every
    echo source under ``data`` (a folder of studies or a prepared cache). Writes
    ``diagnose.json`` (rows + summary), ``diagnose.csv`` (one row per clip, by
    ``batch.input_id``), ``failures.csv``, ``diagnose_histograms.png``, ``maps/<id>.png``
    examples and ``report.html`` into ``out_dir``. Clips that cannot be read are listed
    in failures.csv and skipped; a re-run skips clips already diagnosed (the job skeleton
    is ``echofm.batch``)."""
    from echofm.contract import sector_masking
    from echofm.inference import load_study
    from echofm.model import load_model

    config = config or DiagnoseConfig()
    data, out = Path(data), Path(out_dir)
    sources = scan_sources([data])  # before anything is created: a missing input leaves no folder
    if not sources:
        raise EchoFMError(f"{data}: no echo files found")
    model = model_source if isinstance(model_source, torch.nn.Module) else load_model(model_source)
    model = model.eval().to(config.device)
    facts = read_clip_table(data if data.is_dir() else data.parent)
    mask_sector = sector_masking(getattr(model, "contract", None), config.mask_sector)
    settings = {"model": model_fingerprint(model), "frame_step": config.frame_step,
                "window_step": config.window_step, "max_windows": config.max_windows,
                "mask_sector": mask_sector, "precision": config.precision}
    job = BatchJob("diagnose", out, settings, options, index_name="diagnose.csv", unit="clip").open()
    drawn = len(list((out / "maps").glob("*.png")))
    for item in job.run(job.pending(sources)):
        known = facts.get(item.source.path.resolve(), {})
        try:
            clip = load_study(item.source.path, model.cfg.img_size, mask_sector=mask_sector)
            fps = clip.fps or known.get("fps")
            result = diagnose_clip(model, clip.frames, known.get("period_frames"), fps, config.frame_step,
                                   config.max_windows, config.batch_size, config.device, config.precision,
                                   config.window_step, where=item.id)
        except (EchoFMError, ValueError, OSError, RuntimeError) as exc:
            job.failed(item, exc)
            continue
        files = []
        if drawn < config.examples:
            (out / "maps").mkdir(exist_ok=True)
            title = (f"{item.id[:12]}: correlation {result.similarity_correlation:.2f}, phase contrast "
                     f"{result.phase_contrast:.2f} (period {result.period_source})")
            _map_figure(result.pixel_map, result.embedding_map, out / "maps" / f"{item.id}.png", title)
            files.append(f"maps/{item.id}.png")
            drawn += 1
        row = {"frames": clip.num_frames, "fps": fps, **result.row()}
        job.done(item, {k: _clean(v) for k, v in row.items()}, files)
    summary = job.finish()
    rows = summary.rows
    if not rows:
        raise EchoFMError(f"{data}: no clip could be diagnosed (reasons in {summary.failures})")
    figures = [_histograms(rows, out)] + sorted(f"maps/{r['id']}.png" for r in rows
                                                if (out / "maps" / f"{r['id']}.png").is_file())
    name = getattr(getattr(model, "load_report", None), "source", None) or str(model_source)
    # The data folder's path is written only with keep_paths: archive paths carry patient names.
    shown = str(data) if job.options.keep_paths else "SRC"
    report = {"model": name, "data": shown, "config": asdict(config), "tolerance_cycles": TOLERANCE,
              "summary": summarize(rows), "clips": rows, "failures": summary.failure_rows, "figures": figures}
    write_json_atomic(out / "diagnose.json", report)
    _html(report, out)
    return DiagnoseRun(report=report, summary=summary)


def _histograms(rows: list[dict], out: Path) -> str:
    from echofm.analysis.figures import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    ranges = {"phase_contrast": (-2, 2), "pixel_phase_contrast": (-2, 2), "similarity_correlation": (-1, 1)}
    for ax, name in zip(axes, METRICS):
        values = [r[name] for r in rows if r[name] is not None and np.isfinite(r[name])]
        ax.hist(values, bins=20, range=ranges[name], color="steelblue")
        ax.axvline(0, color="0.5", lw=1)
        if values:
            ax.axvline(float(np.median(values)), color="crimson", lw=1.5, label=f"median {np.median(values):.2f}")
            ax.legend(fontsize=8)
        ax.set_title(f"{name} (n={len(values)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "diagnose_histograms.png", dpi=90)
    plt.close(fig)
    return "diagnose_histograms.png"


def _map_figure(pixel: np.ndarray, embedding: np.ndarray, path: Path, title: str) -> None:
    """The two [T, T] maps side by side, each on its own colour scale: early in training the
    embedding similarities span a narrow band near 1, invisible on a fixed [-1, 1] scale."""
    from echofm.analysis.figures import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, m, name in ((axes[0], pixel, "pixel motion prior"), (axes[1], embedding, "embedding (per time step)")):
        off = m[~np.eye(len(m), dtype=bool)]
        image = ax.imshow(m, cmap="magma", vmin=float(off.min()), vmax=float(off.max()))
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(f"{name}\noff-diagonal {off.min():.3f} .. {off.max():.3f}", fontsize=9)
        ax.set_xlabel("time step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _html(result: dict, out: Path) -> None:
    from echofm.analysis.report import HtmlReport

    rep = HtmlReport(f"echofm diagnose: {Path(result['model']).name}")
    rep.paragraph(f"Model {result['model']} on {result['data']}: {result['summary']['clips']} clips "
                  f"({len(result['failures'])} could not be read).")
    rep.paragraph("phase contrast: same-phase minus opposite-phase cosine similarity of the per-time-step "
                  "embeddings (0: ignores the phase). pixel phase contrast: the same on the pixel motion map "
                  "(the reference). similarity correlation: Pearson correlation of the off-diagonal embedding "
                  "and pixel self-similarity maps.", note=True)
    rep.heading("Summary")
    rep.raw_table([{"metric": k, **v} for k, v in result["summary"].items() if isinstance(v, dict)],
                  ["metric", "mean", "median", "min", "max", "n"])
    rep.heading("Figures")
    for name in result["figures"]:
        rep.figure(name, name)
    rep.heading("Clips")
    rep.raw_table(result["clips"])
    if result["failures"]:
        rep.heading("Failures")
        rep.raw_table(result["failures"])
    rep.link("diagnose.json", "diagnose.json")
    rep.link("diagnose.csv", "diagnose.csv")
    rep.write(out / "report.html")
