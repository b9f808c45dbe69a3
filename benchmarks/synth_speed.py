"""Phantom generation speed: clips per minute at 112x112 and 224x224, printed as JSON.

Usage: python benchmarks/synth_speed.py [--clips N] [--frames T] [--workers W]
Counts whole clips (frames + label maps + truth) from ``generate_case``; no file writing.
"""

import argparse
import json
import os
import time
from multiprocessing import get_context

from echofm.phantom import PhantomConfig, case_seed, generate_case


def _one(args):
    size, frames, i = args
    generate_case(case_seed(123, i), PhantomConfig(size=size, num_frames=frames))
    return 1


def measure(size: int, frames: int, clips: int, workers: int) -> float:
    jobs = [(size, frames, i) for i in range(clips)]
    _one(jobs[0])  # warm-up (imports, caches)
    start = time.perf_counter()
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            sum(pool.imap_unordered(_one, jobs))
    else:
        for job in jobs:
            _one(job)
    return clips / (time.perf_counter() - start) * 60.0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clips", type=int, default=40, help="clips per measurement")
    p.add_argument("--frames", type=int, default=PhantomConfig().num_frames, help="frames per clip")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    a = p.parse_args()
    result = {"frames_per_clip": a.frames, "workers": a.workers, "cpu_count": os.cpu_count()}
    for size in (112, 224):
        n = a.clips if size == 112 else max(4, a.clips // 4)
        result[f"clips_per_min_{size}_1proc"] = round(measure(size, a.frames, n, 1), 1)
        if a.workers > 1:
            result[f"clips_per_min_{size}_{a.workers}proc"] = round(measure(size, a.frames, n, a.workers), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
