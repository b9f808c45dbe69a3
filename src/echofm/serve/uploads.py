"""Taking an upload in safely: streamed to disk under a size limit, typed by its content,
checked, and laid out as a source folder the study pipeline reads.

``receive`` streams the request body (raw, or the one file of a multipart form) to a
file and stops as soon as it passes the limit, so an over-limit upload is never held
whole. ``sniff`` types it by its first bytes (DICOM's ``DICM`` after the 128-byte
preamble, ZIP's ``PK``, MP4's ``ftyp`` box, AVI's ``RIFF....AVI ``), never by its name.
``prepare_source`` checks it further: a DICOM must be an ultrasound cine; a ZIP is
extracted by the study pipeline's own safe extractor (``study.scan.extract_zip``: no
absolute or parent paths, no links, member count, unpacked size and compression ratio
limited) and must hold at least one ultrasound cine; a video must decode to at least
two frames. Every refusal is an ``UploadError`` with an HTTP status and a message that
names no server path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

KINDS = ("dicom", "zip", "video")
_DRAIN_LIMIT = 64 * 2**20  # read (and drop) at most this much past the limit, so the client sees the 413


class UploadError(Exception):
    """A refused upload: ``status`` (4xx) and a message for the user (no server paths)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _limit_text(limit: int) -> str:
    return f"{limit / 2**20:.1f} MB" if limit >= 2**20 else f"{limit} bytes"


class _FilePart:
    """Collects the one file part of a multipart body into ``fh`` (python-multipart's
    streaming parser: nothing is buffered whole)."""

    def __init__(self, fh, boundary: bytes):
        from python_multipart.multipart import MultipartParser

        self.fh, self.files, self.written = fh, 0, 0
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._in_file = False
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
            "on_header_end": self._hend, "on_headers_finished": self._hdone, "on_part_data": self._data,
            "on_part_end": self._end})

    def _begin(self):
        self._headers, self._in_file = {}, False

    def _hfield(self, data, start, end):
        self._field += data[start:end]

    def _hvalue(self, data, start, end):
        self._value += data[start:end]

    def _hend(self):
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _hdone(self):
        if b"filename=" in self._headers.get(b"content-disposition", b""):
            self.files += 1
            if self.files > 1:
                raise UploadError(400, "one file per upload (put the files of a study in a ZIP)")
            self._in_file = True

    def _data(self, data, start, end):
        if self._in_file:
            self.fh.write(data[start:end])
            self.written += end - start

    def _end(self):
        self._in_file = False


async def receive(request, target: Path, limit: int) -> int:
    """Stream the upload in ``request`` to ``target``; returns its size in bytes. The body
    is the file itself, or a multipart form with one file field."""
    from python_multipart.multipart import parse_options_header

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _DRAIN_LIMIT:
        raise UploadError(413, f"the upload is {int(declared)} bytes, more than the limit of {_limit_text(limit)}")
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    seen = 0
    with open(target, "wb") as fh:
        part = None
        if ctype == b"multipart/form-data":
            if not params.get(b"boundary"):
                raise UploadError(400, "a multipart upload without a boundary")
            part = _FilePart(fh, params[b"boundary"])
        over = False
        async for chunk in request.stream():
            seen += len(chunk)
            if over:
                if seen > limit + _DRAIN_LIMIT:
                    break
                continue
            if part is not None:
                part.parser.write(chunk)
                size = part.written
            else:
                fh.write(chunk)
                size = seen
            if size > limit or seen > limit + 2**20:  # the file, or a form padded with other fields
                over = True  # keep reading (and dropping) a little so the client reads our answer
        if over:
            raise UploadError(413, f"the upload is larger than the limit of {_limit_text(limit)}")
        if part is not None:
            part.parser.finalize()
            if part.files == 0:
                raise UploadError(400, "no file in the form (send it as the field 'file')")
            return part.written
    return seen


def sniff(path: Path) -> Optional[str]:
    """The upload's kind by its content: dicom, zip, video, or None."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    return None


def prepare_source(upload: Path, kind: str, source: Path, max_files: int, max_unpacked: int) -> None:
    """Check the upload of ``kind`` and lay it out in the folder ``source`` (created)."""
    from echofm.study.scan import Instance, classify

    source.mkdir(parents=True, exist_ok=True)
    if kind == "dicom":
        found = classify(upload, "upload")
        if not isinstance(found, Instance):
            raise UploadError(422, f"a DICOM file, but not one to analyse: {found.reason}")
        shutil.move(upload, source / "upload.dcm")
    elif kind == "zip":
        _prepare_zip(upload, source, max_files, max_unpacked)
    elif kind == "video":
        _check_video(upload)
        with open(upload, "rb") as fh:
            suffix = ".avi" if fh.read(4) == b"RIFF" else ".mp4"
        shutil.move(upload, source / f"upload{suffix}")  # the readers go by suffix; the content was checked
    else:
        raise UploadError(415, "not a DICOM file, an MP4 or AVI video, or a ZIP (judged by the content)")


def _prepare_zip(upload: Path, source: Path, max_files: int, max_unpacked: int) -> None:
    from echofm.errors import EchoFMError
    from echofm.study.scan import Instance, classify, extract_zip

    unpacked = source / "zip"
    try:
        extract_zip(upload, unpacked, max_bytes=max_unpacked, max_members=max_files)
    except EchoFMError as exc:
        raise UploadError(422 if "limit" in str(exc) or "bomb" in str(exc) else 400,
                          str(exc).replace(str(upload), "the ZIP")) from None
    upload.unlink()
    files = [p for p in unpacked.rglob("*") if p.is_file()]
    if not any(isinstance(classify(p, p.name), Instance) for p in files):
        raise UploadError(422, f"the ZIP holds no ultrasound cine (multi-frame US DICOM) among its {len(files)} "
                               "file(s)")


def _check_video(path: Path) -> None:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UploadError(422, "the file is an MP4/AVI container without a video stream")
            frames = 0
            for _ in container.decode(video=0):
                frames += 1
                if frames >= 2:
                    return
    except UploadError:
        raise
    except Exception as exc:  # PyAV raises many kinds on damaged files
        raise UploadError(422, f"the video cannot be decoded ({type(exc).__name__})") from None
    raise UploadError(422, "the video holds fewer than two frames: not a cine")
