"""Shared test helpers: reference fixtures, real echo test data, small periodic clips."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECHOFM_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official_echofm"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not (OFFICIAL / "tiny_reference.npz").exists():
        pytest.skip(f"reference fixtures not found at {OFFICIAL} (set ECHOFM_SHARED)")
    return OFFICIAL


def periodic_clips(n: int, frames: int, size: int, periods, seed: int = 0) -> torch.Tensor:
    """[n, 3, frames, size, size] in [0, 1]: a bright disc whose radius beats with a period."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    clips = torch.zeros(n, 3, frames, size, size)
    for i in range(n):
        period = periods[i % len(periods)]
        cy, cx = size / 2 + torch.rand(2, generator=g) * 4
        for f in range(frames):
            r = size * (0.2 + 0.1 * math.cos(2 * math.pi * f / period))
            disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()
            clips[i, :, f] = 0.2 + 0.6 * disc
    return (clips + 0.05 * torch.rand(clips.shape, generator=g)).clamp(0, 1)



def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return Path(path)


@pytest.fixture(scope="session")
def ybr_cine() -> Path:
    """US, JPEG baseline YBR_FULL_422, 30 frames 240x320, FrameTime 33.333 ms."""
    return _testdata("examples_ybr_color.dcm")


@pytest.fixture(scope="session")
def color3d_cine() -> Path:
    """US, JPEG baseline, 120 frames 480x640, burned-in text, ultrasound region in header."""
    return _testdata("color3d_jpeg_baseline.dcm")


@pytest.fixture(scope="session")
def lossless_still() -> Path:
    """US still (one frame), JPEG lossless, with text and an ECG trace burned in."""
    return _testdata("JPGLosslessP14SV1_1s_1f_8b.dcm")


@pytest.fixture(scope="session")
def deid_cine() -> Path:
    """deid-data's colour-Doppler cine (uncompressed RGB, 30 frames, ECG trace, text)."""
    deid_data = pytest.importorskip("deid_data")
    path = Path(deid_data.__path__[0]) / "data" / "ultrasounds" / "ultrasound-multiframe.dcm"
    if not path.is_file():
        pytest.skip("deid-data ultrasound cine missing")
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A complete phantom bundle with tiny settings (trains in well under a minute); shared
    by the study and serve tests."""
    from echofm.study import PhantomBundleConfig, phantom_bundle
    from tests._downstream import TINY_ENCODER

    out = tmp_path_factory.mktemp("bundle") / "b"
    phantom_bundle(out, PhantomBundleConfig(clips_per_view=10, size=64, frames=32, epochs=10, seg_epochs=10,
                                            encoder=TINY_ENCODER, progress=False))
    return out


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    """A phantom exam (`echofm synth --format dicom --study`): one invented patient, 4 views."""
    from echofm.cli import main

    out = tmp_path_factory.mktemp("exam") / "exam"
    assert main(["synth", "--format", "dicom", "--study", "--n", "4", "--size", "80", "--frames", "45",
                 "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def study_zip(tmp_path_factory, study_dir) -> Path:
    """``study_dir``'s DICOM files as one ZIP, as a user uploads a study export."""
    import zipfile

    out = tmp_path_factory.mktemp("exam_zip") / "exam.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(study_dir.rglob("*.dcm")):
            zf.write(path, path.relative_to(study_dir).as_posix())
    return out
