import shutil

import numpy as np
import pydicom
import pytest

from echofm.errors import ClipReadError
from echofm.io import read_clip
from echofm.io.dicom import frame_rate


def test_ybr_jpeg_cine_is_rgb_at_30_fps(ybr_cine):
    clip = read_clip(ybr_cine)
    assert clip.frames.shape == (30, 240, 320, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(30.0, abs=0.01)  # FrameTime 33.333 ms
    assert not clip.is_still and clip.source_kind == "dicom"
    # YBR->RGB done right: the gray echo image has R ~ G ~ B (a YBR array would not).
    centre = clip.frames[:, 100:140, 140:180].reshape(-1, 3).astype(float)
    assert np.abs(centre.mean(0) - centre.mean()).max() < 3
    # The header's region describes a 640x480 original, not these pixels: ignored.
    assert clip.region is None and clip.pixel_spacing is None


def test_region_and_spacing_from_ultrasound_regions(color3d_cine):
    clip = read_clip(color3d_cine)
    assert clip.frames.shape == (120, 480, 640, 3)
    assert clip.region == (31, 84, 415, 596)
    assert clip.pixel_spacing == pytest.approx((0.5105, 0.5105), abs=1e-3)  # 0.05105 cm
    assert clip.meta == {"manufacturer_model": "Turbo"}


def test_lossless_still_is_flagged(lossless_still):
    clip = read_clip(lossless_still)
    assert clip.is_still and clip.frames.shape == (1, 768, 1024)
    assert clip.fps is None


def test_deid_cine_fps_prefers_frame_time(deid_cine):
    clip = read_clip(deid_cine)
    assert clip.frames.shape == (30, 600, 800, 3)
    assert clip.fps == pytest.approx(1000 / 54.241, abs=0.01)  # FrameTime, not CineRate 18


@pytest.mark.parametrize("name", ["US1_J2KR.dcm", "US1_J2KI.dcm", "SC_rgb_rle_2frame.dcm", "US1_UNCR.dcm"])
def test_other_codecs_decode(name):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    clip = read_clip(path)
    assert clip.frames.dtype == np.uint8 and clip.frames.ndim in (3, 4)
    assert clip.frames.max() > 0


def test_frame_rate_sources_in_order():
    ds = pydicom.Dataset()
    ds.RecommendedDisplayFrameRate = 25
    assert frame_rate(ds) == 25
    ds.CineRate = 50
    assert frame_rate(ds) == 50
    ds.FrameTimeVector = [0, 20, 20, 20]
    assert frame_rate(ds) == 50
    ds.FrameTime = 33.333
    assert frame_rate(ds) == pytest.approx(30, abs=0.01)


def test_extensionless_dicom_found_by_magic(deid_cine, tmp_path):
    target = tmp_path / "IM0001"
    shutil.copy(deid_cine, target)
    assert read_clip(target).frames.shape[0] == 30


def test_broken_files_raise_with_path_and_reason(color3d_cine, tmp_path):
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(color3d_cine.read_bytes()[:100_000])
    random = tmp_path / "noise.dcm"
    random.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    no_pixels = tmp_path / "report.dcm"
    ds = pydicom.dcmread(color3d_cine, stop_before_pixels=True)
    ds.save_as(no_pixels)
    for path, reason in [(truncated, "truncated"), (random, "not a DICOM file"),
                         (empty, "empty"), (no_pixels, "without pixel data")]:
        with pytest.raises(ClipReadError) as info:
            read_clip(path)
        assert str(path) in str(info.value) and reason in info.value.reason


def test_encrypted_dicom_is_refused(color3d_cine, tmp_path):
    ds = pydicom.dcmread(color3d_cine, stop_before_pixels=True)
    item = pydicom.Dataset()
    item.EncryptedContentTransferSyntaxUID = "1.2.840.10008.1.2.1"
    item.EncryptedContent = b"\x00" * 16
    ds.EncryptedAttributesSequence = [item]
    path = tmp_path / "secret.dcm"
    ds.save_as(path)
    with pytest.raises(ClipReadError, match="encrypted"):
        read_clip(path)


def test_truncated_dicom_says_where_it_ends(ybr_cine, tmp_path):
    data = ybr_cine.read_bytes()
    header_cut, pixel_cut = tmp_path / "head.dcm", tmp_path / "seventy.dcm"
    header_cut.write_bytes(data[:5000])
    pixel_cut.write_bytes(data[:int(len(data) * 0.7)])
    with pytest.raises(ClipReadError) as info:
        read_clip(header_cut)
    assert str(info.value) == (f"{header_cut}: truncated DICOM: file ends after 5,000 bytes, "
                               "inside the header (before the pixel data)")
    with pytest.raises(ClipReadError) as info:
        read_clip(pixel_cut)
    # 30 JPEG frames, one fragment each: the cut falls after 19 complete ones.
    pixel_start = data.index(b"\xe0\x7f\x10\x00OB") + 12
    assert info.value.reason == (f"truncated DICOM: pixel data ends after {int(len(data) * 0.7) - pixel_start:,} "
                                 "bytes (19 of 30 frames complete)")


def test_uncompressed_cut_counts_bytes(tmp_path):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("US1_UNCR.dcm")
    if path is None:
        pytest.skip("US1_UNCR.dcm not installed")
    cut = tmp_path / "cut.dcm"
    data = open(path, "rb").read()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ClipReadError) as info:
        read_clip(cut)
    # 640 x 480 RGB = 921,600 bytes of pixel data declared; the half file holds what follows its tag.
    present = len(data) // 2 - (data.index(b"\xe0\x7f\x10\x00O") + 12)
    assert info.value.reason == f"truncated DICOM: pixel data ends after {present:,} of 921,600 bytes"


def test_text_file_named_dcm_is_not_dicom(tmp_path):
    text = tmp_path / "y.dcm"
    text.write_text("patient list\nnot an image\n")
    with pytest.raises(ClipReadError) as info:
        read_clip(text)
    assert str(info.value) == f"{text}: not a DICOM file (no DICM preamble and no readable DICOM header)"
    assert "force" not in str(info.value)


def test_dicom_without_preamble_is_still_read(tmp_path):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("US1_UNCR.dcm")
    if path is None:
        pytest.skip("US1_UNCR.dcm not installed")
    raw = tmp_path / "raw.dcm"
    ds = pydicom.dcmread(path)
    expected = read_clip(path).frames
    del ds.file_meta
    ds.preamble = None
    ds.save_as(raw, implicit_vr=True, little_endian=True, enforce_file_format=False)  # the data set alone
    assert raw.read_bytes()[128:132] != b"DICM"
    assert np.array_equal(read_clip(raw).frames, expected)
