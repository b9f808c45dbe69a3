"""Real echo test data shipped by pydicom, pydicom-data and deid-data (test extras)."""

from __future__ import annotations

from pathlib import Path

import pytest


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
