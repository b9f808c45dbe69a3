"""The demo's outputs: the table comparing the pretrained encoder with its random
initialisation (one row per figure), its printed form, and the HTML report."""

from __future__ import annotations

import math
from pathlib import Path

# Per-time-step features of the ED/ES probe, as the table names them.
FEATURE_NAMES = {"frames": "step embeddings", "tokens": "encoder tokens per step"}
REAL_CINE = "color3d_jpeg_baseline.dcm"  # pydicom-data's real apical 4-chamber cine


def json_default(value):
    """JSON for the numpy scalars the probes return (``json.dumps(..., default=json_default)``)."""
    return value.item() if hasattr(value, "item") else str(value)


def _row(figure: str, pretrained, random, higher_is_better: bool, reference=None, reference_name: str = "") -> dict:
    if pretrained is None or random is None or not (math.isfinite(pretrained) and math.isfinite(random)):
        better = "n/a"
    elif abs(pretrained - random) <= 1e-9 * max(1.0, abs(pretrained)):
        better = "tie"
    else:
        better = "pretrained" if (pretrained > random) == higher_is_better else "random init"
    return {"figure": figure, "pretrained": pretrained, "random": random, "reference": reference,
            "reference_name": reference_name, "higher_is_better": higher_is_better, "better": better}


def figure_table(summary: dict) -> list[dict]:
    """One row per compared figure: pretrained, random init, a reference, and which arm did better."""
    p = summary["probes"]
    ef, view, ph = p["ef"], p["view"], p["ed_es"]
    efr, viewr = p["ef_ridge"], p["view_ridge"]
    tol = ph["tolerance_frames"]
    rows = [
        _row("EF MAE (EF points), finetune probe", ef["pretrained"]["mae"], ef["random"]["mae"], False,
             ef["reference"]["mae"], ef["reference"]["name"]),
        _row("EF R2, finetune probe", ef["pretrained"]["r2"], ef["random"]["r2"], True),
        _row("view accuracy, finetune probe", view["pretrained"]["accuracy"], view["random"]["accuracy"], True,
             view["reference"]["accuracy"], view["reference"]["name"]),
        _row("view balanced accuracy, finetune probe", view["pretrained"]["balanced_accuracy"],
             view["random"]["balanced_accuracy"], True),
        _row("EF MAE (EF points), ridge probe", efr["pretrained"]["mae"], efr["random"]["mae"], False,
             efr["reference"]["mae"], efr["reference"]["name"]),
        _row("view accuracy, ridge probe", viewr["pretrained"]["accuracy"], viewr["random"]["accuracy"], True,
             viewr["reference"]["accuracy"], viewr["reference"]["name"]),
    ]
    for kind in ph["features"]:
        m, name = ph[kind], FEATURE_NAMES[kind]
        rows += [
            _row(f"ED/ES within {tol} frames, {name}", m["pretrained"]["found"], m["random"]["found"], True,
                 ph["pixels"]["found"], "pixels"),
            _row(f"ED/ES error (frames), {name}", m["pretrained"]["mae_frames"], m["random"]["mae_frames"], False,
                 ph["pixels"]["mae_frames"], "pixels"),
            _row(f"ED/ES precision, {name}", m["pretrained"]["precision"], m["random"]["precision"], True,
                 ph["pixels"]["precision"], "pixels"),
        ]
    return rows


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


TABLE_HEADER = ("figure", "pretrained", "random init", "reference", "better")


def format_table(rows: list[dict]) -> str:
    """The printed table: one line per row, numbers with three decimals; the reference's
    name follows its value."""
    w = max(len(TABLE_HEADER[0]), *(len(r["figure"]) for r in rows))
    lines = [f"{TABLE_HEADER[0]:<{w}} {TABLE_HEADER[1]:>11} {TABLE_HEADER[2]:>11}  {TABLE_HEADER[4]:<11}  "
             f"{TABLE_HEADER[3]}"]
    for r in rows:
        ref = _num(r["reference"]) + (f" ({r['reference_name']})" if r["reference_name"] else "")
        lines.append(f"{r['figure']:<{w}} {_num(r['pretrained']):>11} {_num(r['random']):>11}  {r['better']:<11}  {ref}")
    return "\n".join(lines)


