"""windows.py: window plans, the short-video policy, tensors and batched model runs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from echofm.windows import (WindowSpec, labelled_window, plan_windows, random_window, run_windows, spec_for,
                            to_model_tensor, window_clips, window_indices, window_starts)


def test_windows_cover_every_frame_back_to_back_and_end_on_the_last_frame():
    spec = WindowSpec(num_frames=4, frame_step=2)  # span 7
    assert window_starts(20, spec) == [0, 7, 13]
    plan = plan_windows(20, spec)
    assert plan.tolist() == [[0, 2, 4, 6], [7, 9, 11, 13], [13, 15, 17, 19]]
    assert plan.min() == 0 and plan.max() == 19
    assert window_starts(20, WindowSpec(4, 2, window_step=5)) == [0, 5, 10, 13]


def test_max_windows_spreads_evenly_but_every_frame_keeps_all_and_shifts_through_the_step():
    spec = WindowSpec(num_frames=2, frame_step=1, window_step=1, max_windows=3)
    assert window_starts(10, spec) == [0, 4, 8]
    seg = WindowSpec(num_frames=4, frame_step=2, max_windows=1, every_frame=True)
    starts = window_starts(20, seg)
    assert starts == [0, 1, 7, 8, 13, 14]
    assert set(plan_windows(20, seg).ravel().tolist()) == set(range(20))  # every frame inside a window


def test_a_short_video_is_padded_with_its_last_frame():
    spec = WindowSpec(num_frames=6, frame_step=2)
    assert window_starts(5, spec) == [0]
    assert window_indices(5, spec, 0).tolist() == [0, 2, 4, 4, 4, 4]
    assert window_indices(5, WindowSpec(6, 2, short_video="loop"), 0).tolist() == [0, 2, 4, 1, 3, 0]
    assert window_indices(1, spec, 0).tolist() == [0] * 6  # a still image is its one frame repeated
    assert random_window(5, spec, random.Random(3)).tolist() == [0, 2, 4, 4, 4, 4]  # no other start fits


def test_random_and_labelled_windows_stay_inside_the_video():
    spec = WindowSpec(num_frames=4, frame_step=3)  # span 10
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = random_window(30, spec, rng)
        assert w[0] >= 0 and w[-1] <= 29 and np.all(np.diff(w) == 3)
    r = random.Random(0)
    for frame in (0, 5, 29):
        w = labelled_window(30, spec, frame, r)
        assert frame in w.tolist() and w[0] >= 0 and w[-1] <= 29


def test_to_model_tensor_is_unit_range_three_channels_and_resizes_once():
    frames = np.random.default_rng(0).integers(0, 256, (5, 20, 30), dtype=np.uint8)
    x = to_model_tensor(frames)
    assert x.shape == (3, 5, 20, 30) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.from_numpy(frames).float() / 255) and torch.equal(x[0], x[2])
    assert to_model_tensor(frames, 16).shape == (3, 5, 16, 16)
    rgb = np.stack([frames, frames // 2, frames // 3], axis=-1)
    assert torch.equal(to_model_tensor(rgb)[1], torch.from_numpy(frames // 2).float() / 255)
    windows = np.array([[0, 2], [3, 4]])
    clips = window_clips(frames, windows, 16)
    assert clips.shape == (2, 3, 2, 16, 16)
    assert torch.equal(clips[1], to_model_tensor(frames[[3, 4]], 16))  # resizing commutes with gathering
    with pytest.raises(ValueError, match="frames must be"):
        to_model_tensor(np.zeros((0, 4, 4), np.uint8))


def test_run_windows_batches_and_concatenates_in_order():
    frames = np.arange(10, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)  # frame t has value t
    windows = plan_windows(10, WindowSpec(num_frames=2, frame_step=1, window_step=1))
    seen = []

    def fn(clips):
        seen.append(len(clips))
        assert not torch.is_grad_enabled()
        return {"first": clips[:, 0, 0, 0, 0] * 255, "pair": clips[:, 0, :, 0, 0] * 255}

    out = run_windows(fn, frames, windows, batch_size=4)
    assert seen == [4, 4, 1]
    assert out["first"].round().tolist() == [float(w[0]) for w in windows]
    assert out["pair"].round().tolist() == windows.astype(float).tolist()
    single = run_windows(lambda c: c.mean(dim=(1, 2, 3, 4)), frames, windows, batch_size=3)
    assert single.shape == (9,)


def test_spec_for_takes_the_step_from_the_contract_and_flags_override():
    from echofm.contract import InputContract

    c = InputContract(num_frames=16, image_size=64, fps=15.0, frame_step=1)
    assert spec_for(c, 30.0) == WindowSpec(num_frames=16, frame_step=2)
    assert spec_for(c, 15.0).frame_step == 1
    assert spec_for(c, 50.0, window_step=3, max_windows=2) == WindowSpec(16, 3, window_step=3, max_windows=2)
    assert spec_for(c, 30.0, frame_step=1).frame_step == 1


def test_beat_window_is_centred_on_the_beat_and_inside_the_video():
    from echofm.windows import WindowSpec, beat_window

    spec = WindowSpec(num_frames=8, frame_step=2)  # span 15 frames
    w = beat_window(100, spec, 44, 54)  # a beat shorter than the window: centred on it
    assert w[0] == 42 and w[-1] == 56 and (w[0] + w[-1]) / 2 == 49
    w = beat_window(100, spec, 40, 70)  # a longer beat: from its ED, holding ED and systole
    assert w[0] == 40 and w[-1] == 54
    assert beat_window(100, spec, 0, 10)[0] == 0  # clamped at the start
    assert beat_window(100, spec, 90, 99)[-1] == 99 and beat_window(100, spec, 90, 99)[0] == 85  # and at the end
    short = beat_window(10, spec, 2, 8)
    assert short[0] == 0 and short.max() == 9 and len(short) == 8  # padded with the last frame
