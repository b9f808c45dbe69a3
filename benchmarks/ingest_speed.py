"""Ingest speed: prints JSON.

- decode (+ full preprocess to 224) frames/s per source kind, on real test cines;
- video decoder choice: OpenCV vs PyAV frames/s on the same MP4/AVI;
- clips/s from a prepared cache through a training DataLoader at 224 and 112, next to a
  plain reference loop (OpenCV read of the AVI + per-frame PIL resize, as common research
  code does).

Run: PYTHONPATH=src python benchmarks/ingest_speed.py [--repeats N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def _sources(tmp: Path) -> dict[str, Path]:
    import av
    import deid_data
    import nibabel as nib
    from pydicom.data import get_testdata_file

    from echofm.io import read_clip

    dicom = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))
    frames = read_clip(dicom).frames
    paths = {"dicom_jpeg_baseline": dicom,
             "dicom_uncompressed_rgb": Path(deid_data.__path__[0]) / "data/ultrasounds/ultrasound-multiframe.dcm"}
    for suffix, codec in ((".mp4", "libx264"), (".avi", "mjpeg")):
        path = tmp / f"cine{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=30)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p" if codec == "libx264" else "yuvj420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        paths[f"video{suffix}"] = path
    gray = frames.max(-1)
    nib.save(nib.Nifti1Image(np.transpose(gray, (2, 1, 0)), np.eye(4)), tmp / "cine.nii.gz")
    paths["nifti_gz"] = tmp / "cine.nii.gz"
    np.save(tmp / "cine.npy", gray)
    paths["npy"] = tmp / "cine.npy"
    return paths


def _video_decoders(path: Path, repeats: int) -> dict:
    import av
    import cv2

    def opencv():
        capture, count = cv2.VideoCapture(str(path)), 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            count += 1
        return count

    def pyav():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return sum(1 for f in container.decode(stream) if f.to_ndarray(format="rgb24") is not None)

    out = {}
    for name, fn in (("opencv", opencv), ("pyav", pyav)):
        seconds, count = _best(fn, repeats)
        out[name] = round(count / seconds, 1)
    return out


def _loader_clips_per_s(cache: Path, size: int, workers: int, batches: int) -> float:
    from torch.utils.data import DataLoader

    from echofm.datasets.cache import CacheDataset

    dataset = CacheDataset(cache, num_frames=16, stride=2, size=size, augment=True)
    loader = DataLoader(dataset, batch_size=8, num_workers=workers, shuffle=True,
                        persistent_workers=workers > 0)
    next(iter(loader))  # start the workers outside the clock
    clips, start = 0, time.perf_counter()
    while clips < batches * 8:
        for batch in loader:
            clips += batch.shape[0]
            if clips >= batches * 8:
                break
    return round(clips / (time.perf_counter() - start), 1)


def _reference_clips_per_s(video: Path, size: int, clips: int) -> tuple[float, str]:
    """OpenCV read of a whole AVI + per-frame PIL resize, then a 16x2 window (research-code style)."""
    import cv2

    try:
        from PIL import Image

        def resize(frame):
            return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
        how = "opencv read + PIL resize"
    except ImportError:  # pragma: no cover
        def resize(frame):
            return cv2.resize(frame, (size, size))
        how = "opencv read + cv2 resize (PIL missing)"
    start = time.perf_counter()
    for _ in range(clips):
        capture, frames = cv2.VideoCapture(str(video)), []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        video_array = np.stack(frames)[:32:2].astype(np.float32) / 255.0
        assert video_array.shape[0] == 16
    return round(clips / (time.perf_counter() - start), 1), how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (best kept)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=12, help="batches of 8 clips timed per size")
    args = parser.parse_args()

    from echofm.io import read_clip
    from echofm.batch import BatchOptions
    from echofm.preprocess.prepare import prepare
    from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip

    tmp = Path(tempfile.mkdtemp(prefix="echofm-bench-"))
    try:
        sources = _sources(tmp)
        report = {"decode_fps": {}, "decode_preprocess_fps": {}}
        for kind, path in sources.items():
            seconds, clip = _best(lambda: read_clip(path), args.repeats)
            report["decode_fps"][kind] = round(clip.num_frames / seconds, 1)
            seconds, _ = _best(lambda: preprocess_clip(read_clip(path), PreprocessConfig()), args.repeats)
            report["decode_preprocess_fps"][kind] = round(clip.num_frames / seconds, 1)
        report["video_decoder_fps"] = {name: _video_decoders(sources[name], args.repeats)
                                       for name in ("video.mp4", "video.avi")}
        for size in (224, 112):
            cache = tmp / f"cache{size}"
            prepare([sources["dicom_jpeg_baseline"], sources["dicom_uncompressed_rgb"], sources["video.avi"]],
                    cache, PreprocessConfig(size=size), workers=1, options=BatchOptions(progress=False))
            report[f"loader_clips_per_s_{size}"] = _loader_clips_per_s(cache, size, args.workers, args.batches)
            rate, how = _reference_clips_per_s(sources["video.avi"], size, clips=6)
            report[f"reference_clips_per_s_{size}"] = rate
        report["reference_loop"] = how
        report["loader"] = f"CacheDataset 16 frames stride 2 + augment, batch 8, {args.workers} workers"
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
