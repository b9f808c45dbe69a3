"""`echofm synth`: write a synthetic echo data set with exact ground truth."""

from __future__ import annotations

import argparse
import json

NAME = "synth"
HELP = "generate synthetic echocardiography (phantoms) in a public data set layout"
DESCRIPTION = (
    "Generate synthetic echo cines with exact ground truth (EF, volumes, ED/ES frames, label "
    "maps, disease labels) and write them as EchoNet-Dynamic, CAMUS, multi-frame DICOM, "
    "TMED-2 or a plain MP4 folder. Deterministic for --seed."
)


def _range(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.replace(":", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH numbers") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from echofm.choices import PHANTOM_FORMATS as FORMATS
    from echofm.labels import VIEWS
    from echofm.phantom.config import PhantomConfig

    d = PhantomConfig()
    fmt = lambda r: f"{r[0]:g},{r[1]:g}"
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--format", choices=FORMATS, default="folder",
                        help="layout to write: echonet (Videos/*.avi, FileList.csv, VolumeTracings.csv), "
                             "camus (database_nifti/patientXXXX, database_split), dicom (multi-frame US "
                             "DICOM with identifiers), tmed (PNG stills + TMED2 CSV), folder (MP4 + labels.csv)")
    parser.add_argument("--n", type=int, default=16,
                        help="number of items: clips (echonet, dicom, folder), patients (camus), studies (tmed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data set")
    parser.add_argument("--size", type=int, default=None,
                        help="frame height and width in pixels (default: 112 for echonet/tmed/folder, "
                             "256 for camus and dicom)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per clip (default {d.num_frames}; camus and echonet lengthen a clip "
                             "when needed to hold a whole systole)")
    parser.add_argument("--fps", type=float, default=None, help=f"frames per second (default {d.fps:g})")
    parser.add_argument("--views", default=None,
                        help=f"comma-separated views to draw from, of {','.join(VIEWS)} (default: all; "
                             "echonet A4C; camus always writes A2C and A4C)")
    parser.add_argument("--heart-rate", type=_range, default=d.heart_rate, metavar="LOW,HIGH",
                        help="heart rate range in beats per minute (40-150 is the physiological span)")
    parser.add_argument("--ef", type=_range, default=d.ef, metavar="LOW,HIGH",
                        help="ejection fraction range in percent (10-80)")
    parser.add_argument("--reduced-ef-fraction", type=float, default=d.reduced_ef_fraction,
                        help="share of hearts with EF below 50 when the EF range spans 50")
    parser.add_argument("--edv", type=_range, default=d.edv, metavar="LOW,HIGH",
                        help="end-diastolic volume range in mL before remodelling (weak and regurgitant "
                             "hearts dilate beyond it)")
    parser.add_argument("--systolic-fraction", type=_range, default=d.systolic_fraction, metavar="LOW,HIGH",
                        help="systole as a fraction of the cardiac cycle at 70 bpm")
    parser.add_argument("--rr-variability", type=float, default=d.rr_variability,
                        help="beat-to-beat variability of the RR interval (relative SD) in regular rhythm")
    parser.add_argument("--irregular-fraction", type=float, default=d.irregular_fraction,
                        help="share of hearts with an irregular (atrial-fibrillation-like) rhythm")
    parser.add_argument("--lvh-fraction", type=float, default=d.lvh_fraction,
                        help="share of hearts with LV hypertrophy (wall 12.5-17 mm; likelier with stenosis)")
    parser.add_argument("--as-fraction", type=float, default=d.as_fraction,
                        help="share of hearts with aortic stenosis, split equally into mild, moderate, severe")
    parser.add_argument("--ar-fraction", type=float, default=d.ar_fraction,
                        help="share of hearts with aortic regurgitation")
    parser.add_argument("--probe-motion", type=float, default=d.probe_motion,
                        help="scale of slow probe drift (0 = steady probe)")
    parser.add_argument("--breathing", type=float, default=d.breathing,
                        help="scale of respiratory heart motion (0 = breath-hold)")
    parser.add_argument("--noise", type=float, default=d.noise, help="scale of receive noise (0 = none)")
    parser.add_argument("--save-labels", action="store_true",
                        help="also write labels/NAME.npz with the per-frame label maps (uint8 [T,H,W]) "
                             "and ED/ES frames (echonet, dicom, folder)")
    parser.add_argument("--study", action="store_true",
                        help="with --format dicom: write one invented patient's exam instead of unrelated clips: "
                             "--n clips of one heart (one EF), views cycling through --views, sharing the patient "
                             "and StudyInstanceUID, one series per clip (SERIES_kk/IMG00001.dcm)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from echofm.errors import EchoFMError
    from echofm.phantom.config import PhantomConfig, default_views
    from echofm.phantom.export import write_dataset, write_study

    if args.study and args.format != "dicom":
        raise EchoFMError(f"synth --study writes DICOM studies; it needs --format dicom (got {args.format})")

    default_size = 256 if args.format in ("camus", "dicom") else 112
    views = tuple(v.strip().upper() for v in args.views.split(",")) if args.views else \
        default_views(args.format)
    base = PhantomConfig()
    config = PhantomConfig(
        size=args.size or default_size,
        num_frames=args.frames or base.num_frames,
        fps=args.fps or base.fps,
        views=views,
        heart_rate=args.heart_rate,
        ef=args.ef,
        reduced_ef_fraction=args.reduced_ef_fraction,
        edv=args.edv,
        systolic_fraction=args.systolic_fraction,
        rr_variability=args.rr_variability,
        irregular_fraction=args.irregular_fraction,
        lvh_fraction=args.lvh_fraction,
        as_fraction=args.as_fraction,
        ar_fraction=args.ar_fraction,
        probe_motion=args.probe_motion,
        breathing=args.breathing,
        noise=args.noise,
    ).validate()
    with tqdm(total=args.n, desc=f"synth {args.format}", unit="item", disable=args.no_progress) as bar:
        if args.study:
            summary = write_study(args.out, args.n, seed=args.seed, config=config, save_labels=args.save_labels,
                                  progress=bar.update)
        else:
            summary = write_dataset(args.out, args.format, args.n, seed=args.seed, config=config,
                                    workers=max(1, args.workers), save_labels=args.save_labels,
                                    progress=bar.update)
    print(json.dumps(summary))
    return 0
