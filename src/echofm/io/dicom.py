"""DICOM ultrasound reader: pixels, frame rate, spacing and image region — nothing else.

Decoding goes through pydicom's pixel backends with the pylibjpeg plugins (JPEG baseline,
JPEG lossless, JPEG 2000, RLE); YBR is converted to RGB by pydicom. Only the technical
fields in `ALLOWED_META` ever leave this module, so no identifier can reach a Clip.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import convert_color_space, get_decoder

from echofm.errors import ClipReadError
from echofm.io.clip import Clip, to_uint8

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

# The only header values that may leave this module (as Clip.meta keys).
ALLOWED_META = {"ManufacturerModelName": "manufacturer_model"}

NOT_DICOM = "not a DICOM file (no DICM preamble and no readable DICOM header)"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD

# PhysicalUnitsX/YDirection code for centimetres (DICOM PS3.3 C.8.5.5.1.15).
_UNITS_CM = 3
# RegionSpatialFormat code for a 2D image (as opposed to M-mode, spectral, waveform).
_SPATIAL_2D = 1


def has_dicom_magic(path: str | Path) -> bool:
    """True when the file carries the Part 10 preamble + ``DICM`` marker."""
    try:
        with open(path, "rb") as fh:
            fh.seek(DICOM_MAGIC_OFFSET)
            return fh.read(4) == DICOM_MAGIC
    except OSError:
        return False


def read_dicom(path: str | Path) -> Clip:
    """Read one DICOM file as a Clip with frames uint8 ``[T, H, W]`` or ``[T, H, W, 3]``.

    Raises ClipReadError (path + a reason a user can act on) for anything that is not a
    decodable image: not DICOM at all, a truncated file (where it ends and how much of the
    pixel data is there), a damaged header, no or undecodable pixel data.
    """
    path = Path(path)
    size = path.stat().st_size
    preamble = has_dicom_magic(path)
    try:
        with _pydicom_quiet() as caught:
            # Without the Part 10 preamble, try the raw data set (old archives store that).
            ds = pydicom.dcmread(path, force=not preamble)
    except (InvalidDicomError, EOFError) as exc:
        if not preamble:
            raise ClipReadError(path, NOT_DICOM) from exc
        raise ClipReadError(path, f"damaged DICOM header ({_short(exc)})") from exc
    except Exception as exc:  # pydicom raises many types on damaged headers
        if not preamble:
            raise ClipReadError(path, NOT_DICOM) from exc
        raise ClipReadError(path, f"damaged DICOM header ({_short(exc)})") from exc
    if not preamble and not _has_dicom_header(ds):
        raise ClipReadError(path, NOT_DICOM)

    ended_early = any("end of file" in str(w.message).lower() for w in caught)
    truncation = _truncation(path, ds, size, ended_early)
    if truncation:
        raise ClipReadError(path, f"truncated DICOM: {truncation}")
    if "EncryptedAttributesSequence" in ds and "PixelData" not in ds:
        raise ClipReadError(path, "encrypted DICOM (pixel data is not readable)")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ClipReadError(path, "DICOM without pixel data (not an image)")

    expected_frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        syntax = _transfer_syntax(ds)
        decoder = get_decoder(syntax)
        pixels, decoded = decoder.as_array(ds, as_rgb=False, transfer_syntax_uid=syntax)
    except Exception as exc:
        raise ClipReadError(path, f"pixel data cannot be decoded ({_short(exc)})") from exc

    frames = _frames_layout(pixels, ds, expected_frames, path)
    photometric = str(decoded.get("photometric_interpretation", "")).upper()
    if photometric.startswith("YBR"):
        frames = _ybr_to_rgb(frames, photometric)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        frames = apply_color_lut(frames, ds)
    frames = to_uint8(frames)
    if photometric == "MONOCHROME1":  # 0 means white: flip to the usual convention
        frames = 255 - frames

    height, width = frames.shape[1:3]
    region, spacing = _ultrasound_region(ds, height, width)
    if spacing is None:
        spacing = _pixel_spacing(ds)
    meta = {
        out_key: str(ds.get(tag)).strip()
        for tag, out_key in ALLOWED_META.items()
        if ds.get(tag) not in (None, "")
    }
    return Clip(
        frames=np.ascontiguousarray(frames),
        fps=frame_rate(ds),
        pixel_spacing=spacing,
        source_kind="dicom",
        is_still=expected_frames == 1,
        region=region,
        meta=meta,
        path=str(path),
    )


@contextlib.contextmanager
def _pydicom_quiet():
    """Record pydicom's warnings instead of printing them, and mute its logger: they name
    the file by its full path (archive paths carry patient names), and this reader says
    what is wrong in its own words."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        logger.setLevel(level)


