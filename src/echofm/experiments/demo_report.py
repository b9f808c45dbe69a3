"""The demo's outputs: the frozen-feature table (pretrained encoder, its random
initialisation and a model-free reference, one row per figure; no interval, so no verdict),
its printed form, and the HTML report with the comparison first."""

from __future__ import annotations

from pathlib import Path

# Per-time-step features of the ED/ES probe, as the table names them.
FEATURE_NAMES = {"frames": "step embeddings", "tokens": "encoder tokens per step"}
REAL_CINE = "color3d_jpeg_baseline.dcm"  # pydicom-data's real apical 4-chamber cine


def json_default(value):
    """JSON for the numpy scalars the probes return (``json.dumps(..., default=json_default)``)."""
    return value.item() if hasattr(value, "item") else str(value)


def _row(figure: str, pretrained, random, higher_is_better: bool, reference=None, reference_name: str = "") -> dict:
    return {"figure": figure, "pretrained": pretrained, "random": random, "reference": reference,
            "reference_name": reference_name, "higher_is_better": higher_is_better}


def figure_table(summary: dict) -> list[dict]:
    """One row per frozen-feature figure: pretrained, random init and a reference. These
    figures have no interval, so the table names no winner (the comparison does, with CIs)."""
    p = summary["probes"]
    ph, efr, viewr = p["ed_es"], p["ef_ridge"], p["view_ridge"]
    tol = ph["tolerance_frames"]
    rows = [
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


TABLE_HEADER = ("figure", "pretrained", "random init", "reference")


def format_table(rows: list[dict]) -> str:
    """The printed table: one line per row, numbers with three decimals; the reference's
    name follows its value."""
    w = max(len(TABLE_HEADER[0]), *(len(r["figure"]) for r in rows))
    lines = [f"{TABLE_HEADER[0]:<{w}} {TABLE_HEADER[1]:>11} {TABLE_HEADER[2]:>11}  {TABLE_HEADER[3]}"]
    for r in rows:
        ref = _num(r["reference"]) + (f" ({r['reference_name']})" if r["reference_name"] else "")
        lines.append(f"{r['figure']:<{w}} {_num(r['pretrained']):>11} {_num(r['random']):>11}  {ref}")
    return "\n".join(lines)


def write_report(out: Path, summary: dict) -> Path:
    """``out/report.html``: the table, the data and its de-identification audit, pretraining,
    probe figures, the real cine and timing, every figure from ``summary``."""
    from echofm.analysis.report import HtmlReport

    rep = HtmlReport("echofm demo")
    cfg = summary["config"]
    rep.paragraph("Synthetic phantoms, not clinical data. Every figure below was measured in this run "
                  f"({summary['timing_s']['total']:.0f} s) on generated echo clips with exact ground truth.")
    made = (f"echofm-tiny pretrained here for {cfg['steps']} steps" if cfg.get("pretrain", True) else
            f"the pretrained encoder {cfg['init']} ({summary['pretraining'].get('steps', '?')} pretraining steps, "
            "made before the demo)")
    rep.paragraph(f"Phantom DICOM cines at {cfg['fps']:g} fps -> echofm prepare -> {made} at "
                  f"{cfg['size']} px -> the same encoder pretrained and at its random initialisation (the weights "
                  f"pretraining started from), each fully fine-tuned with the same recipe and budget -> frozen-"
                  f"feature probes -> the real apical 4-chamber cine of pydicom-data.")
    rep.heading(f"Comparison: pretrained vs random init, full fine-tuning on k={cfg['compare_k']} labelled clips")
    rep.raw_table([{"task": r["task"], "metric": r["metric"], "k": r["k"], "held-out": r["heldout"],
                    "pretrained": r["pretrained_mean"], "random init": r["random_mean"],
                    "gain 95% CI": f"[{r['gain_ci95'][0]:.3f}, {r['gain_ci95'][1]:.3f}]", "verdict": r["verdict"]}
                   for r in summary["comparison"]])
    rep.paragraph(f"Each arm is fine-tuned end to end ({cfg['compare_steps']} optimiser steps, echofm's full mode "
                  "and default learning rate) on the same labelled phantoms and scored per clip on held-out "
                  "phantoms of other seeds. Gain: positive means the pretrained encoder did better (pretrained - "
                  "random where higher is better, random - pretrained where lower is better); its 95% interval is "
                  "a paired bootstrap over the held-out clips. A gain whose interval contains 0 reads \"no clear "
                  "difference\". One seed only: the benchmark (benchmarks/label_efficiency.py) adds seeds and k.",
                  note=True)
    detail = summary["comparison_detail"]
    if (out / detail["side_by_side"]).exists():
        rep.figure(detail["side_by_side"], "pretrained (left) and random init (right), each task on the held-out phantoms")
    rep.link(detail["page"], "the comparison's own page (every cell and interval)")
    rep.heading("Frozen-feature probes: pretrained vs random init (descriptive, no interval)")
    rep.raw_table([{"figure": r["figure"], "pretrained": r["pretrained"], "random init": r["random"],
                    "reference": ("" if r["reference"] is None else f"{r['reference']:.4g} ({r['reference_name']})")}
                   for r in summary["table"]])
    rep.paragraph("'ridge probe': the mean-pooled tokens standardised per feature over the training videos, "
                  "ridge regression in closed form (one-hot targets for views), its strength cross-validated. "
                  "ED/ES: a ridge probe from each time step's features (the step embeddings model.embed().frames, "
                  "or the encoder tokens averaged per step) to the LV volume; ED/ES are the maxima/minima of "
                  "its curve. The pixel reference finds them from a cavity-size proxy without any model. These "
                  "figures come without an interval, so they name no winner.", note=True)
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
    rep.figure(summary["probes"]["ed_es"]["plot"], "ED/ES probe curves on held-out phantoms")
    rep.paragraph("Per-clip scores of the comparison: comparison/label_efficiency.json; ED/ES and ridge "
                  "records: probes/frozen/*.json.", note=True)
    rep.heading(f"Real apical 4-chamber cine ({REAL_CINE})")
    real = summary["real_a4c"]
    if real.get("available"):
        rep.values({k: real[k] for k in ("frames", "fps", "cycle_frames", "heart_rate_bpm", "ed_frames", "es_frames",
                                         "model_frame_step", "embedding_cycle_frames", "embedding_heart_rate_bpm")})
        rep.figure(real["masked_figure"], "first frame: as stored, sector masked, model input")
        rep.figure(real["phase_figure"], "cavity curve with ED/ES, pixel and embedding self-similarity")
    else:
        rep.paragraph(real["reason"])
    rep.heading("Timing (seconds)")
    rep.values(summary["timing_s"])
    if "cpu_s" in summary:
        rep.paragraph("CPU seconds per step (this process and its workers; on a shared machine the wall clock "
                      "above also counts other jobs):", note=True)
        rep.values(summary["cpu_s"])
    rep.link("demo_summary.json", "every figure as JSON (demo_summary.json)")
    return rep.write(out / "report.html")
