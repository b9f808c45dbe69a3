"""Helpers of the serve tests: waiting for a study, and the bad uploads every test refuses."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Callable


def wait_status(get: Callable[[], dict], statuses=("done", "failed"), timeout: float = 120.0, what: str = "") -> dict:
    """Poll ``get()`` (a study's JSON) until its status is one of ``statuses``."""
    end = time.monotonic() + timeout
    row = get()
    while row.get("status") not in statuses:
        if time.monotonic() > end:
            raise AssertionError(f"{what or 'study'} still {row.get('status')} after {timeout:.0f} s: {row}")
        time.sleep(0.3)
        row = get()
    return row


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED, symlinks=()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def bad_uploads(dicom_cine: Path, still: Path, max_bytes: int, max_files: int) -> dict[str, tuple[bytes, int, str]]:
    """name -> (body, expected status, a word the message must hold). ``dicom_cine``: a good
    cine (to hide in ZIPs next to the bad member); ``still``: a single-frame US DICOM."""
    import pydicom

    cine = dicom_cine.read_bytes()
    ct = pydicom.dcmread(dicom_cine)
    ct.Modality = "CT"
    buffer = io.BytesIO()
    ct.save_as(buffer)
    return {
        "text file": (b"patient notes, not an image\n" * 50, 415, "content"),
        "empty": (b"", 400, "empty"),
        "over the limit": (b"\0" * (max_bytes + 4096), 413, "limit"),
        "zip with ../x": (zip_bytes({"ok.dcm": cine, "../x": b"escape"}), 400, "outside"),
        "zip with an absolute path": (zip_bytes({"/tmp/abs.dcm": cine}), 400, "outside"),
        "zip with a link": (zip_bytes({"ok.dcm": cine}, symlinks=["link"]), 400, "link"),
        "zip bomb": (zip_bytes({"ok.dcm": cine, "bomb.bin": b"\0" * (8 * 2**20)}, zipfile.ZIP_DEFLATED), 422, "bomb"),
        "zip with too many files": (zip_bytes({f"f{i}.txt": b"x" for i in range(max_files + 1)}), 422, "limit"),
        "zip without a cine": (zip_bytes({"a.txt": b"hello", "b.txt": b"world"}), 422, "no ultrasound cine"),
        "broken zip": (b"PK\x03\x04" + b"\x01" * 300, 400, "ZIP"),
        "single-frame DICOM": (still.read_bytes(), 422, "single frame"),
        "CT DICOM": (buffer.getvalue(), 422, "modality CT"),
        "MP4 that does not decode": (b"\0\0\0\x20ftypisom" + b"\x07" * 2000, 422, "video"),
        "truncated AVI": (b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x00" * 100, 422, "video"),
    }
