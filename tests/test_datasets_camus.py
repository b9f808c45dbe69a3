"""CAMUS reader on both releases (NIfTI with half sequences; older MetaImage), written here."""

from __future__ import annotations

import numpy as np
import pytest

from echofm.datasets import DatasetError, read_dataset
from echofm.datasets.camus import read_camus, read_metaimage

H, W, T = 24, 20, 5


def labels(t: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[4:12, 6:14] = 2
    m[6:10 - (t % 2), 8:12] = 1
    m[14:20, 7:13] = 3
    return m


def images(n: int) -> np.ndarray:
    return (np.arange(n * H * W).reshape(n, H, W) % 251).astype(np.uint8)


def write_nifti_patient(root, name, split_dir=True):
    import nibabel as nib

    pdir = root / "database_nifti" / name
    pdir.mkdir(parents=True)
    save = lambda arr, suffix, tag: nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.T), np.eye(4)),
                                              pdir / f"{name}_{tag}_{suffix}.nii.gz")
    for tag in ("2CH", "4CH"):
        seq = images(T)
        gt = np.stack([labels(t) for t in range(T)])
        save(seq, "half_sequence", tag)
        save(gt, "half_sequence_gt", tag)
        save(seq[0], "ED", tag)
        save(gt[0], "ED_gt", tag)
        save(seq[-1], "ES", tag)
        save(gt[-1], "ES_gt", tag)
        (pdir / f"Info_{tag}.cfg").write_text(f"ED: 1\nES: {T}\nNbFrame: {T}\nImageQuality: Good\nEF: 57.5\n")


def write_mhd(path, arr: np.ndarray, compressed: bool = False) -> None:
    """A MetaImage header + raw data file, as the older CAMUS release has them."""
    import zlib

    data = np.ascontiguousarray(arr).tobytes()
    if compressed:
        data = zlib.compress(data)
    raw = path.with_suffix(".raw" if not compressed else ".zraw")
    raw.write_bytes(data)
    dims = " ".join(str(d) for d in arr.shape[::-1])
    path.write_text(f"ObjectType = Image\nNDims = {arr.ndim}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                    f"CompressedData = {compressed}\nDimSize = {dims}\nElementType = MET_UCHAR\n"
                    f"ElementDataFile = {raw.name}\n")


def test_nifti_release_dense_half_sequences_and_splits(tmp_path):
    for name in ("patient0001", "patient0002"):
        write_nifti_patient(tmp_path, name)
    (tmp_path / "database_split").mkdir()
    (tmp_path / "database_split" / "subgroup_training.txt").write_text("patient0001\n")
    (tmp_path / "database_split" / "subgroup_testing.txt").write_text("patient0002\n")
    index = read_dataset("camus", tmp_path, task="segment")
    assert len(index.samples) == 4
    s = {x.id: x for x in index.samples}["patient0001_4CH"]
    assert s.split == "train" and s.group == "patient0001" and s.targets == {
        "view": "A4C", "ef": 57.5, "image_quality": "Good"}
    assert (s.meta["ed_frame"], s.meta["es_frame"]) == (0, T - 1)
    frames, _ = s.load_frames()
    assert frames.shape == (T, H, W) and np.array_equal(frames, images(T))  # [W, H, T] on disk -> [T, H, W]
    masks = s.load_masks(H, W)
    assert sorted(masks) == list(range(T)) and np.array_equal(masks[1], labels(1))
    assert {x.split for x in index.samples if x.group == "patient0002"} == {"test"}


def test_metaimage_release_places_ed_es_labels_from_info(tmp_path):
    pdir = tmp_path / "training" / "patient0007"
    pdir.mkdir(parents=True)
    seq = images(8)
    write_mhd(pdir / "patient0007_2CH_sequence.mhd", seq)
    write_mhd(pdir / "patient0007_2CH_ED_gt.mhd", labels(0), compressed=True)
    write_mhd(pdir / "patient0007_2CH_ES_gt.mhd", labels(1))
    (pdir / "Info_2CH.cfg").write_text("ED: 2\nES: 6\nNbFrame: 8\nLVef: 48.0\n")
    assert np.array_equal(read_metaimage(pdir / "patient0007_2CH_sequence.mhd"), seq)
    index = read_camus(tmp_path, require_masks=True)
    (s,) = index.samples
    assert s.targets["ef"] == 48.0 and (s.meta["ed_frame"], s.meta["es_frame"]) == (1, 5)
    masks = s.load_masks(H, W)
    assert sorted(masks) == [1, 5] and np.array_equal(masks[5], labels(1))


def test_camus_edge_cases(tmp_path):
    with pytest.raises(DatasetError, match="no patientXXXX folders"):
        read_camus(tmp_path)
    pdir = tmp_path / "testing" / "patient0003"
    pdir.mkdir(parents=True)
    write_mhd(pdir / "patient0003_4CH_sequence.mhd", images(4))  # no Info: labels cannot be placed
    write_mhd(pdir / "patient0003_2CH_ED.mhd", images(1)[0])
    write_mhd(pdir / "patient0003_2CH_ES.mhd", images(1)[0])  # no _gt: fine for EF/view, not for segmentation
    index = read_camus(tmp_path)
    assert [s.id for s in index.samples] == ["patient0003_2CH"] and index.samples[0].split == "test"
    assert index.skipped[0][0] == "patient0003_4CH" and "needs ED and ES" in index.skipped[0][1]
    with pytest.raises(DatasetError, match="no usable camus items"):
        read_camus(tmp_path, require_masks=True)
    (pdir / "patient0003_2CH_ED.mhd").write_text("ObjectType = Image\nNDims = 2\n")
    with pytest.raises(DatasetError, match="patient0003_2CH_ED.mhd: MetaImage header lacks"):
        read_camus(tmp_path).samples[0].load_frames()
