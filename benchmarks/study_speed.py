"""Study pipeline speed: a phantom exam of N clips through `echofm study`, seconds per clip
by stage (read, preprocess, view, segment, ef, disease, phase, write), printed as JSON.

Usage: python benchmarks/study_speed.py --bundle B [--clips 40] [--size 112] [--frames 48]
B is a bundle (e.g. from `echofm bundle phantom --out B`); without --bundle a small one is
trained first (not timed). The exam is written first (not timed); the study run is timed
from scanning to the last output (study.json, report.html, SEG and SR), on the CPU
named in the output.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name as `echofm doctor` reads it (else the platform's name)."""
    from echofm.runtime.hardware import detect

    return detect().cpu_model or platform.processor() or "unknown"


def add_exam_options(p: argparse.ArgumentParser) -> None:
    """The phantom exam and bundle options this benchmark shares with serve_speed.py."""
    p.add_argument("--bundle", default=None, help="model bundle (default: train a small phantom bundle first)")
    p.add_argument("--clips", type=int, default=40, help="clips in the phantom exam")
    p.add_argument("--size", type=int, default=112, help="phantom frame side in pixels")
    p.add_argument("--frames", type=int, default=48, help="frames per clip")


def exam_and_bundle(tmp: Path, a: argparse.Namespace) -> tuple[Path, Path]:
    """The phantom exam (tmp/exam) and the bundle to analyse it with: ``a.bundle``, or a
    small phantom bundle trained first in tmp/bundle."""
    from echofm.phantom import PhantomConfig
    from echofm.phantom.export import write_study
    from echofm.study import PhantomBundleConfig, phantom_bundle

    bundle = a.bundle
    if bundle is None:
        bundle = phantom_bundle(tmp / "bundle", PhantomBundleConfig(clips_per_view=12, size=64, frames=32,
                                                                    epochs=8, seg_epochs=8, progress=False))
    write_study(tmp / "exam", a.clips, seed=1, config=PhantomConfig(size=a.size, num_frames=a.frames))
    return tmp / "exam", Path(bundle)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    add_exam_options(p)
    p.add_argument("--no-dicom", action="store_true", help="do not write SEG and SR")
    a = p.parse_args(argv)

    import torch

    from echofm.batch import BatchOptions
    from echofm.study import StudyConfig, run_study

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exam, bundle = exam_and_bundle(tmp, a)
        load_before = os.getloadavg()
        start, cpu_start = time.perf_counter(), time.process_time()
        run = run_study(exam, bundle, tmp / "out", StudyConfig(dicom=not a.no_dicom),
                        BatchOptions(progress=False))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        study = run.studies[0]
        n = max(1, run.batch.done)
        report = {
            "clips": a.clips, "analysed": run.batch.done, "failed": run.batch.failed_total,
            "frames_per_clip": a.frames, "size": a.size, "bundle": str(a.bundle or "small phantom bundle (trained here)"),
            "wall_s": round(wall, 2), "s_per_clip": round(wall / n, 3),
            # CPU time of this process (all its threads): on a shared machine, the work done
            # regardless of how much of the CPU the run got; the load average says how busy it was.
            "cpu_s": round(cpu, 2), "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "stage_s_per_clip": {k: round(v / n, 4) for k, v in sorted(run.stage_seconds.items())},
            "other_s_per_clip": round((wall - sum(run.stage_seconds.values())) / n, 4),
            "views": study["measurements"].get("views"),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
