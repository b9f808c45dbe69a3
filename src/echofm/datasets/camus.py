"""CAMUS in its NIfTI release and in the older MetaImage release.

    <root>/.../patient0001/patient0001_{2CH,4CH}_{ED,ES}[_gt].{nii.gz,mhd}
                          patient0001_{2CH,4CH}_half_sequence[_gt].nii.gz   (NIfTI release)
                          patient0001_{2CH,4CH}_sequence.mhd                (MetaImage release)
                          Info_{2CH,4CH}.cfg   (ED, ES, NbFrame, ImageQuality, EF or LVef ...)
    <root>/database_split/subgroup_{training,validation,testing}.txt   (optional)

Labels: 0 background, 1 LV cavity, 2 LV myocardium, 3 left atrium. One sample per patient
and view. Frames come from the half sequence (ED to ES, every frame labelled when its
``_gt`` exists), else from the full sequence (ED and ES labelled, at the 1-based indices
of ``Info_*.cfg``), else from the ED and ES images alone (a two-frame sequence).
NIfTI arrays are stored [W, H(, T)] and turned to [T, H, W]; MetaImage files are read
by a small reader here (raw or zlib-compressed data), so SimpleITK is not needed.
Splits: the ``database_split`` lists when present, else ``training``/``testing`` folder
names, else train.
"""

from __future__ import annotations

import functools
import re
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from echofm.datasets.base import DatasetError, DatasetIndex, Frames, Sample, SkipLog, finish
from echofm.labels import CAMUS_VIEWS

