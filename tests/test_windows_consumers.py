"""One video through pretraining data, fine-tuning (training and evaluation), predict and embed:
the same windows (frame indices) and the same model tensors, as the model's contract asks.

The contract itself comes from the pretraining dataset (a 30 fps cache read every 2nd frame:
15 fps), so what pretraining saw is what every consumer rebuilds.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from echofm.config import preset
from echofm.datasets.base import Sample
from echofm.datasets.cache import CacheDataset
from echofm.datasets.clips import ClipDataset, VideoWindows
from echofm.inference import embed_frames
from echofm.model import EchoFM
from echofm.predict import PredictConfig, run_model, window_spec
from echofm.tasks.adapter import TaskModel, TaskSpec
from echofm.tasks.base import EvalOptions, run_windows
from echofm.train.data import clip_fps
from echofm.windows import Sampling, WindowSpec, window_clip, window_clips, window_indices

FPS, SIZE, FRAMES = 30.0, 32, 8
CFG = preset("tiny").replace(img_size=SIZE, num_frames=FRAMES, pred_t_dim=4, depth=1)


class _Frames:
    def __init__(self, frames):
        self.frames = frames

    def __call__(self):
        return self.frames, FPS


def _video(total: int) -> np.ndarray:
    """A moving bright bar on noise, 40 x 48 pixels (not the model's side: the one resizer acts)."""
    rng = np.random.default_rng(total)
    frames = rng.integers(0, 60, (total, 40, 48), dtype=np.uint8)
    for t in range(total):
        frames[t, :, (2 * t) % 48] = 250
    return frames


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    np.save(root / "clip.npy", _video(15))
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "file", "frames", "fps"], ["clip", "clip.npy", 15, FPS]])
    pretrain_data = CacheDataset(root, num_frames=FRAMES, frame_step=2, size=SIZE, random_window=True)
    torch.manual_seed(0)
    model = EchoFM(CFG).eval()
    model.contract = model.contract.replace(fps=clip_fps(pretrain_data), frame_step=2)
    assert model.contract.fps == 15.0
    task = TaskModel(model.encoder, TaskSpec(task="ef", kind="regression"), "linear", contract=model.contract).eval()
    return root, model, task


@pytest.mark.parametrize("total", [10, 15, 40])  # shorter than a window (padded), exactly one, several
def test_every_consumer_builds_the_same_windows_and_tensors(models, total, tmp_path):
    root, model, task = models
    frames = _video(total)
    sample = Sample(id="v", path=tmp_path / "v.npy", split="test", targets={"ef": 50.0}, frames_loader=_Frames(frames))
    spec = WindowSpec(num_frames=FRAMES, frame_step=2)  # 30 fps to the contract's 15 fps

    # predict
    # fp32 everywhere: ``auto`` is bf16 on a CPU with AMX, and the tensors are compared exactly.
    pspec, pwindows = window_spec(task, total, FPS, PredictConfig(precision="fp32"))
    assert pspec.frame_step == 2
    predicted = run_model(task, frames, pwindows, precision="fp32")
    # fine-tuning evaluation
    item = VideoWindows([sample], Sampling(task.contract), SIZE)[0]
    assert np.array_equal(item["indices"].numpy(), pwindows)
    (_, _, evaluated), = run_windows(task, [sample], EvalOptions(precision="fp32"))
    assert torch.equal(evaluated, predicted)
    # embed
    emb = embed_frames(model, frames, FPS, precision="fp32")
    assert np.array_equal(emb.windows, pwindows) and emb.frame_step == 2
    clips = window_clips(frames, pwindows, SIZE)
    assert torch.equal(window_clips(item["video"], item["indices"]), clips)
    with torch.inference_mode():
        assert np.allclose(emb.frames, model.embed(clips).frames.numpy(), atol=1e-6)
    # fine-tuning training windows and pretraining windows are windows of the same plan's spec
    train_clip = ClipDataset([sample], Sampling(task.contract), SIZE, seed=3)[0]["clips"]
    valid = [window_clip(frames, window_indices(total, spec, s), SIZE) for s in range(max(1, total - spec.span + 1))]
    assert any(torch.equal(train_clip, c) for c in valid)
    np.save(root / "clip.npy", frames)
    pretrain_clip = CacheDataset(root, num_frames=FRAMES, frame_step=2, size=SIZE, random_window=True)[0]
    assert any(torch.equal(pretrain_clip, c) for c in valid)
    if total <= spec.span:  # one possible window: every consumer has exactly it
        assert len(pwindows) == 1 and torch.equal(train_clip, clips[0]) and torch.equal(pretrain_clip, clips[0])
        if total < spec.span:  # padded with the last frame, never looped
            assert pwindows[0].tolist() == [min(2 * k, total - 1) for k in range(FRAMES)]
