"""Video reader (AVI, MP4, MOV, MKV, WEBM) -> Clip.

OpenCV decodes first: measured on this project's echo cines it is 1.3-1.8x faster than
PyAV for RGB output (see benchmarks/ingest_speed.py). PyAV is the fallback for files
OpenCV cannot open and the authority on the frame rate when OpenCV reports none. The
frame count is always the number of frames actually decoded, never the container's
(often wrong) header value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from echofm.errors import ClipReadError
from echofm.io.clip import Clip, collapse_gray

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def read_video(path: str | Path) -> Clip:
    """Decode every frame: uint8 ``[T, H, W, 3]`` RGB, or ``[T, H, W]`` when grayscale."""
    path = Path(path)
    if not path.is_file():
        raise ClipReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ClipReadError(path, "empty file")
    frames, fps = _decode_opencv(path)
    if frames is None:
        frames, fps = _decode_pyav(path)
    elif not fps:
        fps = _pyav_rate(path)
    if not len(frames):
        raise ClipReadError(path, "video holds no decodable frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ClipReadError(path, f"frame size changes within the video: {sorted(shapes)}")
    array = collapse_gray(np.stack(frames))
    return Clip(
        frames=array,
        fps=round(float(fps), 3) if fps else None,
        source_kind="video",
        is_still=array.shape[0] == 1,
        path=str(path),
    )


def _decode_opencv(path: Path):
    """(list of RGB frames, fps) or (None, None) when OpenCV cannot open the file."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None, None
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        return None, None  # let PyAV try (and explain the failure)
    return frames, (fps if fps and np.isfinite(fps) and 0 < fps < 1000 else None)


def _decode_pyav(path: Path):
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipReadError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate
    except ClipReadError:
        raise
    except Exception as exc:  # av.error.* and damaged streams
        raise ClipReadError(path, f"cannot decode video ({str(exc)[:160]})") from exc
    return frames, (float(rate) if rate else None)


def _pyav_rate(path: Path) -> Optional[float]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate else None
    except Exception:
        return None
