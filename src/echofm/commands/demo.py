"""`echofm demo`: the smallest honest end-to-end run on the embedded default data.

Phantom DICOM cines (with invented identifiers and burned-in text) -> `prepare` (sector
masking, de-identification) -> a short `pretrain` of echofm-tiny -> cardiac phase of the
real apical 4-chamber cine shipped with pydicom-data (when installed) -> HTML report.
Every figure printed is measured in this run; nothing is filled in.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME = "demo"
HELP = "run the end-to-end demo (phantoms -> prepare -> pretrain echofm-tiny -> phase -> report)"


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo_out", help="output directory")
    p.add_argument("--clips", type=int, default=48, help="phantom cines to generate for pretraining")
    p.add_argument("--steps", type=int, default=60, help="pretraining steps of echofm-tiny")
    p.add_argument("--batch-size", type=int, default=8, help="pretraining batch size")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def run(args) -> int:
    from echofm.cli import main as echofm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        ["synth", "--out", str(out / "phantoms"), "--format", "dicom", "--n", str(args.clips),
         "--seed", str(args.seed), "--size", "160", "--no-progress"],
        ["prepare", str(out / "phantoms"), "--out", str(out / "cache"), "--size", "112", "--quiet"],
        ["pretrain", "--config", "echofm-tiny", "--data", str(out / "cache"), "--out", str(out / "pretrain"),
         "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", "5e-4", "--workers", "1",
         "--checkpoint-every", "0", "--seed", str(args.seed), "--no-progress"],
    ]
    for argv in steps:
        print(f"\n== echofm {' '.join(argv)}", flush=True)
        if echofm(argv) != 0:
            print(f"demo step failed: echofm {argv[0]}")
            return 1
    rows = _read_metrics(out / "pretrain" / "metrics.jsonl")
    table = {"phantom cines": args.clips, "pretraining steps": len(rows)}
    if rows:
        for key in ("loss", "recon", "triplet", "cycle"):
            table[f"{key}: first -> last"] = f"{rows[0][key]:.3f} -> {rows[-1][key]:.3f}"
    real = _real_a4c()
    if real is not None:
        print(f"\n== echofm phase {real.name}", flush=True)
        if echofm(["phase", str(real), "--out", str(out / "real_a4c"), "--model", str(out / "pretrain" / "model")]) == 0:
            res = json.loads((out / "real_a4c" / "phase.json").read_text())["pixels"]
            table["real A4C cine: cycle (frames)"] = round(res["cycle_frames"], 1) if res["cycle_frames"] else None
            table["real A4C cine: heart rate (bpm)"] = round(res["heart_rate_bpm"], 1) if res["heart_rate_bpm"] else None
    else:
        table["real A4C cine"] = "pydicom-data not installed (pip install pydicom-data)"
    (out / "demo_summary.json").write_text(json.dumps(table, indent=2))
    echofm(["report", str(out / "pretrain"), "--title", "echofm demo: pretraining"])
    _top_report(out, table)
    print("\n" + "\n".join(f"{k:<36} {v}" for k, v in table.items()))
    print(f"\nreport: {out / 'report.html'}")
    return 0


def _read_metrics(path: Path) -> list[dict]:
    from echofm.analysis.report import read_jsonl

    return [r for r in read_jsonl(path) if "loss" in r] if path.exists() else []


def _real_a4c():
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file("color3d_jpeg_baseline.dcm")
    except Exception:  # pydicom-data missing or its index unreadable
        return None
    return Path(found) if found else None


def _top_report(out: Path, table: dict) -> None:
    from echofm.analysis.report import HtmlReport

    rep = HtmlReport("echofm demo")
    rep.heading("Figures of this run")
    rep.values(table)
    rep.link("pretrain/report.html", "pretraining report (curves)")
    if (out / "real_a4c" / "phase.png").exists():
        rep.heading("Real apical 4-chamber cine (pydicom-data)")
        rep.figure("real_a4c/phase.png", "cavity curve with ED/ES, self-similarity maps")
    rep.write(out / "report.html")
