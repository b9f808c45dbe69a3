"""Figures and page of the label-efficiency study: score against labelled clips (k), the
pretrained and the random-init arm side by side with their 95% intervals over seeds, one
PNG per fine-tuning mode; and an HTML page with the cell table (``experiments.label_efficiency``
writes the ``summary`` these read)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

import numpy as np

from echofm.files import atomic_write, write_text_atomic

ARM_STYLE = {"pretrained": ("crimson", "pretrained"), "random": ("royalblue", "random init")}
SET_STYLE = {"heldout": ("-", "o", "held-out phantoms"), "shifted": ("--", "s", "shifted phantoms")}
TASK_TITLE = {"ef": "EF, mean absolute error (%)", "view": "view accuracy", "segment": "LV Dice",
              "ed_es": "ED/ES frame error (frames)"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    # No date or version in the file: the same run gives byte-identical figures.
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png",
                                              metadata={"Software": None}))
    _plt().close(fig)
    return out


MODE_TITLE = {"full": "full fine-tuning", "probe": "frozen linear probe",
              "steps": "ED/ES from frozen step embeddings (ridge probe)"}


def curves_figure(cells: list[dict], mode: str, out: Path, pixel_rule: Optional[list[dict]] = None) -> Path:
    """One panel per task: each arm's mean score over seeds against k (log scale), a line per
    held-out set, the 95% t interval over seeds as a band (none from one seed); with
    ``pixel_rule`` cells, the pixel rule's ED/ES frame error as a grey line per held-out set."""
    plt = _plt()
    mine = [c for c in cells if c["mode"] == mode]
    tasks = [t for t in TASK_TITLE if any(c["task"] == t for c in mine)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for held, (line, marker, held_name) in SET_STYLE.items():
            rows = sorted((c for c in mine if c["task"] == task and c["heldout"] == held), key=lambda c: c["k"])
            if not rows:
                continue
            ks = np.array([c["k"] for c in rows], float)
            for arm, (color, arm_name) in ARM_STYLE.items():
                mean = np.array([c[f"{arm}_mean"] for c in rows], float)
                ax.plot(ks, mean, line, marker=marker, color=color, label=f"{arm_name}, {held_name}")
                lo = np.array([np.nan if c[f"{arm}_ci95"][0] is None else c[f"{arm}_ci95"][0] for c in rows], float)
                hi = np.array([np.nan if c[f"{arm}_ci95"][1] is None else c[f"{arm}_ci95"][1] for c in rows], float)
                if np.isfinite(lo).all():
                    ax.fill_between(ks, lo, hi, color=color, alpha=0.12 if held == "heldout" else 0.06)
        for held, (line, marker, held_name) in SET_STYLE.items():
            rows = sorted((c for c in pixel_rule or [] if c["heldout"] == held), key=lambda c: c["k"])
            if task == "ed_es" and rows:
                ax.plot([c["k"] for c in rows], [c["pixels_mean"] for c in rows], line, marker="x", color="0.45",
                        label=f"pixel rule (no model), {held_name}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("labelled training clips (k)")
        ax.set_title(TASK_TITLE[task], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    seeds = sorted({s for c in mine for s in c["seeds"]})
    fig.suptitle(f"label efficiency, {MODE_TITLE.get(mode, mode)}: "
                 f"mean over {len(seeds)} seed(s), band = 95% t interval over seeds (synthetic phantoms)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def write_figures(summary: dict, out: Path) -> list[Path]:
    """``label_efficiency_MODE.png`` for each mode of the study's cells."""
    modes = sorted({c["mode"] for c in summary["cells"]}, key=list(MODE_TITLE).index)
    return [curves_figure(summary["cells"], mode, Path(out) / f"label_efficiency_{mode}.png",
                          summary.get("pixel_rule") if mode == "steps" else None) for mode in modes]


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _ci(pair) -> str:
    return f"[{_num(pair[0])}, {_num(pair[1])}]"


def write_html(summary: dict, path: Path) -> Path:
    """The study's page: what was compared, the figures and every cell with its intervals."""
    cfg, e = summary["config"], html.escape
    rows = "".join(
        f"<tr><td>{e(c['task'])}</td><td>{e(c['metric'])}</td><td>{e(c['mode'])}</td><td>{c['k']}</td>"
        f"<td>{e(c['heldout'])}</td><td>{_num(c['pretrained_mean'])}</td><td>{_num(c['random_mean'])}</td>"
        f"<td>{_num(c['gain_mean'])}</td><td>{_ci(c['gain_ci95_seeds'])}</td><td>{_ci(c['gain_ci95_clips'])}</td>"
        f"<td>{e(c['verdict'])}</td></tr>" for c in summary["cells"])
    images = "".join(f'<p><img src="{e(name)}" alt="{e(name)}" style="max-width:100%"></p>'
                     for name in summary.get("figures", []))
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>echofm label efficiency</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body><h1>Label efficiency: pretrained vs random init</h1>
<p><b>Synthetic phantoms, not clinical data.</b> Both arms are fine-tuned with the same recipe and
budget ({cfg['steps']} optimiser steps of {cfg['batch_size']} clips) on k labelled clips, seeds
{e(str(cfg['seeds']))}, and scored per clip on {cfg['heldout_clips']} held-out phantoms of other seeds
(<i>heldout</i>) and of the <i>shifted</i> preset (other gain, depth, noise, sector width, heart rate and
EF range). Gain: positive means the pretrained encoder did better. A gain whose 95% interval contains 0
reads "no clear difference"; a side is named only when the interval over clips and (with two or more
seeds) the interval over seeds both exclude 0 on that side.</p>
{images}
<table><tr><th>task</th><th>metric</th><th>mode</th><th>k</th><th>held-out</th><th>pretrained</th>
<th>random init</th><th>gain</th><th>gain 95% CI (seeds)</th><th>gain 95% CI (clips)</th><th>verdict</th></tr>
{rows}</table>
{_pixel_rule_table(summary.get("pixel_rule", []))}
<p>Pretraining: {e(str(summary.get('pretraining')))}</p>
<p>Seconds: {e(str(summary.get('timing_s')))}</p>
</body></html>
"""
    write_text_atomic(path, text)
    return Path(path)


def _pixel_rule_table(cells: list[dict]) -> str:
    """The bar's ED/ES line: the pretrained step embeddings against the pixel rule."""
    if not cells:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{c['k']}</td><td>{e(c['heldout'])}</td><td>{_num(c['steps_mean'], 2)}</td>"
        f"<td>{_num(c['pixels_mean'], 2)}</td><td>{_num(c['steps_within_2'])}</td><td>{_num(c['pixels_within_2'])}</td>"
        f"<td>{_num(c['gain_mean'], 2)}</td><td>{_ci(c['gain_ci95_seeds'])}</td><td>{_ci(c['gain_ci95_clips'])}</td>"
        f"<td>{e(c['verdict'])}</td></tr>" for c in cells)
    return f"""<h2>ED/ES: pretrained step embeddings against the pixel rule</h2>
<p>Frame error (mean absolute, frames) of ED/ES from a ridge probe of the pretrained encoder's frozen step
embeddings, fitted on the k labelled clips, and from the pixel rule (no model, no labels); "within 2" is the
share of true events found within 2 frames. Gain: positive means the step embeddings did better.</p>
<table><tr><th>k</th><th>held-out</th><th>step embeddings</th><th>pixel rule</th><th>within 2 (steps)</th>
<th>within 2 (pixels)</th><th>gain</th><th>gain 95% CI (seeds)</th><th>gain 95% CI (clips)</th><th>verdict</th></tr>
{rows}</table>"""


def arms_figure(runs: list[dict], out: Path, title: str = "") -> Path:
    """The two arms side by side, one row per task, from one (mode, k, seed, held-out set)'s
    runs: EF predicted vs true; the view confusion matrix; LV area predicted vs true (first
    labelled frame); the per-clip ED/ES frame errors. Each panel's title gives its score."""
    plt = _plt()
    tasks = [t for t in TASK_TITLE if any(r["task"] == t for r in runs)]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(8.4, 3.4 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        for ax, arm in zip(row, ("pretrained", "random")):
            run = next((r for r in runs if r["task"] == task and r["arm"] == arm), None)
            if run is None:
                ax.axis("off")
                continue
            color, arm_name = ARM_STYLE[arm]
            pairs = run["truth_and_prediction"]
            if task in ("ef", "segment"):
                t = np.array([p[0] for p in pairs], float)
                p = np.array([p[1] for p in pairs], float)
                ax.scatter(t, p, s=12, color=color, alpha=0.7)
                lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
                ax.plot([lo, hi], [lo, hi], ":", color="0.4")
                ax.set_xlabel("true EF (%)" if task == "ef" else "true LV area (px)")
                ax.set_ylabel("predicted")
            elif task == "view":
                names = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
                matrix = np.zeros((len(names), len(names)), int)
                for truth, pred in pairs:
                    matrix[names.index(truth), names.index(pred)] += 1
                ax.imshow(matrix, cmap="Reds" if arm == "pretrained" else "Blues")
                for i in range(len(names)):
                    for j in range(len(names)):
                        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8)
                ax.set_xticks(range(len(names)), names, fontsize=8)
                ax.set_yticks(range(len(names)), names, fontsize=8)
                ax.set_xlabel("predicted")
                ax.set_ylabel("true")
            else:
                ax.hist(np.asarray(run["clip_scores"], float), bins=12, color=color, alpha=0.8)
                ax.set_xlabel("mean ED/ES frame error per clip (frames)")
            ax.set_title(f"{arm_name}: {TASK_TITLE[task]} {run['value']:.3f}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(out))