def write_report(out: Path, summary: dict) -> Path:
    """``out/report.html``: the table, the data and its de-identification audit, pretraining,
    probe figures, the real cine and timing, every figure from ``summary``."""
    from echofm.analysis.report import HtmlReport

    rep = HtmlReport("echofm demo")
    cfg = summary["config"]
    rep.paragraph(f"Phantom DICOM cines -> echofm prepare -> echofm-tiny pretrained for {cfg['steps']} steps at "
                  f"{cfg['size']} px -> linear probes on {summary['probes']['ef']['test']} held-out phantoms, "
                  f"each beside the same encoder at its random initialisation (the weights pretraining started "
                  f"from) -> the real apical 4-chamber cine of pydicom-data. Every figure below was measured in "
                  f"this run ({summary['timing_s']['total']:.0f} s).")
    rep.heading("Figures: pretrained vs random init")
    rep.raw_table([{"figure": r["figure"], "pretrained": r["pretrained"], "random init": r["random"],
                    "reference": ("" if r["reference"] is None else f"{r['reference']:.4g} ({r['reference_name']})"),
                    "better": r["better"]} for r in summary["table"]])
    counts = summary["better_counts"]
    rep.paragraph(f"Pretrained better on {counts['pretrained']} of {len(summary['table'])} figures, random init "
                  f"on {counts['random init']}, ties {counts['tie']}.")
    rep.paragraph("All probes are linear, trained on the training phantoms and scored on the held-out ones. "
                  "'finetune probe': echofm's linear mode (echofm.tasks: pooled tokens of a window, "
                  "standardised by an affine-free batch norm (model.heads.FeatureNorm) with the training "
                  "data's statistics, one linear layer trained with AdamW; evaluated on windows covering each "
                  "video). 'ridge probe': the mean-pooled tokens "
                  "standardised per feature over the training videos, ridge regression in closed form (one-hot "
                  "targets for views), its strength cross-validated, in closed form rather than by gradient steps. "
                  "ED/ES: a ridge probe from each time step's features (the step embeddings model.embed().frames, "
                  "or the encoder tokens averaged per step) to the LV volume; ED/ES are the maxima/minima of "
                  "its curve. The pixel reference finds them from a cavity-size proxy without any model.",
                  note=True)
    data = summary["data"]
    rep.heading("Data: phantoms and their preparation")
    rep.values({"training phantoms": data["train"]["phantoms"], "prepared (training)": data["train"]["prepared"],
                "held-out phantoms": data["test"]["phantoms"], "prepared (held-out)": data["test"]["prepared"],
                "views (training)": data["train"]["views"], "views (held-out)": data["test"]["views"],
                "phantom seeds shared by the two sets": data["shared_phantom_seeds"],
                "identifier strings found in the caches": data["identifiers_in_cache"]})
    rep.figure(data["figure"], "a phantom DICOM as stored and as prepared")
    rep.heading("Pretraining")
    pre = summary["pretraining"]
    rep.values({k: v for k, v in pre.items()})
    if (out / "pretrain" / "report_curves.png").exists():
        rep.figure("pretrain/report_curves.png", "pretraining curves (metrics.jsonl)")
    rep.link("pretrain/report.html", "full pretraining report")
    rep.heading("Probe figures")
    for task, caption in (("ef", "EF: predicted vs true and Bland-Altman"), ("view", "view: confusion matrix")):
        for arm in ("pretrained", "random"):
            rel = summary["probes"][task][f"{arm}_plot"]
            if (out / rel).exists():
                rep.figure(rel, f"{caption} ({arm} encoder)")
    rep.figure(summary["probes"]["ed_es"]["plot"], "ED/ES probe curves on held-out phantoms")
    rep.paragraph("Per-video predictions and ED/ES records: probes/*/*/eval/predictions.jsonl and "
                  "probes/frozen/*.json.", note=True)
    rep.heading(f"Real apical 4-chamber cine ({REAL_CINE})")
    real = summary["real_a4c"]
    if real.get("available"):
        rep.values({k: real[k] for k in ("frames", "fps", "cycle_frames", "heart_rate_bpm", "ed_frames", "es_frames",
                                         "model_stride", "embedding_cycle_frames", "embedding_heart_rate_bpm")})
        rep.figure(real["masked_figure"], "first frame: as stored, sector masked, model input")
        rep.figure(real["phase_figure"], "cavity curve with ED/ES, pixel and embedding self-similarity")
    else:
        rep.paragraph(real["reason"])
    rep.heading("Timing (seconds)")
    rep.values(summary["timing_s"])
    rep.link("demo_summary.json", "every figure as JSON (demo_summary.json)")
    return rep.write(out / "report.html")
