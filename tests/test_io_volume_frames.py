import zlib

import cv2
import nibabel as nib
import numpy as np
import pytest

from echofm.errors import ClipReadError
from echofm.io import read_clip


@pytest.fixture()
def sequence():
    """uint8 [T=5, H=40, W=60] with a distinct value per frame and a row/column ramp."""
    t, h, w = np.meshgrid(np.arange(5), np.arange(40), np.arange(60), indexing="ij")
    return (t * 40 + h + w // 2).astype(np.uint8)


def test_nifti_round_trip(sequence, tmp_path):
    # NIfTI stores [x, y, t]; zooms 0.3 mm x, 0.2 mm y, 40 ms per frame.
    image = nib.Nifti1Image(np.transpose(sequence, (2, 1, 0)), np.eye(4))
    image.header.set_zooms((0.3, 0.2, 0.04))
    image.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "patient0001_4CH_half_sequence.nii.gz"
    nib.save(image, path)
    clip = read_clip(path)
    np.testing.assert_array_equal(clip.frames, sequence)
    assert clip.pixel_spacing == pytest.approx((0.2, 0.3))
    assert clip.fps == pytest.approx(25.0)
    assert clip.source_kind == "nifti"


@pytest.mark.parametrize("compressed", [False, True])
def test_metaimage_round_trip(sequence, tmp_path, compressed):
    raw = sequence.astype("<u2").tobytes()  # 16-bit values 0..255 -> cast, not stretched
    raw = zlib.compress(raw) if compressed else raw
    (tmp_path / "seq.raw").write_bytes(raw)
    (tmp_path / "seq.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"CompressedData = {compressed}\nElementSpacing = 0.3 0.2 1\nDimSize = 60 40 5\n"
        "ElementType = MET_USHORT\nElementDataFile = seq.raw\n"
    )
    clip = read_clip(tmp_path / "seq.mhd")
    np.testing.assert_array_equal(clip.frames, sequence)
    assert clip.pixel_spacing == pytest.approx((0.2, 0.3)) and clip.source_kind == "mhd"


def test_metaimage_missing_data_file(tmp_path):
    (tmp_path / "a.mhd").write_text("NDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\nElementDataFile = gone.raw\n")
    with pytest.raises(ClipReadError, match="not found"):
        read_clip(tmp_path / "a.mhd")


def test_npy_and_npz(sequence, tmp_path):
    np.save(tmp_path / "a.npy", sequence)
    np.testing.assert_array_equal(read_clip(tmp_path / "a.npy").frames, sequence)
    np.savez(tmp_path / "b.npz", frames=sequence.astype(np.float32) / 255.0, fps=np.float32(50))
    clip = read_clip(tmp_path / "b.npz")
    np.testing.assert_array_equal(clip.frames, sequence)
    assert clip.fps == 50
    np.save(tmp_path / "c.npy", np.array(["a", "b"]))
    with pytest.raises(ClipReadError, match="not pixel data|not a readable"):
        read_clip(tmp_path / "c.npy")


def test_png_folder_in_natural_order(sequence, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(sequence):
        cv2.imwrite(str(folder / f"frame{i * 5}.png"), frame)  # frame0, frame5, frame10, ...
    clip = read_clip(folder)
    np.testing.assert_array_equal(clip.frames, sequence)
    assert clip.source_kind == "frames"


def test_unknown_type_and_missing_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ClipReadError, match="unknown file type"):
        read_clip(tmp_path / "notes.txt")
    with pytest.raises(ClipReadError, match="no such"):
        read_clip(tmp_path / "absent.dcm")
