"""`echofm study`: every cine of an echo study export through a model bundle."""

from __future__ import annotations

import json

NAME = "study"
HELP = "analyse a whole echo study (DICOM folder, DICOMDIR, ZIP) with a model bundle: JSON, HTML, DICOM SEG and SR"
DESCRIPTION = (
    "Scans SRC (a folder of DICOM files, nested folders, a DICOMDIR, a ZIP or one file), groups the instances "
    "by study and series, and runs every multi-frame ultrasound cine through the bundle: view (probabilities "
    "kept), then apical views to LV segmentation and EF (beat by beat from the LV area curve, and the EF "
    "regressor when the bundle has one), parasternal views to the disease model, every cine to cardiac phase "
    "and heart rate. Per study the measurements are averaged over the clips of the right view, weighted by view "
    "confidence. Writes OUT/study.json, OUT/report.html, OUT/clips/<id>/ (first frame, the cine as an "
    "H.264 MP4 with the LV overlay), OUT/dicom/<study>/SEG_<id>.dcm and SR.dcm, failures.csv and "
    "not_analysed.csv. Single frames, other modalities and non-DICOM files are listed and skipped. A rerun "
    "skips clips already done. Exit status 1 when a clip failed (unless --allow-failures), 2 when the command itself failed.")


def add_arguments(p) -> None:
    from echofm.commands._options import add_batch_options, add_device, add_precision

    p.add_argument("source", metavar="SRC", help="study export: folder, DICOMDIR, ZIP archive or one DICOM file")
    p.add_argument("--bundle", required=True, metavar="B",
                   help="model bundle folder (echofm bundle create / echofm bundle phantom)")
    p.add_argument("--out", required=True, help="output folder (created; a rerun resumes it)")
    p.add_argument("--deidentify", action="store_true",
                   help="DICOM outputs get the patient and study modules replaced and UIDs remapped, following "
                        "the DICOM PS3.15 basic profile (default: they carry the source's patient module, as a "
                        "PACS needs to file them)")
    p.add_argument("--no-dicom", action="store_true", help="do not write the DICOM SEG and SR")
    p.add_argument("--no-overlay", action="store_true", help="do not write each cine as an H.264 MP4 (cine.mp4, the LV overlay blended in where segmented)")
    add_precision(p)
    add_device(p)
    add_batch_options(p)


def run(args) -> int:
    from echofm.commands._options import batch_options, report_batch
    from echofm.study import StudyConfig, run_study

    config = StudyConfig(device=args.device, precision=args.precision, deidentify=args.deidentify,
                         dicom=not args.no_dicom, overlay=not args.no_overlay)
    result = run_study(args.source, args.bundle, args.out, config, batch_options(args))
    studies = [{"study_id": s["study_id"], "clips": s["clips_analysed"],
                **{k: v["value"] for k, v in s["measurements"].items() if isinstance(v, dict) and "value" in v}}
               for s in result.studies]
    return report_batch(result.batch, {"not_analysed": result.listed, "study_json": str(result.out / "study.json"),
                                       "report": str(result.out / "report.html"), "studies": studies})
