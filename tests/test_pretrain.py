"""Pretraining engine: exact resume, crash-safe checkpoints, NaN stop, learning, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from echofm.config import ModelConfig
from echofm.train import checkpoint as ckpt
from echofm.train.config import PretrainConfig


def micro_model(**kw) -> ModelConfig:
    """A model small enough to train for a few steps in a second on 2 CPU cores."""
    base = dict(img_size=32, patch_size=8, num_frames=16, t_patch_size=2, embed_dim=32, depth=2,
                num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, pred_t_dim=8)
    return ModelConfig(**{**base, **kw})


class PeriodicClips(Dataset):
    """Clip i: a disc whose radius beats with period ``periods[i % len]`` frames, plus noise.

    Deterministic per (seed, index). ``phase(i)`` gives each frame's phase in cycles.
    """

    def __init__(self, count: int, frames: int = 16, size: int = 32, periods=(4, 8), seed: int = 0):
        self.count, self.frames, self.size, self.periods, self.seed = count, frames, size, periods, seed

    def __len__(self) -> int:
        return self.count

    def period(self, index: int) -> int:
        return self.periods[index % len(self.periods)]

    def __getitem__(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100003 + index)
        size, period = self.size, self.period(index)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        cy, cx = (size / 2 + (torch.rand(2, generator=g) - 0.5) * size / 4).tolist()
        offset = float(torch.rand((), generator=g)) * 2 * math.pi
        clip = torch.empty(3, self.frames, size, size)
        for f in range(self.frames):
            r = size * (0.25 + 0.12 * math.cos(2 * math.pi * f / period + offset))
            disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()
            clip[:, f] = 0.15 + 0.7 * disc
        return (clip + 0.05 * torch.randn(clip.shape, generator=g)).clamp(0, 1)


def run_config(out: Path, **kw) -> PretrainConfig:
    base = dict(model=micro_model(), model_name="micro", out=str(out), batch_size=4, steps=6,
                blr=0.05, warmup_steps=1, workers=0, checkpoint_every=3, keep_last=2, progress=False,
                device="cpu")
    return PretrainConfig(**{**base, **kw})


def weights(model_or_dir) -> dict[str, torch.Tensor]:
    if isinstance(model_or_dir, torch.nn.Module):
        return {k: v.detach().clone() for k, v in model_or_dir.state_dict().items()}
    from safetensors.torch import load_file

    return load_file(str(Path(model_or_dir) / "model.safetensors"))


LOSS_KEYS = ("loss", "recon", "triplet", "cycle")


def max_weight_difference(a: dict, b: dict) -> float:
    """Largest |a - b| over all weights except the attention key biases.

    The key bias adds a constant to every attention logit of a query, which softmax
    ignores: its true gradient is 0, the computed one is float noise (~1e-9), and Adam
    divides that noise by its own magnitude, so it moves by about +-lr in a direction set by
    rounding. Comparing it would compare rounding, not training.
    """
    worst = 0.0
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            d = x.shape[0] // 3
            x, y = torch.cat([x[:d], x[2 * d:]]), torch.cat([y[:d], y[2 * d:]])
        worst = max(worst, float((x - y).abs().max()))
    return worst


# --- resume -----------------------------------------------------------------------------

def test_resume_is_exact(tmp_path):
    """6 steps straight == 3 steps, stop, resume auto, 3 more: same losses, same weights."""
    from echofm.train.pretrain import pretrain

    data = PeriodicClips(12)  # 3 steps per epoch: the resume point is an epoch boundary
    straight = pretrain(run_config(tmp_path / "a", batch_size=2, accum_steps=2), dataset=data)
    first = pretrain(run_config(tmp_path / "b", batch_size=2, accum_steps=2), dataset=data, stop_after=3)
    assert first.step == 3 and first.model_dir is None
    second = pretrain(run_config(tmp_path / "b", batch_size=2, accum_steps=2), dataset=data, resume="auto")
    assert second.step == 6 and second.model_dir is not None
    got = [[h[k] for k in LOSS_KEYS] for h in first.history + second.history]
    want = [[h[k] for k in LOSS_KEYS] for h in straight.history]
    assert got == want  # bit-identical
    a, b = weights(straight.model), weights(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl of the resumed run has each step once, in order.
    import json

    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    # keep_last=2: steps 3 and 6 remain; the exported model loads with the public API.
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "b" / "checkpoints")] == [3, 6]
    import echofm

    loaded = echofm.load_model(tmp_path / "b" / "model")
    assert all(torch.equal(loaded.state_dict()[k], b[k]) for k in b)


def test_resume_mid_epoch_is_exact(tmp_path):
    """...and when stopping inside an epoch (the sampler position is restored)."""
    from echofm.train.pretrain import pretrain

    data = PeriodicClips(20)  # 5 steps per epoch of 4
    straight = pretrain(run_config(tmp_path / "a", steps=4), dataset=data)
    pretrain(run_config(tmp_path / "b", steps=4), dataset=data, stop_after=2)
    second = pretrain(run_config(tmp_path / "b", steps=4), dataset=data, resume="auto")
    assert [h["loss"] for h in second.history] == [h["loss"] for h in straight.history[2:]]
    a, b = weights(straight.model), weights(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- checkpoints survive crashes ----------------------------------------------------------

def test_crash_while_saving_leaves_previous_checkpoint(tmp_path, monkeypatch):
    from echofm.errors import EchoFMError
    from echofm.train.pretrain import pretrain

    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-6 checkpoint: write half a file, then "crash"
            Path(f).write_bytes(b"PK\x03\x04 half a zip")
            raise OSError("simulated crash mid-write")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(EchoFMError, match="step-00000006.pt: checkpoint not written"):
        pretrain(run_config(tmp_path / "run"), dataset=PeriodicClips(16))
    ckdir = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["step-00000003.pt"]  # no temp, no partial
    path, state = ckpt.latest_good_checkpoint(ckdir)
    assert path.name == "step-00000003.pt" and state["step"] == 3


def test_resume_auto_skips_a_corrupt_newest_checkpoint(tmp_path):
    from echofm.train.pretrain import pretrain

    data = PeriodicClips(16)
    pretrain(run_config(tmp_path / "run", steps=6, keep_last=0), dataset=data, stop_after=6)
    ckdir = tmp_path / "run" / "checkpoints"
    newest = ckpt.checkpoint_path(ckdir, 6)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated by, say, a full disk
    (ckdir / ".step-00000009.pt.abc.tmp").write_bytes(b"left by a killed process")
    with pytest.warns(UserWarning, match="skipping bad checkpoint"):
        resumed = pretrain(run_config(tmp_path / "run", steps=6, keep_last=0), dataset=data, resume="auto")
    assert [h["step"] for h in resumed.history] == [4, 5, 6]
    assert not (ckdir / ".step-00000009.pt.abc.tmp").exists()


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "step-00000001.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "payload": Evil()}, path)
    with pytest.raises(ckpt.CheckpointError, match="unreadable checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = ckpt.capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# --- non-finite loss ------------------------------------------------------------------------

def test_non_finite_loss_stops_with_step_and_parts(tmp_path, monkeypatch):
    from echofm.model.echofm import EchoFM
    from echofm.train.pretrain import NonFiniteLossError, pretrain

    real = EchoFM.reconstruction_loss
    calls = {"n": 0}

    def blows_up(self, *a, **kw):
        calls["n"] += 1
        loss = real(self, *a, **kw)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(EchoFM, "reconstruction_loss", blows_up)
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(run_config(tmp_path / "run"), dataset=PeriodicClips(16))
    msg = str(info.value)
    assert info.value.step == 4 and "non-finite loss at step 4" in msg
    for part in ("loss=nan", "recon=nan", "triplet=", "cycle="):
        assert part in msg
    assert "step-00000003.pt" in msg
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == [3]


# --- it learns ------------------------------------------------------------------------------

def test_tiny_run_lowers_recon_and_learns_the_phase(tmp_path):
    """40 steps on periodic clips: held-out reconstruction improves, phase contrast > 0."""
    from echofm.analysis.periodicity import phase_contrast
    from echofm.model import EchoFM
    from echofm.train.pretrain import pretrain

    held_out = PeriodicClips(16, seed=7)  # other centres, offsets and noise than training
    clips = torch.stack([held_out[i] for i in range(len(held_out))])
    noise = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    periods_in_steps = [held_out.period(i) / 2 for i in range(16)]  # t_patch_size 2

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            recon = float(model(clips, noise=noise).recon)
            contrast = phase_contrast(model.embed(clips).frames, periods_in_steps)
        return recon, contrast

    torch.manual_seed(0)
    recon_before, contrast_before = evaluate(EchoFM(micro_model()))
    result = pretrain(run_config(tmp_path / "run", steps=40, warmup_steps=5, checkpoint_every=0),
                      dataset=PeriodicClips(64))
    recon_after, contrast_after = evaluate(result.model)
    assert recon_after < 0.9 * recon_before  # measured 1.31 -> 1.03
    assert contrast_after > 0.2 and contrast_after > contrast_before + 0.2  # measured 0.01 -> 0.79


# --- gradient accumulation ----------------------------------------------------------------

def test_accumulation_matches_the_larger_batch(tmp_path):
    """batch 2 x accum 2 == batch 4: same clips and masks per step, weights within 1e-5.

    Only the order of float additions differs (measured max difference ~2e-6).
    """
    from echofm.train.pretrain import pretrain

    data = PeriodicClips(16)
    # fp32: the 1e-5 bound is float32 summation order (``auto`` is bf16 on a CPU with AMX).
    big = pretrain(run_config(tmp_path / "a", steps=3, batch_size=4, precision="fp32"), dataset=data)
    acc = pretrain(run_config(tmp_path / "b", steps=3, batch_size=2, accum_steps=2, precision="fp32"), dataset=data)
    for x, y in zip(big.history, acc.history):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
    assert max_weight_difference(weights(big.model), weights(acc.model)) < 1e-5
