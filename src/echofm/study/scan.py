"""Finding the cines of a study export: SRC (a folder, nested folders, a DICOMDIR, a ZIP
or one file) -> DICOM instances grouped by StudyInstanceUID and SeriesInstanceUID.

Only headers are read here. Multi-frame ultrasound instances are kept as clips; single
frames, other modalities, non-DICOM files and unreadable headers are listed with the
reason and the scan goes on. ZIP archives are extracted safely (no absolute or parent
paths, no links, a size and a compression-ratio limit).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from echofm.errors import EchoFMError

ZIP_MAX_BYTES = 16 * 2**30  # uncompressed total
ZIP_MAX_MEMBERS = 100_000
ZIP_MAX_RATIO = 200  # uncompressed / compressed: beyond it a member is a zip bomb
ECHO_MODALITIES = ("US",)


@dataclass
class Instance:
    """One DICOM cine: where it is and the identifiers that group it (never shown)."""

    path: Path
    relative: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    frames: int
    series_number: Optional[int] = None


@dataclass
class Listed:
    """A file that is not analysed: ``kind`` is not_dicom, not_echo, single_frame, duplicate
    or unreadable."""

    path: Path
    relative: str
    kind: str
    reason: str


@dataclass
class Inventory:
    """What a scan found: studies (study UID -> series UID -> instances) and the rest."""

    root: Path = Path(".")
    studies: dict[str, dict[str, list[Instance]]] = field(default_factory=dict)
    listed: list[Listed] = field(default_factory=list)

    @property
    def instances(self) -> list[Instance]:
        return [i for series in self.studies.values() for insts in series.values() for i in insts]


def study_id(study_uid: str) -> str:
    return hashlib.blake2b(study_uid.encode(), digest_size=6).hexdigest()


def extract_zip(archive: Path, dest: Path, max_bytes: int = ZIP_MAX_BYTES, max_members: int = ZIP_MAX_MEMBERS) -> Path:
    """Extract ``archive`` into ``dest`` refusing unsafe members (and more than
    ``max_members`` members or ``max_bytes`` uncompressed); returns ``dest``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise EchoFMError(f"{archive}: not a readable ZIP archive ({exc})") from exc
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise EchoFMError(f"{archive}: {len(members)} members, more than the limit of {max_members}")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise EchoFMError(f"{archive}: {total} bytes uncompressed, more than the limit of {max_bytes}")
        for m in members:
            name = PurePosixPath(m.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (m.filename[1:2] == ":"):
                raise EchoFMError(f"{archive}: member {m.filename!r} points outside the archive; refusing it")
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                raise EchoFMError(f"{archive}: member {m.filename!r} is a symbolic link; refusing it")
            if m.compress_size and m.file_size / m.compress_size > ZIP_MAX_RATIO and m.file_size > 2**20:
                raise EchoFMError(f"{archive}: member {m.filename!r} expands {m.file_size // m.compress_size}x "
                                  f"(limit {ZIP_MAX_RATIO}x); refusing a possible zip bomb")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for m in members:
            target = (dest / m.filename).resolve()
            if root != target and root not in target.parents:
                raise EchoFMError(f"{archive}: member {m.filename!r} points outside the archive; refusing it")
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as dst:
                written = 0
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > m.file_size:  # a header that lies about the size
                        raise EchoFMError(f"{archive}: member {m.filename!r} is larger than its header says")
                    dst.write(chunk)
    return dest


def _dicomdir_files(path: Path) -> list[Path]:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise EchoFMError(f"{path}: unreadable DICOMDIR ({exc})") from exc
    files = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            files.append(path.parent.joinpath(*parts))
    return files


def source_files(src: Path, extract_to: Path) -> tuple[Path, list[Path]]:
    """(root the relative names start from, the files to look at) for SRC."""
    if not src.exists():
        raise EchoFMError(f"{src}: no such file or folder")
    if src.is_file() and zipfile.is_zipfile(src):
        digest = hashlib.blake2b(str(src.resolve()).encode(), digest_size=6).hexdigest()
        root = extract_zip(src, extract_to / digest)
        return root, sorted(p for p in root.rglob("*") if p.is_file())
    if src.is_file() and src.name.upper() == "DICOMDIR":
        return src.parent, _dicomdir_files(src)
    if src.is_file():
        return src.parent, [src]
    files = []
    for p in sorted(src.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts):
            files.append(p)
    dicomdirs = [p for p in files if p.name.upper() == "DICOMDIR"]
    return src, [p for p in files if p not in dicomdirs]


def classify(path: Path, relative: str) -> Instance | Listed:
    """Read one file's header: a cine Instance, or why it is not one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from echofm.io.dicom import has_dicom_magic

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=has_dicom_magic(path))
    except (InvalidDicomError, EOFError) as exc:
        if has_dicom_magic(path):
            return Listed(path, relative, "unreadable", f"damaged DICOM header ({type(exc).__name__})")
        return Listed(path, relative, "not_dicom", "not a DICOM file")
    except Exception as exc:  # damaged headers raise many types
        return Listed(path, relative, "unreadable", f"damaged DICOM header ({type(exc).__name__}: {str(exc)[:120]})")
    if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
        kind = "unreadable" if has_dicom_magic(path) else "not_dicom"
        return Listed(path, relative, kind, "no SOP or Study Instance UID in the header")
    modality = str(ds.get("Modality", "")).upper()
    if modality not in ECHO_MODALITIES:
        return Listed(path, relative, "not_echo", f"modality {modality or 'unknown'}: not an echo (US) instance")
    if "PixelData" not in ds and "FloatPixelData" not in ds and not _pixel_data_follows(path, ds):
        return Listed(path, relative, "not_echo", f"{ds.get('SOPClassUID', 'no SOP class')}: holds no image")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames < 2:
        return Listed(path, relative, "single_frame", "a single frame, not a cine")
    series_number = ds.get("SeriesNumber")
    return Instance(path=path, relative=relative, study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.get("SeriesInstanceUID", "")), sop_uid=str(ds.SOPInstanceUID),
                    sop_class_uid=str(ds.get("SOPClassUID", "")), frames=frames,
                    series_number=int(series_number) if series_number not in (None, "") else None)


def _pixel_data_follows(path: Path, ds) -> bool:
    # stop_before_pixels drops the pixel element; image attributes tell that it followed.
    return "Rows" in ds and "Columns" in ds


def scan(src: str | Path, extract_to: str | Path) -> Inventory:
    """Every file under SRC classified and the cines grouped by study and series."""
    src = Path(src)
    root, files = source_files(src, Path(extract_to))
    inventory = Inventory(root=root)
    seen: set[str] = set()
    for path in files:
        relative = path.relative_to(root).as_posix() if root in path.parents or path.parent == root else path.name
        if not path.is_file():
            inventory.listed.append(Listed(path, relative, "unreadable", "listed in the DICOMDIR but missing"))
            continue
        found = classify(path, relative)
        if isinstance(found, Listed):
            inventory.listed.append(found)
            continue
        if found.sop_uid in seen:
            inventory.listed.append(Listed(path, relative, "duplicate", "the same SOP Instance UID as another file"))
            continue
        seen.add(found.sop_uid)
        inventory.studies.setdefault(found.study_uid, {}).setdefault(found.series_uid, []).append(found)
    return inventory
