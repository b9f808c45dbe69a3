"""`read_clip(path)`: one entry point over all readers, chosen by file type.

Readers are registered by suffix; extension-less files are recognised as DICOM by the
``DICM`` marker (archives often store DICOM without an extension), folders as frame
sequences. Every reader returns a Clip; `read_clip` adds the content hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from echofm.errors import ClipReadError
from echofm.io.clip import Clip, hash_frames
from echofm.io.dicom import has_dicom_magic, read_dicom
from echofm.io.frames import IMAGE_SUFFIXES, read_array, read_frame_folder, read_image
from echofm.io.video import VIDEO_SUFFIXES, read_video
from echofm.io.volume import read_metaimage, read_nifti

Reader = Callable[[Path], Clip]

READERS: dict[str, Reader] = {
    ".dcm": read_dicom,
    ".dicom": read_dicom,
    ".nii": read_nifti,
    ".nii.gz": read_nifti,
    ".mhd": read_metaimage,
    ".mha": read_metaimage,
    ".npy": read_array,
    ".npz": read_array,
    **{suffix: read_video for suffix in VIDEO_SUFFIXES},
    **{suffix: read_image for suffix in IMAGE_SUFFIXES},
}


def suffix_of(path: Path) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def find_reader(path: str | Path) -> Optional[Reader]:
    """The reader for `path`, or None when it is no echo source we know."""
    path = Path(path)
    if path.is_dir():
        has_frames = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        return read_frame_folder if has_frames else None
    reader = READERS.get(suffix_of(path))
    if reader is None and path.is_file() and has_dicom_magic(path):
        return read_dicom
    return reader


def read_clip(path: str | Path) -> Clip:
    """Read any supported echo source as a Clip (uint8 ``[T, H, W]`` or ``[T, H, W, 3]``).

    Raises ClipReadError naming the path and the reason when the file is missing, of an
    unknown type, or not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise ClipReadError(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise ClipReadError(path, "empty file")
    reader = find_reader(path)
    if reader is None:
        raise ClipReadError(path, "unknown file type (not DICOM, video, NIfTI, MetaImage, NPY/NPZ, an image or an image folder)")
    try:
        clip = reader(path)
    except ClipReadError:
        raise
    except MemoryError as exc:
        raise ClipReadError(path, "too large to decode in memory") from exc
    except Exception as exc:  # a reader bug or an exotic failure must still name the file
        raise ClipReadError(path, f"{type(exc).__name__}: {str(exc)[:160]}") from exc
    if not clip.content_hash:
        clip.content_hash = hash_frames(clip.frames)
    return clip
