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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", default=None, help="model bundle (default: train a small phantom bundle first)")
    p.add_argument("--clips", type=int, default=40, help="clips in the phantom exam")
    p.add_argument("--size", type=int, default=112, help="phantom frame side in pixels")
    p.add_argument("--frames", type=int, default=48, help="frames per clip")
    p.add_argument("--no-dicom", action="store_true", help="do not write SEG and SR")
    a = p.parse_args(argv)

    import torch

    from echofm.batch import BatchOptions
    from echofm.phantom import PhantomConfig
    from echofm.phantom.export import write_study
    from echofm.study import PhantomBundleConfig, StudyConfig, phantom_bundle, run_study

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = a.bundle
        if bundle is None:
            bundle = phantom_bundle(tmp / "bundle", PhantomBundleConfig(clips_per_view=12, size=64, frames=32,
                                                                        epochs=8, seg_epochs=8, progress=False))
        write_study(tmp / "exam", a.clips, seed=1, config=PhantomConfig(size=a.size, num_frames=a.frames))
        load_before = os.getloadavg()
        start, cpu_start = time.perf_counter(), time.process_time()
        run = run_study(tmp / "exam", bundle, tmp / "out", StudyConfig(dicom=not a.no_dicom),
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
