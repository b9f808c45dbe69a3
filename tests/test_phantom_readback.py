"""Phantom CAMUS and DICOM outputs read back through ``echofm.read_clip`` (runs once it exists)."""

import json

import numpy as np
import pytest

import echofm
from echofm.phantom import PhantomConfig, write_dataset

pytestmark = pytest.mark.skipif(not hasattr(echofm, "read_clip"), reason="echofm.read_clip not available yet")


def test_dicom_reads_back(tmp_path):
    write_dataset(tmp_path, "dicom", 1, seed=6, config=PhantomConfig(size=128, num_frames=10, fps=25.0))
    truth = json.loads(open(tmp_path / "phantom_truth.jsonl").readline())
    clip = echofm.read_clip(tmp_path / "IMG00001.dcm")
    assert clip.num_frames == 10 and not clip.is_still
    assert abs(clip.fps - 25.0) < 1e-3
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1] > 128 and clip.frames.shape[2] > 128
    y0, x0, y1, x1 = truth["region_yxyx"]
    ry0, rx0, ry1, rx1 = clip.region
    assert (ry0, rx0) == (y0, x0) and abs(ry1 - y1) <= 1 and abs(rx1 - x1) <= 1
    assert np.allclose(clip.pixel_spacing, truth["pixel_spacing_mm"], rtol=1e-4)


def test_camus_reads_back(tmp_path):
    write_dataset(tmp_path, "camus", 1, seed=6, config=PhantomConfig(size=128, views=("A2C", "A4C")))
    pdir = tmp_path / "database_nifti" / "patient0001"
    info = dict(line.split(": ", 1) for line in (pdir / "Info_4CH.cfg").read_text().splitlines())
    clip = echofm.read_clip(pdir / "patient0001_4CH_half_sequence.nii.gz")
    assert clip.num_frames == int(info["NbFrame"]) and clip.frames.shape[1:] == (128, 128)
    assert clip.frames.dtype == np.uint8
    still = echofm.read_clip(pdir / "patient0001_4CH_ED.nii.gz")
    assert still.is_still and np.array_equal(still.frames[0], clip.frames[0])
    assert clip.pixel_spacing is not None and abs(clip.pixel_spacing[0] - clip.pixel_spacing[1]) < 1e-6