SPLIT_FILES = {"subgroup_training.txt": "train", "subgroup_validation.txt": "val", "subgroup_testing.txt": "test"}
_MET_TYPES = {"MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
              "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64}


# --- volume files ---------------------------------------------------------------------------

def read_metaimage(path: Path) -> np.ndarray:
    """A MetaImage (.mhd + data file, or .mha) as an array in [slowest .. fastest] = [T, H, W] order."""
    raw = path.read_bytes()
    header: dict[str, str] = {}
    offset = 0
    for line in raw.split(b"\n"):
        offset += len(line) + 1
        text = line.decode("latin-1").strip()
        if "=" not in text:
            continue
        key, value = (p.strip() for p in text.split("=", 1))
        header[key] = value
        if key == "ElementDataFile":
            break
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(_MET_TYPES[header["ElementType"]])
        data_file = header["ElementDataFile"]
    except KeyError as exc:
        raise DatasetError(f"{path}: MetaImage header lacks or has an unknown {exc.args[0]}") from None
    channels = int(header.get("ElementNumberOfChannels", "1"))
    msb = header.get("ElementByteOrderMSB", header.get("BinaryDataByteOrderMSB", "False")).lower() == "true"
    data = raw[offset:] if data_file == "LOCAL" else (path.parent / data_file).read_bytes() \
        if (path.parent / data_file).is_file() else None
    if data is None:
        raise DatasetError(f"{path}: its data file {data_file} is missing")
    if header.get("CompressedData", "False").lower() == "true":
        data = zlib.decompress(data)
    arr = np.frombuffer(data, dtype=dtype.newbyteorder(">" if msb else "<"))
    shape = dims[::-1] + ([channels] if channels > 1 else [])
    if arr.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: data holds {arr.size} values, header says {shape}")
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def read_volume(path: Path) -> np.ndarray:
    """A CAMUS image or label file -> array [H, W] or [T, H, W]."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            arr = np.asarray(nib.load(str(path)).dataobj)
            # NIfTI stores x (columns) first: [W, H(, T)] -> [(T,) H, W].
            return arr.T if arr.ndim in (2, 3) else arr
        return read_metaimage(path)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def _as_uint8_frames(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DatasetError(f"{path}: expected a 2-D image or 3-D sequence, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def load_camus_frames(paths: tuple[Path, ...]) -> Frames:
    """Frames [T, H, W] from one sequence file or several single images (stacked in order)."""
    frames = [_as_uint8_frames(read_volume(p), p) for p in paths]
    return np.concatenate(frames, axis=0), None


def load_camus_masks(labelled: tuple[tuple[int, Path], ...], height: int, width: int) -> dict[int, np.ndarray]:
    """{frame: uint8 [H, W]} from (frame index or -1 for 'every frame of this file', label file)."""
    masks: dict[int, np.ndarray] = {}
    for frame, path in labelled:
        arr = read_volume(path)
        if arr.ndim == 2:
            masks[frame] = arr.astype(np.uint8)
        else:
            masks.update({i: a.astype(np.uint8) for i, a in enumerate(arr)})
    bad = {int(v) for m in masks.values() for v in np.unique(m)} - {0, 1, 2, 3}
    if bad:
        raise DatasetError(f"{labelled[0][1]}: label values {sorted(bad)} outside 0..3")
    return masks


# --- layout ---------------------------------------------------------------------------------

def read_info(path: Path) -> dict[str, str]:
    """``Info_*.cfg`` (``Key: value`` lines) as a dict; missing file -> empty."""
    if not path.is_file():
        return {}
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def _find(folder: Path, base: str) -> Optional[Path]:
    for ext in (".nii.gz", ".nii", ".mhd", ".mha"):
        p = folder / f"{base}{ext}"
        if p.is_file():
            return p
    return None


def _num_frames(path: Path) -> int:
    """Frames in a sequence file (NIfTI: from the header alone)."""
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        shape = nib.load(str(path)).shape
        return int(shape[2]) if len(shape) >= 3 else 1
    arr = read_volume(path)
    return int(arr.shape[0]) if arr.ndim == 3 else 1


def _read_splits(root: Path) -> dict[str, str]:
    found = {}
    for fname, split in SPLIT_FILES.items():
        for path in root.rglob(fname):
            for name in path.read_text().split():
                found[name.strip()] = split
    return found


def _info_int(info: dict[str, str], key: str, where: Path) -> Optional[int]:
    if key not in info:
        return None
    try:
        return int(float(info[key]))
    except ValueError:
        raise DatasetError(f"{where}: {key} {info[key]!r} is not an integer") from None


def read_camus(root: str | Path, require_masks: bool = False, strict: bool = False) -> DatasetIndex:
    """Index CAMUS (either release) under ``root``.

    Targets: ``ef`` (from ``EF`` or ``LVef`` of Info_*.cfg, when present), ``view``
    (``A2C``/``A4C``), ``image_quality``. ``meta['ed_frame']``/``meta['es_frame']`` index
    the loaded frames. require_masks: skip items without ground truth (segmentation).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    patients = sorted({p for p in root.rglob("patient*") if p.is_dir() and re.fullmatch(r"patient\d+", p.name)})
    if not patients:
        raise DatasetError(f"{root}: no patientXXXX folders found (CAMUS layout)")
    split_of = _read_splits(root)
    skips = SkipLog("camus", strict)
    samples: list[Sample] = []
    for pdir in patients:
        name = pdir.name
        if name in split_of:
            split = split_of[name]
        elif "testing" in pdir.parts[len(root.parts):]:
            split = "test"
        else:
            split = "train"
        for tag, view in CAMUS_VIEWS.items():
            base = f"{name}_{tag}"
            info_path = pdir / f"Info_{tag}.cfg"
            info = read_info(info_path)
            half, seq = _find(pdir, f"{base}_half_sequence"), _find(pdir, f"{base}_sequence")
            ed_img, es_img = _find(pdir, f"{base}_ED"), _find(pdir, f"{base}_ES")
            ed_gt, es_gt = _find(pdir, f"{base}_ED_gt"), _find(pdir, f"{base}_ES_gt")
            labelled: list[tuple[int, Path]] = []
            if half is not None:
                frames_from: tuple[Path, ...] = (half,)
                # In the half sequence ED is the first frame and ES the last unless Info says otherwise.
                ed = (_info_int(info, "ED", info_path) or 1) - 1
                es_1based = _info_int(info, "ES", info_path) or _info_int(info, "NbFrame", info_path)
                es = es_1based - 1 if es_1based else _num_frames(half) - 1
                half_gt = _find(pdir, f"{base}_half_sequence_gt")
                if half_gt is not None:
                    labelled.append((-1, half_gt))
                else:
                    labelled += [(ed, p) for p in [ed_gt] if p] + [(es, p) for p in [es_gt] if p]
            elif seq is not None:
                frames_from = (seq,)
                ed, es = _info_int(info, "ED", info_path), _info_int(info, "ES", info_path)
                if ed is None or es is None:
                    skips.skip(base, f"{seq.name} needs ED and ES in {info_path} to place its labels")
                    continue
                ed, es = ed - 1, es - 1
                labelled += [(ed, p) for p in [ed_gt] if p] + [(es, p) for p in [es_gt] if p]
            elif ed_img is not None and es_img is not None:
                frames_from, ed, es = (ed_img, es_img), 0, 1
                labelled += [(0, p) for p in [ed_gt] if p] + [(1, p) for p in [es_gt] if p]
            else:
                if any(pdir.glob(f"{base}_*")):
                    skips.skip(base, "neither a (half) sequence nor both ED and ES images")
                continue
            if require_masks and not labelled:
                skips.skip(base, "no ground-truth (_gt) label files")
                continue
            targets: dict = {"view": view}
            ef_text = info.get("EF", info.get("LVef"))
            if ef_text:
                try:
                    targets["ef"] = float(ef_text)
                except ValueError:
                    raise DatasetError(f"{info_path}: EF {ef_text!r} is not a number") from None
            if info.get("ImageQuality"):
                targets["image_quality"] = info["ImageQuality"]
            sample = Sample(id=base, path=frames_from[0], split=split, targets=targets, group=name,
                            frames_loader=functools.partial(load_camus_frames, frames_from),
                            meta={"ed_frame": ed, "es_frame": es})
            if labelled:
                sample.masks_loader = functools.partial(load_camus_masks, tuple(labelled))
            samples.append(sample)
    return finish("camus", root, samples, skips)
