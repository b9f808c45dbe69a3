"""2D+time volumes -> Clip: NIfTI (.nii, .nii.gz, via nibabel) and MetaImage (.mhd/.mha).

The two CAMUS releases ship one or the other. MetaImage is read by a small strict header
parser (a few keys, raw or zlib data) rather than pulling SimpleITK (~50 MB) in for it.
Axis conventions: NIfTI arrays are indexed ``[x, y, t]``; MetaImage DimSize lists x first,
so the raw buffer reshapes to ``[t, y, x]`` directly. Clips are ``[T, H, W]`` (H = y).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from echofm.errors import ClipReadError
from echofm.io.clip import Clip, to_uint8

_MET_TYPES = {
    "MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
    "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_ULONG": np.uint64, "MET_LONG": np.int64,
    "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64,
}
# NIfTI xyzt_units time codes -> seconds per unit.
_NIFTI_TIME_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def read_nifti(path: str | Path) -> Clip:
    """A 2D image ``[x, y]`` or sequence ``[x, y, t]`` (a trailing singleton axis allowed)."""
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:
        raise ClipReadError(path, f"not a readable NIfTI file ({str(exc)[:160]})") from exc
    data = np.squeeze(data, axis=tuple(range(3, data.ndim))) if data.ndim > 3 else data
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or 0 in data.shape:
        raise ClipReadError(path, f"expected a 2D image or 2D+t sequence, got shape {data.shape}")
    frames = to_uint8(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    zooms = image.header.get_zooms()
    spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 and min(zooms[:2]) > 0 else None
    fps = None
    if len(zooms) >= 3 and zooms[2] > 0 and frames.shape[0] > 1:
        time_unit = image.header.get_xyzt_units()[1]
        if time_unit in _NIFTI_TIME_SECONDS:
            fps = round(1.0 / (float(zooms[2]) * _NIFTI_TIME_SECONDS[time_unit]), 3)
    return Clip(frames=frames, fps=fps, pixel_spacing=spacing, source_kind="nifti",
                is_still=frames.shape[0] == 1, path=str(path))


def read_metaimage(path: str | Path) -> Clip:
    """MetaImage header (.mhd with a separate data file, or .mha with LOCAL data)."""
    path = Path(path)
    header, data_offset = _parse_mhd_header(path)
    ndims = int(header.get("NDims", "0"))
    dims = [int(v) for v in header.get("DimSize", "").split()]
    if ndims not in (2, 3) or len(dims) != ndims or min(dims, default=0) <= 0:
        raise ClipReadError(path, f"expected NDims 2 or 3 with matching DimSize, got {header.get('NDims')!r}/{header.get('DimSize')!r}")
    if int(header.get("ElementNumberOfChannels", "1")) != 1:
        raise ClipReadError(path, "multi-channel MetaImage is not supported")
    dtype = _MET_TYPES.get(header.get("ElementType", ""))
    if dtype is None:
        raise ClipReadError(path, f"unsupported ElementType {header.get('ElementType')!r}")
    big_endian = header.get("ElementByteOrderMSB", header.get("BinaryDataByteOrderMSB", "False"))
    dtype = np.dtype(dtype).newbyteorder(">" if big_endian.lower() == "true" else "<")

    data_file = header.get("ElementDataFile", "")
    if data_file == "LOCAL":
        raw = path.read_bytes()[data_offset:]
    elif data_file and data_file != "LIST" and "%" not in data_file:
        raw_path = path.parent / data_file
        if not raw_path.is_file():
            raise ClipReadError(path, f"data file {data_file!r} not found beside the header")
        raw = raw_path.read_bytes()
        raw = raw[int(header.get("HeaderSize", "0") or 0):]
    else:
        raise ClipReadError(path, f"unsupported ElementDataFile {data_file!r}")
    if header.get("CompressedData", "False").lower() == "true":
        try:
            raw = zlib.decompress(raw)
        except zlib.error as exc:
            raise ClipReadError(path, f"corrupt compressed data ({exc})") from exc
    count = int(np.prod(dims))
    if len(raw) < count * dtype.itemsize:
        raise ClipReadError(path, f"truncated data ({len(raw)} bytes, expected {count * dtype.itemsize})")
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(dims[::-1])
    if ndims == 2:
        array = array[None]
    frames = to_uint8(np.ascontiguousarray(array))
    spacing_values = [float(v) for v in header.get("ElementSpacing", "").split()]
    spacing = (spacing_values[1], spacing_values[0]) if len(spacing_values) >= 2 and min(spacing_values[:2]) > 0 else None
    return Clip(frames=frames, pixel_spacing=spacing, source_kind="mhd",
                is_still=frames.shape[0] == 1, path=str(path))


def _parse_mhd_header(path: Path) -> tuple[dict[str, str], int]:
    """``key = value`` lines up to and including ElementDataFile (always the last key).

    Returns the keys and the byte offset where LOCAL data begins.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ClipReadError(path, f"cannot read ({exc.strerror})") from exc
    header: dict[str, str] = {}
    offset = 0
    while offset < len(blob):
        end = blob.find(b"\n", offset)
        end = len(blob) if end < 0 else end
        line = blob[offset:end].decode("latin-1").strip()
        offset = end + 1
        if not line:
            continue
        if "=" not in line:
            raise ClipReadError(path, f"not a MetaImage header (line {line[:40]!r})")
        key, value = (part.strip() for part in line.split("=", 1))
        header[key] = value
        if key == "ElementDataFile":
            return header, offset
    raise ClipReadError(path, "MetaImage header without ElementDataFile")