def _transfer_syntax(ds):
    """The file meta's transfer syntax; a data set stored without file meta is native,
    in the encoding it was read with."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if syntax:
        return syntax
    implicit, _ = getattr(ds, "original_encoding", (True, True))
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _has_dicom_header(ds) -> bool:
    """A data set read without the preamble is DICOM only if it holds what every image
    has (a SOP class or image rows); forced reading of any other file yields noise."""
    return any(k in ds for k in ("SOPClassUID", "Rows", "StudyInstanceUID"))


def _truncation(path: Path, ds, size: int, ended_early: bool) -> Optional[str]:
    """Where a cut file ends, or None when it is complete. ``ended_early``: pydicom met the
    end of the file inside an element of undefined length (encapsulated pixel data)."""
    element = ds.get_item(_PIXEL_DATA) if _PIXEL_DATA in ds else None
    if element is not None:
        length, value = getattr(element, "length", None), getattr(element, "value", None)
        if isinstance(value, (bytes, bytearray)) and length not in (None, _UNDEFINED_LENGTH) and len(value) < length:
            return f"pixel data ends after {len(value):,} of {length:,} bytes"
        return None
    if ended_early:
        fragments = _encapsulated_extent(path, size)
        if fragments is not None:
            present, complete, frames = fragments
            # Multi-frame JPEG stores one fragment per frame, so complete fragments ~ frames.
            return (f"pixel data ends after {present:,} bytes "
                    f"({min(complete, frames)} of {frames} frame{'s' if frames != 1 else ''} complete)")
    if ended_early or _header_cut(ds, size):
        return f"file ends after {size:,} bytes, inside the header (before the pixel data)"
    return None


def _header_cut(ds, size: int) -> bool:
    """The file ends inside the header: nothing after the file meta, an element shorter
    than its declared length, or a few trailing bytes (half a tag) after the last one."""
    from pydicom.dataelem import RawDataElement

    if len(ds) == 0:
        return True

    def short(dataset) -> bool:
        for elem in dataset._dict.values():
            if isinstance(elem, RawDataElement):
                if (elem.value is not None and elem.length != _UNDEFINED_LENGTH
                        and len(elem.value) < elem.length):
                    return True
            elif elem.VR == "SQ" and any(short(item) for item in elem.value):
                return True
        return False

    if short(ds):
        return True
    last = ds._dict[max(ds._dict)]
    if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH and last.value_tell:
        return 0 < size - (last.value_tell + last.length) < 8
    return False


def _encapsulated_extent(path: Path, size: int) -> Optional[tuple[int, int, int]]:
    """(bytes of pixel data present, complete fragments after the offset table, frames the
    header declares) of a file whose encapsulated pixel data is cut; None when the pixel
    data element is not found. (pydicom returns an empty data set for such a file, so the
    header is read again up to the pixel data.)"""
    import struct

    try:
        with open(path, "rb") as fh:
            with _pydicom_quiet():
                header_ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            frames = int(header_ds.get("NumberOfFrames", 1) or 1)
            start = fh.tell()  # pydicom leaves the file at the pixel data element
            header = fh.read(12)
            if len(header) < 12 or struct.unpack("<I", header[:4])[0] != ((_PIXEL_DATA & 0xFFFF) << 16 | _PIXEL_DATA >> 16):
                return None
            complete, first = 0, True
            while True:
                item = fh.read(8)
                if len(item) < 8:
                    break
                group, elem, length = struct.unpack("<HHI", item)
                if (group << 16 | elem) != _ITEM:
                    break
                if fh.tell() + length > size:
                    break
                fh.seek(length, 1)
                complete += 0 if first else 1  # the first item is the basic offset table
                first = False
            return size - start - 12, complete, frames
    except (OSError, ValueError, struct.error, InvalidDicomError):
        return None


def frame_rate(ds: pydicom.Dataset) -> Optional[float]:
    """Frames per second from FrameTime, FrameTimeVector, CineRate or
    RecommendedDisplayFrameRate, in that order of trust (None when none is usable)."""
    frame_time_ms = _positive_float(ds.get("FrameTime"))
    if frame_time_ms:
        return round(1000.0 / frame_time_ms, 3)
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        # The first entry is 0 by definition (time of frame 1 relative to itself).
        times = [float(v) for v in list(vector)[1:] if float(v) > 0]
        if times:
            return round(1000.0 / float(np.mean(times)), 3)
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive_float(ds.get(keyword))
        if rate:
            return round(rate, 3)
    return None


def _frames_layout(pixels: np.ndarray, ds, expected_frames: int, path: Path) -> np.ndarray:
    """pydicom's array -> ``[T, H, W]`` or ``[T, H, W, 3]``; checks the frame count."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples not in (1, 3):
        raise ClipReadError(path, f"unsupported SamplesPerPixel={samples}")
    single_frame_ndim = 2 if samples == 1 else 3
    if pixels.ndim == single_frame_ndim:
        pixels = pixels[None]
    if pixels.ndim != single_frame_ndim + 1:
        raise ClipReadError(path, f"unexpected pixel array shape {pixels.shape}")
    if pixels.shape[0] != expected_frames:
        raise ClipReadError(
            path, f"truncated DICOM: pixel data holds {pixels.shape[0]} of {expected_frames} frames"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise ClipReadError(path, "empty image")
    return pixels


def _ybr_to_rgb(frames: np.ndarray, photometric: str) -> np.ndarray:
    """YBR -> RGB. Full-range YCbCr (what JPEG baseline stores) goes through OpenCV, whose
    JFIF formulas match DICOM's YBR_FULL and run ~5x faster than the NumPy path; the
    other YBR flavours use pydicom's conversion."""
    if photometric in ("YBR_FULL", "YBR_FULL_422") and frames.dtype == np.uint8:
        import cv2

        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            # OpenCV orders the chroma planes Cr, Cb; DICOM orders them Cb, Cr.
            cv2.cvtColor(frame[..., [0, 2, 1]], cv2.COLOR_YCrCb2RGB, dst=out[i])
        return out
    return convert_color_space(frames, photometric, "RGB")


def _ultrasound_region(ds, height: int, width: int):
    """Largest 2D region of SequenceOfUltrasoundRegions that fits the image.

    Returns ``((y0, x0, y1, x1), (row_mm, col_mm))`` with exclusive ends, or
    ``(None, None)``. A region that does not fit the pixels (e.g. a header copied onto a
    downsampled image) is ignored, and so is its spacing: it describes other pixels.
    """
    best, best_area = (None, None), 0
    for item in ds.get("SequenceOfUltrasoundRegions", []) or []:
        if int(item.get("RegionSpatialFormat", _SPATIAL_2D)) != _SPATIAL_2D:
            continue
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1
        except AttributeError:
            continue
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            continue
        area = (x1 - x0) * (y1 - y0)
        if area <= best_area:
            continue
        spacing = None
        units = (item.get("PhysicalUnitsXDirection"), item.get("PhysicalUnitsYDirection"))
        dx, dy = _positive_float(item.get("PhysicalDeltaX")), _positive_float(item.get("PhysicalDeltaY"))
        if units == (_UNITS_CM, _UNITS_CM) and dx and dy:
            spacing = (round(dy * 10.0, 6), round(dx * 10.0, 6))
        best, best_area = ((y0, x0, y1, x1), spacing), area
    return best


def _pixel_spacing(ds) -> Optional[tuple[float, float]]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            row, col = _positive_float(value[0]), _positive_float(value[1])
            if row and col:
                return (row, col)
    return None


def _positive_float(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
