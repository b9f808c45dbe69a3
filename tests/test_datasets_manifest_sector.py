"""Raw files listed in a CSV manifest go through the shared sector pipeline, as at inference."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from echofm.datasets import read_dataset
from echofm.datasets.clips import ClipDataset, VideoWindows
from echofm.inference import load_study
from echofm.io import read_clip
from echofm.preprocess.transforms import resize_frames
from echofm.windows import WindowSpec, to_model_tensor, window_clips

SIZE = 64


@pytest.fixture()
def manifest(tmp_path, ybr_cine):
    """A real apical 4-chamber cine (DICOM, burned-in annotations outside the fan) and a
    prepared cache clip, listed in one manifest."""
    shutil.copy(ybr_cine, tmp_path / "a4c.dcm")
    prepared = load_study(ybr_cine, 48).frames  # what `echofm prepare --size 48` stores
    np.save(tmp_path / "prepared.npy", prepared)
    (tmp_path / "manifest.csv").write_text("path,label,split\na4c.dcm,A4C,train\nprepared.npy,A4C,test\n")
    return tmp_path


def test_manifest_dicom_frames_are_the_inference_pixels(manifest):
    data = read_dataset("csv", manifest, task="view")
    dicom = data.samples[0]
    assert dicom.preprocess and dicom.id == "a4c.dcm"
    frames, fps = dicom.load_frames(SIZE)
    study = load_study(manifest / "a4c.dcm", SIZE)
    # Sector masked, cropped, padded square, grey, resized: exactly what inference reads.
    assert frames.shape == (30, SIZE, SIZE) and frames.dtype == np.uint8 and fps == pytest.approx(30.0)
    assert np.array_equal(frames, study.frames)
    raw = read_clip(manifest / "a4c.dcm").frames
    assert raw.shape == (30, 240, 320, 3) and raw[:, :24].max() > 100  # annotations above the fan ...
    assert frames[:, :6, :6].max() == 0 and frames[:, -6:, :6].max() == 0  # ... are gone: black outside the fan
    assert resize_frames(raw, SIZE)[:, :6, :6].max() > 100  # a plain resize would have kept them
    # The model input of training and evaluation windows is inference's tensor of those frames.
    item = ClipDataset([dicom], WindowSpec(num_frames=8), size=SIZE)[0]
    window = VideoWindows([dicom], WindowSpec(num_frames=8), size=SIZE)[0]
    first = window["indices"][0].numpy()
    clips = window_clips(window["video"], window["indices"])
    assert np.allclose(clips[0].numpy(), to_model_tensor(study.frames[first]).numpy(), atol=1e-6)
    assert item["clips"].shape == (3, 8, SIZE, SIZE)
    # Without a size the cropped fan keeps its own resolution (square, larger than the model's).
    native, _ = dicom.load_frames()
    assert native.shape[1] == native.shape[2] > SIZE and native[:, :6, :6].max() == 0


def test_prepared_cache_clips_are_not_processed_twice(manifest):
    data = read_dataset("csv", manifest, task="view")
    prepared = data.samples[1]
    stored = np.load(manifest / "prepared.npy")
    assert np.array_equal(prepared.load_frames(48)[0], stored)  # no second sector detection or crop
    assert np.array_equal(prepared.load_frames(SIZE)[0], resize_frames(stored, SIZE))  # only resized
    assert np.allclose(to_model_tensor(prepared.load_frames(SIZE)[0], SIZE).numpy(),
                       to_model_tensor(resize_frames(stored, SIZE)).numpy(), atol=1e-6)


def test_preprocessing_can_be_turned_off_for_clean_files(manifest):
    data = read_dataset("csv", manifest, task="view", preprocess=False)
    frames, _ = data.samples[0].load_frames(SIZE)
    assert not data.samples[0].preprocess and frames.shape == (30, 240, 320, 3)  # as stored
