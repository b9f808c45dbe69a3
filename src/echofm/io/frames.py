"""Array and still-frame sources -> Clip: NPY/NPZ arrays and folders of PNG/JPEG frames.

Arrays may be ``[T, H, W]``, ``[T, H, W, 3]`` or a single ``[H, W]`` / ``[H, W, 3]``
image. A folder's frames are ordered by the numbers in their names (frame2 < frame10).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from echofm.errors import ClipReadError
from echofm.io.clip import Clip, collapse_gray, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Keys tried, in order, when an NPZ holds more than one array.
NPZ_FRAME_KEYS = ("frames", "video", "clip", "arr_0")


def read_array(path: str | Path) -> Clip:
    """Read ``.npy`` (or ``.npz``) pixel data; fps is unknown unless the NPZ holds ``fps``."""
    path = Path(path)
    fps = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                key = next((k for k in NPZ_FRAME_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ClipReadError(path, f"NPZ holds several arrays {keys} but none named one of {NPZ_FRAME_KEYS}")
                array = archive[key]
                if "fps" in keys:
                    fps = float(archive["fps"])
        else:
            array = np.load(path, allow_pickle=False)
    except ClipReadError:
        raise
    except Exception as exc:  # ValueError, EOFError, zipfile.BadZipFile, ...
        raise ClipReadError(path, f"not a readable NumPy array ({str(exc)[:160]})") from exc
    frames = _as_frames(np.asarray(array), path)
    return Clip(frames=frames, fps=fps, source_kind="npy", is_still=frames.shape[0] == 1, path=str(path))


def read_image(path: str | Path) -> Clip:
    """Read one PNG/JPEG/BMP/TIFF image as a still (T == 1)."""
    return _read_images(Path(path), [Path(path)])


def read_frame_folder(path: str | Path) -> Clip:
    """Read a folder of image files (one frame each, all the same size) as one clip."""
    path = Path(path)
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise ClipReadError(path, "folder holds no PNG/JPEG frames")
    return _read_images(path, files)


def _read_images(path: Path, files: list[Path]) -> Clip:
    import cv2

    frames = []
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ClipReadError(path, f"frame {file.name} cannot be decoded")
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        if image.ndim == 3:
            image = image[..., ::-1]  # OpenCV's BGR -> RGB
        frames.append(image)
    if len({f.shape for f in frames}) != 1:
        raise ClipReadError(path, "frames differ in size")
    stacked = _as_frames(np.stack(frames), path)
    return Clip(frames=stacked, source_kind="frames", is_still=stacked.shape[0] == 1, path=str(path))


def _as_frames(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ClipReadError(path, f"array of {array.dtype} is not pixel data")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3 and array.shape[0] > 3):
        # A single image; a [T, H, 3] cine of 3-pixel-wide frames is not a thing.
        array = array[None]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] != 3) or 0 in array.shape:
        raise ClipReadError(path, f"expected [T, H, W] or [T, H, W, 3] pixels, got shape {array.shape}")
    return collapse_gray(np.ascontiguousarray(to_uint8(array)))


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
