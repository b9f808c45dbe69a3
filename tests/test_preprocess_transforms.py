import numpy as np
import pytest
import torch

from echofm.io import Clip, read_clip
from echofm.preprocess.transforms import (
    Augment, PadSquare, PreprocessConfig, ResampleFps, Resize, preprocess_clip,
)


def test_pipeline_outputs_square_gray_clip_at_224_and_112(deid_cine):
    raw = read_clip(deid_cine)
    for size in (224, 112):
        clip = preprocess_clip(raw, PreprocessConfig(size=size))
        assert clip.frames.shape == (30, size, size) and clip.frames.dtype == np.uint8
        assert clip.meta["color"] is False
        y0, x0, y1, x1 = clip.sector_box
        # spacing follows the resize of the (padded) sector crop
        assert clip.pixel_spacing[0] == pytest.approx(raw.pixel_spacing[0] * max(y1 - y0, x1 - x0) / size, rel=1e-6)
        assert clip.meta["manufacturer_model"] == "Affiniti 70G"


def test_colour_doppler_kept_only_when_asked(deid_cine, color3d_cine):
    colour = preprocess_clip(read_clip(deid_cine), PreprocessConfig(keep_color=True))
    assert colour.frames.ndim == 4 and colour.meta["color"] is True
    # colour3d's only colour is text outside the fan: gray once masked
    gray = preprocess_clip(read_clip(color3d_cine), PreprocessConfig(size=112, keep_color=True))
    assert gray.frames.ndim == 3 and gray.meta["color"] is False


def test_pad_square_and_resize_keep_aspect():
    frames = np.full((2, 20, 40), 200, np.uint8)
    clip = Resize(10)(PadSquare()(Clip(frames, pixel_spacing=(0.5, 0.5))))
    assert clip.frames.shape == (2, 10, 10)
    assert clip.frames[:, 0].max() == 0 and clip.frames[:, 5].min() == 200  # black bars top and bottom
    assert clip.pixel_spacing == pytest.approx((2.0, 2.0))


def test_resample_fps_halves_frames():
    frames = np.arange(60, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
    clip = ResampleFps(15)(Clip(frames, fps=30.0))
    assert clip.num_frames == 30 and clip.fps == 15
    np.testing.assert_array_equal(clip.frames[:, 0, 0], np.arange(0, 60, 2))
    assert ResampleFps(15)(Clip(frames)).num_frames == 60  # unknown rate: untouched


def test_sample_window_step_and_short_clip():
    from echofm.windows import WindowSpec, centred_window, random_window

    rng = np.random.default_rng(0)
    index = random_window(100, WindowSpec(16, 2), rng)
    assert len(index) == 16 and np.all(np.diff(index) == 2) and index.max() < 100
    # A short clip is padded with its last frame (echofm.windows: one policy everywhere).
    np.testing.assert_array_equal(centred_window(5, WindowSpec(8, 1)), [0, 1, 2, 3, 4, 4, 4, 4])
    assert centred_window(100, WindowSpec(4, 3)).tolist() == [45, 48, 51, 54]  # centred without rng


def test_model_tensor_layout():
    from echofm.windows import to_model_tensor

    gray = np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    tensor = to_model_tensor(gray)
    assert tensor.shape == (3, 4, 8, 8) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0], tensor[2]) and tensor.max() <= 1
    rgb = np.stack([gray, gray // 2, gray // 3], -1)
    assert torch.allclose(to_model_tensor(rgb)[1] * 255, torch.from_numpy(gray // 2).float())


def test_augment_is_reproducible_bounded_and_keeps_background_black():
    clip = torch.zeros(3, 4, 32, 32)
    clip[:, :, 8:24, 8:24] = 0.5
    out1 = Augment()(clip, torch.Generator().manual_seed(1))
    out2 = Augment()(clip, torch.Generator().manual_seed(1))
    out3 = Augment()(clip, torch.Generator().manual_seed(2))
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    assert out1.shape == clip.shape and 0 <= out1.min() and out1.max() <= 1
    assert out1[:, :, :3, :3].max() == 0  # corners stay blank: no noise added to background
    assert out1[:, :, 14:18, 14:18].mean() > 0.2
